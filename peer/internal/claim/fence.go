package claim

import (
	"log/slog"
	"sync"
	"time"
)

// FenceState is what a fence watcher receives.
type FenceState struct {
	Fenced bool
	Since  time.Time // when Fenced last changed
	Heard  int       // voters (self included) heard within the window
	Need   int       // the majority
}

// Fence tracks when this node last heard from each voter and declares it
// fenced when fewer than a majority (self included, if self votes) were
// heard within the window. It starts fenced unless self alone is a
// majority. Safe for concurrent use.
type Fence struct {
	mu       sync.Mutex
	clock    Clock
	log      *slog.Logger
	self     string
	after    time.Duration
	voters   VoterSet
	heard    map[string]time.Time
	state    FenceState
	watchers map[int]chan FenceState
	nextID   int
	unfenced bool // has been unfenced at least once
}

// NewFence returns a fence for self with window after.
func NewFence(self string, after time.Duration, voters VoterSet, clock Clock, log *slog.Logger) *Fence {
	f := &Fence{clock: clock, log: log, self: self, after: after, voters: voters, heard: map[string]time.Time{}, watchers: map[int]chan FenceState{}}
	f.state = FenceState{Fenced: true, Since: clock.Now(), Need: voters.Majority()}
	f.evaluateLocked()
	return f
}

// EverUnfenced reports whether the fence has been unfenced at least once
// since it was made (since the daemon started): a fence that never was
// is still settling after start or formation.
func (f *Fence) EverUnfenced() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unfenced
}

// SetVoters replaces the voter set and re-evaluates.
func (f *Fence) SetVoters(v VoterSet) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.voters = v
	f.evaluateLocked()
}

// Heard records that node answered just now.
func (f *Fence) Heard(node string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.heard[node] = f.clock.Now()
	f.evaluateLocked()
}

// Evaluate recomputes the state at the current time and returns it.
func (f *Fence) Evaluate() FenceState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.evaluateLocked()
}

func (f *Fence) evaluateLocked() FenceState {
	now := f.clock.Now()
	n := 0
	for _, id := range f.voters.IDs() {
		if id == f.self {
			n++
			continue
		}
		if t, ok := f.heard[id]; ok && now.Sub(t) < f.after {
			n++
		}
	}
	need := f.voters.Majority()
	fenced := f.voters.Len() == 0 || n < need
	s := FenceState{Fenced: fenced, Since: f.state.Since, Heard: n, Need: need}
	if fenced != f.state.Fenced {
		s.Since = now
		if fenced {
			f.log.Warn("fenced: no majority of voters heard recently; refusing claims", "heard", n, "need", need, "window", f.after)
		} else {
			f.log.Info("unfenced: a majority of voters is reachable", "heard", n, "need", need)
		}
	}
	changed := s != f.state
	f.state = s
	f.unfenced = f.unfenced || !fenced
	if changed {
		for _, ch := range f.watchers {
			push(ch, s)
		}
	}
	return s
}

// push replaces whatever ch holds with s (ch has capacity 1).
func push(ch chan FenceState, s FenceState) {
	select {
	case <-ch:
	default:
	}
	ch <- s
}

// State returns the last evaluated state.
func (f *Fence) State() FenceState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

// Watch returns a channel that holds the latest state (the current one at
// once, then every change; a slow reader sees only the newest) and a func
// that stops the watch.
func (f *Fence) Watch() (<-chan FenceState, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan FenceState, 1)
	ch <- f.state
	id := f.nextID
	f.nextID++
	f.watchers[id] = ch
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.watchers, id)
	}
}
