package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/client"
)

func TestWatch(t *testing.T) {
	fresh(t, "/w")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	latch(t, "put", "-p", "/w/node", "v1").ok(t)

	var out, errb syncBuffer
	wait := invocation{ctx: ctx}.start(ctx, &out, &errb, "-o", "json", "watch", "-R", "--count", "3", "/w")
	waitFor(t, 20*time.Second, "the watch", func() bool { return strings.Contains(errb.String(), "watching /w") })
	latch(t, "put", "/w/node", "v2").ok(t)
	latch(t, "put", "/w/new", "x").ok(t)
	if code := wait(); code != 0 {
		t.Fatalf("watch exit %d; stderr %q", code, errb.String())
	}
	var got []EventJSON
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		var e EventJSON
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		got = append(got, e)
	}
	if len(got) != 3 {
		t.Fatalf("%d events; want 3:\n%s", len(got), out.String())
	}
	if got[0].Type != "content-changed" || got[0].Path != "/w/node" || got[0].ContentGen != 2 {
		t.Errorf("event 0 = %+v", got[0])
	}
	types := got[1].Type + " " + got[2].Type
	if !strings.Contains(types, "node-created") || !strings.Contains(types, "child-added") {
		t.Errorf("events 1, 2 = %+v %+v; want node-created and child-added", got[1], got[2])
	}

	// Text output, until interrupted.
	out, errb = syncBuffer{}, syncBuffer{}
	wctx, wcancel := context.WithCancel(ctx)
	wait = invocation{}.start(wctx, &out, &errb, "watch", "/w/node")
	waitFor(t, 20*time.Second, "the watch", func() bool { return strings.Contains(errb.String(), "watching /w/node") })
	latch(t, "put", "/w/node", "v3").ok(t)
	waitFor(t, 20*time.Second, "the event", func() bool { return strings.Contains(out.String(), "content-changed /w/node") })
	wcancel()
	if code := wait(); code != 0 {
		t.Errorf("watch exit %d after interrupt", code)
	}
	if !strings.Contains(out.String(), "gen=3") {
		t.Errorf("watch output %q; want gen=3", out.String())
	}
}

func TestElect(t *testing.T) {
	fresh(t, "/elections/svc")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// An observer sees: no leader, then a, then b.
	var obs, obsErr syncBuffer
	waitObs := invocation{}.start(ctx, &obs, &obsErr, "-o", "json", "elect", "--observe", "--count", "3", "svc")
	waitFor(t, 20*time.Second, "the observer's first line", func() bool { return strings.Contains(obs.String(), `"leader":false`) })

	// a leads (holding until interrupted).
	var aOut, aErr syncBuffer
	actx, acancel := context.WithCancel(ctx)
	waitA := invocation{}.start(actx, &aOut, &aErr, "-o", "json", "elect", "svc", "addr-a")
	waitFor(t, 20*time.Second, "a to be elected", func() bool { return strings.Contains(aErr.String(), "elected in /elections/svc") })
	la := decode[LeaderJSON](t, result{out: aOut.String()})
	if seq, err := client.ParseSequencer(la.Sequencer); err != nil || seq.Path != "/elections/svc" || !la.Leader || la.Value != "addr-a" || la.Election != "/elections/svc" {
		t.Errorf("elect -o json printed %+v (%v)", la, err)
	}
	// b waits its turn with a command, then runs it while leader.
	var bOut, bErr syncBuffer
	waitB := invocation{}.start(ctx, &bOut, &bErr, "elect", "svc", "addr-b", "--", "sh", "-c", `echo "b leads $LATCH_SEQUENCER"; sleep 0.3; exit 4`)
	// b cannot be elected within a short timeout while a leads.
	latch(t, "elect", "--timeout", "300ms", "svc", "addr-c").failed(t, ExitLocked, "not elected within")
	acancel()
	if code := waitA(); code != 0 {
		t.Errorf("a exit %d after interrupt (stderr %q)", code, aErr.String())
	}
	if code := waitB(); code != 4 {
		t.Errorf("b exit %d; want its command's 4 (stderr %q)", code, bErr.String())
	}
	if !strings.Contains(bOut.String(), "b leads latch-seq:") {
		t.Errorf("b's command printed %q", bOut.String())
	}
	if code := waitObs(); code != 0 {
		t.Fatalf("observer exit %d (stderr %q)", code, obsErr.String())
	}
	var seen []LeaderJSON
	for _, line := range strings.Split(strings.TrimSpace(obs.String()), "\n") {
		var l LeaderJSON
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("observer line %q: %v", line, err)
		}
		seen = append(seen, l)
	}
	// The observer saw "no leader" first; then it must see a's then b's
	// value in order, possibly with "no leader" in between (or stop at a's
	// resignation if that is its third line).
	var values []string
	for _, l := range seen {
		if l.Leader {
			values = append(values, l.Value)
		}
	}
	if seen[0].Leader || (strings.Join(values, ",") != "addr-a,addr-b" && strings.Join(values, ",") != "addr-a") {
		t.Errorf("observer saw %+v", seen)
	}
}

