package lockserver

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no goroutine outlives the servers a test closed.
func TestMain(m *testing.M) {
	// goleveldb's memory-pool drainer lingers up to a second after
	// DB.Close (it waits for a pooled buffer before exiting); it is not ours.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/syndtr/goleveldb/leveldb.(*DB).mpoolDrain"))
}
