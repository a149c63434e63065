// Package pattern implements Haketilo URL patterns (as served by Hydrilla's
// /query) and an immutable index that answers "which patterns match this
// URL" without scanning every pattern.
//
// A pattern is scheme://host[:port]/path. The schemes are http, https, ftp
// and file, plus the pattern-only http* (both http and https). The leftmost
// host label and the last path segment may be a wildcard: "*" stands for
// exactly one label or segment, "**" for two or more, "***" for zero or more.
// Anywhere else, and in forms like "a*" or "****", an asterisk is literal.
// The semantics follow Hydrilla 3.x (url_patterns.py and pattern_tree.py);
// see docs/hydrilla.md, "URL patterns", for the contract.
package pattern

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrInvalid is wrapped by every error Parse, ParseURL and Build return, so
// callers can tell a bad pattern or URL (a client error) from anything else
// with errors.Is.
var ErrInvalid = errors.New("invalid URL or URL pattern")

// parseError carries the offending input and the reason; its text is meant to
// be shown to whoever supplied the input (e.g. in a 400 answer).
type parseError struct {
	input  string
	url    bool
	reason string
}

func (e *parseError) Error() string {
	kind := "URL pattern"
	if e.url {
		kind = "URL"
	}
	return fmt.Sprintf("invalid %s %q: %s", kind, e.input, e.reason)
}

func (e *parseError) Unwrap() error { return ErrInvalid }

// wildcard is the kind of a leftmost host label or last path segment. The
// numeric order is also the result order at one trie node (literal first).
type wildcard uint8

const (
	wildNone wildcard = iota // no wildcard: exact number of labels/segments
	wildOne                  // "*": exactly one more
	wildTwo                  // "**": two or more
	wildAny                  // "***": zero or more
	numSlots
)

func wildcardOf(s string) wildcard {
	switch s {
	case "*":
		return wildOne
	case "**":
		return wildTwo
	case "***":
		return wildAny
	}
	return wildNone
}

func (w wildcard) String() string {
	return [...]string{"", "*", "**", "***"}[w]
}

// admits reports whether w accepts r labels/segments beyond the literal ones
// (see also accepts).
func (w wildcard) admits(r int) bool {
	switch w {
	case wildNone:
		return r == 0
	case wildOne:
		return r == 1
	case wildTwo:
		return r >= 2
	default:
		return r >= 0
	}
}

// accepts reports whether a pattern ending in w matches a URL whose labels or
// segments beyond the pattern's literal ones are rest. Besides what admits
// allows, one URL label or segment spelled exactly like w reaches it:
// Hydrilla keys literals and wildcards in one table, so a URL's "**" walks
// into the "**" node as a literal would.
func (w wildcard) accepts(rest []string) bool {
	return w.admits(len(rest)) || w.spelledBy(rest)
}

// spelledBy reports whether rest is the one label or segment spelling w.
func (w wildcard) spelledBy(rest []string) bool {
	return w != wildNone && len(rest) == 1 && wildcardOf(rest[0]) == w
}

// schemeSet is a bit set so that http* is simply {http, https}.
type schemeSet uint8

const (
	schemeHTTP schemeSet = 1 << iota
	schemeHTTPS
	schemeFTP
	schemeFile

	schemeHTTPAny = schemeHTTP | schemeHTTPS
)

// allSchemes lists the single schemes in a fixed order, for iteration.
var allSchemes = [...]schemeSet{schemeHTTP, schemeHTTPS, schemeFTP, schemeFile}

func (s schemeSet) name() string {
	switch s {
	case schemeHTTP:
		return "http"
	case schemeHTTPS:
		return "https"
	case schemeFTP:
		return "ftp"
	case schemeFile:
		return "file"
	case schemeHTTPAny:
		return "http*"
	}
	return "?"
}

// defaultPort is the port a URL of scheme s uses when it names none; an
// explicit default port is normalised away so both spellings are one key.
func (s schemeSet) defaultPort() int {
	switch s {
	case schemeHTTP:
		return 80
	case schemeHTTPS:
		return 443
	case schemeFTP:
		return 21
	}
	return 0
}

