package keys

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Vectors produced by `wg genkey | tee priv | wg pubkey`.
const (
	vecPriv = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
	vecPub  = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"valid", vecPub, true},
		{"surrounding space", "  " + vecPub + "\n", true},
		{"empty", "", false},
		{"short", vecPub[:43], false},
		{"long", vecPub + "A", false},
		{"not base64", strings.Repeat("!", 43) + "=", false},
		{"url alphabet", strings.Repeat("_", 43) + "=", false},
		{"hex", strings.Repeat("ab", 32), false},
		{"non-canonical padding bits", vecPub[:42] + "x=", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := Parse(tc.in)
			if tc.ok {
				if err != nil {
					t.Fatalf("Parse(%q): %v", tc.in, err)
				}
				if k.String() != strings.TrimSpace(tc.in) {
					t.Fatalf("round trip: got %s", k)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) = %v, want ErrInvalid", tc.in, err)
			}
		})
	}
}

func TestPublicMatchesWG(t *testing.T) {
	priv, err := Parse(vecPriv)
	if err != nil {
		t.Fatal(err)
	}
	if got := priv.Public().String(); got != vecPub {
		t.Fatalf("Public() = %s, want %s", got, vecPub)
	}
}

func TestGenerateClamps(t *testing.T) {
	k, err := Generate(bytes.NewReader(bytes.Repeat([]byte{0xff}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	if k[0]&7 != 0 || k[31]&128 != 0 || k[31]&64 == 0 {
		t.Fatalf("not clamped: %x", k)
	}
	if _, err := Generate(bytes.NewReader(nil)); err == nil {
		t.Fatal("Generate from empty reader succeeded")
	}
	if k.IsZero() || !(Key{}).IsZero() {
		t.Fatal("IsZero wrong")
	}
}

func TestTextMarshal(t *testing.T) {
	k, _ := Parse(vecPub)
	b, _ := k.MarshalText()
	var back Key
	if err := back.UnmarshalText(b); err != nil || back != k {
		t.Fatalf("round trip: %v %v", back, err)
	}
	if err := back.UnmarshalText([]byte("nope")); err == nil {
		t.Fatal("UnmarshalText accepted garbage")
	}
	if len(k.Hex()) != 64 {
		t.Fatalf("Hex len %d", len(k.Hex()))
	}
}

func TestLoadOrCreate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "private.key")
	k1, created, err := LoadOrCreate(path, nil)
	if err != nil || !created {
		t.Fatalf("first: %v created=%v", err, created)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	k2, created, err := LoadOrCreate(path, nil)
	if err != nil || created || k2 != k1 {
		t.Fatalf("second: %v created=%v same=%v", err, created, k1 == k2)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temp files left: %v", entries)
	}
}

func TestLoadOrCreateRefusesCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "private.key")
	if err := os.WriteFile(path, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreate(path, nil); err == nil || !errors.Is(err, ErrInvalid) {
		t.Fatalf("corrupt key accepted: %v", err)
	}
	b, _ := os.ReadFile(path)
	if string(b) != "garbage\n" {
		t.Fatal("corrupt key file was overwritten")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(vecPub)
	f.Add("")
	f.Add(strings.Repeat("A", 44))
	f.Fuzz(func(t *testing.T, s string) {
		k, err := Parse(s)
		if err != nil {
			return
		}
		back, err := Parse(k.String())
		if err != nil || back != k {
			t.Fatalf("re-parse of %q failed: %v", k.String(), err)
		}
	})
}
