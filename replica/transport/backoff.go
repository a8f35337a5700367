package transport

import (
	"math/rand/v2"
	"time"
)

// backoff computes reconnection delays: exponential from min to max, with
// "equal jitter" (each delay is uniform in [d/2, d]) so that replicas that
// lost each other at the same moment do not redial in lockstep. It is owned
// by one dialer goroutine.
type backoff struct {
	min, max, cur time.Duration
	rng           *rand.Rand
}

func newBackoff(min, max time.Duration, rng *rand.Rand) *backoff {
	return &backoff{min: min, max: max, cur: min, rng: rng}
}

// next returns the delay before the next attempt and doubles the base delay.
func (b *backoff) next() time.Duration {
	d := b.cur
	b.cur = min(2*b.cur, b.max)
	half := d / 2
	return half + time.Duration(b.rng.Int64N(int64(d-half)+1))
}

// reset returns the base delay to min after a successful connection.
func (b *backoff) reset() { b.cur = b.min }
