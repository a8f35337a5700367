package lockserver

import (
	"context"
	"fmt"

	"github.com/latchd/latch/internal/wire"
	"github.com/latchd/latch/namespace"
)

// txn proposes a Txn as one namespace.OpTxn command. Each op is checked as
// the standalone request is (path, content size, ACL names, session),
// before anything is proposed; the namespace then checks each against the
// state the earlier ops left, and applies all or none.
func (s *Server) txn(ctx context.Context, c namespace.Caller, m *wire.Txn) wire.Message {
	if len(m.Ops) == 0 {
		return wire.Errorf(wire.BadRequest, "a Txn needs at least one op")
	}
	if len(m.Ops) > namespace.MaxTxnOps {
		return wire.Errorf(wire.Limit, "a Txn of %d ops; the limit is %d", len(m.Ops), namespace.MaxTxnOps)
	}
	if readOnly(m.Ops) {
		return s.readTxn(ctx, c, m)
	}
	ops := make([]namespace.TxnOp, len(m.Ops))
	needSession := false
	for i := range m.Ops {
		if m.Ops[i].Kind == wire.TxnGet {
			return atOp(i, wire.Errorf(wire.BadRequest,
				"a get in a Txn that writes: gets go in a Txn of checks and gets only (read with one, then write with generation checks)"))
		}
		op, err := s.txnOp(&m.Ops[i])
		if err != nil {
			return atOp(i, err)
		}
		ops[i] = op
		needSession = needSession || op.Flags&namespace.FlagEphemeral != 0
	}
	if err := s.checkSession(ctx, c, m.Session, !needSession); err != nil {
		return err
	}
	cmd := namespace.NewTxn(ops...)
	o, err := s.write(ctx, c, kindNamespace, &cmd, &m.Header)
	if err != nil {
		if o.res.Txn != nil {
			err.Op = uint32(o.res.Txn.Failed + 1)
		} else if i, ok := namespace.FailedTxnOp(o.res.Err); ok {
			// A retry: the stored outcome keeps the error, whose message
			// names the failed op, but not Result.Txn.
			err.Op = uint32(i + 1)
		}
		return err
	}
	reply := &wire.TxnReply{Index: o.index, Results: make([]wire.TxnResult, len(m.Ops))}
	for i := range reply.Results {
		r := &reply.Results[i]
		r.Path = m.Ops[i].Path
		if o.res.Txn != nil && i < len(o.res.Txn.Ops) { // a retried txn reports no op results
			if p := o.res.Txn.Ops[i].Path; p != "" {
				r.Path = p
			}
			r.Stat = wireStat(o.res.Txn.Ops[i].Stat)
		}
	}
	return reply
}

