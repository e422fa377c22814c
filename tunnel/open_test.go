package tunnel

// Open is OpenLink followed by Start with no wrappers (the tests' way to
// get a running Tunnel; the daemon wraps the devices in dataplane).
func Open(opts Options) (*Tunnel, error) {
	l, err := OpenLink(opts)
	if err != nil {
		return nil, err
	}
	return l.Start(l.TUN(), l.Bind())
}
