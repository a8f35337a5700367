//go:build race

package paxos

// raceEnabled: the race detector slows the simulation about fivefold, so
// the default run uses fewer seeds under it.
const raceEnabled = true
