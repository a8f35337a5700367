package paxos

// Node is one replica's Multi-Paxos state: acceptor, proposer and learner.
// It is not safe for concurrent use; the driver serialises all calls.
type Node struct {
	cfg Config
}

// New returns a Node for cfg, recovered from the durable state st.
func New(cfg Config, st State) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	panic("TODO")
}

// Step feeds one received message to the core.
func (n *Node) Step(m Message) error { panic("TODO") }

// Tick advances the core's clock by one tick.
func (n *Node) Tick() { panic("TODO") }

// Propose assigns value to the next free instance and starts Phase 2 for it.
// It returns the instance. Only a leader in Phase 2 accepts proposals.
func (n *Node) Propose(value []byte) (uint64, error) { panic("TODO") }

// Campaign starts Phase 1 now with a new ballot (tests, leadership transfer).
func (n *Node) Campaign() { panic("TODO") }

// Leader returns the ID of the leader this replica knows, or 0.
func (n *Node) Leader() uint64 { panic("TODO") }

// LeaseValid reports whether this replica is the leader and holds a master
// lease now.
func (n *Node) LeaseValid() bool { panic("TODO") }

// ReadBarrier returns the instance the local state machine must have applied
// before a linearizable local read is served, and whether lease reads are
// allowed now.
func (n *Node) ReadBarrier() (uint64, bool) { panic("TODO") }

// HasReady reports whether Ready would return anything to do.
func (n *Node) HasReady() bool { panic("TODO") }

// Ready returns the pending batch of work.
func (n *Node) Ready() (Ready, error) { panic("TODO") }

// Advance tells the core that the last Ready was fully handled.
func (n *Node) Advance() error { panic("TODO") }

// Compact tells the core that the log through instance is truncated.
func (n *Node) Compact(instance uint64) error { panic("TODO") }

// RestoreSnapshot tells the core the state machine was restored from a
// snapshot covering instances through instance.
func (n *Node) RestoreSnapshot(instance uint64) error { panic("TODO") }

// Status returns the core's state.
func (n *Node) Status() Status { panic("TODO") }
