package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"exitd/control"
)

// bulkChunk is how many members one batch request carries: big enough that
// 20,000 members are 20 transactions and 20 device updates, small enough
// that each answers within a second.
const bulkChunk = 1000

// addChunked sends reqs in batches of bulkChunk, in order, reporting
// progress. On error it returns what was added so far (each batch is all or
// none) and the error naming the failed batch.
func addChunked(ctx context.Context, c *control.Client, reqs []control.AddMemberRequest, configs bool, p *progress) ([]control.Member, error) {
	out := make([]control.Member, 0, len(reqs))
	for i := 0; i < len(reqs); i += bulkChunk {
		chunk := reqs[i:min(i+bulkChunk, len(reqs))]
		ms, err := c.AddMembers(ctx, control.AddMembersRequest{Members: chunk, Configs: configs})
		if err != nil {
			p.done()
			return out, fmt.Errorf("members %d-%d (%s .. %s): %w", i+1, i+len(chunk), chunk[0].Label, chunk[len(chunk)-1].Label, err)
		}
		out = append(out, ms...)
		p.set(len(out))
	}
	p.done()
	return out, nil
}

// removeChunked removes refs in batches of bulkChunk.
func removeChunked(ctx context.Context, c *control.Client, refs []string, p *progress) ([]control.Member, error) {
	out := make([]control.Member, 0, len(refs))
	for i := 0; i < len(refs); i += bulkChunk {
		chunk := refs[i:min(i+bulkChunk, len(refs))]
		ms, err := c.RemoveMembers(ctx, chunk)
		if err != nil {
			p.done()
			return out, fmt.Errorf("removing %s .. %s: %w", chunk[0], chunk[len(chunk)-1], err)
		}
		out = append(out, ms...)
		p.set(len(out))
	}
	p.done()
	return out, nil
}

// progress draws a one-line bar on a terminal; on anything else (a pipe, a
// log, a test) it stays silent. A nil *progress is silent too.
type progress struct {
	w      io.Writer
	what   string
	total  int
	start  time.Time
	now    func() time.Time
	last   time.Time
	active bool
}

// newProgress returns a bar on w if w is a terminal, else nil.
func newProgress(w io.Writer, what string, total int) *progress {
	f, ok := w.(*os.File)
	if !ok || !isTerminal(f) || total < 2 {
		return nil
	}
	return newProgressTo(w, what, total, time.Now)
}

func newProgressTo(w io.Writer, what string, total int, now func() time.Time) *progress {
	return &progress{w: w, what: what, total: total, start: now(), now: now, active: true}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

const barWidth = 30

func (p *progress) set(n int) {
	if p == nil || !p.active {
		return
	}
	t := p.now()
	if n < p.total && t.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last = t
	fmt.Fprintf(p.w, "\r%s", p.line(n, t))
}

// line is the bar for n of total done at time t.
func (p *progress) line(n int, t time.Time) string {
	filled := barWidth * n / max(p.total, 1)
	bar := strings.Repeat("=", filled)
	if filled < barWidth {
		bar += ">" + strings.Repeat(" ", barWidth-filled-1)
	}
	return fmt.Sprintf("[%s] %d/%d %s  %.1fs", bar, n, p.total, p.what, t.Sub(p.start).Seconds())
}

func (p *progress) done() {
	if p == nil || !p.active {
		return
	}
	p.active = false
	fmt.Fprintln(p.w)
}
