package replica

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	cfg := DefaultConfig()
	cfg.ID = 1
	cfg.Members = map[uint64]string{1: "127.0.0.1:7001", 2: "127.0.0.1:7002", 3: "127.0.0.1:7003"}
	cfg.DataDir = "/tmp/x"
	cfg.Groups = []uint32{1}
	return cfg
}

func TestConfigValidate(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("Validate(valid) = %v", err)
	}
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"zero id", func(c *Config) { c.ID = 0 }, "ID must not be zero"},
		{"empty membership", func(c *Config) { c.Members = nil }, "Members is empty"},
		{"missing self", func(c *Config) { c.ID = 4 }, "does not include this replica"},
		{"member id zero", func(c *Config) { c.Members[0] = "x:1" }, "member id 0"},
		{"member without address", func(c *Config) { c.Members[2] = "" }, "member 2 has no address"},
		{"duplicate address", func(c *Config) { c.Members[3] = c.Members[1] }, "members 1 and 3 share the address"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "DataDir is empty"},
		{"no groups", func(c *Config) { c.Groups = nil }, "Groups is empty"},
		{"duplicate group", func(c *Config) { c.Groups = []uint32{1, 2, 1} }, "group 1 listed twice"},
		{"zero tick", func(c *Config) { c.TickInterval = 0 }, "TickInterval"},
		{"heartbeat below tick", func(c *Config) { c.HeartbeatInterval = time.Millisecond }, "HeartbeatInterval"},
		{"lease not above heartbeat", func(c *Config) { c.LeaseDuration = c.HeartbeatInterval }, "LeaseDuration"},
		{"election not above lease", func(c *Config) { c.ElectionTimeout = c.LeaseDuration }, "ElectionTimeout"},
		{"drift", func(c *Config) { c.MaxClockDrift = 0.7 }, "MaxClockDrift"},
		{"batch commands", func(c *Config) { c.MaxBatchCommands = 0 }, "MaxBatchCommands"},
		{"batch bytes", func(c *Config) { c.MaxBatchBytes = 100 }, "MaxBatchBytes"},
		{"window", func(c *Config) { c.Window = 0 }, "Window"},
		{"snapshot every", func(c *Config) { c.SnapshotEvery = 0 }, "SnapshotEvery"},
		{"snapshot chunk", func(c *Config) { c.SnapshotChunk = 1 << 30 }, "SnapshotChunk"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig()
			cfg.Members = map[uint64]string{1: "127.0.0.1:7001", 2: "127.0.0.1:7002", 3: "127.0.0.1:7003"}
			tt.change(&cfg)
			err := cfg.Validate()
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v; want ErrConfig mentioning %q", err, tt.want)
			}
		})
	}
}

func TestNewRejectsMismatchedStateMachines(t *testing.T) {
	cfg := validConfig()
	cfg.DataDir = t.TempDir()
	if _, err := New(cfg, map[uint32]StateMachine{}, NewMemNetwork()); !errors.Is(err, ErrConfig) {
		t.Fatalf("New(no state machine for group 1) = %v; want ErrConfig", err)
	}
	sms := map[uint32]StateMachine{1: &testSM{}, 9: &testSM{}}
	if _, err := New(cfg, sms, NewMemNetwork()); !errors.Is(err, ErrConfig) {
		t.Fatalf("New(state machine for unknown group 9) = %v; want ErrConfig", err)
	}
}

func TestConfigTicks(t *testing.T) {
	cfg := validConfig()
	cfg.TickInterval = 10 * time.Millisecond
	for _, tt := range []struct {
		d    time.Duration
		want int
	}{{time.Millisecond, 1}, {10 * time.Millisecond, 1}, {11 * time.Millisecond, 2}, {time.Second, 100}} {
		if got := cfg.ticks(tt.d); got != tt.want {
			t.Errorf("ticks(%v) = %d; want %d", tt.d, got, tt.want)
		}
	}
	pc := (&Replica{cfg: cfg, log: cfg.logger(), cell: newCellRecord(cfg.Members)}).coreConfig()
	if err := pc.Validate(); err != nil {
		t.Fatalf("core config from DefaultConfig: %v", err)
	}
}
