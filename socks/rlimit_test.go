package socks

import (
	"testing"
)

func TestRaiseNoFileLimit(t *testing.T) {
	soft, hard, err := RaiseNoFileLimit()
	if err != nil {
		t.Fatal(err)
	}
	if soft != hard || soft == 0 {
		t.Errorf("soft %d, hard %d; want soft raised to hard", soft, hard)
	}
}
