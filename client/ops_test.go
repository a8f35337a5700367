package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/lockserver"
)

// Every namespace call, and the errors it can give, end to end on a
// 3-replica cell.
func TestNamespaceCalls(t *testing.T) {
	cell := startCell(t, func(cfg *lockserver.Config) { cfg.Namespace.MaxChildren = 4 })
	c := dial(t, cell)
	other := dial(t, cell)
	ctx := bg(t)

	// Put creates, then overwrites; generations count.
	st, err := c.Put(ctx, "/app", []byte("v1"))
	if err != nil || st.ContentGen != 1 || st.Size != 2 || st.Instance == 0 || st.Created.IsZero() {
		t.Fatalf("Put(/app) = %+v, %v; want a new node at content generation 1", st, err)
	}
	st2, err := c.Put(ctx, "/app", []byte("v2"))
	if err != nil || st2.ContentGen != 2 || st2.Instance != st.Instance {
		t.Fatalf("second Put(/app) = %+v, %v; want generation 2 of the same instance", st2, err)
	}
	n, err := c.Get(ctx, "/app")
	if err != nil || string(n.Data) != "v2" || n.Stat.ContentGen != 2 || n.Path != "/app" {
		t.Fatalf("Get(/app) = %+v, %v", n, err)
	}
	if n.Stat.Checksum == st.Checksum {
		t.Fatalf("the checksum did not change with the content: %d", n.Stat.Checksum)
	}

	// Compare-and-swap on the content generation.
	if _, err := c.Put(ctx, "/app", []byte("lost"), client.IfGeneration(1)); !errors.Is(err, client.ErrGenerationMismatch) {
		t.Fatalf("Put IfGeneration(1) at generation 2 = %v; want ErrGenerationMismatch", err)
	}
	if st, err := c.Put(ctx, "/app", []byte("v3"), client.IfGeneration(2)); err != nil || st.ContentGen != 3 {
		t.Fatalf("Put IfGeneration(2) = %+v, %v", st, err)
	}
	if _, err := c.Put(ctx, "/nope", nil, client.IfGeneration(1)); err == nil {
		t.Fatalf("Put IfGeneration on a missing node succeeded")
	}

	// Parents: missing unless asked for.
	if _, err := c.Put(ctx, "/a/b/c", []byte("x")); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Put under a missing parent = %v; want ErrNotFound", err)
	}
	if _, err := c.Put(ctx, "/a/b/c", []byte("x"), client.CreateParents()); err != nil {
		t.Fatalf("Put CreateParents: %v", err)
	}

	// Create fails on an existing node; Sequential names are unique.
	if _, _, err := c.Create(ctx, "/a/b/c", nil); !errors.Is(err, client.ErrExists) {
		t.Fatalf("Create of an existing node = %v; want ErrExists", err)
	}
	p1, _, err := c.Create(ctx, "/a/q-", []byte("1"), client.Sequential())
	if err != nil {
		t.Fatalf("Create Sequential: %v", err)
	}
	p2, _, err := c.Create(ctx, "/a/q-", []byte("2"), client.Sequential())
	if err != nil || p1 == p2 || !strings.HasPrefix(p1, "/a/q-") || p2 <= p1 {
		t.Fatalf("Sequential names %q then %q, %v; want increasing names under /a/q-", p1, p2, err)
	}

	// Stat, List, ListEntries, Walk.
	if st, err := c.Stat(ctx, "/a"); err != nil || st.Children != 3 {
		t.Fatalf("Stat(/a) = %+v, %v; want 3 children", st, err)
	}
	names, err := c.List(ctx, "/a")
	want := []string{"b", strings.TrimPrefix(p1, "/a/"), strings.TrimPrefix(p2, "/a/")}
	if err != nil || !slices.Equal(names, want) {
		t.Fatalf("List(/a) = %q, %v; want %q", names, err, want)
	}
	if names, err := c.List(ctx, "/a", client.PageSize(1), client.Stale()); err != nil || !slices.Equal(names, want) {
		t.Fatalf("List(/a) a page at a time, stale = %q, %v; want %q", names, err, want)
	}
	ents, err := c.ListEntries(ctx, "/a")
	if err != nil || len(ents) != 3 || ents[0].Stat.Children != 1 {
		t.Fatalf("ListEntries(/a) = %+v, %v", ents, err)
	}
	var walked []string
	err = c.Walk(ctx, "/a", func(e client.Entry) error { walked = append(walked, e.Name); return nil }, client.PageSize(2))
	wantWalk := []string{"/a", "/a/b", "/a/b/c", p1, p2}
	if err != nil || !slices.Equal(walked, wantWalk) {
		t.Fatalf("Walk(/a) = %q, %v; want %q", walked, err, wantWalk)
	}
	stop := errors.New("stop")
	if err := c.Walk(ctx, "/a", func(client.Entry) error { return stop }); err != stop {
		t.Fatalf("Walk whose fn fails = %v; want fn's error", err)
	}

	// Limits: children (the test cell allows 4), content size, frame size.
	if _, err := c.Put(ctx, "/a/d", nil); err != nil {
		t.Fatalf("fourth child: %v", err)
	}
	if _, err := c.Put(ctx, "/a/e", nil); !errors.Is(err, client.ErrLimit) {
		t.Fatalf("fifth child = %v; want ErrLimit", err)
	}
	if _, err := c.Put(ctx, "/big", make([]byte, 256<<10+1)); !errors.Is(err, client.ErrTooLarge) {
		t.Fatalf("Put of 256 KiB + 1 = %v; want ErrTooLarge", err)
	}
	if _, err := c.Put(ctx, "/huge", make([]byte, 2<<20)); !errors.Is(err, client.ErrTooLarge) {
		t.Fatalf("Put of 2 MiB = %v; want ErrTooLarge", err)
	}
	if _, err := c.Put(ctx, "/"+strings.Repeat("n", 300), nil); !errors.Is(err, client.ErrBadPath) {
		t.Fatalf("Put with a 300-byte name = %v; want ErrBadPath (the cell's limit)", err)
	}
	full := bytes.Repeat([]byte{7}, 256<<10)
	if _, err := c.Put(ctx, "/full", full); err != nil {
		t.Fatalf("Put of exactly 256 KiB: %v", err)
	}
	if n, err := c.Get(ctx, "/full"); err != nil || !bytes.Equal(n.Data, full) {
		t.Fatalf("Get of 256 KiB: %d bytes, %v", len(n.Data), err)
	}

	// Ephemeral nodes: owned, childless, and other sessions may not write them.
	st, err = c.Put(ctx, "/eph", []byte("me"), client.Ephemeral())
	if err != nil || st.EphemeralOwner != c.SessionID() || !st.Ephemeral() {
		t.Fatalf("Put Ephemeral = %+v, %v; want owner %d", st, err, c.SessionID())
	}
	if _, err := c.Put(ctx, "/eph/child", nil); !errors.Is(err, client.ErrPermission) {
		t.Fatalf("child of an ephemeral node = %v; want ErrPermission", err)
	}
	if _, err := other.Put(ctx, "/eph", []byte("them")); !errors.Is(err, client.ErrPermission) {
		t.Fatalf("another session writing an ephemeral node = %v; want ErrPermission", err)
	}
	// Put with Ephemeral sets only the session's own ephemeral node: on a
	// persistent node or another session's it is a create, ErrExists, and
	// the node stays as it was.
	if st, err := c.Put(ctx, "/eph", []byte("me again"), client.Ephemeral()); err != nil || st.EphemeralOwner != c.SessionID() || st.ContentGen != 2 {
		t.Fatalf("Put Ephemeral of its own ephemeral = %+v, %v; want it set", st, err)
	}
	if _, err := other.Put(ctx, "/eph", []byte("them"), client.Ephemeral()); !errors.Is(err, client.ErrExists) {
		t.Fatalf("Put Ephemeral of another session's ephemeral = %v; want ErrExists", err)
	}
	if _, err := c.Put(ctx, "/app", []byte("eph?"), client.Ephemeral()); !errors.Is(err, client.ErrExists) {
		t.Fatalf("Put Ephemeral of a persistent node = %v; want ErrExists", err)
	}
	if n, err := c.Get(ctx, "/app"); err != nil || n.Stat.Ephemeral() || string(n.Data) == "eph?" {
		t.Fatalf("persistent node after a refused Put Ephemeral: %+v, %v", n, err)
	}

	// Delete: not empty, conditional, recursive, missing.
	if err := c.Delete(ctx, "/a"); !errors.Is(err, client.ErrNotEmpty) {
		t.Fatalf("Delete(/a) with children = %v; want ErrNotEmpty", err)
	}
	if err := c.Delete(ctx, "/app", client.IfGeneration(1)); !errors.Is(err, client.ErrGenerationMismatch) {
		t.Fatalf("Delete IfGeneration(1) at 3 = %v; want ErrGenerationMismatch", err)
	}
	if err := c.Delete(ctx, "/app", client.IfGeneration(3)); err != nil {
		t.Fatalf("Delete IfGeneration(3): %v", err)
	}
	if err := c.Delete(ctx, "/a", client.Recursive()); err != nil {
		t.Fatalf("Delete(/a) Recursive: %v", err)
	}
	for _, p := range []string{"/a", "/a/b/c", "/app"} {
		if _, err := c.Get(ctx, p); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("Get(%s) after delete = %v; want ErrNotFound", p, err)
		}
	}
	if err := c.Delete(ctx, "/a"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Delete of a missing node = %v; want ErrNotFound", err)
	}
	if _, err := c.Put(ctx, "/app", []byte("again")); err != nil {
		t.Fatalf("recreate /app: %v", err)
	}
	if st2, err := c.Stat(ctx, "/app"); err != nil || st2.Instance <= st.Instance {
		t.Fatalf("recreated /app has instance %d (err %v); want more than %d", st2.Instance, err, st.Instance)
	}
	if err := c.Delete(ctx, "/"); !errors.Is(err, client.ErrPermission) {
		t.Fatalf("Delete(/) = %v; want ErrPermission", err)
	}

	// Stale reads answer from any replica.
	if n, err := c.Get(ctx, "/app", client.Stale()); err != nil && !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("stale Get: %v", err)
	} else if err == nil && string(n.Data) != "again" {
		t.Logf("stale Get saw %q (a lagging replica may)", n.Data)
	}
}

