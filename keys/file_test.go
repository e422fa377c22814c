package keys

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/curve25519"
)

func TestGenerateRoundTrip(t *testing.T) {
	for i := range 32 {
		k, err := Generate(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(k.String())
		if err != nil || back != k {
			t.Fatalf("#%d: Parse(String()) = %v, %v; want %v", i, back, err, k)
		}
		h, err := hex.DecodeString(k.Hex())
		if err != nil || !bytes.Equal(h, k[:]) || k.Hex() != strings.ToLower(k.Hex()) {
			t.Fatalf("#%d: Hex %q does not decode to the key", i, k.Hex())
		}
		want, err := curve25519.X25519(k[:], curve25519.Basepoint)
		if err != nil {
			t.Fatal(err)
		}
		if pub := k.Public(); !bytes.Equal(pub[:], want) || pub.IsZero() {
			t.Fatalf("#%d: Public() = %x, want %x", i, pub, want)
		}
	}
}

func TestGenerateDeterministic(t *testing.T) {
	seed := bytes.Repeat([]byte{0x01}, Len)
	k, err := Generate(bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	var want Key
	copy(want[:], seed)
	want[0] &= 248
	want[31] = (want[31] & 127) | 64
	if k != want {
		t.Fatalf("Generate = %x, want %x", k, want)
	}
	if _, err := Generate(bytes.NewReader(seed[:Len-1])); err == nil || !strings.Contains(err.Error(), "keys: generate") {
		t.Fatalf("short reader: %v", err)
	}
}

func TestParseErrorText(t *testing.T) {
	tests := []struct{ name, in, msg string }{
		{"length", "abc", "want 44 base64 characters, got 3"},
		{"whitespace only", " \t\n", "got 0"},
		{"bad alphabet", strings.Repeat("*", 43) + "=", "not base64 of 32 bytes"},
		{"no padding", strings.Repeat("A", 44), "not base64 of 32 bytes"},
		{"inner space", vecPub[:20] + " " + vecPub[21:], "not base64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.in)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Parse(%q) = %v, want ErrInvalid mentioning %q", tc.in, err, tc.msg)
			}
		})
	}
}

func TestLoadOrCreateFileFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "private.key")
	seed := bytes.Repeat([]byte{0x42}, Len)
	k, created, err := LoadOrCreate(path, bytes.NewReader(seed))
	if err != nil || !created {
		t.Fatalf("%v created=%v", err, created)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != k.String()+"\n" {
		t.Fatalf("file holds %q, want %q", b, k.String()+"\n")
	}
	want, _ := Generate(bytes.NewReader(seed))
	if k != want {
		t.Fatalf("stored key %v, want the one generated from the reader %v", k, want)
	}
}

func TestLoadOrCreateExisting(t *testing.T) {
	tests := []struct {
		name, content string
		ok            bool
		msg           string
	}{
		{"plain", vecPriv, true, ""},
		{"newline", vecPriv + "\n", true, ""},
		{"crlf and spaces", "  " + vecPriv + "\r\n", true, ""},
		{"empty", "", false, "want 44 base64 characters, got 0"},
		{"truncated", vecPriv[:30], false, "got 30"},
		{"two keys", vecPriv + "\n" + vecPub + "\n", false, "want 44"},
		{"hex", strings.Repeat("0f", 32), false, "want 44"},
		{"binary", string(bytes.Repeat([]byte{0}, 44)), false, "not base64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "private.key")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			k, created, err := LoadOrCreate(path, failReader{})
			if created {
				t.Fatal("existing file reported as created")
			}
			if tc.ok {
				if err != nil || k.String() != vecPriv {
					t.Fatalf("got %v, %v", k, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want ErrInvalid naming %s and %q", err, path, tc.msg)
			}
			if b, _ := os.ReadFile(path); string(b) != tc.content {
				t.Fatal("corrupt key file was modified")
			}
		})
	}
}

// failReader is a random source that must not be used.
type failReader struct{}

func (failReader) Read([]byte) (int, error) { return 0, errors.New("entropy exhausted") }

func TestLoadOrCreateErrors(t *testing.T) {
	t.Run("generate fails", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "private.key")
		_, created, err := LoadOrCreate(path, failReader{})
		if err == nil || created || !strings.Contains(err.Error(), "entropy exhausted") {
			t.Fatalf("err = %v created=%v", err, created)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("key file written after failed generation: %v", err)
		}
	})
	t.Run("path is a directory", func(t *testing.T) {
		dir := t.TempDir()
		_, _, err := LoadOrCreate(dir, rand.Reader)
		if err == nil || !strings.Contains(err.Error(), "keys: read") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("parent is a file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := LoadOrCreate(filepath.Join(file, "sub", "private.key"), rand.Reader)
		if err == nil || !strings.HasPrefix(err.Error(), "keys: ") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("short entropy", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "private.key")
		_, _, err := LoadOrCreate(path, io.LimitReader(rand.Reader, 5))
		if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestWriteAtomic(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "k")
	if err := writeAtomic(path, []byte("one"), syncDir); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("created dir mode %v %v, want 0700", st.Mode().Perm(), err)
	}
	// Replacing keeps mode 0600 even over a looser file, and leaves no temp.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeAtomic(path, []byte("two"), syncDir); err != nil {
		t.Fatal(err)
	}
	st, err = os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v, want 0600", st.Mode().Perm(), err)
	}
	if b, _ := os.ReadFile(path); string(b) != "two" {
		t.Fatalf("content %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temp files left: %v", entries)
	}
	// The target is a directory: the rename fails and the temp is removed.
	if err := writeAtomic(dir, []byte("x"), syncDir); err == nil || !strings.Contains(err.Error(), "keys: install") {
		t.Fatalf("rename over a directory: %v", err)
	}
	parent, _ := os.ReadDir(filepath.Dir(dir))
	for _, e := range parent {
		if strings.HasPrefix(e.Name(), ".key-") {
			t.Fatalf("temp file %s left after a failed install", e.Name())
		}
	}
}

func FuzzLoadOrCreate(f *testing.F) {
	f.Add([]byte(vecPriv + "\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, content []byte) {
		path := filepath.Join(t.TempDir(), "k")
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		k, created, err := LoadOrCreate(path, failReader{})
		if created {
			t.Fatal("existing file reported as created")
		}
		if err == nil {
			if k.String() != strings.TrimSpace(string(content)) {
				t.Fatalf("loaded %v from %q", k, content)
			}
			return
		}
		if b, _ := os.ReadFile(path); !bytes.Equal(b, content) {
			t.Fatal("file modified")
		}
	})
}

// TestWriteAtomicSyncsDirectory: the directory is synced after the rename
// (the key is at its final path when the sync runs), and a failing sync
// fails the write.
func TestWriteAtomicSyncsDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "private.key")
	var synced []string
	rec := func(d string) error {
		if _, err := os.Stat(path); err != nil {
			t.Errorf("directory synced before the rename: %v", err)
		}
		synced = append(synced, d)
		return nil
	}
	if err := writeAtomic(path, []byte("k"), rec); err != nil {
		t.Fatal(err)
	}
	if len(synced) != 1 || synced[0] != dir {
		t.Fatalf("synced %v, want [%s]", synced, dir)
	}
	fail := func(string) error { return errors.New("EIO") }
	if err := writeAtomic(filepath.Join(dir, "other.key"), []byte("k"), fail); err == nil || !strings.Contains(err.Error(), "keys: sync") {
		t.Fatalf("failed directory sync: %v", err)
	}
}
