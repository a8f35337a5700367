package wire

import (
	"errors"
	"testing"
)

func TestSequencerRoundTrip(t *testing.T) {
	tests := []struct {
		seq  Sequencer
		text string
	}{
		{Sequencer{Path: "/ls/prod/leader", Mode: Exclusive, LockGen: 12, Instance: 3}, "latch-seq:v1:ex:12:3:/ls/prod/leader"},
		{Sequencer{Path: "/", Mode: Shared, LockGen: 0, Instance: 1}, "latch-seq:v1:sh:0:1:/"},
		{Sequencer{Path: "/a:b/c::d:", Mode: Exclusive, LockGen: 1<<64 - 1, Instance: 7}, "latch-seq:v1:ex:18446744073709551615:7:/a:b/c::d:"},
		{Sequencer{Path: "/sp ace/ünï\ncode", Mode: Shared, LockGen: 5, Instance: 5}, "latch-seq:v1:sh:5:5:/sp ace/ünï\ncode"},
	}
	for _, tt := range tests {
		if got := tt.seq.String(); got != tt.text {
			t.Errorf("%#v.String() = %q; want %q", tt.seq, got, tt.text)
		}
		got, err := ParseSequencer(tt.text)
		if err != nil || got != tt.seq {
			t.Errorf("ParseSequencer(%q) = %#v, %v; want %#v", tt.text, got, err, tt.seq)
		}
	}
}

func TestParseSequencerErrors(t *testing.T) {
	for _, text := range []string{
		"",
		"latch-seq:v1:",
		"latch-seq:v2:ex:1:1:/a",
		"seq:v1:ex:1:1:/a",
		"latch-seq:v1:xx:1:1:/a",
		"latch-seq:v1:ex:1:/a",
		"latch-seq:v1:ex:-1:1:/a",
		"latch-seq:v1:ex:+1:1:/a",
		"latch-seq:v1:ex:01:1:/a",
		"latch-seq:v1:ex:1:1x:/a",
		"latch-seq:v1:ex:18446744073709551616:1:/a",
		"latch-seq:v1:ex:1:1:a",
		"latch-seq:v1:ex:1:1:",
		"latch-seq:v1:EX:1:1:/a",
	} {
		if s, err := ParseSequencer(text); !errors.Is(err, ErrBadSequencer) {
			t.Errorf("ParseSequencer(%q) = %#v, %v; want ErrBadSequencer", text, s, err)
		}
	}
}

func FuzzParseSequencer(f *testing.F) {
	f.Add("latch-seq:v1:ex:12:3:/ls/prod/leader")
	f.Add("latch-seq:v1:sh:0:0:/a:b")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := ParseSequencer(text)
		if err != nil {
			return
		}
		if s.String() != text {
			t.Fatalf("ParseSequencer(%q).String() = %q", text, s.String())
		}
	})
}

func TestCodes(t *testing.T) {
	want := map[Code]string{
		OK: "OK", NotFound: "NotFound", Exists: "Exists", NotEmpty: "NotEmpty", BadPath: "BadPath",
		TooLarge: "TooLarge", Limit: "Limit", Locked: "Locked", NotHolder: "NotHolder",
		SessionExpired: "SessionExpired", GenerationMismatch: "GenerationMismatch",
		Permission: "Permission", NotLeader: "NotLeader", Unavailable: "Unavailable",
		BadRequest: "BadRequest", Internal: "Internal", Canceled: "Canceled",
		ChangePending: "ChangePending", NotCaughtUp: "NotCaughtUp",
	}
	for c, name := range want {
		if c.String() != name || !c.Known() {
			t.Errorf("Code(%d).String() = %q, Known %v; want %q, true", c, c.String(), c.Known(), name)
		}
	}
	// The numbers are protocol: pin a few.
	if NotFound != 1 || NotLeader != 12 || Canceled != 16 {
		t.Errorf("code numbers changed")
	}
	if got := Code(99).String(); got != "Code(99)" || Code(99).Known() {
		t.Errorf("Code(99) = %q, Known %v", got, Code(99).Known())
	}
	if !NotLeader.Retryable() || !Unavailable.Retryable() || Locked.Retryable() {
		t.Errorf("Retryable is wrong")
	}
}

func TestErrorValue(t *testing.T) {
	e := &Error{Code: NotLeader, Message: "not the leader", Leader: "127.0.0.1:7001"}
	if got, want := e.Error(), "latch: NotLeader: not the leader (leader at 127.0.0.1:7001)"; got != want {
		t.Errorf("Error() = %q; want %q", got, want)
	}
	wrapped := errors.Join(errors.New("call failed"), e)
	if CodeOf(wrapped) != NotLeader {
		t.Errorf("CodeOf(wrapped) = %v", CodeOf(wrapped))
	}
	if CodeOf(nil) != OK || CodeOf(errors.New("x")) != Internal {
		t.Errorf("CodeOf of nil or plain error is wrong")
	}
	if got := Errorf(NotFound, "no node %q", "/a").Error(); got != `latch: NotFound: no node "/a"` {
		t.Errorf("Errorf = %q", got)
	}
}

func TestEventAndModeNames(t *testing.T) {
	if Failover.String() != "Failover" || EventsLost.String() != "EventsLost" || EventType(0).String() != "EventType(0)" {
		t.Errorf("event names wrong")
	}
	if Exclusive.String() != "ex" || Shared.String() != "sh" || LockMode(0).Valid() {
		t.Errorf("mode names wrong")
	}
}
