// Package layering holds the repository's one layering test: a table of
// forbidden imports between exitd's packages (docs/architecture.md),
// checked against `go list`. It has no code of its own.
package layering
