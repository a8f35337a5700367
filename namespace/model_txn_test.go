package namespace

import (
	"slices"
)

// The reference model's txn (docs/namespace.md, Transactions): check the
// shape and size, copy the whole model, apply the sub-ops in order with
// the model's own ops, and on the first failure put the copy back.

// clone returns a deep copy of the model's state.
func (m *model) clone() *model {
	c := *m
	c.nodes = make(map[string]*mNode, len(m.nodes))
	for p, n := range m.nodes {
		nn := *n
		c.nodes[p] = &nn
	}
	c.locks = make(map[string]*mLock, len(m.locks))
	for p, l := range m.locks {
		ll := *l
		ll.holders, ll.waiters = slices.Clone(l.holders), slices.Clone(l.waiters)
		c.locks[p] = &ll
	}
	c.sessions = make(map[uint64]*mSession, len(m.sessions))
	for id, s := range m.sessions {
		ss := *s
		ss.results = slices.Clone(s.results)
		c.sessions[id] = &ss
	}
	c.events = slices.Clone(m.events)
	return &c
}

// mTxnSize measures the sub-ops with the real encoder: the bytes Ops adds
// to an encoded command, less the list's header (content made non-nil, as
// the size rule counts it).
func mTxnSize(ops []TxnOp) int {
	c := NewTxn()
	c.Principal = "x" // both encodings have 18 or more fields
	without, err := c.Encode()
	if err != nil {
		panic(err)
	}
	for _, o := range ops {
		if o.Content == nil {
			o.Content = []byte{}
		}
		c.Ops = append(c.Ops, o)
	}
	with, err := c.Encode()
	if err != nil {
		panic(err)
	}
	header := 1
	if len(ops) > 15 {
		header = 3
	}
	return len(with) - len(without) - header
}

func (m *model) txn(c Command) Result {
	if len(c.Ops) == 0 || len(c.Ops) > MaxTxnOps {
		return mErr(CodeInvalidCommand)
	}
	kinds := map[Op]Flags{OpCheckExists: 0, OpCheckMissing: 0, OpCheckSequencer: 0,
		OpCreate: FlagEphemeral | FlagParents | FlagSequential, OpSetContent: 0, OpDelete: FlagRecursive, OpSetACL: 0, OpPut: FlagEphemeral | FlagParents}
	for i, o := range c.Ops {
		allowed, ok := kinds[o.Op]
		switch {
		case !ok && (o.Op == OpInvalid || o.Op >= opEnd):
			return Result{Err: mErr(CodeUnknownOp).Err, Txn: &TxnResult{Failed: i}}
		case !ok || o.Flags&^allowed != 0 || o.Op == OpCheckSequencer && o.Mode != ModeExclusive && o.Mode != ModeShared:
			return Result{Err: mErr(CodeInvalidCommand).Err, Txn: &TxnResult{Failed: i}}
		}
	}
	if mTxnSize(c.Ops) > m.cfg.MaxContent+m.cfg.MaxPathLen+3*m.cfg.MaxNameLen+64 {
		return mErr(CodeTooLarge)
	}
	saved := m.clone()
	results := make([]Result, len(c.Ops))
	for i, o := range c.Ops {
		r := m.txnOp(c, o)
		if r.Err != nil {
			*m = *saved
			return Result{Err: r.Err, Txn: &TxnResult{Failed: i}}
		}
		results[i] = r
	}
	return Result{Txn: &TxnResult{Ops: results}}
}

func (m *model) txnOp(c Command, o TxnOp) Result {
	switch o.Op {
	case OpCheckExists:
		if r, bad := m.pathErr(o.Path); bad {
			return r
		}
		n := m.nodes[o.Path]
		switch {
		case n == nil:
			return mErr(CodeNotFound)
		case !m.allowed(o.Path, RightRead, c):
			return mErr(CodePermission)
		case o.Generation != 0 && o.Generation != n.contentGen:
			return mErr(CodeGenerationMismatch)
		}
		return Result{Stat: m.stat(o.Path)}
	case OpCheckMissing:
		if r, bad := m.pathErr(o.Path); bad {
			return r
		}
		if m.nodes[o.Path] != nil {
			return mErr(CodeExists)
		}
		return Result{}
	case OpCheckSequencer:
		if r, bad := m.pathErr(o.Path); bad {
			return r
		}
		if !m.checkSequencer(Sequencer{Path: o.Path, Mode: o.Mode, LockGen: o.Generation, Instance: o.Instance}) {
			return mErr(CodeNotHolder)
		}
		return Result{}
	}
	sub := Command{Version: CommandVersion, Op: o.Op, Time: c.Time, Session: c.Session, Request: c.Request,
		Path: o.Path, Content: o.Content, Flags: o.Flags | c.Flags&FlagRestricted, Generation: o.Generation,
		ACL: o.ACL, Principal: c.Principal}
	switch o.Op {
	case OpCreate:
		return m.create(sub)
	case OpSetContent:
		return m.setContent(sub)
	case OpDelete:
		return m.delete(sub)
	case OpSetACL:
		return m.setACL(sub)
	case OpPut:
		// A put asking for an ephemeral sets only the session's own one.
		if n := m.nodes[o.Path]; n == nil || o.Flags&FlagEphemeral != 0 && (n.owner == 0 || n.owner != c.Session) {
			sub.Op = OpCreate
			return m.create(sub)
		}
		sub.Op, sub.Flags = OpSetContent, c.Flags&FlagRestricted
		return m.setContent(sub)
	}
	panic("unreachable")
}
