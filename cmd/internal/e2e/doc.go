// Package e2e holds process-level tests of the latchd and latch binaries:
// they are built with `go build` into a temporary directory and run as
// separate processes on loopback, as an operator would run them (a cell of
// three latchd processes from config files, a leader killed with SIGKILL
// under load and restarted, the README's quick start). The tests are
// skipped with -short. The package has no code of its own.
package e2e
