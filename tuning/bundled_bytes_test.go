package tuning

// BundledBytes returns a copy of the bundled profile file, byte for byte
// (tests compare the packaged file with it).
func BundledBytes() []byte { return append([]byte(nil), bundled...) }