// Pattern is one parsed, normalised Haketilo URL pattern (from Parse) or
// concrete URL (from ParseURL). The zero value matches nothing.
type Pattern struct {
	schemes schemeSet
	// port is an explicit, non-default port; 0 means the scheme's default
	// (or none at all for file://), which is how Hydrilla keys its trie.
	port uint16
	// host holds the literal labels, leftmost first, lower-cased, without
	// empty labels and without the wildcard (kept in hostWild).
	host     []string
	hostWild wildcard
	// path holds the literal segments, without empty ones and without the
	// wildcard (kept in pathWild). Case and percent-escapes are kept as is.
	path     []string
	pathWild wildcard
	// slash records whether the path ends in '/'.
	slash bool
}

// Parse parses a URL pattern. It rejects queries, fragments, unknown schemes,
// ports on http* or file://, hosts on file://, ports 0 and above 65535,
// empty hosts, whitespace, control characters and invalid UTF-8. Like
// Hydrilla (through urlparse) it drops the path parameters of the last
// segment (";..."), except in file:// patterns. Every error wraps ErrInvalid.
func Parse(s string) (Pattern, error) {
	return parse(s, true, nil, nil)
}

// A Parser parses patterns as Parse does, for a caller that parses many and
// keeps them a while (to add them to a Builder on another goroutine): it
// keeps the labels and segments of all of them in a few large blocks rather
// than two small slices each. What it returns stays valid. A Parser is not
// safe for concurrent use; its zero value is ready.
type Parser struct {
	host, path []string // reused by every parse
	blocks     [][]string
	cur        int // the block being filled
}

// Reset makes the Parser reuse its memory for what it parses next: what it
// returned before must no longer be used.
func (ps *Parser) Reset() {
	for i := range ps.blocks {
		clear(ps.blocks[i])
		ps.blocks[i] = ps.blocks[i][:0]
	}
	ps.cur = 0
}

// Parse is the package's Parse.
func (ps *Parser) Parse(s string) (Pattern, error) {
	p, err := parse(s, true, &ps.host, &ps.path)
	if err != nil {
		return Pattern{}, err
	}
	p.host, p.path = ps.keep(p.host), ps.keep(p.path)
	return p, nil
}

// keep copies xs to the blocks, nil when empty as splitDrop makes it.
func (ps *Parser) keep(xs []string) []string {
	if len(xs) == 0 {
		return nil
	}
	for ps.cur < len(ps.blocks) && cap(ps.blocks[ps.cur])-len(ps.blocks[ps.cur]) < len(xs) {
		ps.cur++
	}
	if ps.cur == len(ps.blocks) {
		ps.blocks = append(ps.blocks, make([]string, 0, max(512, len(xs))))
	}
	b := &ps.blocks[ps.cur]
	n := len(*b)
	*b = append(*b, xs...)
	return (*b)[n:len(*b):len(*b)]
}

// ParseURL parses a concrete URL to look patterns up with. Unlike Parse it
// drops the query and fragment instead of rejecting them, refuses http*, and
// keeps asterisks as ordinary labels and segments (though one spelled "*",
// "**" or "***" also reaches that wildcard, see Matches). It drops the path
// parameters as Parse does: "https://example.com/a/b;x" is looked up as
// "https://example.com/a/b". Every error wraps ErrInvalid; a caller serving
// /query answers it with 400.
func ParseURL(s string) (Pattern, error) {
	return parse(s, false, nil, nil)
}