// txnOp checks one op of a Txn as its standalone request is checked and
// returns the namespace's sub-op (zero for a get, which only a read-only
// Txn holds).
func (s *Server) txnOp(w *wire.TxnOp) (namespace.TxnOp, *wire.Error) {
	if !w.Kind.Valid() {
		return namespace.TxnOp{}, wire.Errorf(wire.BadRequest, "unknown op kind %d", w.Kind)
	}
	if f := unusedField(w); f != "" {
		return namespace.TxnOp{}, wire.Errorf(wire.BadRequest, "%s is not a field of a %s op", f, txnKindNames[w.Kind])
	}
	if w.Kind == wire.TxnCheckSequencer {
		switch {
		case w.Sequencer == nil:
			return namespace.TxnOp{}, wire.Errorf(wire.BadRequest, "a sequencer check without a sequencer")
		case !w.Sequencer.Mode.Valid():
			return namespace.TxnOp{}, wire.Errorf(wire.BadRequest, "sequencer mode %v", w.Sequencer.Mode)
		}
		if err := s.checkPath(w.Sequencer.Path); err != nil {
			return namespace.TxnOp{}, err
		}
		return namespace.TxnCheckSequencer(nsSequencer(*w.Sequencer)), nil
	}
	if w.Kind != wire.TxnPut {
		if err := s.checkPath(w.Path); err != nil {
			return namespace.TxnOp{}, err
		}
	}
	switch w.Kind {
	case wire.TxnGet:
		return namespace.TxnOp{}, nil // no namespace op: readTxn reads the node
	case wire.TxnCheck:
		return namespace.TxnCheckExists(w.Path, w.IfGen), nil
	case wire.TxnCheckMissing:
		return namespace.TxnCheckMissing(w.Path), nil
	case wire.TxnDelete:
		return namespace.TxnDelete(w.Path, w.Recursive, w.IfGen), nil
	case wire.TxnSetACL:
		if w.ACL == nil {
			return namespace.TxnOp{}, wire.Errorf(wire.BadRequest, "a SetACL op without an ACL")
		}
		acl, err := nsACL(*w.ACL)
		if err != nil {
			return namespace.TxnOp{}, err
		}
		return namespace.TxnSetACL(w.Path, acl, w.IfGen), nil
	}
	// wire.TxnPut, checked as a Put.
	how, flags, err := s.planPut(putWrite{w.Path, w.Content, w.IfGen, w.Create, w.Ephemeral, w.Parents, w.Sequential})
	switch {
	case err != nil:
		return namespace.TxnOp{}, err
	case how == putCreate:
		return namespace.TxnCreate(w.Path, w.Content, flags), nil
	case how == putSet:
		return namespace.TxnSetContent(w.Path, w.Content, w.IfGen), nil
	}
	return namespace.TxnPut(w.Path, w.Content, flags), nil
}

// atOp makes err the failure of op i of a Txn: it names the op (Op counts
// from 1) and prefixes the message with its place, as the namespace words
// a failed sub-op.
func atOp(i int, err *wire.Error) *wire.Error {
	err.Op = uint32(i + 1)
	err.Message = fmt.Sprintf("txn ops[%d]: %s", i, err.Message)
	return err
}

// The fields of a wire.TxnOp, as bits.
const (
	fPath = 1 << iota
	fContent
	fIfGen
	fCreate
	fEphemeral
	fParents
	fSequential
	fRecursive
	fACL
	fSequencer
)

var txnKindNames = [...]string{wire.TxnCheck: "exists check", wire.TxnCheckMissing: "missing check",
	wire.TxnCheckSequencer: "sequencer check", wire.TxnPut: "put", wire.TxnDelete: "delete", wire.TxnSetACL: "set-ACL",
	wire.TxnGet: "get"}

// txnKindFields are the fields each kind of op reads.
var txnKindFields = [...]int{
	wire.TxnCheck:          fPath | fIfGen,
	wire.TxnCheckMissing:   fPath,
	wire.TxnCheckSequencer: fSequencer,
	wire.TxnPut:            fPath | fContent | fIfGen | fCreate | fEphemeral | fParents | fSequential,
	wire.TxnDelete:         fPath | fIfGen | fRecursive,
	wire.TxnSetACL:         fPath | fACL | fIfGen,
	wire.TxnGet:            fPath,
}

// unusedField names a field of w that its kind does not read but that is
// set, or returns "": a client that sets one meant something this op
// does not do.
func unusedField(w *wire.TxnOp) string {
	for _, f := range [...]struct {
		bit  int
		set  bool
		name string
	}{
		{fPath, w.Path != "", "Path"}, {fContent, len(w.Content) > 0, "Content"}, {fIfGen, w.IfGen != 0, "IfGen"},
		{fCreate, w.Create, "Create"}, {fEphemeral, w.Ephemeral, "Ephemeral"}, {fParents, w.Parents, "Parents"},
		{fSequential, w.Sequential, "Sequential"}, {fRecursive, w.Recursive, "Recursive"},
		{fACL, w.ACL != nil, "ACL"}, {fSequencer, w.Sequencer != nil, "Sequencer"},
	} {
		if f.set && txnKindFields[w.Kind]&f.bit == 0 {
			return f.name
		}
	}
	return ""
}
