package transport

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/vmihailenco/msgpack/v5"
)

// Version is the peer protocol version. It is the fifth byte of every frame;
// a frame with another version closes the connection. Bump it on any change
// to the frame layout, the envelope or the hello.
const Version byte = 1

const (
	// headerLen is the frame header: a 4-byte big-endian body length, then
	// the version byte.
	headerLen = 5
	// EnvelopeOverhead is the most bytes the msgpack envelope adds around a
	// payload: array header (1), group as uint32 (up to 5), bin header (up
	// to 5). A payload of MaxFrame-EnvelopeOverhead bytes always fits.
	EnvelopeOverhead = 11
	// helloMax bounds the body of a hello or its acknowledgement: an
	// unauthenticated connection never makes this replica allocate more.
	helloMax = 1024
)

// frameReader reads frames from one byte stream:
//
//	[4-byte big-endian length n][1-byte Version][n bytes of msgpack body]
//
// The length is checked against the limit before the body is allocated.
type frameReader struct {
	r   io.Reader
	hdr [headerLen]byte
}

// next returns the next frame body, freshly allocated (the caller owns it),
// and the frame's size on the wire. At a clean end of stream it returns
// io.EOF; a stream that ends inside a frame gives io.ErrUnexpectedEOF.
func (fr *frameReader) next(limit int) ([]byte, int, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return nil, 0, err
	}
	if v := fr.hdr[headerLen-1]; v != Version {
		return nil, 0, fmt.Errorf("%w: frame version %d, this replica speaks %d", ErrVersion, v, Version)
	}
	n := binary.BigEndian.Uint32(fr.hdr[:4])
	if uint64(n) > uint64(limit) {
		return nil, 0, fmt.Errorf("%w: length %d exceeds the limit of %d", ErrFrameTooLarge, n, limit)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(fr.r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, 0, err
	}
	return body, headerLen + int(n), nil
}

// envelopeWriter encodes data frames. The body is the msgpack array
// [group uint32, payload bin]; the payload is written straight from the
// caller's slice, after a header built in a reused buffer.
type envelopeWriter struct {
	head bytes.Buffer
	enc  *msgpack.Encoder
}

func newEnvelopeWriter() *envelopeWriter {
	ew := &envelopeWriter{}
	ew.enc = msgpack.NewEncoder(&ew.head)
	return ew
}

// write writes one data frame to w and returns its size on the wire. The
// caller has checked len(payload) <= MaxPayload.
func (ew *envelopeWriter) write(w io.Writer, group uint32, payload []byte) (int, error) {
	ew.head.Reset()
	ew.head.Write(make([]byte, headerLen))
	// Writes to a bytes.Buffer cannot fail.
	_ = ew.enc.EncodeArrayLen(2)
	_ = ew.enc.EncodeUint(uint64(group))
	_ = ew.enc.EncodeBytesLen(len(payload))
	head := ew.head.Bytes()
	n := len(head) - headerLen + len(payload)
	binary.BigEndian.PutUint32(head, uint32(n))
	head[headerLen-1] = Version
	if _, err := w.Write(head); err != nil {
		return 0, err
	}
	if _, err := w.Write(payload); err != nil {
		return 0, err
	}
	return headerLen + n, nil
}

// envelopeReader decodes data frame bodies.
type envelopeReader struct {
	rd  bytes.Reader
	dec *msgpack.Decoder
}

func newEnvelopeReader() *envelopeReader {
	er := &envelopeReader{}
	er.dec = msgpack.NewDecoder(&er.rd)
	return er
}

// decode splits a frame body into group and payload. The payload aliases
// body, which the caller allocated for this frame alone.
func (er *envelopeReader) decode(body []byte) (uint32, []byte, error) {
	er.rd.Reset(body)
	er.dec.Reset(&er.rd)
	if n, err := er.dec.DecodeArrayLen(); err != nil || n != 2 {
		return 0, nil, malformed("envelope is not a 2-element array", err)
	}
	g, err := er.dec.DecodeUint64()
	if err != nil || g > math.MaxUint32 {
		return 0, nil, malformed("bad group", err)
	}
	m, err := er.dec.DecodeBytesLen()
	if err != nil || m < 0 {
		return 0, nil, malformed("bad payload", err)
	}
	if m != er.rd.Len() {
		return 0, nil, malformed(fmt.Sprintf("payload length %d but %d bytes remain", m, er.rd.Len()), nil)
	}
	return uint32(g), body[len(body)-m:], nil
}