// parse is Parse or ParseURL. hostBuf and pathBuf, when not nil, are reused
// for the host labels and path segments (and keep what they grew to), so
// the result's slices are valid only until the next parse with them.
func parse(s string, isPattern bool, hostBuf, pathBuf *[]string) (Pattern, error) {
	fail := func(format string, args ...any) (Pattern, error) {
		return Pattern{}, &parseError{input: s, url: !isPattern, reason: fmt.Sprintf(format, args...)}
	}

	// Hydrilla leaves such characters to urllib, which silently strips
	// some of them; rejecting them keeps one string one meaning.
	if !utf8.ValidString(s) {
		return fail("not valid UTF-8")
	}
	// One pass finds bad characters and where the query or fragment
	// starts (cut is len(s) when there is neither).
	cut := len(s)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c <= ' ' || c == 0x7f:
			return fail("contains a space or control character at byte %d", i)
		case (c == '?' || c == '#') && cut == len(s):
			cut = i
		}
	}

	schemeEnd := strings.Index(s[:cut], "://")
	if schemeEnd < 0 {
		return fail("no scheme (want scheme://...)")
	}
	var p Pattern
	switch scheme := strings.ToLower(s[:schemeEnd]); scheme {
	case "http":
		p.schemes = schemeHTTP
	case "https":
		p.schemes = schemeHTTPS
	case "ftp":
		p.schemes = schemeFTP
	case "file":
		p.schemes = schemeFile
	case "http*":
		if !isPattern {
			return fail("the http* scheme is only allowed in patterns")
		}
		p.schemes = schemeHTTPAny
	default:
		return fail("unsupported scheme %q (want http, https, ftp or file)", scheme)
	}

	if cut < len(s) && isPattern {
		if s[cut] == '?' {
			return fail("a pattern may not have a query ('?')")
		}
		return fail("a pattern may not have a fragment ('#')")
	}
	// A URL's query and fragment play no part in matching.
	rest := s[schemeEnd+len("://") : cut]

	authority, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}

	if p.schemes == schemeFile {
		if authority != "" {
			return fail("file:// takes no host and no port")
		}
	} else {
		host, port, reason := splitAuthority(authority)
		if reason != "" {
			return fail("%s", reason)
		}
		if port != "" {
			if p.schemes == schemeHTTPAny {
				return fail("an http*:// pattern may not carry a port")
			}
			n, reason := parsePort(port)
			if reason != "" {
				return fail("%s", reason)
			}
			if n != p.schemes.defaultPort() {
				p.port = uint16(n)
			}
		}
		p.host = splitDrop(strings.ToLower(host), '.', hostBuf)
		if isPattern && len(p.host) > 0 {
			if w := wildcardOf(p.host[0]); w != wildNone {
				p.hostWild, p.host = w, p.host[1:]
			}
		}
		if len(p.host) == 0 && p.hostWild == wildNone {
			return fail("empty host")
		}
	}

	// urllib's urlparse, which Hydrilla parses both with, splits the
	// path parameters (";...") off the last segment for every scheme here
	// but file, and Hydrilla never looks at them.
	if p.schemes != schemeFile {
		path = dropParams(path)
	}
	p.path = splitDrop(path, '/', pathBuf)
	p.slash = strings.HasSuffix(path, "/")
	if isPattern && len(p.path) > 0 {
		if w := wildcardOf(p.path[len(p.path)-1]); w != wildNone {
			p.pathWild, p.path = w, p.path[:len(p.path)-1]
		}
	}
	return p, nil
}

// dropParams cuts path at the first ';' of its last segment, as urlparse
// does: "/a/b;x" is "/a/b", "/a/;x" is "/a/", and "/a;x/b" stays as it is.
func dropParams(path string) string {
	last := strings.LastIndexByte(path, '/')
	if i := strings.IndexByte(path[last+1:], ';'); i >= 0 {
		return path[:last+1+i]
	}
	return path
}

// splitAuthority drops user info and splits host and port the way Python's
// urllib does (the first ':' outside brackets starts the port). An empty port
// after ':' is no port, as in urllib and RFC 3986. A non-empty reason means
// the authority is invalid.
func splitAuthority(a string) (host, port, reason string) {
	if i := strings.LastIndexByte(a, '@'); i >= 0 {
		a = a[i+1:]
	}
	if strings.HasPrefix(a, "[") {
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return "", "", "unterminated '[' in host"
		}
		host = a[1:end]
		if after := a[end+1:]; after != "" {
			if after[0] != ':' {
				return "", "", "unexpected characters after ']' in host"
			}
			port = after[1:]
		}
		if addr, err := netip.ParseAddr(host); err != nil || !addr.Is6() {
			return "", "", "bracketed host is not an IPv6 address"
		}
		return host, port, ""
	}
	if strings.IndexByte(a, '[') >= 0 || strings.IndexByte(a, ']') >= 0 {
		return "", "", "'[' or ']' outside a bracketed IPv6 host"
	}
	host, port, _ = strings.Cut(a, ":")
	if host == "" {
		return "", "", "empty host"
	}
	return host, port, ""
}

