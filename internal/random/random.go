// Package random makes the random strings that baton stores on the server:
// lock tokens, waiters' ids, the suffixes of election terms and of default
// identities. One place, so that they all come from crypto/rand and share
// one alphabet.
package random

import (
	"crypto/rand"
	"encoding/base64"
)

// MaxBytes is the most random bytes String encodes.
const MaxBytes = 32

// String returns n random bytes from crypto/rand, base64url-encoded without
// padding (4 characters per 3 bytes, from A-Z, a-z, 0-9, '-' and '_': never
// '#', '{' or '}', which election tokens and cluster hash tags give a
// meaning). n must be between 0 and MaxBytes; the bytes live on the stack
// (without the race detector, the string is the only allocation), which
// matters on the lock's acquisition path.
func String(n int) string {
	var b [MaxBytes]byte
	_, _ = rand.Read(b[:n]) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b[:n])
}
