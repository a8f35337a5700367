package namespace

import (
	"reflect"
	"testing"
)

func TestRetryReturnsFirstResult(t *testing.T) {
	h := newHarnessConfig(t, smallConfig())
	s := h.open()
	h.must(NewCreate("/a", nil, 0), 0)
	first, ev := h.apply(NewSetContent("/a", []byte("one"), 0), s, 1)
	if len(ev) != 1 {
		t.Fatalf("first apply emitted %v", ev)
	}
	h.apply(NewSetContent("/a", []byte("two"), 0), s, 2)
	again, ev := h.apply(NewSetContent("/a", []byte("one"), 0), s, 1)
	if !reflect.DeepEqual(again, first) || len(ev) != 0 {
		t.Fatalf("retry = %+v, %v; want %+v and no events", again, ev, first)
	}
	wantContent(t, h, "/a", "two")

	failed, _ := h.apply(NewCreate("/a", nil, 0), s, 3)
	h.must(NewDelete("/a", false, 0), 0)
	if again, _ := h.apply(NewCreate("/a", nil, 0), s, 3); !reflect.DeepEqual(again, failed) {
		t.Fatalf("retry of a failure = %+v; want %+v", again, failed)
	}
	wantMissing(t, h, "/a")
}

func TestRetryWindowIsBounded(t *testing.T) {
	h := newHarnessConfig(t, smallConfig()) // keeps 4 results
	s := h.open()
	h.must(NewCreate("/a", nil, 0), 0)
	for req := uint64(1); req <= 5; req++ {
		h.apply(NewSetContent("/a", []byte{byte(req)}, 0), s, req)
	}
	if _, ev := h.apply(NewSetContent("/a", []byte{2}, 0), s, 2); len(ev) != 0 {
		t.Fatalf("request 2 is still in the window but was applied again")
	}
	if _, ev := h.apply(NewSetContent("/a", []byte{1}, 0), s, 1); len(ev) != 1 {
		t.Fatalf("request 1 fell out of the window but was not applied")
	}
}

func TestNoDedupWithoutSessionOrRequest(t *testing.T) {
	h := newHarness(t)
	s := h.open()
	h.must(NewCreate("/a", nil, 0), 0)
	for _, c := range []struct{ session, request uint64 }{{0, 9}, {s, 0}} {
		for i := 0; i < 2; i++ {
			if _, ev := h.apply(NewSetContent("/a", nil, 0), c.session, c.request); len(ev) != 1 {
				t.Fatalf("session %d request %d: apply %d was deduplicated", c.session, c.request, i)
			}
		}
	}
}

func TestQueuedAcquireResultFollowsOutcome(t *testing.T) {
	h := newHarness(t)
	a, b := h.open(), h.open()
	h.must(NewCreate("/l", nil, 0), 0)
	h.must(NewCreate("/m", nil, 0), 0)
	h.must(NewAcquire("/l", ModeExclusive, false, 0), a)
	h.must(NewAcquire("/m", ModeExclusive, false, 0), a)
	h.apply(NewAcquire("/l", ModeExclusive, true, 0), b, 1)
	h.apply(NewAcquire("/m", ModeExclusive, true, 0), b, 2)
	h.apply(NewCancel("/l"), b, 3)
	h.must(NewDelete("/m", false, 0), 0)
	if r, _ := h.apply(NewAcquire("/l", ModeExclusive, true, 0), b, 1); r.Code() != CodeCanceled {
		t.Errorf("retry of canceled acquire = %+v; want ErrCanceled", r)
	}
	if r, _ := h.apply(NewAcquire("/m", ModeExclusive, true, 0), b, 2); r.Code() != CodeNotFound {
		t.Errorf("retry of acquire on deleted node = %+v; want ErrNotFound", r)
	}
}

func TestResultsSurviveRestore(t *testing.T) {
	h := newHarness(t)
	s := h.open()
	h.must(NewCreate("/a", nil, 0), 0)
	first, _ := h.apply(NewSetContent("/a", []byte("x"), 0), s, 1)
	restored := New(DefaultConfig())
	if err := restored.Restore(bytesReader(snapshotBytes(t, h.tree))); err != nil {
		t.Fatal(err)
	}
	cmd := NewSetContent("/a", []byte("x"), 0)
	cmd.Session, cmd.Request = s, 1
	if r, ev := restored.Apply(100, &cmd); !reflect.DeepEqual(r, first) || len(ev) != 0 {
		t.Fatalf("retry after restore = %+v, %v; want %+v", r, ev, first)
	}
}
