package lockserver

import (
	"context"

	"github.com/latchd/latch/internal/wire"
	"github.com/latchd/latch/namespace"
)

// A Txn of checks and gets only is a read: the leader evaluates it from one
// state of the tree after the read barrier, as a Get, and no log command
// carries it. It is how a client reads several nodes as of one moment, as
// etcd's Txn of Range ops does: every get and check sees the same state,
// and the whole is linearizable.

// resultBytes bounds the bytes a TxnResult adds to a reply besides its
// path and content (a Stat with every field at its widest takes about
// 200).
const resultBytes = 256

// readOnly reports whether ops hold no write: every op is a check or a get.
func readOnly(ops []wire.TxnOp) bool {
	for i := range ops {
		switch ops[i].Kind {
		case wire.TxnCheck, wire.TxnCheckMissing, wire.TxnCheckSequencer, wire.TxnGet:
		default:
			return false
		}
	}
	return true
}

// readTxn answers a Txn of checks and gets (readOnly). The ops are checked
// as the write path checks them, then evaluated in order under the fsm's
// read lock; the first that fails is the Txn's error, as in a Txn that
// writes.
func (s *Server) readTxn(ctx context.Context, c namespace.Caller, m *wire.Txn) wire.Message {
	conds, err := s.readTxnConds(m.Ops)
	if err != nil {
		return err
	}
	if err := s.readable(ctx, false); err != nil {
		return err
	}
	return s.readTxnNow(c, m.Ops, conds)
}

// quickTxnOps is the most ops of a read-only Txn that serveQuick answers
// on the connection's reader (while the lease holds); longer ones, whose
// replies can be large, go to a call goroutine as listings do.
const quickTxnOps = 16

// readTxnConds checks the ops of a read-only Txn and returns each check's
// namespace condition (zero for a get).
func (s *Server) readTxnConds(ops []wire.TxnOp) ([]namespace.TxnOp, *wire.Error) {
	conds := make([]namespace.TxnOp, len(ops))
	for i := range ops {
		op, err := s.txnOp(&ops[i])
		if err != nil {
			return nil, atOp(i, err)
		}
		conds[i] = op
	}
	return conds, nil
}

// readTxnNow answers a checked read-only Txn from the tree as it stands.
func (s *Server) readTxnNow(c namespace.Caller, ops []wire.TxnOp, conds []namespace.TxnOp) wire.Message {
	var out wire.Message
	s.fsm.read(func(t *namespace.Tree) { out = s.readTxnTree(t, c, ops, conds) })
	return out
}

// readTxnTree evaluates a read-only Txn against t: conds[i] is op i's
// condition, or zero where op i is a get. The reply must fit in a frame: a
// Txn whose gets return more fails with Limit at the op that crossed.
func (s *Server) readTxnTree(t *namespace.Tree, c namespace.Caller, ops []wire.TxnOp, conds []namespace.TxnOp) wire.Message {
	reply := &wire.TxnReply{Results: make([]wire.TxnResult, len(ops))}
	size, limit := 64, s.cfg.MaxFrame
	for i := range ops {
		r := &reply.Results[i]
		r.Path = ops[i].Path
		if ops[i].Kind != wire.TxnGet {
			st, err := t.Check(conds[i], c)
			if err != nil {
				return atOp(i, nsError(err))
			}
			r.Stat = wireStat(st)
		} else {
			n, err := t.Get(r.Path)
			if err == nil && n.ACL.Reader != "" {
				err = t.Permits(r.Path, namespace.RightRead, c)
			}
			if err != nil {
				return atOp(i, nsError(err))
			}
			r.Content, r.Stat = n.Content, wireStat(n.Stat)
		}
		if size += len(r.Path) + len(r.Content) + resultBytes; size > limit {
			return atOp(i, wire.Errorf(wire.Limit,
				"the reply would take more than %d bytes (the frame limit): read fewer or smaller nodes per Txn", limit))
		}
	}
	return reply
}
