package wire_test

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/latchd/latch/internal/wire"
)

func ExampleSequencer() {
	seq := wire.Sequencer{Path: "/ls/prod/db:primary", Mode: wire.Exclusive, LockGen: 12, Instance: 3}
	text := seq.String()
	fmt.Println(text)
	back, err := wire.ParseSequencer(text)
	fmt.Println(back == seq, err)
	// Output:
	// latch-seq:v1:ex:12:3:/ls/prod/db:primary
	// true <nil>
}

func ExampleEncoder() {
	var stream bytes.Buffer
	enc := wire.NewEncoder(&stream, wire.DefaultMaxFrame)
	enc.Encode(&wire.Get{Header: wire.Header{Session: 7, Request: 1}, Path: "/a"})
	enc.Encode(&wire.Error{Code: wire.NotLeader, Leader: "127.0.0.1:7001"})

	dec := wire.NewDecoder(&stream, wire.DefaultMaxFrame)
	for {
		m, err := dec.Decode()
		if err != nil {
			break // io.EOF at the end
		}
		switch m := m.(type) {
		case *wire.Get:
			fmt.Println("get", m.Path, "session", m.Session, "request", m.Request)
		case *wire.Error:
			fmt.Println(m.Code, m.Leader, m.Code.Retryable())
		}
	}
	// Output:
	// get /a session 7 request 1
	// NotLeader 127.0.0.1:7001 true
}

func ExampleReadFrame_tooLarge() {
	frame, _ := wire.Marshal(&wire.Put{Path: "/big", Content: make([]byte, 4096)})
	_, err := wire.ReadFrame(bytes.NewReader(frame), 1024)
	fmt.Println(errors.Is(err, wire.ErrFrameTooLarge))
	// Output:
	// true
}
