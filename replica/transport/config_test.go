package transport

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	cfg := DefaultConfig()
	cfg.ID = 2
	cfg.Listen = "127.0.0.1:0"
	cfg.Peers = map[uint64]string{1: "", 2: "127.0.0.1:0", 3: "127.0.0.1:7003"}
	return cfg
}

func TestConfigValidate(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("valid config: Validate() = %v", err)
	}
	cases := []struct {
		name   string
		change func(*Config)
		text   string
	}{
		{"zero id", func(c *Config) { c.ID = 0 }, "ID must not be zero"},
		{"no listen", func(c *Config) { c.Listen = "" }, "Listen address is empty"},
		{"peer id zero", func(c *Config) { c.Peers[0] = "x:1" }, "peer id 0"},
		{"higher peer without address", func(c *Config) { c.Peers[3] = "" }, "peer 3 has no address"},
		{"frame too small", func(c *Config) { c.MaxFrame = MinFrame - 1 }, "MaxFrame"},
		{"frame too big", func(c *Config) { c.MaxFrame = MaxFrameLimit + 1 }, "MaxFrame"},
		{"queue zero", func(c *Config) { c.QueueLen = 0 }, "QueueLen"},
		{"groups zero", func(c *Config) { c.MaxGroups = 0 }, "MaxGroups"},
		{"dial timeout zero", func(c *Config) { c.DialTimeout = 0 }, "DialTimeout"},
		{"backoff zero", func(c *Config) { c.MinBackoff = 0 }, "backoff"},
		{"backoff inverted", func(c *Config) { c.MaxBackoff = c.MinBackoff / 2 }, "backoff"},
		{"keepalive zero", func(c *Config) { c.KeepAlive = 0 }, "KeepAlive"},
		{"dial back negative", func(c *Config) { c.DialBackAfter = -time.Second }, "DialBackAfter"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := validConfig()
			c.change(&cfg)
			err := cfg.Validate()
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.text) {
				t.Errorf("Validate() = %v; want ErrConfig mentioning %q", err, c.text)
			}
		})
	}
	// All problems are reported at once.
	var zero Config
	if err := zero.Validate(); err == nil || strings.Count(err.Error(), ErrConfig.Error()) < 5 {
		t.Errorf("Config{}.Validate() = %v; want every problem listed", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	cfg := validConfig()
	cfg.QueueLen = 0
	if _, err := New(cfg, func(uint64, uint32, []byte) {}); !errors.Is(err, ErrConfig) {
		t.Errorf("New(QueueLen 0) = %v; want ErrConfig", err)
	}
	if _, err := New(validConfig(), nil); !errors.Is(err, ErrConfig) {
		t.Errorf("New(nil handler) = %v; want ErrConfig", err)
	}
}

func TestBackoff(t *testing.T) {
	const lo, hi = 10 * time.Millisecond, 80 * time.Millisecond
	b := newBackoff(lo, hi, rand.New(rand.NewPCG(1, 2)))
	bases := []time.Duration{10, 20, 40, 80, 80, 80}
	for round := range 2 {
		for i, base := range bases {
			base *= time.Millisecond
			d := b.next()
			if d < base/2 || d > base {
				t.Errorf("round %d attempt %d: delay %v outside [%v, %v]", round, i, d, base/2, base)
			}
		}
		b.reset()
	}
	// The same seed gives the same delays: the jitter is reproducible.
	x := newBackoff(lo, hi, rand.New(rand.NewPCG(7, 9)))
	y := newBackoff(lo, hi, rand.New(rand.NewPCG(7, 9)))
	for i := range 20 {
		if dx, dy := x.next(), y.next(); dx != dy {
			t.Fatalf("attempt %d: seeded backoffs differ: %v vs %v", i, dx, dy)
		}
	}
}

// A stalled connection is given up after five KeepAlive intervals, both
// for a Ping's answer and for a frame's write: about 6 s by default, not
// yamux's 10 s interval plus 10 s timeout.
func TestDeadConnectionDetection(t *testing.T) {
	cfg := DefaultConfig()
	yc := yamuxConfig(cfg, nil)
	if cfg.KeepAlive != time.Second || yc.KeepAliveInterval != time.Second || yc.ConnectionWriteTimeout != 5*time.Second {
		t.Fatalf("KeepAlive %v, yamux interval %v, write timeout %v; want 1 s, 1 s, 5 s",
			cfg.KeepAlive, yc.KeepAliveInterval, yc.ConnectionWriteTimeout)
	}
}
