package paxos

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var flagUpdate = flag.Bool("update", false, "rewrite testdata/*.txt with the actual output")

// TestScripts runs testdata/*.txt: blocks of "command\n----\noutput\n\n".
// Lines starting with # before a command are comments. -update rewrites the
// expected output; review it as a diff.
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScript(t, f) })
	}
}

type scriptBlock struct {
	comments []string
	cmd      string
	want     string
}

func parseScript(t *testing.T, path string) []scriptBlock {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []scriptBlock
	var cur scriptBlock
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	state := 0 // 0: before command, 1: after command, 2: in output
	var out []string
	for sc.Scan() {
		line := sc.Text()
		switch state {
		case 0:
			switch {
			case strings.HasPrefix(line, "#"):
				cur.comments = append(cur.comments, line)
			case strings.TrimSpace(line) == "":
			default:
				cur.cmd, state = line, 1
			}
		case 1:
			if line != "----" {
				t.Fatalf("%s: command %q not followed by ----", path, cur.cmd)
			}
			state, out = 2, nil
		case 2:
			if line == "" {
				cur.want = strings.Join(out, "\n")
				blocks = append(blocks, cur)
				cur, state = scriptBlock{}, 0
				continue
			}
			out = append(out, line)
		}
	}
	if state == 2 {
		cur.want = strings.Join(out, "\n")
		blocks = append(blocks, cur)
	} else if state == 1 {
		t.Fatalf("%s: command %q without ----", path, cur.cmd)
	}
	return blocks
}

