package tuning

import (
	_ "embed"
	"fmt"
)

// BundledPath is where the package installs the bundled profile.
const BundledPath = "/usr/lib/sysctl.d/60-exitd.conf"

//go:embed 60-exitd.conf
var bundled []byte

// Bundled parses the bundled profile. The profile does not size conntrack:
// add that with WithConntrack.
func Bundled() (*Profile, error) {
	p, err := Parse(BundledPath, bundled)
	if err != nil {
		return nil, fmt.Errorf("tuning: bundled profile: %w", err)
	}
	return p, nil
}

// BundledBytes returns a copy of the bundled profile file, byte for byte
// (the packaging and `exitd tune` tests compare installed files with it).
func BundledBytes() []byte { return append([]byte(nil), bundled...) }
