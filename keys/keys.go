// Package keys holds WireGuard Curve25519 keys: parsing the base64 form
// members and operators paste, generating private keys, deriving public keys,
// and persisting the node's private key.
//
// It must not import any other exitd package.
package keys

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/curve25519"
)

// Len is the length of a key in bytes.
const Len = 32

// Key is a Curve25519 key (public or private).
type Key [Len]byte

// ErrInvalid is wrapped by every parse error.
var ErrInvalid = errors.New("invalid WireGuard key")

// Parse decodes a standard base64 key as `wg genkey`/`wg pubkey` print it
// (44 characters ending in '='). Surrounding whitespace is ignored.
func Parse(s string) (Key, error) {
	var k Key
	s = strings.TrimSpace(s)
	if len(s) != base64.StdEncoding.EncodedLen(Len) {
		return k, fmt.Errorf("%w: want 44 base64 characters, got %d", ErrInvalid, len(s))
	}
	var buf [Len + 1]byte // Decode wants DecodedLen(44) = 33 bytes of room
	n, err := base64.StdEncoding.Strict().Decode(buf[:], []byte(s))
	if err != nil || n != Len {
		return Key{}, fmt.Errorf("%w: not base64 of 32 bytes", ErrInvalid)
	}
	copy(k[:], buf[:Len])
	return k, nil
}

// String is the base64 form.
func (k Key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// Hex is the lower-case hex form wireguard-go's UAPI expects.
func (k Key) Hex() string { return hex.EncodeToString(k[:]) }

// IsZero reports whether every byte is zero.
func (k Key) IsZero() bool {
	var z Key
	return subtle.ConstantTimeCompare(k[:], z[:]) == 1
}

// MarshalText implements encoding.TextMarshaler (base64).
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (base64).
func (k *Key) UnmarshalText(b []byte) error {
	p, err := Parse(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// Generate returns a new clamped private key read from r (crypto/rand when nil).
func Generate(r io.Reader) (Key, error) {
	if r == nil {
		r = rand.Reader
	}
	var k Key
	if _, err := io.ReadFull(r, k[:]); err != nil {
		return Key{}, fmt.Errorf("keys: generate: %w", err)
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k, nil
}

// Public derives the public key of a private key.
func (k Key) Public() Key {
	var pub Key
	out, err := curve25519.X25519(k[:], curve25519.Basepoint)
	if err != nil {
		// Only a low-order result errors; a clamped private key never yields one.
		return pub
	}
	copy(pub[:], out)
	return pub
}
