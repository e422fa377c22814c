package socks

import (
	"bytes"
	"go/format"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportsStdlibOnly enforces the layering in doc.go: the package (not
// its tests) imports the standard library only.
func TestImportsStdlibOnly(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if first, _, _ := strings.Cut(path, "/"); strings.Contains(first, ".") {
				t.Errorf("%s imports %s: the package is stdlib-only", f, path)
			}
		}
	}
}

func TestGofmt(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out, err := format.Source(src)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !bytes.Equal(src, out) {
			t.Errorf("%s is not gofmt-ed", f)
		}
	}
}

func TestRaiseNoFileLimit(t *testing.T) {
	soft, hard, err := RaiseNoFileLimit()
	if err != nil {
		t.Fatal(err)
	}
	if soft != hard || soft == 0 {
		t.Errorf("soft %d, hard %d; want soft raised to hard", soft, hard)
	}
}
