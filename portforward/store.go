package portforward

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// fileVersion is the format of the state file; Load refuses others.
const fileVersion = 1

// stateFile is the JSON document of a FileStore:
//
//	{"version": 1, "mappings": [{"member": "alice", "proto": "tcp",
//	  "internal": "10.99.0.2:6881", "external": 40000,
//	  "expires": "2026-01-02T15:04:05Z"}]}
type stateFile struct {
	Version  int       `json:"version"`
	Mappings []Mapping `json:"mappings"`
}

// FileStore is a Store in one JSON file, replaced atomically on every Save
// (temporary file in the same directory, fsync, rename, fsync of the
// directory) with mode 0600. Its methods must not be called concurrently
// (the Table calls them one at a time).
type FileStore struct {
	path string
}

var _ Store = (*FileStore)(nil)

// NewFileStore returns a store in the file path; its directory must exist.
func NewFileStore(path string) *FileStore { return &FileStore{path: path} }

// Load reads the file. A missing file is no mappings; anything else that
// cannot be read as a valid state file is an error naming the file.
func (f *FileStore) Load() ([]Mapping, error) {
	b, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("portforward: read state: %w", err)
	}
	var st stateFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("portforward: state file %s is malformed: %w", f.path, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("portforward: state file %s is malformed: data after the document", f.path)
	}
	if st.Version != fileVersion {
		return nil, fmt.Errorf("portforward: state file %s has version %d, want %d", f.path, st.Version, fileVersion)
	}
	if err := checkMappings(st.Mappings); err != nil {
		return nil, fmt.Errorf("portforward: state file %s: %w", f.path, err)
	}
	return st.Mappings, nil
}

// Save replaces the file with all.
func (f *FileStore) Save(all []Mapping) (err error) {
	if all == nil {
		all = []Mapping{}
	}
	b, err := json.MarshalIndent(stateFile{Version: fileVersion, Mappings: all}, "", "\t")
	if err != nil {
		return fmt.Errorf("portforward: encode state: %w", err)
	}
	b = append(b, '\n')
	dir, base := filepath.Split(f.path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("portforward: save state: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			err = fmt.Errorf("portforward: save state to %s: %w", f.path, err)
		}
	}()
	if err = tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err = tmp.Write(b); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), f.path); err != nil {
		return err
	}
	// The rename is durable once the directory is.
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
