package wire

import (
	"strconv"
	"time"
)

// Type identifies a message in the frame header. Values are part of the
// protocol and never reused.
type Type uint16

// Message types. Requests and their replies are listed in docs/protocol.md.
const (
	TypeHello          Type = 1
	TypeWelcome        Type = 2
	TypeError          Type = 3
	TypeAck            Type = 4
	TypeOpenSession    Type = 5
	TypeSessionOpened  Type = 6
	TypeCloseSession   Type = 7
	TypeKeepAlive      Type = 8
	TypeKeepAliveReply Type = 9
	TypeGet            Type = 10
	TypeGetReply       Type = 11
	TypeStatPath       Type = 12
	TypeStatReply      Type = 13
	TypeList           Type = 14
	TypeListReply      Type = 15
	TypeWalk           Type = 16
	TypeWalkReply      Type = 17
	TypePut            Type = 18
	TypePutReply       Type = 19
	TypeDelete         Type = 20
	TypeSetACL         Type = 21
	TypeAcquire        Type = 22
	TypeAcquireReply   Type = 23
	TypeRelease        Type = 24
	TypeCancel         Type = 25
	TypeCheckSequencer Type = 26
	TypeCheckReply     Type = 27
	TypeListLocks      Type = 28
	TypeLocksReply     Type = 29
	TypeListSessions   Type = 30
	TypeSessionsReply  Type = 31
	TypeWatch          Type = 32
	TypeWatchReply     Type = 33
	TypeUnwatch        Type = 34
	TypeStatus         Type = 35
	TypeStatusReply    Type = 36
	TypeGetACL         Type = 37
	TypeACLReply       Type = 38
	TypeCancelCall     Type = 39
	TypePing           Type = 40
	TypePong           Type = 41
	TypeTxn            Type = 42
	TypeTxnReply       Type = 43
	TypeMemberList     Type = 44
	TypeMemberSet      Type = 45
	TypeMemberChange   Type = 46
	TypeMemberChanged  Type = 47

	typeEnd Type = 48 // one past the last type; bump when adding one
)

// Message is implemented by every message of the protocol.
type Message interface {
	// Type returns the message's type for the frame header.
	Type() Type
}

// Request is a message a client sends that carries a [Header].
type Request interface {
	Message
	// Head returns the request's header, for reading or setting the
	// session and request ids.
	Head() *Header
}

// New returns a pointer to a zero message of type t, or nil if t is unknown.
func New(t Type) Message {
	switch t {
	case TypeHello:
		return new(Hello)
	case TypeWelcome:
		return new(Welcome)
	case TypeError:
		return new(Error)
	case TypeAck:
		return new(Ack)
	case TypeOpenSession:
		return new(OpenSession)
	case TypeSessionOpened:
		return new(SessionOpened)
	case TypeCloseSession:
		return new(CloseSession)
	case TypeKeepAlive:
		return new(KeepAlive)
	case TypeKeepAliveReply:
		return new(KeepAliveReply)
	case TypeGet:
		return new(Get)
	case TypeGetReply:
		return new(GetReply)
	case TypeStatPath:
		return new(StatPath)
	case TypeStatReply:
		return new(StatReply)
	case TypeList:
		return new(List)
	case TypeListReply:
		return new(ListReply)
	case TypeWalk:
		return new(Walk)
	case TypeWalkReply:
		return new(WalkReply)
	case TypePut:
		return new(Put)
	case TypePutReply:
		return new(PutReply)
	case TypeDelete:
		return new(Delete)
	case TypeSetACL:
		return new(SetACL)
	case TypeAcquire:
		return new(Acquire)
	case TypeAcquireReply:
		return new(AcquireReply)
	case TypeRelease:
		return new(Release)
	case TypeCancel:
		return new(Cancel)
	case TypeCheckSequencer:
		return new(CheckSequencer)
	case TypeCheckReply:
		return new(CheckReply)
	case TypeListLocks:
		return new(ListLocks)
	case TypeLocksReply:
		return new(LocksReply)
	case TypeListSessions:
		return new(ListSessions)
	case TypeSessionsReply:
		return new(SessionsReply)
	case TypeWatch:
		return new(Watch)
	case TypeWatchReply:
		return new(WatchReply)
	case TypeUnwatch:
		return new(Unwatch)
	case TypeStatus:
		return new(Status)
	case TypeStatusReply:
		return new(StatusReply)
	case TypeGetACL:
		return new(GetACL)
	case TypeACLReply:
		return new(ACLReply)
	case TypeCancelCall:
		return new(CancelCall)
	case TypePing:
		return new(Ping)
	case TypePong:
		return new(Pong)
	case TypeTxn:
		return new(Txn)
	case TypeTxnReply:
		return new(TxnReply)
	case TypeMemberList:
		return new(MemberList)
	case TypeMemberSet:
		return new(MemberSet)
	case TypeMemberChange:
		return new(MemberChange)
	case TypeMemberChanged:
		return new(MemberChanged)
	}
	return nil
}