func runScript(t *testing.T, path string) {
	blocks := parseScript(t, path)
	c := &scriptCell{t: t}
	var rewritten strings.Builder
	for i, b := range blocks {
		got := c.run(b.cmd)
		if got == "" {
			got = "ok"
		}
		if *flagUpdate {
			if i > 0 {
				rewritten.WriteString("\n")
			}
			for _, cm := range b.comments {
				rewritten.WriteString(cm + "\n")
			}
			fmt.Fprintf(&rewritten, "%s\n----\n%s\n", b.cmd, got)
			continue
		}
		if got != b.want {
			t.Fatalf("%s: %s\ngot:\n%s\nwant:\n%s", path, b.cmd, got, b.want)
		}
	}
	if *flagUpdate {
		if err := os.WriteFile(path, []byte(rewritten.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// scriptDiffers runs the script at path with bugs planted in every core and
// reports whether some command's output differs from the expected one: the
// script catches the planted bug.
func scriptDiffers(t *testing.T, path string, planted bugs) bool {
	c := &scriptCell{t: t, bugs: planted}
	for _, b := range parseScript(t, path) {
		got := c.run(b.cmd)
		if got == "" {
			got = "ok"
		}
		if got != b.want {
			return true
		}
	}
	return false
}

// scriptCell is a cell driven step by step: storage syncs at once, messages
// wait in one FIFO queue until "deliver".
type scriptCell struct {
	t      *testing.T
	rs     []*scriptReplica
	peers  []uint64
	queue  []scriptMsg
	cut    map[[2]uint64]bool
	out    []string
	lease  int
	window int
	alpha  uint64              // bootstrap α (0: the default)
	bugs   bugs                // planted in every core (scriptDiffers)
	sent   map[MessageType]int // peer messages handed out by Ready, by type
}

type scriptMsg struct {
	m    Message
	snap *scriptSnap // a snapshot transfer (From/To in m)
}

type scriptSnap struct {
	instance uint64
	sm       []string
	members  *Members // the member set as of instance (nil: none taken yet)
}

type scriptReplica struct {
	id   uint64
	node *Node
	up   bool
	disk simDisk
	sm   []string // applied values
	snap scriptSnap
	role Role
	// members is the driver's copy of the member set, applied in
	// lockstep with sm (nil: a joiner that has not received one yet).
	members *Members
	removed bool
}

func (c *scriptCell) printf(format string, args ...any) {
	c.out = append(c.out, fmt.Sprintf(format, args...))
}

func (c *scriptCell) config(id uint64) Config {
	cfg := Config{
		ID: id, Peers: c.peers, HeartbeatTicks: 2, ElectionTicks: 10, LeaseTicks: c.lease, DriftTicks: 1,
		Window: c.window, MaxBatchBytes: 64, MaxMessageBytes: 256, Alpha: c.alpha,
		Join: !slices.Contains(c.peers, id),
	}
	if c.lease == 0 {
		cfg.DriftTicks = 0
	}
	return cfg
}

func (c *scriptCell) replica(arg string) *scriptReplica {
	id, err := strconv.Atoi(arg)
	if err != nil || id < 1 || id > len(c.rs) {
		// (spare replicas, "cell spare=K", follow the founders)
		c.t.Fatalf("bad replica %q", arg)
	}
	return c.rs[id-1]
}

func (c *scriptCell) run(line string) string {
	c.out = nil
	f := strings.Fields(line)
	args := f[1:]
	switch f[0] {
	case "cell":
		n, spare := 3, 0
		c.lease, c.window, c.alpha = 8, 4, 0
		for _, a := range args {
			k, v, _ := strings.Cut(a, "=")
			x, _ := strconv.Atoi(v)
			switch k {
			case "n":
				n = x
			case "lease":
				c.lease = x
			case "window":
				c.window = x
			case "alpha":
				c.alpha = uint64(x)
			case "spare":
				spare = x
			}
		}
		c.rs, c.peers, c.queue, c.cut = nil, nil, nil, map[[2]uint64]bool{}
		for i := range n {
			c.peers = append(c.peers, uint64(i+1))
		}
		for _, id := range c.peers {
			r := &scriptReplica{id: id, disk: simDisk{log: map[uint64]Entry{}}}
			c.rs = append(c.rs, r)
			c.start(r)
		}
		for k := range spare {
			// Started by "join": an empty disk, rebuilding with nonce 40+id.
			id := uint64(n + k + 1)
			c.rs = append(c.rs, &scriptReplica{id: id, disk: simDisk{log: map[uint64]Entry{}, rebuild: 40 + id}})
		}
	case "join":
		c.start(c.replica(args[0]))
	case "change":
		// change R OP ID [NONCE|META]: R's ProposeChange.
		r := c.replica(args[0])
		ops := map[string]ChangeOp{"add": OpAddLearner, "bind": OpBind, "promote": OpPromote,
			"remove": OpRemoveVoter, "removelearner": OpRemoveLearner, "meta": OpSetMeta}
		id, _ := strconv.ParseUint(args[2], 10, 64)
		ch := MemberChange{Op: ops[args[1]], ID: id}
		if len(args) > 3 {
			ch.Meta = []byte(args[3])
			ch.Nonce, _ = strconv.ParseUint(args[3], 10, 64)
		}
		i, err := r.node.ProposeChange(ch)
		if err != nil {
			c.printf("change %s %d at %d: %v", ch.Op, id, r.id, err)
		} else {
			c.printf("change %s %d at %d: instance %d", ch.Op, id, r.id, i)
		}
		c.process(r)
	case "members":
		for _, r := range c.rs {
			if r.up {
				c.printf("%d: %s", r.id, fmtMembers(r.node.Members()))
			}
		}
	case "campaign":
		r := c.replica(args[0])
		r.node.Campaign()
		c.process(r)
	case "resign":
		r := c.replica(args[0])
		c.printf("%d resigns: successor %d, lease=%v", r.id, r.node.Resign(), r.node.LeaseValid())
		c.process(r)
	case "propose":
		r := c.replica(args[0])
		for _, v := range args[1:] {
			i, err := r.node.Propose([]byte(v))
			if err != nil {
				c.printf("propose %s at %d: %v", v, r.id, err)
			} else {
				c.printf("propose %s at %d: instance %d", v, r.id, i)
			}
		}
		c.process(r)
	case "tick":
		k, _ := strconv.Atoi(args[0])
		targets := c.rs
		if len(args) > 1 {
			targets = nil
			for _, a := range args[1:] {
				targets = append(targets, c.replica(a))
			}
		}
		for range k {
			for _, r := range targets {
				if r.up {
					r.node.Tick()
					c.process(r)
				}
			}
		}
	case "deliver":
		c.deliver(args)
	case "drop":
		from, to, typ, _ := msgFilter(args)
		c.queue = slices.DeleteFunc(c.queue, func(m scriptMsg) bool {
			if !m.matches(from, to, typ) {
				return false
			}
			c.printf("dropped %d->%d %s", m.m.From, m.m.To, m.name())
			return true
		})
	case "partition":
		clear(c.cut)
		side := map[uint64]int{}
		g := 0
		for _, a := range args {
			if a == "|" {
				g++
				continue
			}
			side[c.replica(a).id] = g
		}
		for _, ra := range c.rs {
			for _, rb := range c.rs {
				if a, b := ra.id, rb.id; side[a] != side[b] {
					c.cut[[2]uint64{a, b}] = true
				}
			}
		}
	case "heal":
		clear(c.cut)
	case "crash":
		r := c.replica(args[0])
		r.up, r.node = false, nil
		c.queue = slices.DeleteFunc(c.queue, func(m scriptMsg) bool { return m.m.To == r.id })
	case "restart":
		c.start(c.replica(args[0]))
	case "wipe":
		// The disk of a crashed replica is emptied; it will restart
		// rebuilding, with nonce 7.
		r := c.replica(args[0])
		r.disk, r.snap, r.sm = simDisk{log: map[uint64]Entry{}, rebuild: 7}, scriptSnap{}, nil
	case "compact":
		r := c.replica(args[0])
		i, _ := strconv.ParseUint(args[1], 10, 64)
		m := r.members.Clone()
		r.snap = scriptSnap{instance: uint64(len(r.sm)), sm: slices.Clone(r.sm), members: &m}
		r.disk.snap = simSnap{instance: r.snap.instance}
		if err := r.node.Compact(i); err != nil {
			c.printf("compact %d: %v", i, err)
		}
	case "status":
		for _, r := range c.rs {
			c.status(r)
		}
	case "read":
		r := c.replica(args[0])
		b, ok := r.node.ReadBarrier()
		c.printf("read at %d: barrier=%d ok=%v lease=%v", r.id, b, ok, r.node.LeaseValid())
	default:
		c.t.Fatalf("unknown command %q", line)
	}
	return strings.Join(c.out, "\n")
}

func (c *scriptCell) start(r *scriptReplica) {
	st := r.disk.state()
	st.Snapshot, st.Chosen = r.snap.instance, max(st.Chosen, r.snap.instance)
	st.Members = r.snap.members
	r.members = r.snap.members
	if r.members == nil && slices.Contains(c.peers, r.id) {
		m := Bootstrap(c.peers, c.alpha)
		r.members, r.snap.members = &m, &m
	}
	for len(st.Entries) > 0 && st.Entries[0].Instance <= st.Snapshot {
		st.Entries = st.Entries[1:]
	}
	n, err := New(c.config(r.id), st)
	if err != nil {
		c.t.Fatalf("restart %d: %v", r.id, err)
	}
	n.bugs = c.bugs
	n.setMembers(n.members) // derive again with the planted bugs
	r.node, r.up, r.role = n, true, Follower
	r.sm = slices.Clone(r.snap.sm)
	c.process(r)
}

// process runs the driver loop for r until it has nothing ready.
func (c *scriptCell) process(r *scriptReplica) {
	for r.up && r.node.HasReady() {
		rd, err := r.node.Ready()
		if err != nil {
			c.t.Fatal(err)
		}
		if rd.Promised != nil {
			r.disk.promised = *rd.Promised
		}
		for _, e := range rd.Accepted {
			r.disk.log[e.Instance] = e
		}
		r.disk.chosen = max(r.disk.chosen, rd.ChosenMark)
		if rd.Rebuilt {
			r.disk.rebuild = 0
			c.printf("%d rebuilt: votes again (promised %v)", r.id, r.node.Status().Promised)
		}
		for _, m := range rd.Messages {
			if c.sent == nil {
				c.sent = map[MessageType]int{}
			}
			c.sent[m.Type]++
			c.printf("%d->%d %s", m.From, m.To, fmtMsg(m))
			c.queue = append(c.queue, scriptMsg{m: m})
		}
		for _, e := range rd.Chosen {
			v := fmtValue(e)
			r.sm = append(r.sm, v)
			if r.members != nil {
				m, err := r.members.ApplyEntry(e)
				r.members = &m
				if err != nil {
					v += " (" + err.Error() + ")"
				}
			}
			c.printf("%d applies %d: %s", r.id, e.Instance, v)
		}
		if rd.Removed && !r.removed {
			c.printf("%d removed from the cell", r.id)
		}
		r.removed = rd.Removed
		for _, to := range rd.Snapshots {
			c.printf("%d->%d Snapshot through %d", r.id, to, r.snap.instance)
			c.queue = append(c.queue, scriptMsg{m: Message{From: r.id, To: to}, snap: &scriptSnap{r.snap.instance, slices.Clone(r.snap.sm), r.snap.members}})
		}
		if rd.Role != r.role {
			c.printf("%d is %s (ballot %v)", r.id, rd.Role, rd.Ballot)
			r.role = rd.Role
		}
		if err := r.node.Advance(); err != nil {
			c.t.Fatal(err)
		}
	}
}

// deliver delivers queued messages (and those they cause) in FIFO order.
// Filters: from=X, to=X, type=T restrict what is delivered; drop=T drops
// the messages of type T instead.
func (c *scriptCell) deliver(args []string) {
	from, to, typ, drop := msgFilter(args)
	for steps := 0; steps < 10000; steps++ {
		k := slices.IndexFunc(c.queue, func(m scriptMsg) bool { return m.matches(from, to, typ) })
		if k < 0 {
			return
		}
		sm := c.queue[k]
		c.queue = slices.Delete(c.queue, k, k+1)
		m := sm.m
		r := c.rs[m.To-1]
		name := sm.name()
		if c.cut[[2]uint64{m.From, m.To}] || drop == name || !r.up {
			c.printf("dropped %d->%d %s", m.From, m.To, name)
			continue
		}
		if sm.snap != nil {
			if sm.snap.instance > uint64(len(r.sm)) || r.members == nil && sm.snap.members != nil {
				r.sm = slices.Clone(sm.snap.sm)
				r.snap = *sm.snap
				r.members = sm.snap.members
				r.disk.snap = simSnap{instance: sm.snap.instance}
				if err := r.node.RestoreSnapshotMembers(sm.snap.instance, *sm.snap.members); err != nil {
					c.t.Fatal(err)
				}
				c.printf("%d restores snapshot through %d", r.id, sm.snap.instance)
			}
		} else if err := r.node.Step(m); err != nil {
			// A driver drops a message the core refuses (a removed
			// member's, here); it shows as refused in the script.
			c.printf("refused %d->%d %s: %v", m.From, m.To, name, err)
		}
		c.process(r)
	}
	c.t.Fatalf("deliver did not quiesce")
}

func (m scriptMsg) name() string {
	if m.snap != nil {
		return "Snapshot"
	}
	return m.m.Type.String()
}

func (m scriptMsg) matches(from, to uint64, typ string) bool {
	return (from == 0 || m.m.From == from) && (to == 0 || m.m.To == to) && (typ == "" || m.name() == typ)
}

// msgFilter parses from=X to=X type=T drop=T.
func msgFilter(args []string) (from, to uint64, typ, drop string) {
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		x, _ := strconv.ParseUint(v, 10, 64)
		switch k {
		case "from":
			from = x
		case "to":
			to = x
		case "type":
			typ = v
		case "drop":
			drop = v
		}
	}
	return from, to, typ, drop
}

func (c *scriptCell) status(r *scriptReplica) {
	if !r.up {
		c.printf("%d: down", r.id)
		return
	}
	st := r.node.Status()
	rebuilding := ""
	if st.Rebuilding {
		rebuilding = " rebuilding"
	}
	c.printf("%d: %s%s leader=%d ballot=%v promised=%v commit=%d applied=%d snapshot=%d lease=%v sm=[%s]",
		r.id, st.Role, rebuilding, st.Leader, st.Ballot, st.Promised, st.Commit, st.Applied, st.Snapshot, st.LeaseValid, strings.Join(r.sm, " "))
}

// fmtValue is how scripts show an entry's value.
func fmtValue(e Entry) string {
	switch {
	case e.Noop:
		return "noop"
	case e.Conf:
		c, err := DecodeMemberChange(e.Value)
		if err != nil {
			return "conf?"
		}
		return fmt.Sprintf("conf(%v %d)", c.Op, c.ID)
	}
	return string(e.Value)
}

// fmtMembers is how scripts show a member set.
func fmtMembers(m Members) string {
	var vs, ls []string
	for _, x := range m.Members {
		if x.Voter {
			vs = append(vs, strconv.FormatUint(x.ID, 10))
		} else {
			ls = append(ls, fmt.Sprintf("%d(nonce %d)", x.ID, x.Nonce))
		}
	}
	s := fmt.Sprintf("epoch %d voters [%s] learners [%s]", m.Epoch, strings.Join(vs, " "), strings.Join(ls, " "))
	if p := m.Pending; p != nil {
		s += fmt.Sprintf(" pending %v from %d", p.Voters, p.At+m.Alpha)
	}
	if len(m.Retired) > 0 {
		s += fmt.Sprintf(" retired %v", m.Retired)
	}
	return s
}

func fmtEntries(es []Entry) string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = fmt.Sprintf("%d@%v:%s", e.Instance, e.Ballot, fmtValue(e))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func fmtMsg(m Message) string {
	switch m.Type {
	case MsgPrepare:
		if m.Last > m.Instance {
			return fmt.Sprintf("Prepare b=%v from=%d rest=%d", m.Ballot, m.Instance, m.Last)
		}
		return fmt.Sprintf("Prepare b=%v from=%d", m.Ballot, m.Instance)
	case MsgPromise:
		part := ""
		if m.Last != 0 {
			part = fmt.Sprintf(" through=%d", m.Last)
		}
		return fmt.Sprintf("Promise b=%v from=%d commit=%d snap=%d%s %s", m.Ballot, m.Instance, m.Commit, m.Snapshot, part, fmtEntries(m.Entries))
	case MsgAccept:
		return fmt.Sprintf("Accept b=%v commit=%d lease=%d %s", m.Ballot, m.Commit, m.Lease, fmtEntries(m.Entries))
	case MsgAccepted:
		return fmt.Sprintf("Accepted b=%v %d..%d commit=%d lease=%d", m.Ballot, m.Instance, m.Last, m.Commit, m.Lease)
	case MsgHeartbeat:
		return fmt.Sprintf("Heartbeat b=%v commit=%d lease=%d", m.Ballot, m.Commit, m.Lease)
	case MsgHeartbeatAck:
		return fmt.Sprintf("HeartbeatAck b=%v commit=%d lease=%d", m.Ballot, m.Commit, m.Lease)
	case MsgReject:
		return fmt.Sprintf("Reject promised=%v commit=%d", m.Ballot, m.Commit)
	case MsgCatchUp:
		return fmt.Sprintf("CatchUp from=%d", m.Instance)
	case MsgChosen:
		return fmt.Sprintf("Chosen commit=%d snap=%d %s", m.Commit, m.Snapshot, fmtEntries(m.Entries))
	case MsgResign:
		return fmt.Sprintf("Resign b=%v commit=%d successor=%d", m.Ballot, m.Commit, m.Last)
	case MsgRebuild:
		return fmt.Sprintf("Rebuild b=%v nonce=%d commit=%d", m.Ballot, m.Lease, m.Commit)
	case MsgFenced:
		return fmt.Sprintf("Fenced b=%v first=%d nonce=%d commit=%d", m.Ballot, m.Instance, m.Lease, m.Commit)
	}
	return m.Type.String()
}
