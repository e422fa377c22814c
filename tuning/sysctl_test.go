package tuning

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// procTree builds a fake /proc/sys under a temp dir: files maps keys to
// contents. It returns the Sysctl rooted at <tmp>/proc/sys.
func procTree(t *testing.T, files map[string]string) Sysctl {
	t.Helper()
	root := filepath.Join(t.TempDir(), "proc", "sys")
	for key, v := range files {
		path := filepath.Join(root, keyPath(key))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return Sysctl{Root: root}
}

func TestSysctlReadWrite(t *testing.T) {
	s := procTree(t, map[string]string{
		"net.ipv4.ip_forward":              "0",
		"net.ipv4.conf.eth0/100.rp_filter": "0",
	})
	if err := s.Write("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Read("net.ipv4.ip_forward"); err != nil || v != "1" {
		t.Fatalf("Read = %q, %v", v, err)
	}
	if err := s.Write("net.ipv4.conf.eth0/100.rp_filter", "1"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(s.Root, "net/ipv4/conf/eth0.100/rp_filter"))
	if err != nil || string(b) != "1\n" {
		t.Fatalf("file = %q, %v: a dotted key with / must map to a name with a dot", b, err)
	}
	if _, err := s.Read("net.ipv4.nope"); !errors.Is(err, ErrAbsent) {
		t.Errorf("Read of a missing key: %v, want ErrAbsent", err)
	}
	if err := s.Write("net.ipv4.nope", "1"); !errors.Is(err, ErrAbsent) {
		t.Errorf("Write of a missing key: %v, want ErrAbsent", err)
	}
	// A key whose parent is a file (ENOTDIR) is absent too.
	if _, err := s.Read("net.ipv4.ip_forward.x"); !errors.Is(err, ErrAbsent) {
		t.Errorf("Read below a file: %v, want ErrAbsent", err)
	}
	// A directory is neither absent nor read-only: an unclassified error.
	if err := s.Write("net.ipv4", "1"); err == nil || errors.Is(err, ErrAbsent) || errors.Is(err, ErrReadOnly) || errors.Is(err, ErrRejected) {
		t.Errorf("Write to a directory: %v, want an unclassified error", err)
	}
}

func TestSysctlBucketsFallback(t *testing.T) {
	s := procTree(t, nil)
	mod := filepath.Join(filepath.Dir(filepath.Dir(s.Root)), "sys", "module")
	hs := filepath.Join(mod, "nf_conntrack", "parameters", "hashsize")
	if err := os.MkdirAll(filepath.Dir(hs), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hs, []byte("1024\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Without ModuleRoot nothing outside Root is written.
	if err := s.Write(KeyBuckets, "65536"); !errors.Is(err, ErrAbsent) {
		t.Fatalf("Write without ModuleRoot: %v, want ErrAbsent", err)
	}
	if b, _ := os.ReadFile(hs); string(b) != "1024\n" {
		t.Fatalf("hashsize written without ModuleRoot: %q", b)
	}
	s.ModuleRoot = mod
	if err := s.Write(KeyBuckets, "65536"); err != nil {
		t.Fatalf("Write with ModuleRoot: %v", err)
	}
	if b, _ := os.ReadFile(hs); string(b) != "65536\n" {
		t.Fatalf("hashsize = %q, want 65536", b)
	}
	// Other keys never fall back.
	if err := s.Write(KeyConntrackMax, "65536"); !errors.Is(err, ErrAbsent) {
		t.Fatalf("Write of nf_conntrack_max: %v, want ErrAbsent", err)
	}
}

func TestClassify(t *testing.T) {
	pe := func(errno syscall.Errno) error { return &fs.PathError{Op: "open", Path: "/proc/sys/x", Err: errno} }
	tests := []struct {
		name  string
		fn    func(error) error
		in    error
		want  error // nil: unclassified
		errno syscall.Errno
	}{
		{"open ENOENT", classifyOpen, pe(syscall.ENOENT), ErrAbsent, syscall.ENOENT},
		{"open ENOTDIR", classifyOpen, pe(syscall.ENOTDIR), ErrAbsent, syscall.ENOTDIR},
		{"open EACCES", classifyOpen, pe(syscall.EACCES), ErrReadOnly, syscall.EACCES},
		{"open EPERM", classifyOpen, pe(syscall.EPERM), ErrReadOnly, syscall.EPERM},
		{"open EROFS", classifyOpen, pe(syscall.EROFS), ErrReadOnly, syscall.EROFS},
		{"open EIO", classifyOpen, pe(syscall.EIO), nil, syscall.EIO},
		{"write EINVAL", classifyWrite, pe(syscall.EINVAL), ErrRejected, syscall.EINVAL},
		{"write ENOENT", classifyWrite, pe(syscall.ENOENT), ErrRejected, syscall.ENOENT},
		{"write ERANGE", classifyWrite, pe(syscall.ERANGE), ErrRejected, syscall.ERANGE},
		{"write EPERM", classifyWrite, pe(syscall.EPERM), ErrReadOnly, syscall.EPERM},
		{"write EACCES", classifyWrite, pe(syscall.EACCES), ErrReadOnly, syscall.EACCES},
		{"write EBUSY", classifyWrite, pe(syscall.EBUSY), nil, syscall.EBUSY},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.fn(tt.in)
			if !errors.Is(got, tt.errno) {
				t.Errorf("%v lost its errno", got)
			}
			for _, class := range []error{ErrAbsent, ErrRejected, ErrReadOnly} {
				if errors.Is(got, class) != (class == tt.want) {
					t.Errorf("%v: Is(%v) = %v", got, class, !(class == tt.want))
				}
			}
		})
	}
}

func TestStatusOf(t *testing.T) {
	for err, want := range map[error]Status{
		nil:                 StatusOK,
		ErrAbsent:           StatusAbsent,
		ErrRejected:         StatusRejected,
		ErrReadOnly:         StatusReadOnly,
		errors.New("other"): StatusError,
		syscall.EIO:         StatusError,
	} {
		if got := statusOf(err); got != want {
			t.Errorf("statusOf(%v) = %v, want %v", err, got, want)
		}
	}
}
