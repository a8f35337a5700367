package client

import (
	"fmt"
	"strings"
	"time"
)

// An Option modifies one call. Each call accepts only the options listed in
// its doc comment; any other is an error wrapping ErrInvalid, found before
// anything is sent (so a typo never silently changes what a call does).
type Option struct {
	kind  optKind
	apply func(*options) error
}

type optKind uint16

const (
	optIfGen optKind = 1 << iota
	optEphemeral
	optParents
	optSequential
	optRecursive
	optStale
	optLockDelay
	optPageSize
	optEpoch
	optLast = optEpoch
)

var optNames = map[optKind]string{
	optIfGen:      "IfGeneration",
	optEphemeral:  "Ephemeral",
	optParents:    "CreateParents",
	optSequential: "Sequential",
	optRecursive:  "Recursive",
	optStale:      "Stale",
	optLockDelay:  "LockDelay",
	optPageSize:   "PageSize",
	optEpoch:      "IfEpoch",
}

// options is the result of applying a call's Options.
type options struct {
	ifGen      uint64
	ephemeral  bool
	parents    bool
	sequential bool
	recursive  bool
	stale      bool
	lockDelay  time.Duration
	pageSize   uint32
	epoch      uint64
}

// IfEpoch makes a member change conditional on the member set's epoch
// (MemberSet.Epoch, which every change moves on): if another change was
// applied since, the call fails with ErrGenerationMismatch and changes
// nothing. epoch must not be 0.
func IfEpoch(epoch uint64) Option {
	return Option{optEpoch, func(o *options) error {
		if epoch == 0 {
			return fmt.Errorf("%w: IfEpoch(0): a member set's epoch to compare with is at least 1 once changed; leave the option out for no condition", ErrInvalid)
		}
		o.epoch = epoch
		return nil
	}}
}

// IfGeneration makes a write conditional on the node's current generation:
// the content generation for Put and Delete, the ACL generation for SetACL.
// If it differs (or the node is missing, for Put) the call fails with
// ErrGenerationMismatch and changes nothing. gen must not be 0; use Create
// for "only if the node does not exist".
func IfGeneration(gen uint64) Option {
	return Option{optIfGen, func(o *options) error {
		if gen == 0 {
			return fmt.Errorf("%w: IfGeneration(0): generations start at 1; use Create to require that the node is new", ErrInvalid)
		}
		o.ifGen = gen
		return nil
	}}
}

// Ephemeral makes a node created by Put or Create belong to this session: the
// cell deletes it when the session ends. Ephemeral nodes cannot have
// children. A Put with Ephemeral of an existing node sets its content only
// if it is this session's own ephemeral node; a persistent node, or another
// session's, fails with ErrExists and stays as it was (a node the caller
// means to vanish with its session never silently outlives it).
func Ephemeral() Option { return flagOption(optEphemeral, func(o *options) { o.ephemeral = true }) }

// CreateParents makes Put, Create and the Lock calls create missing parent
// nodes (persistent and empty) instead of failing with ErrNotFound.
func CreateParents() Option { return flagOption(optParents, func(o *options) { o.parents = true }) }

// Sequential makes Create append a decimal number, unique under the parent
// and increasing, to the last name of the path; Create returns the result.
func Sequential() Option { return flagOption(optSequential, func(o *options) { o.sequential = true }) }

// Recursive makes Delete remove the whole subtree, and Watch cover it.
func Recursive() Option { return flagOption(optRecursive, func(o *options) { o.recursive = true }) }

// Stale lets a read be answered by any replica from its own state, which may
// lag the leader. Stale reads work while the cell has no leader; default
// reads are linearizable.
func Stale() Option { return flagOption(optStale, func(o *options) { o.stale = true }) }

// LockDelay sets how long the cell keeps a lock from others if this session
// ends while holding it (Chubby's lock-delay; a normal Unlock frees the lock
// at once). 0 keeps the cell's default (10 s unless configured); the cell
// caps it (one minute by default). d must not be negative.
func LockDelay(d time.Duration) Option {
	return Option{optLockDelay, func(o *options) error {
		if d < 0 {
			return fmt.Errorf("%w: LockDelay(%v) is negative", ErrInvalid, d)
		}
		o.lockDelay = d
		return nil
	}}
}

// PageSize sets how many entries List, Walk, Locks and Sessions fetch per
// round trip (they still return everything); 0 means the cell's maximum.
func PageSize(n int) Option {
	return Option{optPageSize, func(o *options) error {
		if n < 0 || n > 1<<20 {
			return fmt.Errorf("%w: PageSize(%d) out of range", ErrInvalid, n)
		}
		o.pageSize = uint32(n)
		return nil
	}}
}

func flagOption(k optKind, set func(*options)) Option {
	return Option{k, func(o *options) error { set(o); return nil }}
}

// parseOptions applies opts for the call op, which allows the kinds in
// allowed.
func parseOptions(op string, allowed optKind, opts []Option) (options, error) {
	var o options
	var seen optKind
	for _, opt := range opts {
		if opt.apply == nil {
			return o, fmt.Errorf("%s: %w: zero Option", op, ErrInvalid)
		}
		if allowed&opt.kind == 0 {
			return o, fmt.Errorf("%s: %w: option %s is not valid here (valid: %s)", op, ErrInvalid, optNames[opt.kind], kindList(allowed))
		}
		if seen&opt.kind != 0 {
			return o, fmt.Errorf("%s: %w: option %s given twice", op, ErrInvalid, optNames[opt.kind])
		}
		seen |= opt.kind
		if err := opt.apply(&o); err != nil {
			return o, fmt.Errorf("%s: %w", op, err)
		}
	}
	return o, nil
}

func kindList(k optKind) string {
	var names []string
	for bit := optKind(1); bit != 0 && bit <= optLast; bit <<= 1 {
		if k&bit != 0 {
			names = append(names, optNames[bit])
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
