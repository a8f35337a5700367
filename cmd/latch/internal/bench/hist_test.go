package bench

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
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
