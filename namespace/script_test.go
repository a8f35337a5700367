package namespace

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the expected outputs of testdata/*.txt")

// TestScripts runs the scripts in testdata/*.txt. A script is a list of
// blocks: a command line, "----", and the expected output up to a blank
// line; lines starting with # are comments. With -update the expected
// outputs are rewritten from the actual ones (review the diff).
//
// Commands (s= is the session, req= the request id, times are offsets
// from the script's start):
//
//	open [timeout=12s]              close s=N              expire N
//	create PATH [content=C] [ephemeral] [parents] [sequential] [acl=r,w,c]
//	set PATH content=C [gen=N]      delete PATH [recursive] [gen=N]
//	setacl PATH acl=r,w,c [gen=N]   tick                   advance DURATION
//	acquire PATH exclusive|shared [wait] [delay=D]   cancel PATH   release PATH [gen=N]
//	tree [PATH]   get PATH   ls PATH   locks   sessions   deadline
//	check PATH:MODE:LOCKGEN:INSTANCE                 restore (snapshot + restore)
//	txn [s=N] [req=N] | SUB-OP | SUB-OP ...
//
// A txn's sub-ops are create, set, delete and setacl as above, and the
// conditions check-exists PATH [gen=N], check-missing PATH and
// check-sequencer PATH:MODE:LOCKGEN:INSTANCE.
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScript(t, f) })
	}
}

func runScript(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	sc := &script{t: t, tree: New(DefaultConfig())}
	var out strings.Builder
	for i := 0; i < len(lines); {
		line := lines[i]
		if line == "" || strings.HasPrefix(line, "#") {
			out.WriteString(line + "\n")
			i++
			continue
		}
		if i+1 >= len(lines) || lines[i+1] != "----" {
			t.Fatalf("%s:%d: command %q is not followed by ----", file, i+1, line)
		}
		j := i + 2
		for j < len(lines) && lines[j] != "" {
			j++
		}
		want := strings.Join(lines[i+2:j], "\n")
		got := strings.TrimRight(sc.run(line), "\n")
		if got != want && !*update {
			t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", file, i+1, line, got, want)
		}
		out.WriteString(line + "\n----\n" + got + "\n")
		i = j
	}
	if *update {
		if err := os.WriteFile(file, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type script struct {
	t     *testing.T
	tree  *Tree
	index uint64
	now   int64
}

// args splits "k=v" and bare words.
type args struct {
	words []string
	kv    map[string]string
}

func parseArgs(fields []string) args {
	a := args{kv: map[string]string{}}
	for _, f := range fields {
		if k, v, ok := strings.Cut(f, "="); ok {
			a.kv[k] = v
		} else {
			a.words = append(a.words, f)
		}
	}
	return a
}

func (a args) has(w string) bool {
	for _, x := range a.words {
		if x == w {
			return true
		}
	}
	return false
}

func (a args) uint(k string) uint64 {
	v, _ := strconv.ParseUint(a.kv[k], 10, 64)
	return v
}

func (a args) dur(k string) time.Duration {
	if a.kv[k] == "" {
		return 0
	}
	d, err := time.ParseDuration(a.kv[k])
	if err != nil {
		panic(err)
	}
	return d
}

func (a args) path() string {
	if len(a.words) == 0 {
		return "/"
	}
	return a.words[0]
}

func (a args) acl() ACL {
	parts := strings.SplitN(a.kv["acl"]+",,", ",", 3)
	return ACL{Reader: parts[0], Writer: parts[1], Changer: strings.TrimRight(parts[2], ",")}
}

// write parses a create, set, delete or setacl.
func write(word string, a args) (Command, bool) {
	var cmd Command
	switch word {
	case "create":
		var flags Flags
		for w, f := range map[string]Flags{"ephemeral": FlagEphemeral, "parents": FlagParents, "sequential": FlagSequential} {
			if a.has(w) {
				flags |= f
			}
		}
		cmd = NewCreate(a.path(), []byte(a.kv["content"]), flags)
		cmd.ACL = a.acl()
	case "set":
		cmd = NewSetContent(a.path(), []byte(a.kv["content"]), a.uint("gen"))
	case "delete":
		cmd = NewDelete(a.path(), a.has("recursive"), a.uint("gen"))
	case "setacl":
		cmd = NewSetACL(a.path(), a.acl(), a.uint("gen"))
	default:
		return cmd, false
	}
	return cmd, true
}

// parseSequencer reads PATH:MODE:LOCKGEN:INSTANCE.
func parseSequencer(s string) Sequencer {
	parts := strings.Split(s, ":")
	mode := ModeExclusive
	if parts[1] == "shared" {
		mode = ModeShared
	}
	gen, _ := strconv.ParseUint(parts[2], 10, 64)
	inst, _ := strconv.ParseUint(parts[3], 10, 64)
	return Sequencer{Path: parts[0], Mode: mode, LockGen: gen, Instance: inst}
}

// txn parses the sub-ops of a txn line.
func (sc *script) txn(segments []string) Command {
	var ops []TxnOp
	for _, seg := range segments {
		fields := strings.Fields(seg)
		a := parseArgs(fields[1:])
		switch fields[0] {
		case "check-exists":
			ops = append(ops, TxnCheckExists(a.path(), a.uint("gen")))
		case "check-missing":
			ops = append(ops, TxnCheckMissing(a.path()))
		case "check-sequencer":
			ops = append(ops, TxnCheckSequencer(parseSequencer(a.path())))
		case "put":
			c, _ := write("create", a)
			ops = append(ops, TxnPut(c.Path, c.Content, c.Flags))
		default:
			c, ok := write(fields[0], a)
			if !ok {
				sc.t.Fatalf("unknown txn sub-op %q", seg)
			}
			ops = append(ops, TxnOp{Op: c.Op, Path: c.Path, Content: c.Content, Flags: c.Flags, Generation: c.Generation, ACL: c.ACL})
		}
	}
	return NewTxn(ops...)
}

func (sc *script) run(line string) string {
	segments := strings.Split(line, " | ")
	fields := strings.Fields(segments[0])
	a := parseArgs(fields[1:])
	cmd, _ := write(fields[0], a)
	switch fields[0] {
	case "txn":
		cmd = sc.txn(segments[1:])
	case "create", "set", "delete", "setacl": // write parsed them
	case "open":
		timeout := a.dur("timeout")
		if timeout == 0 {
			timeout = 12 * time.Second
		}
		cmd = NewOpenSession(timeout)
	case "close":
		cmd = NewCloseSession()
	case "expire":
		target, _ := strconv.ParseUint(a.path(), 10, 64)
		cmd = NewExpireSession(target)
	case "tick":
		cmd = NewTick()
	case "acquire":
		mode := ModeExclusive
		if a.has("shared") {
			mode = ModeShared
		}
		cmd = NewAcquire(a.path(), mode, a.has("wait"), a.dur("delay"))
	case "cancel":
		cmd = NewCancel(a.path())
	case "release":
		cmd = NewRelease(a.path(), a.uint("gen"))
	default:
		return sc.query(fields[0], a)
	}
	sc.index++
	cmd.Time, cmd.Session, cmd.Request = sc.now, a.uint("s"), a.uint("req")
	r, ev := sc.tree.Apply(sc.index, &cmd)
	if err := sc.tree.CheckInvariants(); err != nil {
		sc.t.Fatalf("%s: invariant: %v", line, err)
	}
	var b strings.Builder
	b.WriteString(formatResult(r))
	for _, e := range ev {
		b.WriteString("\n  " + e.String())
	}
	return b.String()
}

func formatResult(r Result) string {
	if r.Err != nil {
		if r.Txn != nil {
			return fmt.Sprintf("error %v (failed=%d)", r.Err, r.Txn.Failed)
		}
		return "error " + r.Err.Error()
	}
	parts := []string{"ok"}
	if r.Path != "" {
		parts = append(parts, "path="+r.Path)
	}
	if r.Session != 0 {
		parts = append(parts, fmt.Sprintf("session=%d", r.Session))
	}
	if r.Sequencer != (Sequencer{}) {
		parts = append(parts, "seq="+r.Sequencer.String())
	}
	if r.Queued {
		parts = append(parts, "queued")
	}
	if r.Deleted != 0 {
		parts = append(parts, fmt.Sprintf("deleted=%d", r.Deleted))
	}
	if r.Txn != nil {
		ops := make([]string, len(r.Txn.Ops))
		for i, o := range r.Txn.Ops {
			ops[i] = formatResult(o)
			if o.Stat.Instance != 0 {
				ops[i] += fmt.Sprintf(" inst=%d cgen=%d", o.Stat.Instance, o.Stat.ContentGen)
			}
		}
		parts = append(parts, "ops=["+strings.Join(ops, " | ")+"]")
	}
	return strings.Join(parts, " ")
}

func (sc *script) query(cmd string, a args) string {
	switch cmd {
	case "advance":
		d, err := time.ParseDuration(a.path())
		if err != nil {
			sc.t.Fatalf("advance: %v", err)
		}
		sc.now += int64(d)
		return fmt.Sprintf("now=%v", time.Duration(sc.now))
	case "tree":
		s, err := sc.tree.Dump(a.path())
		if err != nil {
			return "error " + err.Error()
		}
		return s
	case "get":
		n, err := sc.tree.Get(a.path())
		if err != nil {
			return "error " + err.Error()
		}
		st := n.Stat
		return fmt.Sprintf("%q inst=%d cgen=%d lgen=%d agen=%d size=%d created=%d/%v modified=%d/%v owner=%d children=%d",
			n.Content, st.Instance, st.ContentGen, st.LockGen, st.ACLGen, st.Size, st.CreatedIndex,
			time.Duration(st.CreatedTime), st.ModifiedIndex, time.Duration(st.ModifiedTime), st.EphemeralOwner, st.Children)
	case "ls":
		es, _, err := sc.tree.List(a.path(), "", 0)
		if err != nil {
			return "error " + err.Error()
		}
		return strings.Join(names(es), " ")
	case "locks":
		var b strings.Builder
		for _, l := range sc.tree.Locks() {
			fmt.Fprintf(&b, "%s %s lgen=%d holders=%v", l.Path, l.Mode, l.LockGen, l.Holders)
			for _, w := range l.Waiters {
				fmt.Fprintf(&b, " wait=%d:%s", w.Session, w.Mode)
			}
			if l.DelayUntil != 0 {
				fmt.Fprintf(&b, " delay-until=%v", time.Duration(l.DelayUntil))
			}
			b.WriteString("\n")
		}
		return b.String()
	case "sessions":
		var b strings.Builder
		for _, s := range sc.tree.Sessions() {
			fmt.Fprintf(&b, "%d timeout=%v ephemerals=%v locks=%v waiting=%v\n", s.ID, s.Timeout, s.Ephemerals, s.Locks, s.Waiting)
		}
		return b.String()
	case "deadline":
		d, ok := sc.tree.NextDeadline()
		if !ok {
			return "none"
		}
		return time.Duration(d).String()
	case "check":
		return strconv.FormatBool(sc.tree.CheckSequencer(parseSequencer(a.path())))
	case "restore":
		var buf bytes.Buffer
		if err := sc.tree.Snapshot(&buf); err != nil {
			sc.t.Fatal(err)
		}
		n := buf.Len()
		fresh := New(DefaultConfig())
		if err := fresh.Restore(&buf); err != nil {
			sc.t.Fatal(err)
		}
		sc.tree = fresh
		return fmt.Sprintf("restored %d bytes", n)
	}
	sc.t.Fatalf("unknown script command %q", cmd)
	return ""
}
