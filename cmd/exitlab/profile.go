package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// startCPUProfile writes a CPU profile to path until the returned stop is
// called; an empty path profiles nothing.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// startPerf records pids with perf (call graphs) into data until the
// returned stop, which ends perf by its PID and returns the top of the
// report; each view is also written beside data (NAME-profile-VIEW.txt for
// NAME.perf.data).
func startPerf(data string, pids []int) (func() []string, error) {
	if _, err := exec.LookPath("perf"); err != nil {
		return nil, fmt.Errorf("profiling needs perf (apt-get install linux-perf): %w", err)
	}
	ps := make([]string, len(pids))
	for i, p := range pids {
		ps[i] = strconv.Itoa(p)
	}
	cmd := exec.Command("perf", "record", "-F", "499", "-g", "-o", data, "-p", strings.Join(ps, ","))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	time.Sleep(300 * time.Millisecond) // attached before the first request
	return func() []string {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		// Self time by process and by function, and exitd's functions
		// with their callees (inclusive).
		views := []struct {
			name string
			args []string
			n    int
		}{
			{"comm", []string{"--no-children", "--sort", "comm"}, 10},
			{"self", []string{"--no-children", "--sort", "comm,dso,sym"}, 25},
			{"inclusive", []string{"--children", "--sort", "sym"}, 40},
		}
		var top []string
		for _, v := range views {
			args := append([]string{"report", "-i", data, "--stdio", "-g", "none", "--percent-limit", "1"}, v.args...)
			rep, err := exec.Command("perf", args...).Output()
			if err != nil {
				return append(top, fmt.Sprintf("perf report %s: %v (%s)", v.name, err, strings.TrimSpace(out.String())))
			}
			os.WriteFile(strings.TrimSuffix(data, ".perf.data")+"-profile-"+v.name+".txt", rep, 0o644)
			top = append(top, "["+v.name+"]")
			top = append(top, perfTop(string(rep), v.n)...)
		}
		return top
	}, nil
}

// perfTop returns the first n sample lines of a perf report (no comments,
// no call-graph lines).
func perfTop(rep string, n int) []string {
	var top []string
	for _, l := range strings.Split(rep, "\n") {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "#") || !strings.HasSuffix(strings.Fields(t)[0], "%") {
			continue
		}
		top = append(top, t)
		if len(top) == n {
			break
		}
	}
	return top
}
