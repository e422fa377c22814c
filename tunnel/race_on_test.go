//go:build race

package tunnel

// raceEnabled: under -race sync.Pool drops some Puts on purpose, so the
// hot path allocates; the AllocsPerRun tests skip.
const raceEnabled = true