func TestMembersAndStatus(t *testing.T) {
	r := latch(t, "status").ok(t)
	if !strings.Contains(r.out, "leader") || !strings.Contains(r.out, "3 of 3 endpoints answered") {
		t.Errorf("status =\n%s", r.out)
	}
	doc := decode[CellJSON](t, latch(t, "-o", "json", "status").ok(t))
	leaders := 0
	for _, rep := range doc.Replicas {
		if !rep.Reachable || rep.Applied == 0 {
			t.Errorf("status replica %+v", rep)
		}
		if rep.Leader {
			leaders++
		}
	}
	if leaders != 1 || doc.Leader == "" {
		t.Errorf("status -o json: %d leaders, leader %q", leaders, doc.Leader)
	}
	md := decode[MembersJSON](t, latch(t, "-o", "json", "members").ok(t))
	ms := md.Members
	if len(ms) != 3 {
		t.Fatalf("members -o json = %+v", md)
	}
	for i, m := range ms {
		if m.Endpoint != cell.Endpoints()[i] || m.Peer == "" || !m.Reachable || m.ID == "" {
			t.Errorf("member %d = %+v", i, m)
		}
	}
	if r := latch(t, "members").ok(t); !strings.HasPrefix(r.out, "ID") || memberRows(r.out) != 3 {
		t.Errorf("members =\n%s", r.out)
	}
	// Only one endpoint given: members still lists the whole cell.
	r = invocation{endpoints: cell.Endpoints()[2:]}.run(t, "members").ok(t)
	if memberRows(r.out) != 3 {
		t.Errorf("members via one endpoint =\n%s", r.out)
	}
}

func TestPutEphemeral(t *testing.T) {
	fresh(t, "/eph")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	wait := invocation{}.start(ctx, &out, &errb, "put", "-p", "--ephemeral", "/eph/me", "here")
	waitFor(t, 20*time.Second, "the ephemeral node", func() bool { return strings.Contains(errb.String(), "holding ephemeral node /eph/me") })
	st := decode[StatJSON](t, latch(t, "-o", "json", "stat", "/eph/me").ok(t))
	if st.EphemeralOwner == 0 {
		t.Errorf("stat of the ephemeral node = %+v", st)
	}
	if r := latch(t, "ls", "-l", "/eph").ok(t); !strings.Contains(r.out, "eph ") {
		t.Errorf("ls -l =\n%s", r.out)
	}
	cancel()
	if code := wait(); code != 0 {
		t.Errorf("put --ephemeral exit %d after interrupt; stderr %q", code, errb.String())
	}
	latch(t, "stat", "/eph/me").failed(t, ExitNotFound, "not found")
}

// TestPutEphemeralExisting: --ephemeral on a node that exists fails with
// exit 4 and leaves the node as it was, rather than overwriting a
// persistent node and claiming to hold it.
func TestPutEphemeralExisting(t *testing.T) {
	fresh(t, "/eph2")
	latch(t, "put", "-p", "/eph2/kept", "orig").ok(t)
	latch(t, "put", "--ephemeral", "/eph2/kept", "mine").failed(t, ExitConflict, "exists")
	if r := latch(t, "get", "/eph2/kept").ok(t); r.out != "orig" {
		t.Errorf("get after a refused put --ephemeral = %q; want %q", r.out, "orig")
	}
	if st := decode[StatJSON](t, latch(t, "-o", "json", "stat", "/eph2/kept").ok(t)); st.EphemeralOwner != 0 || st.ContentGen != 1 {
		t.Errorf("stat after a refused put --ephemeral = %+v; want the persistent node at gen 1", st)
	}
	latch(t, "put", "--ephemeral", "--if-gen", "1", "/eph2/kept", "x").failed(t, ExitUsage, "--if-gen and --ephemeral")
}
