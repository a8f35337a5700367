package transport

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: every Transport
// a test makes is closed, and Close must leave nothing behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
