// Package depgraph holds the test that keeps the package graph of
// DESIGN.md true: which of latch's packages may import which. It has no
// code of its own; run `go test ./internal/depgraph` after adding an import.
package depgraph
