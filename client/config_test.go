package client_test

import (
	"errors"
	"testing"
	"time"

	"github.com/latchd/latch/client"
)

func TestConfigValidate(t *testing.T) {
	ok := client.DefaultConfig("127.0.0.1:7101", "127.0.0.1:7102")
	if err := ok.Validate(); err != nil {
		t.Fatalf("DefaultConfig.Validate() = %v", err)
	}
	if err := (client.Config{Endpoints: []string{"host:1"}}).Validate(); err != nil {
		t.Fatalf("a Config with only Endpoints: Validate() = %v; zero fields mean defaults", err)
	}
	cases := []struct {
		name string
		mod  func(*client.Config)
	}{
		{"no endpoints", func(c *client.Config) { c.Endpoints = nil }},
		{"no port", func(c *client.Config) { c.Endpoints = []string{"127.0.0.1"} }},
		{"bad port", func(c *client.Config) { c.Endpoints = []string{"127.0.0.1:http"} }},
		{"port 0", func(c *client.Config) { c.Endpoints = []string{"127.0.0.1:0"} }},
		{"port too big", func(c *client.Config) { c.Endpoints = []string{"127.0.0.1:70000"} }},
		{"no host", func(c *client.Config) { c.Endpoints = []string{":7101"} }},
		{"duplicate", func(c *client.Config) { c.Endpoints = []string{"a:1", "a:1"} }},
		{"negative grace", func(c *client.Config) { c.Grace = -time.Second }},
		{"negative session timeout", func(c *client.Config) { c.SessionTimeout = -1 }},
		{"negative attempt timeout", func(c *client.Config) { c.AttemptTimeout = -1 }},
		{"negative watch buffer", func(c *client.Config) { c.WatchBuffer = -1 }},
		{"backoff min > max", func(c *client.Config) { c.BackoffMin, c.BackoffMax = time.Second, time.Millisecond }},
		{"backoff max >= grace", func(c *client.Config) { c.BackoffMax, c.Grace = time.Second, time.Second }},
		{"dial > attempt", func(c *client.Config) { c.DialTimeout, c.AttemptTimeout = 3*time.Second, time.Second }},
		{"dial >= session", func(c *client.Config) { c.SessionTimeout = time.Second }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			cfg.Endpoints = append([]string(nil), ok.Endpoints...)
			tc.mod(&cfg)
			if err := cfg.Validate(); !errors.Is(err, client.ErrConfig) {
				t.Fatalf("Validate() = %v; want ErrConfig", err)
			}
			if _, err := client.Dial(bg(t, time.Second), cfg); !errors.Is(err, client.ErrConfig) {
				t.Fatalf("Dial() = %v; want ErrConfig", err)
			}
		})
	}
}

func TestSequencerPrintsAndParses(t *testing.T) {
	s := client.Sequencer{Path: "/ls/a:b", Mode: client.Exclusive, LockGen: 12, Instance: 3}
	text := s.String()
	if text != "latch-seq:v1:ex:12:3:/ls/a:b" {
		t.Fatalf("String() = %q", text)
	}
	got, err := client.ParseSequencer(text)
	if err != nil || got != s {
		t.Fatalf("ParseSequencer(%q) = %+v, %v; want %+v", text, got, err, s)
	}
	for _, bad := range []string{"", "latch-seq:v1:xx:1:1:/a", "latch-seq:v2:ex:1:1:/a", "latch-seq:v1:ex:01:1:/a"} {
		if _, err := client.ParseSequencer(bad); !errors.Is(err, client.ErrBadSequencer) {
			t.Errorf("ParseSequencer(%q) = %v; want ErrBadSequencer", bad, err)
		}
	}
}
