package bench

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/client"
)

func TestBuckets(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<20; v += 1 + v/97 {
		b := bucketOf(v)
		if b < prev {
			t.Fatalf("bucketOf(%d) = %d < bucketOf of a smaller value %d", v, b, prev)
		}
		prev = b
		if u := upper(b); u < v || (v >= 128 && float64(u-v) > 0.016*float64(v)) {
			t.Fatalf("upper(bucketOf(%d)) = %d: not within 1.6%%", v, u)
		}
		if b > 0 && upper(b-1) >= v {
			t.Fatalf("bucket %d below %d's holds up to %d", b-1, v, upper(b-1))
		}
	}
}

func TestQuantiles(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 {
		t.Errorf("empty Quantile = %v", h.Quantile(0.5))
	}
	r := rand.New(rand.NewPCG(1, 2))
	var all []time.Duration
	for range 100_000 {
		d := time.Duration(r.ExpFloat64() * float64(time.Millisecond))
		all = append(all, d)
		h.Record(d)
	}
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.99, 0.999} {
		want := all[int(q*float64(len(all)))-1]
		got := h.Quantile(q)
		if got < want || float64(got-want) > 0.02*float64(want) {
			t.Errorf("Quantile(%v) = %v; want %v within 2%%", q, got, want)
		}
	}
	if h.Max() != all[len(all)-1] || h.Quantile(1) != h.Max() || h.Count() != 100_000 {
		t.Errorf("Max %v Quantile(1) %v Count %d", h.Max(), h.Quantile(1), h.Count())
	}
	var a, b Histogram
	a.Record(time.Millisecond)
	b.Record(3 * time.Millisecond)
	a.Merge(&b)
	if a.Count() != 2 || a.Max() != 3*time.Millisecond || a.Quantile(0.5) < time.Millisecond || a.Quantile(0.5) > 1020*time.Microsecond {
		t.Errorf("merged: count %d max %v p50 %v", a.Count(), a.Max(), a.Quantile(0.5))
	}
}

func TestCheck(t *testing.T) {
	c := Config{Kind: "nap", Clients: 0, Duration: 0}
	if err := c.Check(); err == nil {
		t.Fatal("Check of a bad config: no error")
	}
	c = Config{Kind: "put", Clients: 1, Duration: time.Second, Dial: nil}
	if err := c.Check(); err == nil {
		t.Error("Check without Dial: no error")
	}
}

// Sessions shared by workers: between 1 and Clients, default one each, and
// never for the benchmarks whose workers must be distinct sessions.
func TestCheckSessions(t *testing.T) {
	dial := func(context.Context) (*client.Client, error) { return nil, nil }
	cases := []struct {
		kind            string
		clients, shared int
		wantErr         string
		wantSessionsSet int
	}{
		{"get", 64, 0, "", 64},
		{"get", 64, 8, "", 8},
		{"lock", 4, 4, "", 4},
		{"put", 4, 5, "sessions 5 must be between 1 and clients (4)", 0},
		{"put", 4, -1, "sessions -1 must be between", 0},
		{"contended", 4, 2, "contended needs one session per client", 0},
		{"sessions", 4, 2, "sessions needs one session per client", 0},
		{"contended", 4, 4, "", 4},
	}
	for _, tc := range cases {
		c := Config{Kind: tc.kind, Clients: tc.clients, Sessions: tc.shared, Duration: time.Second, Dial: dial}
		err := c.Check()
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s clients %d sessions %d: %v", tc.kind, tc.clients, tc.shared, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s clients %d sessions %d: error %v; want one containing %q", tc.kind, tc.clients, tc.shared, err, tc.wantErr)
		case tc.wantErr == "" && c.Sessions != tc.wantSessionsSet:
			t.Errorf("%s clients %d sessions %d: Check set Sessions %d; want %d", tc.kind, tc.clients, tc.shared, c.Sessions, tc.wantSessionsSet)
		}
	}
}
