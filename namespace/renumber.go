package namespace

import (
	"fmt"
	"math"
)

// Renumber prepares a tree restored from a backup for a new cell (see
// docs/operations.md, "Backup and restore"): it moves every number the tree
// hands out up by n: node instances, content, lock and ACL generations
// (of every node, and the counters for new ones), session ids and the log
// index. So nothing the new cell hands out (a sequencer, a generation for a
// conditional write, a session id, an index) equals what the old cell may
// have handed out after the backup was taken, as long as the old cell went
// on for fewer than n of each. A sequencer or generation from the old cell
// no longer matches any node. It fails, changing nothing, if n is 0 or a
// number would overflow.
func (t *Tree) Renumber(n uint64) error {
	if n == 0 {
		return fmt.Errorf("namespace: renumber by 0")
	}
	top := max(t.index, t.nextInstance, t.nextSession)
	for _, nd := range t.byPath {
		top = max(top, nd.contentGen, nd.lockGen, nd.aclGen)
	}
	if top > math.MaxUint64-n {
		return fmt.Errorf("namespace: renumber by %d: a number of %d would overflow", n, top)
	}
	for _, nd := range t.byPath {
		nd.contentGen += n
		nd.lockGen += n
		nd.aclGen += n
	}
	t.index += n
	t.nextInstance += n
	t.nextSession += n
	return nil
}
