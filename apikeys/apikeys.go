// Package apikeys holds the keys allowed to write the mirror's hosted owners
// (--api-keys-file). The file names each key by its sha256 only, so neither the
// file nor the process ever holds a key itself: a presented key is hashed and
// compared, in constant time, with every hash.
//
// File format, one key a line:
//
//	# comment
//	NAME SHA256HEX OWNERS
//
// NAME labels the key in logs (never the key itself); SHA256HEX is the sha256
// of the key, 64 hex digits; OWNERS is a comma-separated list of owners the key
// may write, or "*" for every hosted owner.
package apikeys

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"github.com/regmirror/regmirror/refpack"
)

// ErrBadFile is wrapped by every error about the content of a keys file.
var ErrBadFile = errors.New("invalid API keys file")

// Key is one line of the file: a name and what the key may write. The key's
// hash is kept unexported so nothing prints it by accident.
type Key struct {
	// Name labels the key in logs and audit lines.
	Name string
	// Owners are the owners the key may write; nil when AllOwners.
	Owners []string
	// AllOwners is "*": every hosted owner.
	AllOwners bool

	hash [sha256.Size]byte
}

// May reports whether the key may write owner.
func (k *Key) May(owner string) bool {
	if k.AllOwners {
		return true
	}
	for _, o := range k.Owners {
		if o == owner {
			return true
		}
	}
	return false
}

// Set is the loaded keys file. It is safe for concurrent use; Reload swaps
// the keys atomically, so a request sees the old set or the new, never a mix.
type Set struct {
	path string
	keys atomic.Pointer[[]*Key]
}

// Load reads the keys file at path.
func Load(path string) (*Set, error) {
	s := &Set{path: path}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// New returns a set of the given keys, for tests and callers without a file.
func New(keys []*Key) *Set {
	s := &Set{}
	s.keys.Store(&keys)
	return s
}

// Reload reads the file again. On an error the keys in use stay as they were.
func (s *Set) Reload() error {
	if s.path == "" {
		return nil
	}
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("API keys file: %w", err)
	}
	defer f.Close()
	keys, err := Parse(f)
	if err != nil {
		return fmt.Errorf("%s: %w", s.path, err)
	}
	s.keys.Store(&keys)
	return nil
}

// Len is the number of keys.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(*s.keys.Load())
}

// Keys returns the loaded keys (for the status page and check-config: names
// and owners; the hashes stay inside).
func (s *Set) Keys() []*Key {
	if s == nil {
		return nil
	}
	return *s.keys.Load()
}

// maxLine bounds one line of the file.
const maxLine = 64 << 10

// Parse reads a keys file. Errors wrap ErrBadFile and name the line; they
// never quote a hash.
func Parse(r io.Reader) ([]*Key, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLine)
	var keys []*Key
	names := map[string]int{}
	hashes := map[[sha256.Size]byte]int{}
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 3 {
			return nil, fmt.Errorf("%w: line %d: want NAME SHA256HEX OWNERS, got %d fields", ErrBadFile, n, len(fields))
		}
		k := &Key{Name: fields[0]}
		if prev, dup := names[k.Name]; dup {
			return nil, fmt.Errorf("%w: line %d: key name %q is already used on line %d", ErrBadFile, n, k.Name, prev)
		}
		raw, err := hex.DecodeString(fields[1])
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("%w: line %d (key %q): the second field must be the sha256 of the key, 64 hex digits", ErrBadFile, n, k.Name)
		}
		copy(k.hash[:], raw)
		if prev, dup := hashes[k.hash]; dup {
			return nil, fmt.Errorf("%w: line %d (key %q): the same key is already on line %d", ErrBadFile, n, k.Name, prev)
		}
		if fields[2] == "*" {
			k.AllOwners = true
		} else {
			for o := range strings.SplitSeq(fields[2], ",") {
				if !refpack.ValidSegment(o) {
					return nil, fmt.Errorf("%w: line %d (key %q): owner %q is not [A-Za-z0-9_-] (starting and ending alphanumeric); OWNERS is a comma-separated list or *", ErrBadFile, n, k.Name, o)
				}
				k.Owners = append(k.Owners, o)
			}
		}
		names[k.Name], hashes[k.hash] = n, n
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadFile, err)
	}
	return keys, nil
}

// Lookup returns the key whose hash is the sha256 of secret. Every hash is
// compared, in constant time, whatever matches, so the time taken says nothing
// about which key or how much of it matched.
func (s *Set) Lookup(secret string) (*Key, bool) {
	if s == nil || secret == "" {
		return nil, false
	}
	sum := sha256.Sum256([]byte(secret))
	var found *Key
	for _, k := range *s.keys.Load() {
		if subtle.ConstantTimeCompare(sum[:], k.hash[:]) == 1 {
			found = k
		}
	}
	return found, found != nil
}

// FromRequest returns the key a request presents: X-API-Key, else the token
// of Authorization: Bearer (as the RefPack CLI sends it); "" for none.
func FromRequest(h http.Header) string {
	if k := strings.TrimSpace(h.Get("X-API-Key")); k != "" {
		return k
	}
	a := strings.TrimSpace(h.Get("Authorization"))
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// Decision is the answer to "may this request write that owner".
type Decision int

const (
	// Allowed: the key may write the owner.
	Allowed Decision = iota
	// Unauthorized (401): no key, or a key the file does not hold.
	Unauthorized
	// Forbidden (403): a known key not allowed for that owner.
	Forbidden
)

// Status is the HTTP status of a refusal (0 for Allowed).
func (d Decision) Status() int {
	switch d {
	case Unauthorized:
		return http.StatusUnauthorized
	case Forbidden:
		return http.StatusForbidden
	}
	return 0
}

// Authorize decides whether the request's key may write owner; the key is
// returned when known (its Name is what logs may show).
func (s *Set) Authorize(h http.Header, owner string) (*Key, Decision) {
	k, ok := s.Lookup(FromRequest(h))
	switch {
	case !ok:
		return nil, Unauthorized
	case !k.May(owner):
		return k, Forbidden
	}
	return k, Allowed
}

// Hash returns the SHA256HEX of a key as the file wants it, for the README's
// walk-through and tests.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Line returns one line of a keys file, for tests and tooling.
func Line(name, secret string, owners ...string) string {
	o := "*"
	if len(owners) > 0 {
		o = strings.Join(owners, ",")
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s %s\n", name, Hash(secret), o)
	return b.String()
}

// Writable returns the owners of hosted the key may write, in hosted's order:
// for the RefPack CLI's raw push, which names no owner, the one it returns is
// where the package goes.
func (k *Key) Writable(hosted []string) []string {
	var out []string
	for _, o := range hosted {
		if k.May(o) {
			out = append(out, o)
		}
	}
	return out
}
