package hydrillatest

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// This is a small brute-force Haketilo pattern matcher, enough for a test
// upstream: /query checks every pattern of every mapping. The mirror's own
// matcher (package pattern, with an index) is what must be fast and complete;
// this one exists so the test upstream does not depend on the code under
// test, and implements the semantics of docs/hydrilla.md directly.

var errPattern = errors.New("bad URL or pattern")

// wildcard kinds, in the order the real pattern tree yields them at a node.
const (
	kindLiteral   = iota // no wildcard
	kindOne              // *   exactly one label/segment
	kindTwoOrMore        // **
	kindAny              // *** zero or more
)

var defaultPorts = map[string]int{"http": 80, "https": 443, "ftp": 21}

// parsed is a URL or pattern split the way matching needs it.
type parsed struct {
	scheme   string   // "http*" only in patterns
	port     int      // 0: none or the scheme's default
	host     []string // labels, lower-cased, wildcard removed
	hostKind int
	path     []string // segments, wildcard removed
	pathKind int
	slash    bool // path ends in "/"
}

func wildcardKind(s string) int {
	switch s {
	case "*":
		return kindOne
	case "**":
		return kindTwoOrMore
	case "***":
		return kindAny
	}
	return kindLiteral
}

// parse splits s; isPattern allows http*:// and wildcards and forbids a
// query or fragment. A URL's query and fragment are dropped.
func parse(s string, isPattern bool) (parsed, error) {
	var p parsed
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return p, fmt.Errorf("%w: no scheme in %q", errPattern, s)
	}
	p.scheme = strings.ToLower(scheme)
	switch p.scheme {
	case "http", "https", "ftp", "file":
	case "http*":
		if !isPattern {
			return p, fmt.Errorf("%w: scheme http* in a URL", errPattern)
		}
	default:
		return p, fmt.Errorf("%w: scheme %q", errPattern, scheme)
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		if isPattern {
			return p, fmt.Errorf("%w: query or fragment in pattern %q", errPattern, s)
		}
		rest = rest[:i]
	}
	authority, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		authority = authority[i+1:] // userinfo plays no part in matching
	}
	host := authority
	if i := strings.LastIndexByte(authority, ':'); i >= 0 && !strings.HasSuffix(authority, "]") {
		host = authority[:i]
		port, err := strconv.Atoi(authority[i+1:])
		if err != nil || port <= 0 || port > 65535 {
			return p, fmt.Errorf("%w: port in %q", errPattern, s)
		}
		if p.scheme == "http*" || p.scheme == "file" {
			return p, fmt.Errorf("%w: port with scheme %s", errPattern, p.scheme)
		}
		if port != defaultPorts[p.scheme] {
			p.port = port
		}
	}
	if p.scheme == "file" {
		if host != "" {
			return p, fmt.Errorf("%w: host in file URL %q", errPattern, s)
		}
	} else {
		for _, l := range strings.Split(strings.ToLower(host), ".") {
			if l != "" {
				p.host = append(p.host, l)
			}
		}
		if len(p.host) == 0 {
			return p, fmt.Errorf("%w: no host in %q", errPattern, s)
		}
	}
	for _, seg := range strings.Split(path, "/") {
		if seg != "" {
			p.path = append(p.path, seg)
		}
	}
	p.slash = strings.HasSuffix(path, "/")
	if isPattern {
		if len(p.host) > 0 {
			if k := wildcardKind(p.host[0]); k != kindLiteral {
				p.hostKind, p.host = k, p.host[1:]
			}
		}
		if n := len(p.path); n > 0 {
			if k := wildcardKind(p.path[n-1]); k != kindLiteral {
				p.pathKind, p.path = k, p.path[:n-1]
			}
		}
	}
	return p, nil
}

// countOK reports whether rest leftover labels or segments satisfy kind.
func countOK(kind, rest int) bool {
	switch kind {
	case kindLiteral:
		return rest == 0
	case kindOne:
		return rest == 1
	case kindTwoOrMore:
		return rest >= 2
	default:
		return rest >= 0
	}
}

// matches reports whether pattern pat matches URL u.
func matches(pat, u parsed) bool {
	if pat.scheme != u.scheme && !(pat.scheme == "http*" && (u.scheme == "http" || u.scheme == "https")) {
		return false
	}
	if pat.port != u.port {
		return false
	}
	if pat.slash && !u.slash {
		return false
	}
	// Host: the pattern's literal labels are the URL's rightmost ones.
	if len(pat.host) > len(u.host) {
		return false
	}
	off := len(u.host) - len(pat.host)
	for i, l := range pat.host {
		if u.host[off+i] != l {
			return false
		}
	}
	if !countOK(pat.hostKind, off) {
		return false
	}
	// Path: the pattern's literal segments are the URL's leading ones.
	if len(pat.path) > len(u.path) {
		return false
	}
	for i, s := range pat.path {
		if u.path[i] != s {
			return false
		}
	}
	return countOK(pat.pathKind, len(u.path)-len(pat.path))
}

// specificity orders matches as the real pattern tree yields them: deepest
// literal domain first, then at each domain node literal, *, **, ***; the
// same within the path; then, for a URL ending in "/", patterns ending in
// "/" before the others. Smaller sorts first.
type specificity [5]int

func specificityOf(pat, u parsed) specificity {
	slash := 1
	if u.slash && pat.slash {
		slash = 0
	}
	return specificity{-len(pat.host), pat.hostKind, -len(pat.path), pat.pathKind, slash}
}

func (a specificity) less(b specificity) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// sampleURL returns a URL pattern p matches, for tests and benchmarks that
// need queries with answers.
func sampleURL(pattern string) (string, bool) {
	p, err := parse(pattern, true)
	if err != nil {
		return "", false
	}
	scheme := p.scheme
	if scheme == "http*" {
		scheme = "https"
	}
	host := strings.Join(p.host, ".")
	switch p.hostKind {
	case kindOne:
		host = "a." + host
	case kindTwoOrMore:
		host = "a.b." + host
	}
	host = strings.Trim(host, ".")
	if host == "" && scheme != "file" {
		host = "example" // "***" alone matches any host
	}
	if p.port != 0 {
		host += ":" + strconv.Itoa(p.port)
	}
	segs := append([]string(nil), p.path...)
	switch p.pathKind {
	case kindOne:
		segs = append(segs, "x")
	case kindTwoOrMore:
		segs = append(segs, "x", "y")
	}
	path := "/" + strings.Join(segs, "/")
	if p.slash && len(segs) > 0 {
		path += "/"
	}
	return scheme + "://" + host + path, true
}