func parsePort(s string) (int, string) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Sprintf("port %q is not a decimal number", s)
		}
		// Stop accumulating once out of range so long inputs cannot
		// overflow.
		if n <= 65535 {
			n = n*10 + int(c-'0')
		}
	}
	if n == 0 || n > 65535 {
		return 0, fmt.Sprintf("port %s is out of range (1-65535)", s)
	}
	return n, ""
}

// splitDrop splits s on sep and drops empty parts. It returns nil when
// nothing is left so that equal patterns compare equal field by field. With
// a buf it appends to (*buf)[:0] instead of allocating, and keeps the result
// in *buf.
func splitDrop(s string, sep byte, buf *[]string) []string {
	if buf != nil {
		*buf = appendSplit((*buf)[:0], s, sep)
		return *buf
	}
	n := 0
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], sep)
		if j < 0 {
			n++
			break
		}
		if j > 0 {
			n++
		}
		i += j + 1
	}
	if n == 0 {
		return nil
	}
	return appendSplit(make([]string, 0, n), s, sep)
}

// appendSplit appends the non-empty parts of s split on sep to out.
func appendSplit(out []string, s string, sep byte) []string {
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], sep)
		if j < 0 {
			return append(out, s[i:])
		}
		if j > 0 {
			out = append(out, s[i:i+j])
		}
		i += j + 1
	}
	return out
}

// concrete reports whether p can stand for a single URL: one scheme and no
// wildcards. Only such values are matched against patterns.
func (p Pattern) concrete() bool {
	switch p.schemes {
	case schemeHTTP, schemeHTTPS, schemeFTP, schemeFile:
	default:
		return false
	}
	return p.hostWild == wildNone && p.pathWild == wildNone
}

// Matches reports whether pattern p matches URL u. It checks p directly,
// without an index, and defines what Index.Match must find. As in Hydrilla,
// a URL label or segment spelled exactly like the pattern's wildcard, where
// that wildcard stands, matches too: "https://example.com/a/**" matches the
// URL "https://example.com/a/**". u should come
// from ParseURL; a u with wildcards or the http* scheme matches nothing.
func (p Pattern) Matches(u Pattern) bool {
	if !u.concrete() || p.schemes&u.schemes == 0 || p.port != u.port {
		return false
	}
	// Host labels are compared from the right (the TLD end).
	r := len(u.host) - len(p.host)
	if r < 0 || !p.hostWild.accepts(u.host[:r]) {
		return false
	}
	for i, l := range p.host {
		if u.host[r+i] != l {
			return false
		}
	}
	if p.slash && !u.slash {
		return false
	}
	if len(u.path) < len(p.path) || !p.pathWild.accepts(u.path[len(p.path):]) {
		return false
	}
	for i, s := range p.path {
		if u.path[i] != s {
			return false
		}
	}
	return true
}

// String returns the normalised form: lower-case scheme and host, default
// port dropped, empty labels and segments dropped. Parse (or, for a URL,
// ParseURL) of the result yields an equal value.
func (p Pattern) String() string {
	var b strings.Builder
	b.WriteString(p.schemes.name())
	b.WriteString("://")
	if p.schemes != schemeFile {
		labels := p.host
		if p.hostWild != wildNone {
			labels = append([]string{p.hostWild.String()}, labels...)
		}
		host := strings.Join(labels, ".")
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		b.WriteString(host)
		if p.port != 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(int(p.port)))
		}
	}
	for _, s := range p.path {
		b.WriteByte('/')
		b.WriteString(s)
	}
	if p.pathWild != wildNone {
		b.WriteByte('/')
		b.WriteString(p.pathWild.String())
	}
	if p.slash {
		b.WriteByte('/')
	}
	return b.String()
}
