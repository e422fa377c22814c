package tuning

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Errors a Params implementation returns (wrapped) so callers can classify a
// failure. Sysctl maps errnos onto them.
var (
	// ErrAbsent: the key does not exist on this kernel or in this namespace
	// (ENOENT on open) — e.g. conntrack keys before nf_conntrack is loaded.
	ErrAbsent = errors.New("key absent on this kernel")
	// ErrRejected: the kernel refused the value (EINVAL, ENOENT, ERANGE on
	// write) — e.g. default_qdisc = fq without sch_fq.
	ErrRejected = errors.New("value rejected by the kernel")
	// ErrReadOnly: the key exists but cannot be written here (EACCES, EPERM,
	// EROFS) — a child network namespace, a container, or a unit with
	// ProtectKernelTunables=yes.
	ErrReadOnly = errors.New("key read-only here")
)

// Params reads and writes kernel parameters by normalised key.
type Params interface {
	// Read returns the value in force, trailing newline removed. Errors wrap
	// ErrAbsent or ErrReadOnly when they apply.
	Read(key string) (string, error)
	// Write sets key to value. Errors wrap ErrAbsent, ErrRejected or
	// ErrReadOnly when they apply.
	Write(key, value string) error
}

var _ Params = Sysctl{}

// Sysctl is Params over a /proc/sys tree.
type Sysctl struct {
	// Root is the sysctl root: "/proc/sys" on a host, a temp dir in tests.
	// Files under Root/net belong to the network namespace of the thread
	// that opens them.
	Root string
	// ModuleRoot is "/sys/module" on a host. When set, the conntrack hash
	// size falls back to ModuleRoot/nf_conntrack/parameters/hashsize where
	// net.netfilter.nf_conntrack_buckets is read-only (older kernels such
	// as RHEL 8's). Empty disables every write outside Root.
	ModuleRoot string
}

// Host is the Sysctl of the running system.
func Host() Sysctl { return Sysctl{Root: "/proc/sys", ModuleRoot: "/sys/module"} }

// KeyBuckets is the conntrack hash table size key.
const KeyBuckets = "net.netfilter.nf_conntrack_buckets"

// Path is the file that holds key.
func (s Sysctl) Path(key string) string {
	return filepath.Join(s.Root, filepath.FromSlash(keyPath(key)))
}

// Read implements Params.
func (s Sysctl) Read(key string) (string, error) {
	b, err := os.ReadFile(s.Path(key))
	if err != nil {
		return "", fmt.Errorf("tuning: read %s: %w", key, classifyOpen(err))
	}
	return strings.TrimRight(string(b), "\n"), nil
}

// Write implements Params. The value goes to the kernel in one write(2), as
// proc handlers expect.
func (s Sysctl) Write(key, value string) error {
	err := writeFile(s.Path(key), value)
	if err != nil && key == KeyBuckets && s.ModuleRoot != "" &&
		(errors.Is(err, ErrReadOnly) || errors.Is(err, ErrAbsent)) {
		mod := filepath.Join(s.ModuleRoot, "nf_conntrack", "parameters", "hashsize")
		if merr := writeFile(mod, value); merr == nil {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("tuning: write %s = %s: %w", key, value, err)
	}
	return nil
}

func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return classifyOpen(err)
	}
	_, werr := f.WriteString(value + "\n")
	cerr := f.Close()
	if werr != nil {
		return classifyWrite(werr)
	}
	if cerr != nil {
		return classifyWrite(cerr)
	}
	return nil
}

// classifyOpen maps an open(2) failure: a missing file is an absent key.
func classifyOpen(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%w: %w", ErrAbsent, err)
	case isReadOnly(err):
		return fmt.Errorf("%w: %w", ErrReadOnly, err)
	}
	return err
}

// classifyWrite maps a write(2) failure: the file exists, so ENOENT here
// means the kernel did not know the value (e.g. an unknown qdisc).
func classifyWrite(err error) error {
	switch {
	case isReadOnly(err):
		return fmt.Errorf("%w: %w", ErrReadOnly, err)
	case errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.ENOENT),
		errors.Is(err, syscall.ERANGE), errors.Is(err, syscall.EOVERFLOW):
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	return err
}

func isReadOnly(err error) bool {
	return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EROFS)
}
