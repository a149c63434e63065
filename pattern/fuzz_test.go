package pattern

import (
	"slices"
	"strings"
	"testing"
)

// literalURL spells out the URL made of a wildcard-free pattern's own parts
// (http* picks http), which the pattern must match.
func literalURL(p Pattern) string {
	s := p.String()
	if p.schemes == schemeHTTPAny {
		s = "http" + strings.TrimPrefix(s, "http*")
	}
	return s
}

// FuzzParse checks that neither parser panics, that normalisation is
// idempotent, and that a pattern without wildcards matches the URL made of
// its own literal parts, both directly and through an Index. The seed corpus
// in testdata/fuzz/FuzzParse runs as an ordinary test.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"https://example.com/a/b",
		"http*://***.example.org/path/*",
		"file:///etc/passwd",
		"ftp://user@Files.Example:21/pub/",
		"http://[::1]:8080/x?y#z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if u, err := ParseURL(s); err == nil {
			if !u.concrete() {
				t.Fatalf("ParseURL(%q) is not concrete: %v", s, u)
			}
			v, err := ParseURL(u.String())
			if err != nil || v.String() != u.String() {
				t.Fatalf("ParseURL(%q) = %q, reparsed: %q, %v", s, u, v, err)
			}
		}

		p, err := Parse(s)
		if err != nil {
			return
		}
		q, err := Parse(p.String())
		if err != nil || q.String() != p.String() {
			t.Fatalf("Parse(%q) = %q, reparsed: %q, %v", s, p, q, err)
		}
		if p.hostWild != wildNone || p.pathWild != wildNone {
			return
		}
		lit := literalURL(p)
		u, err := ParseURL(lit)
		if err != nil {
			t.Fatalf("pattern %q: its literal URL %q does not parse: %v", s, lit, err)
		}
		if !p.Matches(u) {
			t.Fatalf("pattern %q does not match its literal URL %q", s, lit)
		}
		ix, errs := Build([]Item[int]{{s, 7}})
		if len(errs) != 0 || !slices.Equal(ix.Match(u), []int{7}) {
			t.Fatalf("index of %q: Match(%q) = %v, errors %v", s, lit, ix.Match(u), errs)
		}
	})
}
