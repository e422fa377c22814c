package tuning

import (
	"errors"
	"time"
)

// Status is the state of one key after Apply or Check.
type Status string

// Statuses. Absent, Rejected and ReadOnly come from classified write (or
// read) errors; Drift means the key is readable but holds another value.
const (
	StatusOK       Status = "ok"
	StatusDrift    Status = "drift"
	StatusAbsent   Status = "absent"
	StatusRejected Status = "rejected"
	StatusReadOnly Status = "read-only"
	StatusError    Status = "error"
	StatusSkipped  Status = "skipped"
)

// Result is the outcome for one key.
type Result struct {
	Key     string `json:"key"`
	Wanted  string `json:"wanted"`
	InForce string `json:"in_force"`
	Status  Status `json:"status"`
	// Critical keys decide Report.CriticalOK; Safe says whether the value in
	// force is acceptable (a strict/loose rp_filter, a conntrack table above
	// the floor), which can hold even when Status is drift.
	Critical bool `json:"critical"`
	Safe     bool `json:"safe"`
	// Optional entries were written with "-": failure is expected on some
	// kernels and is reported, not an error.
	Optional bool     `json:"optional,omitempty"`
	Source   Position `json:"source"`
	Detail   string   `json:"detail,omitempty"`
}

// Report is the outcome of Apply or Check, one Result per key in the order
// the keys were applied. A Report is not modified after it is returned.
type Report struct {
	At      time.Time `json:"at,omitzero"`
	Results []Result  `json:"results"`
}

// CriticalOK reports whether every safety-critical key holds a safe value.
func (r Report) CriticalOK() bool { return len(r.CriticalFailures()) == 0 }

// CriticalFailures returns the safety-critical keys whose value in force is
// unsafe (or unreadable).
func (r Report) CriticalFailures() []Result {
	var out []Result
	for _, res := range r.Results {
		if res.Critical && !res.Safe {
			out = append(out, res)
		}
	}
	return out
}

// Failures returns every result whose status is not ok, critical or not.
func (r Report) Failures() []Result {
	var out []Result
	for _, res := range r.Results {
		if res.Status != StatusOK {
			out = append(out, res)
		}
	}
	return out
}

// Lookup returns the result for key.
func (r Report) Lookup(key string) (Result, bool) {
	for _, res := range r.Results {
		if res.Key == key {
			return res, true
		}
	}
	return Result{}, false
}

// Counts returns how many results have each status.
func (r Report) Counts() map[Status]int {
	c := make(map[Status]int)
	for _, res := range r.Results {
		c[res.Status]++
	}
	return c
}

// statusOf classifies an error from Params.
func statusOf(err error) Status {
	switch {
	case err == nil:
		return StatusOK
	case errors.Is(err, ErrAbsent):
		return StatusAbsent
	case errors.Is(err, ErrRejected):
		return StatusRejected
	case errors.Is(err, ErrReadOnly):
		return StatusReadOnly
	}
	return StatusError
}
