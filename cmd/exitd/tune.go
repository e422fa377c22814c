package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"exitd/tuning"
)

// tuneFlags are the flags of `exitd tune` and its subcommands.
type tuneFlags struct {
	json         bool
	root         string // filesystem root for `effective`
	proc         string // sysctl root
	sys          string // sysfs root; "" = /sys only when proc is /proc/sys
	conntrackMax int    // 0 = size from memory
	strict       bool   // apply: exit 2 on any critical failure, not only forwarding
}

// statusError makes the process exit with code (see exitCode in main.go).
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }
func (e *statusError) ExitCode() int { return e.code }

// exitProblems is the exit status of check, apply, lint and effective when
// they find a problem; 1 stays for usage and I/O errors.
const exitProblems = 2

func newTuneCmd(stdout, stderr io.Writer) *cobra.Command {
	f := &tuneFlags{}
	cmd := &cobra.Command{
		Use:   "tune",
		Short: "Apply, verify and lint the kernel (sysctl) profile",
		Long: `The kernel profile exitd ships (` + tuning.BundledPath + `, also embedded in
this binary) turns forwarding on, keeps reverse-path filtering strict, redirects
and source routing off, and sizes conntrack from memory. See docs/tuning.md.

Exit status: 0 fine, 2 a problem was found (see each command), 1 other errors.`,
	}
	pf := cmd.PersistentFlags()
	pf.BoolVar(&f.json, "json", false, "print JSON instead of a table")
	pf.StringVar(&f.root, "root", "/", "filesystem root whose sysctl.d directories `effective` reads")
	pf.StringVar(&f.proc, "proc", "/proc/sys", "sysctl root (its parent holds meminfo)")
	pf.StringVar(&f.sys, "sys", "", "sysfs root for the conntrack hashsize module parameter (default /sys when --proc is /proc/sys, else none)")
	pf.IntVar(&f.conntrackMax, "conntrack-max", 0, "conntrack table size (default: sized from memory, 1/16 of RAM)")

	apply := &cobra.Command{
		Use:   "apply",
		Short: "Write the profile to the kernel, read it back and report (root; ExecStartPre=+)",
		Long: `apply writes the bundled profile in a safe order (forwarding first, conntrack
last), reads every key back and reports each as ok, drift, absent, rejected or
read-only. Exit status 2 when forwarding is still off afterwards (the daemon
would refuse to start), or with --strict when any safety-critical key is unsafe.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return runTuneApply(c.Context(), f, stdout, stderr) },
	}
	apply.Flags().BoolVar(&f.strict, "strict", false, "exit 2 when any safety-critical key is unsafe")

	check := &cobra.Command{
		Use:   "check",
		Short: "Show which keys of the profile are in force; exit 0 only when every safety-critical key holds",
		Args:  cobra.NoArgs,
		RunE:  func(*cobra.Command, []string) error { return runTuneCheck(f, stdout, stderr) },
	}
	lint := &cobra.Command{
		Use:   "lint FILE...",
		Short: "Report dangerous, mis-sized and useless settings in sysctl files (exit 2 on errors or warnings)",
		Args:  cobra.MinimumNArgs(1),
		RunE:  func(_ *cobra.Command, args []string) error { return runTuneLint(f, args, stdout) },
	}
	effective := &cobra.Command{
		Use:   "effective",
		Short: "Show the value each key gets at boot and which file sets it (exit 2 when a file overrides a safety-critical key unsafely)",
		Args:  cobra.NoArgs,
		RunE:  func(*cobra.Command, []string) error { return runTuneEffective(f, stdout) },
	}
	cmd.AddCommand(apply, check, lint, effective)
	return cmd
}

func (f *tuneFlags) sysctl() tuning.Sysctl {
	s := tuning.Sysctl{Root: f.proc}
	switch {
	case f.sys != "":
		s.ModuleRoot = filepath.Join(f.sys, "module")
	case filepath.Clean(f.proc) == "/proc/sys":
		s.ModuleRoot = "/sys/module"
	}
	return s
}

// profile is the bundled profile with conntrack sized for this machine.
func (f *tuneFlags) profile(s tuning.Sysctl, stderr io.Writer) (*tuning.Profile, error) {
	p, err := tuning.Bundled()
	if err != nil {
		return nil, err
	}
	size, err := tuning.SizeConntrack(s, f.conntrackMax)
	if err != nil {
		fmt.Fprintf(stderr, "exitd: conntrack not sized (%v); pass --conntrack-max\n", err)
		return p, nil
	}
	return p.WithConntrack(size), nil
}

func runTuneApply(ctx context.Context, f *tuneFlags, stdout, stderr io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	s := f.sysctl()
	p, err := f.profile(s, stderr)
	if err != nil {
		return err
	}
	opts := tuning.ApplyOptions{Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if filepath.Clean(f.proc) == "/proc/sys" {
		opts.LoadConntrack = func(ctx context.Context) error {
			return exec.CommandContext(ctx, "modprobe", "nf_conntrack").Run()
		}
	}
	r := tuning.Apply(ctx, s, p, opts)
	if err := printReport(stdout, f.json, r); err != nil {
		return err
	}
	var bad []string
	for _, res := range r.CriticalFailures() {
		if f.strict || res.Key == tuning.KeyIPForward || res.Key == tuning.KeyIPv6Forward && res.Status != tuning.StatusAbsent {
			bad = append(bad, res.Key)
		}
	}
	if len(bad) > 0 {
		return &statusError{exitProblems, "tune apply: safety-critical keys do not hold: " + strings.Join(bad, ", ")}
	}
	return nil
}

func runTuneCheck(f *tuneFlags, stdout, stderr io.Writer) error {
	s := f.sysctl()
	p, err := f.profile(s, stderr)
	if err != nil {
		return err
	}
	r := tuning.Check(s, p)
	if err := printReport(stdout, f.json, r); err != nil {
		return err
	}
	if bad := r.CriticalFailures(); len(bad) > 0 {
		keys := make([]string, len(bad))
		for i, b := range bad {
			keys[i] = b.Key
		}
		return &statusError{exitProblems, fmt.Sprintf("tune check: %d safety-critical key(s) unsafe: %s", len(bad), strings.Join(keys, ", "))}
	}
	return nil
}

func printReport(w io.Writer, asJSON bool, r tuning.Report) error {
	if asJSON {
		return writeJSON(w, struct {
			CriticalOK bool            `json:"critical_ok"`
			Results    []tuning.Result `json:"results"`
		}{r.CriticalOK(), r.Results})
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tWANTED\tIN FORCE\tSTATUS\tCRITICAL")
	for _, res := range r.Results {
		crit := "-"
		switch {
		case res.Critical && !res.Safe:
			crit = "UNSAFE"
		case res.Critical:
			crit = "yes"
		}
		inForce := res.InForce
		if inForce == "" {
			inForce = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", res.Key, res.Wanted, inForce, res.Status, crit)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, res := range r.Results {
		if res.Status == tuning.StatusRejected || res.Status == tuning.StatusError {
			fmt.Fprintf(w, "  %s: %s\n", res.Key, res.Detail)
		}
	}
	counts := r.Counts()
	var parts []string
	for _, st := range []tuning.Status{tuning.StatusOK, tuning.StatusDrift, tuning.StatusAbsent, tuning.StatusRejected, tuning.StatusReadOnly, tuning.StatusError, tuning.StatusSkipped} {
		if counts[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
		}
	}
	verdict := "all hold"
	if bad := r.CriticalFailures(); len(bad) > 0 {
		verdict = fmt.Sprintf("%d UNSAFE", len(bad))
	}
	_, err := fmt.Fprintf(w, "\n%d keys: %s; safety-critical keys: %s\n", len(r.Results), strings.Join(parts, ", "), verdict)
	return err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runTuneLint(f *tuneFlags, files []string, stdout io.Writer) error {
	type fileFindings struct {
		File     string           `json:"file"`
		Findings []tuning.Finding `json:"findings"`
	}
	var all []fileFindings
	problems := 0
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			return fmt.Errorf("tune lint: %w", err)
		}
		fs := tuning.LintFile(name, data)
		if fs == nil {
			fs = []tuning.Finding{}
		}
		all = append(all, fileFindings{name, fs})
		sum := tuning.LintSummary(fs)
		problems += sum[tuning.SeverityError] + sum[tuning.SeverityWarning]
	}
	if f.json {
		if err := writeJSON(stdout, all); err != nil {
			return err
		}
	} else {
		for i, ff := range all {
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			printFindings(stdout, ff.File, ff.Findings)
		}
	}
	if problems > 0 {
		return &statusError{exitProblems, fmt.Sprintf("tune lint: %d error(s) and warning(s)", problems)}
	}
	return nil
}

func printFindings(w io.Writer, file string, fs []tuning.Finding) {
	sum := tuning.LintSummary(fs)
	if len(fs) == 0 {
		fmt.Fprintf(w, "%s: no findings\n", file)
		return
	}
	fmt.Fprintf(w, "%s: %d findings: %d error, %d warning, %d info\n", file, len(fs),
		sum[tuning.SeverityError], sum[tuning.SeverityWarning], sum[tuning.SeverityInfo])
	for _, fd := range fs {
		what := fd.Key
		if fd.Key != "" {
			what += " = " + fd.Value
		}
		fmt.Fprintf(w, "\n%-7s %-12s line %d: %s\n", strings.ToUpper(string(fd.Severity)), fd.Category, fd.Pos.Line, what)
		wrap(w, "  why:  ", fd.Why)
		wrap(w, "  safe: ", fd.Safe)
	}
}

// wrap prints text after prefix, wrapped at 80 columns with a hanging indent.
func wrap(w io.Writer, prefix, text string) {
	const width = 80
	indent := strings.Repeat(" ", len(prefix))
	line := prefix
	for _, word := range strings.Fields(text) {
		if len(line)+1+len(word) > width && strings.TrimSpace(line) != strings.TrimSpace(prefix) {
			fmt.Fprintln(w, line)
			line = indent
		}
		if line != prefix && line != indent {
			line += " "
		}
		line += word
	}
	fmt.Fprintln(w, line)
}

func runTuneEffective(f *tuneFlags, stdout io.Writer) error {
	eff, err := tuning.ResolveEffective(f.root)
	if err != nil {
		return err
	}
	p, err := tuning.Bundled()
	if err != nil {
		return err
	}
	conflicts := eff.Against(p)
	var fights []string
	for _, c := range conflicts {
		if c.Fights() {
			fights = append(fights, c.Key)
		}
	}
	if f.json {
		if err := writeJSON(stdout, struct {
			*tuning.Effective
			Conflicts []tuning.Conflict `json:"conflicts"`
		}{eff, conflicts}); err != nil {
			return err
		}
	} else {
		printEffective(stdout, eff, conflicts)
	}
	if len(fights) > 0 {
		return &statusError{exitProblems, "tune effective: a sysctl file sets safety-critical keys unsafely at boot: " + strings.Join(fights, ", ")}
	}
	return nil
}

func printEffective(w io.Writer, eff *tuning.Effective, conflicts []tuning.Conflict) {
	fmt.Fprintln(w, "Files in the order systemd-sysctl applies them (a later file wins):")
	for _, file := range eff.Files {
		fmt.Fprintln(w, "  "+file)
	}
	for _, m := range eff.Masked {
		fmt.Fprintln(w, "  "+m+" (masked)")
	}
	installed := false
	for _, file := range eff.Files {
		installed = installed || path.Base(file) == path.Base(tuning.BundledPath)
	}
	if !installed {
		fmt.Fprintf(w, "  note: %s is not installed under %s\n", tuning.BundledPath, eff.Root)
	}
	for _, pr := range eff.Problems {
		fmt.Fprintln(w, "  problem: "+pr)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVALUE AT BOOT\tSET BY\tOVERRIDES")
	for _, s := range eff.Settings {
		var over []string
		for _, o := range s.Overridden {
			over = append(over, fmt.Sprintf("%s (%s)", o.Value, o.Pos))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Key, s.Value, s.Pos, strings.Join(over, ", "))
	}
	tw.Flush()
	fmt.Fprintln(w)
	if len(conflicts) == 0 {
		fmt.Fprintln(w, "exitd's profile holds at boot: no file overrides it.")
		return
	}
	noun := "keys"
	if len(conflicts) == 1 {
		noun = "key"
	}
	fmt.Fprintf(w, "exitd's profile does not fully hold at boot (%d %s):\n", len(conflicts), noun)
	for _, c := range conflicts {
		tag := "  "
		if c.Fights() {
			tag = "  CRITICAL "
		}
		if c.Unset {
			fmt.Fprintf(w, "%s%s: exitd wants %s; no file sets it (kernel default until `exitd tune apply`)\n", tag, c.Key, c.Wanted)
			continue
		}
		fmt.Fprintf(w, "%s%s: exitd wants %s, but %s sets %s\n", tag, c.Key, c.Wanted, c.Pos, c.Value)
	}
}
