package sched

// Validate reports whether SetConfig (or NewDevice) would accept c, without
// applying it: a reload checks everything before it changes anything.
func (c Config) Validate() error {
	_, err := c.normalize(1420)
	return err
}