func TestACLs(t *testing.T) {
	cell := startCell(t)
	c := dial(t, cell)
	ctx := bg(t)
	// The ACL files: readers and writers admit everyone (this client is
	// anonymous), admins too until the end.
	for _, f := range []string{"/acl/readers", "/acl/writers", "/acl/admins"} {
		if _, err := c.Put(ctx, f, []byte("*\n"), client.CreateParents()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Put(ctx, "/guarded", nil); err != nil {
		t.Fatal(err)
	}
	acl, st, err := c.ACL(ctx, "/guarded")
	if err != nil {
		t.Fatalf("ACL: %v", err)
	}
	want := client.ACL{Read: []string{"readers"}, Write: []string{"writers"}, Admin: []string{"admins"}}
	st2, err := c.SetACL(ctx, "/guarded", want)
	if err != nil {
		t.Fatalf("SetACL: %v", err)
	}
	if st2.ACLGen != st.ACLGen+1 {
		t.Fatalf("ACL generation %d after SetACL; want %d", st2.ACLGen, st.ACLGen+1)
	}
	if _, err := c.SetACL(ctx, "/guarded", want, client.IfGeneration(st2.ACLGen+5)); !errors.Is(err, client.ErrGenerationMismatch) {
		t.Fatalf("SetACL with a wrong generation = %v; want ErrGenerationMismatch", err)
	}
	if st3, err := c.SetACL(ctx, "/guarded", want, client.IfGeneration(st2.ACLGen)); err != nil || st3.ACLGen != st2.ACLGen+1 {
		t.Fatalf("SetACL with the right generation = %+v, %v", st3, err)
	}
	got, _, err := c.ACL(ctx, "/guarded")
	if err != nil || !slices.Equal(got.Read, want.Read) || !slices.Equal(got.Write, want.Write) || !slices.Equal(got.Admin, want.Admin) {
		t.Fatalf("ACL after SetACL = %+v, %v; want %+v (before: %+v)", got, err, want, acl)
	}
	// Once the writers file names someone else, this anonymous client may
	// no longer write, lock or change the ACL, but still reads.
	if _, err := c.Put(ctx, "/acl/writers", []byte("alice\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "/guarded", []byte("x")); !errors.Is(err, client.ErrPermission) {
		t.Fatalf("Put under a writers ACL without this client = %v; want ErrPermission", err)
	}
	if _, err := c.TryLock(ctx, "/guarded"); !errors.Is(err, client.ErrPermission) {
		t.Fatalf("TryLock under a writers ACL without this client = %v; want ErrPermission", err)
	}
	if _, err := c.Get(ctx, "/guarded"); err != nil {
		t.Fatalf("Get under a readers ACL of everyone = %v", err)
	}
}

func TestAdminCalls(t *testing.T) {
	cell := startCell(t)
	c := dial(t, cell, func(cfg *client.Config) { cfg.Name = "admin-test" })
	other := dial(t, cell)
	ctx := bg(t)

	ss, err := c.Sessions(ctx, client.PageSize(1))
	if err != nil {
		t.Fatalf("Sessions: %v", err)
	}
	ids := make([]uint64, len(ss))
	for i, s := range ss {
		ids[i] = s.ID
	}
	if !slices.Contains(ids, c.SessionID()) || !slices.Contains(ids, other.SessionID()) || !slices.IsSorted(ids) {
		t.Fatalf("Sessions = %v; want both sessions, in id order", ids)
	}

	l, err := c.Lock(ctx, "/locks/x")
	if err != nil {
		t.Fatal(err)
	}
	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	waited := make(chan error, 1)
	go func() {
		l2, err := other.Lock(waitCtx, "/locks/x")
		if err == nil {
			err = l2.Unlock(ctx)
		}
		waited <- err
	}()
	var info client.LockInfo
	for deadline := time.Now().Add(5 * time.Second); ; {
		locks, err := c.Locks(ctx, "/locks")
		if err != nil {
			t.Fatalf("Locks: %v", err)
		}
		if len(locks) == 1 && locks[0].Waiters == 1 {
			info = locks[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Locks(/locks) = %+v; want /locks/x held with one waiter", locks)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if info.Path != "/locks/x" || info.Mode != client.Exclusive || info.LockGen != l.Sequencer().LockGen ||
		!slices.Equal(info.Holders, []uint64{c.SessionID()}) {
		t.Fatalf("Locks = %+v; want /locks/x held by %d at %s", info, c.SessionID(), l.Sequencer())
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatalf("waiter: %v", err)
	}

	// Status, and StatusOf each replica, name one leader. A loaded machine
	// may elect again between the calls, or a replica may lose touch with
	// its peers for a moment: look again (for at most 20 s) until every
	// view agrees.
	sctx := bg(t, 30*time.Second)
	views := func() string {
		leaderIndex(t, cell)
		st, err := c.Status(sctx)
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		if len(st.Members) != 3 || st.Leader == "" || st.Applied == 0 {
			return fmt.Sprintf("Status = %+v; want 3 members, a leader, applied entries", st)
		}
		leaders := 0
		for _, m := range st.Members {
			if m.Leader {
				leaders++
				if m.ClientAddr != st.Leader {
					return fmt.Sprintf("leader member %+v; Status.Leader %q", m, st.Leader)
				}
			}
		}
		if leaders != 1 {
			return fmt.Sprintf("Status members %+v; want one leader", st.Members)
		}
		for i, addr := range cell.Endpoints() {
			s, err := client.StatusOf(sctx, addr)
			if err != nil {
				t.Fatalf("StatusOf(replica %d): %v", i, err)
			}
			if s.Addr != addr || s.Leader != st.Leader {
				return fmt.Sprintf("StatusOf(%s) = %+v; want the same leader %s", addr, s, st.Leader)
			}
		}
		return ""
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		bad := views()
		if bad == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(bad)
		}
		t.Logf("%s; looking again", bad)
		time.Sleep(100 * time.Millisecond)
	}
	if err := cell.Stop(2); err != nil {
		t.Fatal(err)
	}
	if _, err := client.StatusOf(ctx, cell.Endpoints()[2]); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("StatusOf a stopped replica = %v; want ErrUnavailable", err)
	}
}

// With no quorum, writes cannot complete: the call fails when its context
// ends, with ErrUnavailable, and the session stays usable afterwards.
func TestUnavailableWithoutQuorum(t *testing.T) {
	cell := startCell(t)
	c := dial(t, cell, func(cfg *client.Config) { cfg.Grace = 20 * time.Second })
	ctx := bg(t, 30*time.Second)
	if _, err := c.Put(ctx, "/q", []byte("1")); err != nil {
		t.Fatal(err)
	}
	leader := leaderIndex(t, cell)
	var stopped []int
	for i := range 3 {
		if i != leader {
			if err := cell.Stop(i); err != nil {
				t.Fatal(err)
			}
			stopped = append(stopped, i)
		}
	}
	short, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	_, err := c.Put(short, "/q", []byte("2"))
	cancel()
	if !errors.Is(err, client.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put without quorum = %v; want ErrUnavailable and DeadlineExceeded", err)
	}
	for _, i := range stopped {
		if err := cell.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
	// The Put above may or may not have been applied; a new one goes through.
	if _, err := c.Put(ctx, "/q", []byte("3")); err != nil {
		t.Fatalf("Put after quorum returned: %v", err)
	}
	if n, err := c.Get(ctx, "/q"); err != nil || string(n.Data) != "3" {
		t.Fatalf("Get = %q, %v", n.Data, err)
	}
}

func TestMembers(t *testing.T) {
	cell := startCell(t)
	c := dial(t, cell)
	ctx := bg(t)
	if _, err := c.Put(ctx, "/m", nil); err != nil {
		t.Fatal(err)
	}
	// A follower may not have applied anything yet: wait until each has.
	var ms []client.Member
	waitFor(t, 10*time.Second, "every member to report an applied index", func() bool {
		var err error
		ms, err = c.Members(ctx)
		if err != nil {
			t.Fatalf("Members: %v", err)
		}
		if len(ms) != 3 {
			t.Fatalf("Members = %+v; want 3", ms)
		}
		for _, m := range ms {
			if !m.Reachable {
				t.Fatalf("member %+v unreachable; want all three up", m)
			}
			if m.Applied == 0 {
				return false
			}
		}
		return true
	})
	stopped := (leaderIndex(t, cell) + 1) % 3
	if err := cell.Stop(stopped); err != nil {
		t.Fatal(err)
	}
	ms, err := c.Members(ctx)
	if err != nil {
		t.Fatalf("Members with one replica down: %v", err)
	}
	for _, m := range ms {
		down := m.ClientAddr == cell.Endpoints()[stopped]
		if m.Reachable == down || down && (m.Applied != 0 || m.Lag != 0) {
			t.Fatalf("member %+v (stopped: %v)", m, down)
		}
	}
}
