package keys

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// LoadOrCreate reads the private key stored in path, or generates one from r
// and writes it with mode 0600 when the file does not exist. A file that exists
// but does not hold a valid key is an error, never silently replaced: the
// node's identity is what every member's config names.
func LoadOrCreate(path string, r io.Reader) (Key, bool, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		k, perr := Parse(string(b))
		if perr != nil {
			return Key{}, false, fmt.Errorf("keys: %s: %w", path, perr)
		}
		return k, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return Key{}, false, fmt.Errorf("keys: read %w", err)
	}
	k, err := Generate(r)
	if err != nil {
		return Key{}, false, err
	}
	if err := writeAtomic(path, []byte(k.String()+"\n"), syncDir); err != nil {
		return Key{}, false, err
	}
	return k, true, nil
}

// writeAtomic writes data to path through a synced temporary file and a
// rename, then syncs the directory (sync, called with the directory) so
// the rename itself survives a crash: a crash leaves either no key or the
// whole key, never a node that forgets the identity it already handed out.
func writeAtomic(path string, data []byte, sync func(dir string) error) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keys: create %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".key-*")
	if err != nil {
		return fmt.Errorf("keys: create temp key file: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("keys: chmod %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("keys: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("keys: sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("keys: close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("keys: install %s: %w", path, err)
	}
	if err := sync(dir); err != nil {
		return fmt.Errorf("keys: sync %s: %w", dir, err)
	}
	return nil
}

// syncDir fsyncs a directory, making renames in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
