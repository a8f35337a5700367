package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/latchd/latch/internal/wire"
)

// A TxnOp is one step of a transaction (Client.Txn): a condition (IfExists,
// IfMissing, IfHeld) or a write (OpPut, OpCreate, OpDelete, OpSetACL).
type TxnOp struct {
	op  wire.TxnOp
	err error // a bad option, reported by Txn before anything is sent
}

// TxnResult is the outcome of one step of an applied transaction. For
// OpPut and OpCreate, Path is the node written (it differs from the op's
// path with Sequential) and Stat its metadata right after the step; for
// OpSetACL and IfExists, Stat is the node's; for OpGet, Content and Stat
// are the node's; for the other conditions and OpDelete, Path is the op's
// path and Stat is zero.
type TxnResult struct {
	Path    string
	Stat    Stat
	Content []byte // OpGet's
}

// TxnError is the error of a transaction that did not apply: the step at
// Op (counting from 0) failed with Err, which wraps one of the sentinels
// (ErrGenerationMismatch, ErrNotFound, ErrExists, ErrNotHolder, ...), so
// errors.Is(err, client.ErrNotFound) works on a TxnError too. Nothing of
// the transaction was applied.
type TxnError struct {
	Op  int
	Err error
}

func (e *TxnError) Error() string { return fmt.Sprintf("%v (transaction op %d)", e.Err, e.Op) }

// Unwrap returns Err.
func (e *TxnError) Unwrap() error { return e.Err }

// IfExists is a condition: path exists and, with IfGeneration, has that
// content generation. Otherwise the transaction fails with ErrNotFound or
// ErrGenerationMismatch. Options: IfGeneration.
func IfExists(path string, opts ...Option) TxnOp {
	o, err := parseOptions("IfExists", optIfGen, opts)
	return TxnOp{op: wire.TxnOp{Kind: wire.TxnCheck, Path: path, IfGen: o.ifGen}, err: err}
}

// IfMissing is a condition: path does not exist. Otherwise the
// transaction fails with ErrExists.
func IfMissing(path string) TxnOp {
	return TxnOp{op: wire.TxnOp{Kind: wire.TxnCheckMissing, Path: path}}
}

// IfHeld is a condition: the lock grant seq is still current, as
// CheckSequencer would say. Otherwise the transaction fails with
// ErrNotHolder. With it a write is fenced by a lock: it applies only while
// the lock is still held under that grant, whatever the writer's clock or
// pauses.
func IfHeld(seq Sequencer) TxnOp {
	w := seq.toWire()
	return TxnOp{op: wire.TxnOp{Kind: wire.TxnCheckSequencer, Sequencer: &w}}
}

// OpPut writes data to path as Put does: it creates the node or replaces
// its content. Options: IfGeneration, Ephemeral, CreateParents.
func OpPut(path string, data []byte, opts ...Option) TxnOp {
	o, err := parseOptions("OpPut", optIfGen|optEphemeral|optParents, opts)
	return TxnOp{op: wire.TxnOp{Kind: wire.TxnPut, Path: path, Content: data, IfGen: o.ifGen,
		Ephemeral: o.ephemeral, Parents: o.parents}, err: err}
}

// OpCreate creates path with data as Create does: the transaction fails
// with ErrExists if the node exists. Options: Ephemeral, CreateParents,
// Sequential.
func OpCreate(path string, data []byte, opts ...Option) TxnOp {
	o, err := parseOptions("OpCreate", optEphemeral|optParents|optSequential, opts)
	return TxnOp{op: wire.TxnOp{Kind: wire.TxnPut, Path: path, Content: data, Create: true,
		Ephemeral: o.ephemeral, Parents: o.parents, Sequential: o.sequential}, err: err}
}

// OpDelete deletes path as Delete does. Options: IfGeneration, Recursive.
func OpDelete(path string, opts ...Option) TxnOp {
	o, err := parseOptions("OpDelete", optIfGen|optRecursive, opts)
	return TxnOp{op: wire.TxnOp{Kind: wire.TxnDelete, Path: path, IfGen: o.ifGen, Recursive: o.recursive}, err: err}
}

// OpGet reads path's content and stat, as Get does, in a transaction of
// conditions and gets only: such a transaction is a read, answered by the
// leader from one state of the cell (every op sees the same moment)
// without a log command, so it costs little more than a Get. A transaction
// that writes may not hold an OpGet (ErrBadRequest from the cell): read
// first, then write with IfGeneration conditions on what was read. The gets' contents must fit in
// one reply (a frame, 1 MiB by default), or the transaction fails with
// ErrLimit at the op that crossed.
func OpGet(path string) TxnOp {
	return TxnOp{op: wire.TxnOp{Kind: wire.TxnGet, Path: path}}
}

// OpSetACL replaces the ACL names of path as SetACL does. Options:
// IfGeneration (of the ACL).
func OpSetACL(path string, acl ACL, opts ...Option) TxnOp {
	o, err := parseOptions("OpSetACL", optIfGen, opts)
	w := acl.toWire()
	return TxnOp{op: wire.TxnOp{Kind: wire.TxnSetACL, Path: path, ACL: &w, IfGen: o.ifGen}, err: err}
}

// Txn applies ops atomically, in order, as one command of the cell's log,
// as ZooKeeper's multi and etcd's Txn do: either every condition holds and
// every write succeeds, and Txn returns one result per op, or nothing is
// applied and Txn returns a *TxnError naming the op that failed. Later ops
// see the effects of earlier ones (a create, then a put under the new
// node). Watches see the events of an applied transaction together, in op
// order. Conditions and writes can come in any order; a condition after a
// write checks the state the write left. At most 128 ops (the cell may
// allow fewer; see docs/namespace.md).
//
// A transaction of conditions and OpGets only is a read of several nodes
// as of one moment (see OpGet).
//
// A retried Txn (after a lost reply) applies once, as every write does.
func (c *Client) Txn(ctx context.Context, ops ...TxnOp) ([]TxnResult, error) {
	if len(ops) == 0 {
		return nil, fmt.Errorf("Txn: %w: no ops", ErrInvalid)
	}
	req := &wire.Txn{Header: c.header(), Ops: make([]wire.TxnOp, len(ops))}
	for i, op := range ops {
		err := op.err
		switch {
		case err != nil:
		case op.op.Kind == 0:
			err = fmt.Errorf("%w: a zero TxnOp; use IfExists, OpPut and the others", ErrInvalid)
		case op.op.Kind != wire.TxnCheckSequencer:
			err = checkPath("Txn", op.op.Path)
		}
		if err != nil {
			return nil, &TxnError{Op: i, Err: err}
		}
		req.Ops[i] = op.op
	}
	r, err := doReply[*wire.TxnReply](c, ctx, "Txn", req)
	if err != nil {
		return nil, err
	}
	if len(r.Results) != len(ops) {
		return nil, fmt.Errorf("Txn: %w: %d results for %d ops", ErrProtocol, len(r.Results), len(ops))
	}
	out := make([]TxnResult, len(r.Results))
	for i, w := range r.Results {
		out[i] = TxnResult{Path: w.Path, Stat: statFromWire(w.Stat), Content: w.Content}
	}
	return out, nil
}

// txnError wraps err in a TxnError when the cell named the op of a
// transaction that failed (wire.Error.Op counts from 1).
func txnError(e *wire.Error, err error) error {
	if e.Op == 0 || errors.Is(err, ErrUnavailable) {
		return err
	}
	return &TxnError{Op: int(e.Op) - 1, Err: err}
}