// String returns the name of the message type, such as "KeepAlive".
func (t Type) String() string {
	if m := New(t); m != nil {
		return typeName(m)
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// Header identifies a request for correlation and retries. A client numbers
// its requests within a session; a retry of a request that may have been
// applied reuses the same (Session, Request) pair, and the server returns the
// stored outcome instead of applying it twice.
type Header struct {
	// Session is the caller's session id; 0 for calls outside a session
	// (Hello, OpenSession, Status, stale reads).
	Session uint64 `msgpack:"sid,omitempty"`
	// Request is the request id, unique within the session.
	Request uint64 `msgpack:"rid,omitempty"`
}

// Head implements Request.
func (h *Header) Head() *Header { return h }

// Hello opens a connection: it must be the first call. The client names the
// versions it speaks.
type Hello struct {
	MinVersion uint8  `msgpack:"minv"`
	MaxVersion uint8  `msgpack:"maxv"`
	Client     string `msgpack:"client,omitempty"` // free text, for logs
}

// Welcome answers Hello.
type Welcome struct {
	Version  uint8  `msgpack:"v"`      // the version chosen for this connection
	ServerID string `msgpack:"server"` // the answering replica
	// Leader is the leader's client address if known ("" if not), so a
	// client can move there before its first call.
	Leader   string `msgpack:"leader,omitempty"`
	IsLeader bool   `msgpack:"isleader,omitempty"`
	Limits   Limits `msgpack:"limits"`
}

// Ack is the reply to requests that return nothing else: CloseSession, Delete,
// Release, Cancel, Unwatch.
type Ack struct {
	// Index is the log index of the command that carried out the request,
	// or 0 if it needed none.
	Index uint64 `msgpack:"idx,omitempty"`
}

// OpenSession starts a session. Header.Request is used for retries; Session
// is 0.
type OpenSession struct {
	Header
	// Timeout is the lease the client asks for; 0 means the server default.
	// The server clamps it to its Limits.
	Timeout time.Duration `msgpack:"timeout,omitempty"`
	Client  string        `msgpack:"client,omitempty"` // shown by ListSessions
}

// SessionOpened answers OpenSession.
type SessionOpened struct {
	Session uint64        `msgpack:"sid"`
	Timeout time.Duration `msgpack:"timeout"` // the lease granted
	// Principal is who the cell takes the client for (the CN of its TLS
	// client certificate; "" if anonymous), and Superuser whether no ACL
	// restricts it.
	Principal string `msgpack:"principal,omitempty"`
	Superuser bool   `msgpack:"super,omitempty"`
}

// CloseSession ends the caller's session: its ephemeral nodes are deleted and
// its locks released at once (no lock-delay). Reply: Ack.
type CloseSession struct {
	Header
}

// KeepAlive renews the session's lease and collects its events. The server
// holds it (a long poll) until shortly before the lease would end, or until
// events are ready.
type KeepAlive struct {
	Header
	// Acked is the highest event sequence number the client has received;
	// the server forgets events up to it and sends the rest.
	Acked uint64 `msgpack:"ack,omitempty"`
}

// KeepAliveReply answers KeepAlive.
type KeepAliveReply struct {
	// TTL is how long, from when the server counted it (just before it
	// sent the reply), the lease is guaranteed.
	TTL time.Duration `msgpack:"ttl"`
	// Held is how long the server held the call before it counted TTL, on
	// its own clock, from the call's arrival. The call arrived after the
	// client sent it, so the lease lasts at least until send + Held + TTL
	// (with clocks that advance at the same rate; the session margin covers
	// small rate differences). Zero from a server that does not report it.
	Held   time.Duration `msgpack:"held,omitempty"`
	Events []Event       `msgpack:"events,omitempty"`
}

// Get reads a node's content and Stat. Reply: GetReply.
type Get struct {
	Header
	Path string `msgpack:"path"`
	// Stale allows any replica to answer from its own state, which may lag
	// the leader; otherwise the read is linearizable.
	Stale bool `msgpack:"stale,omitempty"`
}

// GetReply answers Get.
type GetReply struct {
	Content []byte `msgpack:"content,omitempty"`
	Stat    Stat   `msgpack:"stat"`
}

// StatPath reads a node's Stat. Reply: StatReply.
type StatPath struct {
	Header
	Path  string `msgpack:"path"`
	Stale bool   `msgpack:"stale,omitempty"`
}

// StatReply answers StatPath and SetACL.
type StatReply struct {
	Stat Stat `msgpack:"stat"`
}

// List reads one page of a node's children in byte order of their names.
// Reply: ListReply.
type List struct {
	Header
	Path string `msgpack:"path"`
	// After resumes a listing: only children whose names sort after it are
	// returned. Empty starts at the first child.
	After string `msgpack:"after,omitempty"`
	// Limit is the page size; 0 or more than Limits.MaxPage means MaxPage.
	Limit uint32 `msgpack:"limit,omitempty"`
	Stale bool   `msgpack:"stale,omitempty"`
}

// ListReply answers List; Entry.Name is the child's name.
type ListReply struct {
	Entries []Entry `msgpack:"entries,omitempty"`
	More    bool    `msgpack:"more,omitempty"` // another page follows the last entry
}

// Walk reads one page of the subtree under Path (Path included), in byte
// order of full paths. Reply: WalkReply.
type Walk struct {
	Header
	Path  string `msgpack:"path"`
	After string `msgpack:"after,omitempty"` // resume after this full path
	Limit uint32 `msgpack:"limit,omitempty"`
	Stale bool   `msgpack:"stale,omitempty"`
}

// WalkReply answers Walk; Entry.Name is the full path.
type WalkReply struct {
	Entries []Entry `msgpack:"entries,omitempty"`
	More    bool    `msgpack:"more,omitempty"`
}

// Put writes a node's content, creating the node if needed. Reply: PutReply.
type Put struct {
	Header
	Path    string `msgpack:"path"`
	Content []byte `msgpack:"content,omitempty"`
	// IfGen, if not 0, makes the write conditional: the node must exist with
	// this content generation (GenerationMismatch otherwise).
	IfGen uint64 `msgpack:"ifgen,omitempty"`
	// Create makes the write fail with Exists if the node exists.
	Create bool `msgpack:"create,omitempty"`
	// Ephemeral makes a newly created node belong to the session: it is
	// deleted when the session ends. Ignored when the node exists.
	Ephemeral bool `msgpack:"eph,omitempty"`
	// Parents creates missing parent nodes (persistent, empty).
	Parents bool `msgpack:"parents,omitempty"`
	// Sequential appends a decimal sequence number, unique under the
	// parent, to the last name of Path; PutReply.Path has the result.
	Sequential bool `msgpack:"seq,omitempty"`
}

// PutReply answers Put.
type PutReply struct {
	Path string `msgpack:"path"` // the node written (differs from Put.Path when Sequential)
	Stat Stat   `msgpack:"stat"`
}

// Delete removes a node. Reply: Ack.
type Delete struct {
	Header
	Path      string `msgpack:"path"`
	IfGen     uint64 `msgpack:"ifgen,omitempty"`     // if not 0, the content generation must match
	Recursive bool   `msgpack:"recursive,omitempty"` // delete the subtree; otherwise NotEmpty if it has children
}

// SetACL replaces a node's ACL. Reply: StatReply.
type SetACL struct {
	Header
	Path  string `msgpack:"path"`
	ACL   ACL    `msgpack:"acl"`
	IfGen uint64 `msgpack:"ifgen,omitempty"` // if not 0, the ACL generation must match
}

// GetACL reads a node's ACL. Reply: ACLReply.
type GetACL struct {
	Header
	Path  string `msgpack:"path"`
	Stale bool   `msgpack:"stale,omitempty"`
}

// ACLReply answers GetACL.
type ACLReply struct {
	ACL  ACL  `msgpack:"acl"`
	Stat Stat `msgpack:"stat"`
}

// Acquire asks for the lock on Path. With Wait, the request queues (FIFO)
// until granted; the queued request survives a leader change and is removed
// by Cancel or by the session's end. Without Wait, a conflicting lock gives
// Locked. Reply: AcquireReply.
type Acquire struct {
	Header
	Path string   `msgpack:"path"`
	Mode LockMode `msgpack:"mode"`
	Wait bool     `msgpack:"wait,omitempty"`
	// LockDelay is how long the lock stays unavailable to others if this
	// session ends while holding it; 0 means the server default. Capped by
	// the server (one minute).
	LockDelay time.Duration `msgpack:"delay,omitempty"`
}

// AcquireReply answers Acquire with the grant's sequencer.
type AcquireReply struct {
	Sequencer Sequencer `msgpack:"seq"`
}

// Release gives up a lock. LockGen must be that of the grant, so a retried or
// stale Release cannot free a later grant to the same session. Reply: Ack.
type Release struct {
	Header
	Path    string `msgpack:"path"`
	LockGen uint64 `msgpack:"lgen"`
}

// Cancel withdraws the session's earlier request Target (a waiting Acquire).
// The canceled call is answered with Canceled. Canceling a request that has
// finished or is unknown succeeds and does nothing. Reply: Ack.
type Cancel struct {
	Header
	Target uint64 `msgpack:"target"`
}

// CheckSequencer asks whether a sequencer is still current: the lock is held
// in that mode with that generation by the same node instance. Reply:
// CheckReply.
type CheckSequencer struct {
	Header
	Sequencer Sequencer `msgpack:"seq"`
	Stale     bool      `msgpack:"stale,omitempty"`
}

// CheckReply answers CheckSequencer.
type CheckReply struct {
	Valid bool `msgpack:"valid"`
}

// ListLocks reads one page of the locks at or under Path that are held,
// queued or delayed. Reply: LocksReply.
type ListLocks struct {
	Header
	Path  string `msgpack:"path"`
	After string `msgpack:"after,omitempty"`
	Limit uint32 `msgpack:"limit,omitempty"`
	Stale bool   `msgpack:"stale,omitempty"`
}

// LocksReply answers ListLocks.
type LocksReply struct {
	Locks []LockInfo `msgpack:"locks,omitempty"`
	More  bool       `msgpack:"more,omitempty"`
}

// ListSessions reads one page of open sessions in id order. Reply:
// SessionsReply.
type ListSessions struct {
	Header
	After uint64 `msgpack:"after,omitempty"` // resume after this session id
	Limit uint32 `msgpack:"limit,omitempty"`
	Stale bool   `msgpack:"stale,omitempty"`
}

// SessionsReply answers ListSessions.
type SessionsReply struct {
	Sessions []SessionInfo `msgpack:"sessions,omitempty"`
	More     bool          `msgpack:"more,omitempty"`
}

// Watch registers interest in Path (and with Recursive, its whole subtree).
// Events arrive on KeepAlive replies, tagged with the watch id. Watches live
// as long as the session, or until Unwatch; they survive a leader change
// only as far as the client registers them again after a Failover event.
// Reply: WatchReply.
type Watch struct {
	Header
	Path      string `msgpack:"path"`
	Recursive bool   `msgpack:"recursive,omitempty"`
}

// WatchReply answers Watch.
type WatchReply struct {
	Watch uint64 `msgpack:"watch"` // the watch id, unique within the session
}

// Unwatch removes a watch. Reply: Ack.
type Unwatch struct {
	Header
	Watch uint64 `msgpack:"watch"`
}

// Status asks the answering replica about the cell. Reply: StatusReply.
type Status struct {
	Header
}

// StatusReply answers Status.
type StatusReply struct {
	ServerID string   `msgpack:"server"`
	Leader   string   `msgpack:"leader,omitempty"` // the leader's client address, if known
	IsLeader bool     `msgpack:"isleader,omitempty"`
	Applied  uint64   `msgpack:"applied,omitempty"` // last applied log index on this replica
	Members  []Member `msgpack:"members,omitempty"`
	// Rebuilding: this replica lost its state and is learning it again; it
	// does not vote until a leader fenced it. Older servers omit it.
	Rebuilding bool `msgpack:"rebuilding,omitempty"`
}

// Txn applies its Ops atomically, in order, as one command: either every
// check holds and every write succeeds, or nothing changes and the reply is
// an Error whose Op names the step that failed. A Txn of checks and gets
// only (no write) is a read: the leader answers it from one state, after
// the read barrier, without a log command; gets may not be mixed with
// writes. Reply: TxnReply.
type Txn struct {
	Header
	Ops []TxnOp `msgpack:"ops"`
}

// TxnOpKind says what one step of a Txn does. Values are part of the
// protocol.
type TxnOpKind uint8

// The steps of a Txn.
const (
	// TxnCheck: Path exists and, if IfGen is not 0, has that content
	// generation (NotFound or GenerationMismatch otherwise).
	TxnCheck TxnOpKind = 1
	// TxnCheckMissing: Path does not exist (Exists otherwise).
	TxnCheckMissing TxnOpKind = 2
	// TxnCheckSequencer: Sequencer is still current, as CheckSequencer
	// would say (NotHolder otherwise): a write fenced by a lock.
	TxnCheckSequencer TxnOpKind = 3
	// TxnPut: a Put of Content to Path with Put's options (IfGen, Create,
	// Ephemeral, Parents, Sequential).
	TxnPut TxnOpKind = 4
	// TxnDelete: a Delete of Path (IfGen, Recursive).
	TxnDelete TxnOpKind = 5
	// TxnSetACL: a SetACL of Path to ACL (IfGen checks the ACL generation).
	TxnSetACL TxnOpKind = 6
	// TxnGet: read Path's content and stat (NotFound otherwise), in a Txn
	// without writes. Servers before it answer BadRequest (unknown kind).
	TxnGet   TxnOpKind = 7
	txnOpEnd TxnOpKind = 8
)

// Valid reports whether k is a known kind.
func (k TxnOpKind) Valid() bool { return k >= TxnCheck && k < txnOpEnd }

// TxnOp is one step of a Txn. Each kind reads only the fields its comment
// names; the others must be zero.
type TxnOp struct {
	Kind       TxnOpKind  `msgpack:"kind"`
	Path       string     `msgpack:"path,omitempty"`
	Content    []byte     `msgpack:"content,omitempty"`
	IfGen      uint64     `msgpack:"ifgen,omitempty"`
	Create     bool       `msgpack:"create,omitempty"`
	Ephemeral  bool       `msgpack:"eph,omitempty"`
	Parents    bool       `msgpack:"parents,omitempty"`
	Sequential bool       `msgpack:"seq,omitempty"`
	Recursive  bool       `msgpack:"recursive,omitempty"`
	ACL        *ACL       `msgpack:"acl,omitempty"`
	Sequencer  *Sequencer `msgpack:"sequencer,omitempty"`
}

// TxnReply answers a Txn that applied: one result per op, in order.
type TxnReply struct {
	Results []TxnResult `msgpack:"results"`
	// Index is the log index that carried the Txn out; 0 for a Txn
	// without writes, which no log command carries.
	Index uint64 `msgpack:"index,omitempty"`
}

// TxnResult is the outcome of one op of an applied Txn: for a put, the
// node written (it differs from the op's Path when Sequential) and its
// stat after the Txn's op; for a SetACL and an exists check, the stat; for
// a get, the content and stat; for the other checks and deletes, the path
// only.
type TxnResult struct {
	Path    string `msgpack:"path,omitempty"`
	Stat    Stat   `msgpack:"stat"`
	Content []byte `msgpack:"content,omitempty"`
}

// CancelCall is a control frame, not a request: the client sends it, with
// the call id of an earlier request in its frame header, when the caller
// gave up on that call. The server cancels the context of the call's
// handler and sends no reply to it (a reply already on its way is dropped
// by the client). It does not withdraw a queued Acquire from the lock
// queue; that is what the Cancel request is for.
type CancelCall struct{}

// Ping is a control frame, not a request: either side sends it, with call
// id 0, when it has read nothing from the connection for a while, and the
// other side answers it with a Pong. A side that has read nothing for
// another while after its Ping closes the connection: the peer is gone.
type Ping struct{}

// Pong is the control frame that answers a Ping; it is not answered.
type Pong struct{}

// Type implementations.

func (*Hello) Type() Type          { return TypeHello }
func (*Welcome) Type() Type        { return TypeWelcome }
func (*Ack) Type() Type            { return TypeAck }
func (*OpenSession) Type() Type    { return TypeOpenSession }
func (*SessionOpened) Type() Type  { return TypeSessionOpened }
func (*CloseSession) Type() Type   { return TypeCloseSession }
func (*KeepAlive) Type() Type      { return TypeKeepAlive }
func (*KeepAliveReply) Type() Type { return TypeKeepAliveReply }
func (*Get) Type() Type            { return TypeGet }
func (*GetReply) Type() Type       { return TypeGetReply }
func (*StatPath) Type() Type       { return TypeStatPath }
func (*StatReply) Type() Type      { return TypeStatReply }
func (*List) Type() Type           { return TypeList }
func (*ListReply) Type() Type      { return TypeListReply }
func (*Walk) Type() Type           { return TypeWalk }
func (*WalkReply) Type() Type      { return TypeWalkReply }
func (*Put) Type() Type            { return TypePut }
func (*PutReply) Type() Type       { return TypePutReply }
func (*Delete) Type() Type         { return TypeDelete }
func (*SetACL) Type() Type         { return TypeSetACL }
func (*GetACL) Type() Type         { return TypeGetACL }
func (*ACLReply) Type() Type       { return TypeACLReply }
func (*Acquire) Type() Type        { return TypeAcquire }
func (*AcquireReply) Type() Type   { return TypeAcquireReply }
func (*Release) Type() Type        { return TypeRelease }
func (*Cancel) Type() Type         { return TypeCancel }
func (*CheckSequencer) Type() Type { return TypeCheckSequencer }
func (*CheckReply) Type() Type     { return TypeCheckReply }
func (*ListLocks) Type() Type      { return TypeListLocks }
func (*LocksReply) Type() Type     { return TypeLocksReply }
func (*ListSessions) Type() Type   { return TypeListSessions }
func (*SessionsReply) Type() Type  { return TypeSessionsReply }
func (*Watch) Type() Type          { return TypeWatch }
func (*WatchReply) Type() Type     { return TypeWatchReply }
func (*Unwatch) Type() Type        { return TypeUnwatch }
func (*Status) Type() Type         { return TypeStatus }
func (*StatusReply) Type() Type    { return TypeStatusReply }
func (*CancelCall) Type() Type     { return TypeCancelCall }
func (*Ping) Type() Type           { return TypePing }
func (*Pong) Type() Type           { return TypePong }
func (*Txn) Type() Type            { return TypeTxn }
func (*TxnReply) Type() Type       { return TypeTxnReply }
func (*MemberList) Type() Type     { return TypeMemberList }
func (*MemberSet) Type() Type      { return TypeMemberSet }
func (*MemberChange) Type() Type   { return TypeMemberChange }
func (*MemberChanged) Type() Type  { return TypeMemberChanged }
