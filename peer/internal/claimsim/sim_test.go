package claimsim

import (
	"flag"
	"runtime"
	"sync"
	"testing"
)

var (
	flagSeed  = flag.Uint64("seed", 0, "run only this simulation seed (with -v: trace it)")
	flagSeeds = flag.Int("seeds", 20000, "number of simulation seeds in TestSimulation (-short: 2000)")
	flagFirst = flag.Uint64("first-seed", 1, "first seed of the range TestSimulation runs")

	raceBuild bool // set by race_test.go
)

func TestSimulation(t *testing.T) {
	if *flagSeed != 0 {
		opt := Options{Seed: *flagSeed}
		if testing.Verbose() {
			opt.Trace = func(s string) { t.Log(s) }
		}
		rep, err := Run(opt)
		t.Log(rep)
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	n := *flagSeeds
	seedsSet := false
	flag.Visit(func(f *flag.Flag) { seedsSet = seedsSet || f.Name == "seeds" })
	if testing.Short() || (raceBuild && !seedsSet) {
		n = min(n, 2000)
	}
	t.Logf("seeds %d..%d (rerun one with: go test ./peer/internal/claimsim -run TestSimulation -seed N -v)", *flagFirst, *flagFirst+uint64(n)-1)
	var (
		mu       sync.Mutex
		failed   []error
		total    = Report{Outcomes: map[string]int{}}
		seeds    = make(chan uint64)
		wg       sync.WaitGroup
		maxFails = 5
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for seed := range seeds {
				rep, err := Run(Options{Seed: seed})
				mu.Lock()
				if err != nil {
					failed = append(failed, err)
				}
				total.Events += rep.Events
				total.Decided += rep.Decided
				total.Wins += rep.Wins
				total.Crashes += rep.Crashes
				total.Partitions += rep.Partitions
				if rep.VoterChange > 0 {
					total.VoterChange++
				}
				for k, v := range rep.Outcomes {
					total.Outcomes[k] += v
				}
				mu.Unlock()
			}
		})
	}
	for seed := *flagFirst; seed < *flagFirst+uint64(n); seed++ {
		mu.Lock()
		stop := len(failed) >= maxFails
		mu.Unlock()
		if stop {
			break
		}
		seeds <- seed
	}
	close(seeds)
	wg.Wait()
	t.Logf("totals: events=%d decided=%d wins=%d crashes=%d partitions=%d seeds-with-voter-change=%d outcomes=%v", total.Events, total.Decided, total.Wins, total.Crashes, total.Partitions, total.VoterChange, total.Outcomes)
	for _, err := range failed {
		t.Error(err)
	}
	if total.Decided == 0 || total.Crashes == 0 || total.Partitions == 0 || total.Outcomes["superseded"] == 0 || total.Outcomes["retry"] == 0 || total.Outcomes["timeout"] == 0 {
		t.Errorf("the simulation exercised too little: %+v", total)
	}
}

// TestSimulationBolt runs a few seeds with every acceptor on a real bbolt
// file, closed at each crash and reopened (and checked) at each restart.
func TestSimulationBolt(t *testing.T) {
	n := 12
	if testing.Short() {
		n = 3
	}
	for seed := uint64(1); seed <= uint64(n); seed++ {
		rep, err := Run(Options{Seed: seed, BoltDir: t.TempDir()})
		if err != nil {
			t.Fatalf("%v (rerun with -run TestSimulationBolt; same seeds as TestSimulation with a MemStore: -seed %d)", err, seed)
		}
		if rep.Decided == 0 {
			t.Errorf("seed %d decided nothing: %v", seed, rep)
		}
	}
}

// TestSimulationDeterministic: one seed, two runs, the same story.
func TestSimulationDeterministic(t *testing.T) {
	var logs [2][]string
	for i := range logs {
		rep, err := Run(Options{Seed: 42, Trace: func(s string) { logs[i] = append(logs[i], s) }})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Events == 0 {
			t.Fatal("no events")
		}
	}
	if len(logs[0]) != len(logs[1]) {
		t.Fatalf("runs of one seed differ in length: %d and %d lines", len(logs[0]), len(logs[1]))
	}
	for i := range logs[0] {
		if logs[0][i] != logs[1][i] {
			t.Fatalf("runs of one seed differ at line %d:\n%s\n%s", i, logs[0][i], logs[1][i])
		}
	}
}

// TestCheckerCatchesAmnesia makes sure the checks bite: acceptors that
// forget their promises at restart must be caught within a few seeds.
func TestCheckerCatchesAmnesia(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		if _, err := Run(Options{Seed: seed, amnesia: true}); err != nil {
			t.Logf("caught: %v", err)
			return
		}
	}
	t.Error("200 seeds with amnesiac acceptors and no violation found: the checker is blind")
}

// TestCheckerCatchesTwoVoterChangesAtOnce shows why voters change one at a
// time: with proposers split between voter sets that differ by two nodes,
// two majorities can be disjoint and decide two holders for one epoch.
func TestCheckerCatchesTwoVoterChangesAtOnce(t *testing.T) {
	for seed := uint64(1); seed <= 2000; seed++ {
		if _, err := Run(Options{Seed: seed, Voters: 5, Clients: 4, Resources: 1, changeBy: 2}); err != nil {
			t.Logf("caught: %v", err)
			return
		}
	}
	t.Error("2000 seeds changing two voters at once and no violation found: the checker is blind")
}
