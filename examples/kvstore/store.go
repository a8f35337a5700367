package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"

	"github.com/latchd/latch/replica"
)

// Store is the replicated key-value map: a replica.StateMachine. Apply runs
// on the replica's apply goroutine; Get may run on any goroutine.
type Store struct {
	mu sync.RWMutex
	m  map[string][]byte
}

var _ replica.StateMachine = (*Store)(nil)

// NewStore returns an empty store.
func NewStore() *Store { return &Store{m: make(map[string][]byte)} }

// Commands: one op byte, then uvarint key length, key, and for put the value.
const (
	opPut    = 'P'
	opDelete = 'D'
)

var errBadCommand = errors.New("kvstore: malformed command")

func putCmd(key string, value []byte) []byte {
	b := []byte{opPut}
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	return append(b, value...)
}

func deleteCmd(key string) []byte {
	b := []byte{opDelete}
	b = binary.AppendUvarint(b, uint64(len(key)))
	return append(b, key...)
}

func parseCmd(cmd []byte) (op byte, key string, value []byte, err error) {
	if len(cmd) < 2 {
		return 0, "", nil, errBadCommand
	}
	n, k := binary.Uvarint(cmd[1:])
	if k <= 0 || n > uint64(len(cmd)-1-k) {
		return 0, "", nil, errBadCommand
	}
	rest := cmd[1+k:]
	return cmd[0], string(rest[:n]), rest[n:], nil
}

// Apply applies a put or delete. The result is "OK" for a put, "1" or "0"
// for a delete (whether the key existed), or an "ERR ..." text.
func (s *Store) Apply(_ uint64, cmd []byte) []byte {
	op, key, value, err := parseCmd(cmd)
	if err != nil {
		return []byte("ERR " + err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch op {
	case opPut:
		s.m[key] = slices.Clone(value)
		return []byte("OK")
	case opDelete:
		_, ok := s.m[key]
		delete(s.m, key)
		if ok {
			return []byte("1")
		}
		return []byte("0")
	}
	return []byte(fmt.Sprintf("ERR unknown op %q", op))
}

// Get returns the value of key in the local state.
func (s *Store) Get(key string) ([]byte, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.m[key]
	return v, ok
}

// Snapshot writes every pair in key order (deterministic bytes).
func (s *Store) Snapshot(w io.Writer) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	bw := bufio.NewWriter(w)
	var b []byte
	b = binary.AppendUvarint(b, uint64(len(s.m)))
	for _, k := range slices.Sorted(maps.Keys(s.m)) {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(s.m[k])))
		b = append(b, s.m[k]...)
		if _, err := bw.Write(b); err != nil {
			return err
		}
		b = b[:0]
	}
	if _, err := bw.Write(b); err != nil {
		return err
	}
	return bw.Flush()
}

// Restore replaces the map with a snapshot's.
func (s *Store) Restore(r io.Reader) error {
	br := bufio.NewReader(r)
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return fmt.Errorf("kvstore: snapshot: %w", err)
	}
	m := make(map[string][]byte)
	readBytes := func() ([]byte, error) {
		l, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, err
		}
		if l > 1<<30 {
			return nil, errBadCommand
		}
		b := make([]byte, l)
		_, err = io.ReadFull(br, b)
		return b, err
	}
	for range n {
		k, err := readBytes()
		if err != nil {
			return fmt.Errorf("kvstore: snapshot: %w", err)
		}
		v, err := readBytes()
		if err != nil {
			return fmt.Errorf("kvstore: snapshot: %w", err)
		}
		m[string(k)] = v
	}
	s.mu.Lock()
	s.m = m
	s.mu.Unlock()
	return nil
}
