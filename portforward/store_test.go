package portforward

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sampleMappings() []Mapping {
	return []Mapping{
		{Member: "alice", Proto: UDP, Internal: netip.MustParseAddrPort("10.99.0.2:6881"), External: 40000,
			Expires: time.Date(2026, 1, 2, 17, 4, 5, 123456789, time.UTC)},
		{Member: "bob", Proto: TCP, Internal: netip.MustParseAddrPort("10.99.0.3:22"), External: 40001,
			Expires: time.Date(2026, 1, 2, 16, 4, 5, 0, time.FixedZone("X", 3600))},
	}
}

func TestFileStoreRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "portforward.json")
	s := NewFileStore(path)
	ms := sampleMappings()
	if err := s.Save(ms); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !sameMappings(got, ms) {
		t.Fatalf("loaded %+v\nwant %+v", got, ms)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	// Replacing leaves one file, no temporaries.
	if err := s.Save(ms[:1]); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %v", entries)
	}
	if got, _ := s.Load(); !sameMappings(got, ms[:1]) {
		t.Errorf("after replace: %+v", got)
	}
	// An empty set is written as [] and loads as nothing.
	if err := s.Save(nil); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), `"mappings": []`) {
		t.Errorf("empty set written as %s", b)
	}
	if got, err := s.Load(); err != nil || len(got) != 0 {
		t.Errorf("empty: %v, %v", got, err)
	}
}

// TestFileStoreFormat pins the file format (other tools may read it).
func TestFileStoreFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pf.json")
	if err := NewFileStore(path).Save(sampleMappings()[:1]); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	want := `{
	"version": 1,
	"mappings": [
		{
			"member": "alice",
			"proto": "udp",
			"internal": "10.99.0.2:6881",
			"external": 40000,
			"expires": "2026-01-02T17:04:05.123456789Z"
		}
	]
}
`
	if string(b) != want {
		t.Errorf("file:\n%s\nwant:\n%s", b, want)
	}
}

func TestFileStoreMissing(t *testing.T) {
	got, err := NewFileStore(filepath.Join(t.TempDir(), "none.json")).Load()
	if err != nil || got != nil {
		t.Fatalf("missing file: %v, %v", got, err)
	}
}

func TestFileStoreCorrupt(t *testing.T) {
	entry := `{"member":"alice","proto":"tcp","internal":"10.99.0.2:1","external":40000,"expires":"2026-01-02T15:04:05Z"}`
	for _, tc := range []struct {
		name, content, wantErr string
	}{
		{"empty file", "", "malformed"},
		{"truncated", `{"version":1,"mappings":[` + entry, "malformed"},
		{"not JSON", "garbage", "malformed"},
		{"two documents", `{"version":1,"mappings":[]}{}`, "data after the document"},
		{"unknown field", `{"version":1,"mappings":[],"extra":1}`, "malformed"},
		{"unknown version", `{"version":2,"mappings":[]}`, "version 2, want 1"},
		{"no version", `{"mappings":[]}`, "version 0, want 1"},
		{"unknown protocol", `{"version":1,"mappings":[{"member":"a","proto":"sctp","internal":"10.99.0.2:1","external":1,"expires":"2026-01-02T15:04:05Z"}]}`, "sctp"},
		{"bad address", `{"version":1,"mappings":[{"member":"a","proto":"udp","internal":"10.99.0:1","external":1,"expires":"2026-01-02T15:04:05Z"}]}`, "malformed"},
		{"IPv6 internal", `{"version":1,"mappings":[{"member":"a","proto":"udp","internal":"[fd00::1]:1","external":1,"expires":"2026-01-02T15:04:05Z"}]}`, "mapping 0: internal address [fd00::1]:1 is not IPv4"},
		{"port out of range", `{"version":1,"mappings":[{"member":"a","proto":"udp","internal":"10.99.0.2:1","external":70000,"expires":"2026-01-02T15:04:05Z"}]}`, "malformed"},
		{"missing expiry", `{"version":1,"mappings":[{"member":"a","proto":"udp","internal":"10.99.0.2:1","external":1}]}`, "mapping 0: no expiry"},
		{"duplicate", `{"version":1,"mappings":[` + entry + "," + entry + `]}`, "mapping 1: second tcp mapping"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := NewFileStore(path).Load()
			if err == nil {
				t.Fatalf("loaded %+v", got)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q should name %s and say %q", err, path, tc.wantErr)
			}
			// The table refuses to start on it rather than lose mappings.
			o := testOptions()
			o.Now = newClock().Now
			if _, err := NewTable(o, &fakeInstaller{}, NewFileStore(path)); err == nil || !strings.Contains(err.Error(), path) {
				t.Errorf("NewTable: %v", err)
			}
			// And the file is left as it was.
			if b, _ := os.ReadFile(path); string(b) != tc.content {
				t.Error("corrupt file was overwritten")
			}
		})
	}
}

func TestFileStoreUnreadable(t *testing.T) {
	dir := t.TempDir()
	// A directory where the file should be cannot be read.
	path := filepath.Join(dir, "state.json")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFileStore(path).Load(); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Load: %v", err)
	}
	if err := NewFileStore(path).Save(sampleMappings()); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Save over a directory: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary file left behind: %v", entries)
	}
}

func TestFileStoreSaveNoDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "state.json")
	if err := NewFileStore(path).Save(sampleMappings()); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Save: %v", err)
	}
}

func TestFileStoreRelativePath(t *testing.T) {
	t.Chdir(t.TempDir())
	s := NewFileStore("state.json")
	if err := s.Save(sampleMappings()); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(); err != nil || len(got) != 2 {
		t.Fatalf("%v %v", got, err)
	}
}

// TestRestart: mappings survive a restart through the file; the ones that
// expired while the daemon was down do not.
func TestRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portforward.json")
	clock := newClock()
	o := testOptions()
	o.Now = clock.Now
	t1, err := NewTable(o, &fakeInstaller{}, NewFileStore(path))
	if err != nil {
		t.Fatal(err)
	}
	short, _, _, _ := t1.request("alice", UDP, netip.AddrPortFrom(inner, 1), 40001, 60)
	long, _, _, _ := t1.request("bob", TCP, netip.AddrPortFrom(innerB, 2), 40002, 3600)
	if short != 40001 || long != 40002 {
		t.Fatalf("mapped %d %d", short, long)
	}
	clock.Advance(2 * time.Minute)
	inst := &fakeInstaller{}
	t2, err := NewTable(o, inst, NewFileStore(path))
	if err != nil {
		t.Fatal(err)
	}
	ms := t2.List()
	if len(ms) != 1 || ms[0].Member != "bob" || ms[0].External != 40002 {
		t.Fatalf("after restart: %+v", ms)
	}
	if _, last := inst.state(); !sameMappings(last, ms) {
		t.Errorf("not reinstalled: %+v", last)
	}
	// The expired one was dropped from the file too.
	if got, _ := NewFileStore(path).Load(); !sameMappings(got, ms) {
		t.Errorf("file holds %+v", got)
	}
}