func malformed(what string, err error) error {
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	return fmt.Errorf("%w: %s", ErrMalformed, what)
}

// hello is the dialer's first frame on a new connection.
type hello struct {
	From uint64 `msgpack:"from"` // the dialer's replica id
	To   uint64 `msgpack:"to"`   // the replica id the dialer meant to reach
	Cell uint64 `msgpack:"cell"` // Config.cellHash of the dialer
	// CellID is the dialer's cell identity (Config.Cell; 0: not known).
	// A build that predates it ignores it.
	CellID uint64 `msgpack:"cellid,omitempty"`
	// Probe asks only whether the dialer was removed from the cell
	// (Config.ProbeAfter): the listener answers and closes, and no
	// connection is made. A build that predates it ignores it and takes
	// the hello as a dial-back, which the prober closes after the answer.
	Probe bool `msgpack:"probe,omitempty"`
}

// helloAck is the listener's answer. A non-empty Err refuses the connection.
type helloAck struct {
	From   uint64 `msgpack:"from"`
	Err    string `msgpack:"err,omitempty"`
	CellID uint64 `msgpack:"cellid,omitempty"` // the listener's Config.Cell, as in hello
	// Retired, with Err, says why: the dialer's id was removed from the
	// cell (the listener's RemovePeer forgot it; ErrRetired). A build that
	// predates it ignores it and reads only Err.
	Retired bool `msgpack:"retired,omitempty"`
}

// writeMsg writes v as one msgpack frame; used for the handshake.
func writeMsg(w io.Writer, v any) error {
	body, err := msgpack.Marshal(v)
	if err != nil {
		return err
	}
	buf := make([]byte, headerLen, headerLen+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	buf[headerLen-1] = Version
	_, err = w.Write(append(buf, body...))
	return err
}

// readMsg reads one handshake frame of at most helloMax bytes into v.
func readMsg(r io.Reader, v any) error {
	fr := frameReader{r: r}
	body, _, err := fr.next(helloMax)
	if err != nil {
		return err
	}
	if err := msgpack.Unmarshal(body, v); err != nil {
		return malformed("handshake", err)
	}
	return nil
}

// checkHello decides whether a replica configured by cfg, with the peers
// of cfg.Peers, accepts h.
func checkHello(cfg Config, cell uint64, h hello) error {
	_, known := cfg.Peers[h.From]
	return checkHelloFrom(cfg, cell, h, known)
}

// checkHelloFrom is checkHello with known saying whether h.From is a peer
// now. With Config.AcceptUnknown the cell hash is not compared: the
// replicas of a cell whose members change list different peers while a
// change spreads. A hello from a higher id is a dial-back
// (Config.DialBackAfter), taken only in such a cell or by a replica that
// dials back itself.
func checkHelloFrom(cfg Config, cell uint64, h hello, known bool) error {
	if !known || h.From == cfg.ID {
		return fmt.Errorf("%w: replica %d is not a peer of replica %d", ErrUnknownPeer, h.From, cfg.ID)
	}
	if h.To != cfg.ID {
		return fmt.Errorf("%w: replica %d meant to reach replica %d but reached %d (check peer addresses)",
			ErrHandshake, h.From, h.To, cfg.ID)
	}
	if h.From > cfg.ID && !cfg.AcceptUnknown && cfg.DialBackAfter <= 0 {
		return fmt.Errorf("%w: replica %d dialed replica %d, but only the lower id dials",
			ErrHandshake, h.From, cfg.ID)
	}
	if h.Cell != cell && !cfg.AcceptUnknown {
		return fmt.Errorf("%w: replica %d has another peer set (cell hash %016x, ours %016x)",
			ErrHandshake, h.From, h.Cell, cell)
	}
	return nil
}
