package main

import (
	"fmt"
	"io"
	"strings"

	"rsc.io/qr"
)

// writeQR renders text as a QR code for a terminal: two modules per
// character cell with half blocks, dark on light, with the 4-module quiet
// zone scanners need. Level L keeps a full client config (~300 bytes) at a
// size that fits an 80×40 terminal.
func writeQR(w io.Writer, text string) error {
	code, err := qr.Encode(text, qr.L)
	if err != nil {
		return fmt.Errorf("qr: %w", err)
	}
	_, err = io.WriteString(w, renderQR(code.Size, code.Black))
	return err
}

// renderQR draws a size×size module grid; black reports dark modules
// (outside the grid is light). Light modules are drawn as block glyphs so
// the code shows on dark terminal themes too.
func renderQR(size int, black func(x, y int) bool) string {
	const quiet = 4
	dark := func(x, y int) bool {
		return x >= 0 && y >= 0 && x < size && y < size && black(x, y)
	}
	var b strings.Builder
	for y := -quiet; y < size+quiet; y += 2 {
		for x := -quiet; x < size+quiet; x++ {
			top, bottom := dark(x, y), dark(x, y+1)
			switch {
			case top && bottom:
				b.WriteRune(' ')
			case top:
				b.WriteRune('▄')
			case bottom:
				b.WriteRune('▀')
			default:
				b.WriteRune('█')
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}
