package paxos

import (
	"fmt"
	"testing"
)

// TestSimulationSplitPromises runs the simulation with every Promise split
// after one record (bugs.onePerPromise, not a bug: a stress setting), so
// that every Phase 1 that finds records collects them over many messages,
// under all the faults: lost, duplicated and reordered parts, promisers
// that crash, are wiped or promise a higher ballot between two parts.
func TestSimulationSplitPromises(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			def := 30
			if raceEnabled {
				def = 4
			}
			for _, seed := range simSeeds(def) {
				res := runSim(simParams{n: n, seed: seed, faultFor: simFaultTime(), wipe: true, bugs: bugs{onePerPromise: true},
					earlySend: seed%2 == 1, earlyApply: seed/2%2 == 1, pipeline: seed/4%2 == 1, resign: seed/8%2 == 1,
					impatient: seed/16%2 == 1})
				if res.err != nil {
					t.Fatalf("seed %d: %v\nreplay: go test ./replica/paxos -run 'TestSimulationSplitPromises/n=%d$' -seed=%d -simsec=%d -v",
						seed, res.err, n, seed, simFaultTime()/second)
				}
			}
		})
	}
}

// TestSimulationCatchesPartialPromiseCountedAsFull: a candidate that counts
// a promiser for its majority on the first part of a split report proposes
// where it has not seen that promiser's accepted values. The agreement
// check must catch it, with every Promise split after one record.
func TestSimulationCatchesPartialPromiseCountedAsFull(t *testing.T) {
	if raceEnabled || testing.Short() {
		t.Skip("mutant run skipped under -race and -short")
	}
	catchEndToEnd(t, "partial-promise-counted-as-full", simParams{bugs: bugs{onePerPromise: true, partialIsFull: true}}, 200)
}
