package logdb

import (
	"testing"

	"go.uber.org/goleak"
)

// goleveldb's memory-pool drainer outlives a closed DB by up to 30 s.
var ignoreLevelDB = goleak.IgnoreTopFunction("github.com/syndtr/goleveldb/leveldb.(*DB).mpoolDrain")

// TestMain checks that no goroutine (a journal's grower among them)
// outlives the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, ignoreLevelDB) }
