package pattern

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func buildStrings(t testing.TB, patterns ...string) *Index[string] {
	t.Helper()
	items := make([]Item[string], len(patterns))
	for i, p := range patterns {
		items[i] = Item[string]{p, p}
	}
	ix, errs := Build(items)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	return ix
}

// TestMatchOrder spells out Hydrilla's result order for one URL: deepest
// host node first, at each node exact before *, **, ***; per host the same
// for the path; slash patterns before the others at a path node; insertion
// order last.
func TestMatchOrder(t *testing.T) {
	want := []string{
		// host a.b.example.com exactly
		"https://a.b.example.com/x/y/",
		"https://a.b.example.com/x/y",
		"http*://a.b.example.com/x/y",
		"https://a.b.example.com/x/y/***/",
		"https://a.b.example.com/x/y/***",
		"https://a.b.example.com/x/*/",
		"https://a.b.example.com/x/*",
		"https://a.b.example.com/x/***",
		"https://a.b.example.com/**",
		"https://a.b.example.com/***",
		// then ***.a.b.example.com
		"https://***.a.b.example.com/x/y",
		// *.b.example.com, ***.b.example.com
		"https://*.b.example.com/***",
		"https://***.b.example.com/x/y/",
		// **.example.com, ***.example.com
		"https://**.example.com/x/y",
		"https://***.example.com/***",
		// **.com
		"https://**.com/x/y",
		// *** alone
		"https://***/***",
	}
	nonMatching := []string{
		"http://a.b.example.com/x/y",
		"https://*.example.com/x/y",
		"https://**.b.example.com/x/y",
		"https://a.b.example.com/x/y/z",
		"https://a.b.example.com/x/**",
		"https://a.b.example.com:8443/x/y",
		"https://a.b.example.com/x/y/*",
		"https://b.example.com/x/y",
		"ftp://a.b.example.com/x/y",
	}
	// Insert in a scrambled order so only the specificity rules, not the
	// insertion order, can produce want.
	all := append(slices.Clone(nonMatching), want...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	// Keep the one deliberate insertion-order tie in order.
	i1 := slices.Index(all, "https://a.b.example.com/x/y")
	i2 := slices.Index(all, "http*://a.b.example.com/x/y")
	if i1 > i2 {
		all[i1], all[i2] = all[i2], all[i1]
	}
	ix := buildStrings(t, all...)

	t.Run("with trailing slash", func(t *testing.T) {
		got := ix.Match(mustParseURL(t, "https://A.B.Example.COM:443/x//y/?q=1#f"))
		if !slices.Equal(got, want) {
			t.Errorf("got\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
	})
	t.Run("without trailing slash", func(t *testing.T) {
		var noSlash []string
		for _, w := range want {
			if !strings.HasSuffix(w, "/") {
				noSlash = append(noSlash, w)
			}
		}
		got := ix.Match(mustParseURL(t, "https://a.b.example.com/x/y"))
		if !slices.Equal(got, noSlash) {
			t.Errorf("got\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(noSlash, "\n\t"))
		}
	})
	t.Run("slash priority per node only", func(t *testing.T) {
		// A slash pattern at a less specific node still comes after a
		// plain pattern at a more specific one.
		ix := buildStrings(t, "https://e.com/***/", "https://e.com/a", "https://e.com/a/")
		got := ix.Match(mustParseURL(t, "https://e.com/a/"))
		want := []string{"https://e.com/a/", "https://e.com/a", "https://e.com/***/"}
		if !slices.Equal(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
	})
}

// TestMatchSpelledWildcard spells out where real Hydrilla (whose trie keys
// literals and wildcards in one table) puts the patterns a URL label or
// segment spelled "*", "**" or "***" reaches: as the exact match one level
// deeper, ahead of that level's wildcards, and once. The wanted lists are
// Hydrilla 3.x's pattern_tree search for the same patterns and URL.
func TestMatchSpelledWildcard(t *testing.T) {
	tests := []struct {
		name, url string
		patterns  []string
		want      []string
	}{{
		name: "path **",
		url:  "https://example.com/a/**/",
		patterns: []string{
			"https://example.com/***", "https://example.com/a/*", "https://example.com/a/**",
			"https://example.com/a/**/***", "https://example.com/**", "https://example.com/a/b",
			"https://example.com/a/***", "https://example.com/a/**/",
		},
		want: []string{
			"https://example.com/a/**/", "https://example.com/a/**", "https://example.com/a/**/***",
			"https://example.com/a/*", "https://example.com/a/***",
			"https://example.com/**", "https://example.com/***",
		},
	}, {
		name: "path * and *** once each",
		url:  "https://example.com/a/*",
		patterns: []string{
			"https://example.com/a/***", "https://example.com/a/*", "https://example.com/a/*/***",
		},
		want: []string{"https://example.com/a/*", "https://example.com/a/*/***", "https://example.com/a/***"},
	}, {
		name: "host **",
		url:  "https://**.example.com/",
		patterns: []string{
			"https://*.example.com/", "https://***.example.com/", "https://x.**.example.com/",
			"https://**.example.com/***", "https://**.example.com/",
		},
		want: []string{
			"https://**.example.com/", "https://**.example.com/***",
			"https://*.example.com/", "https://***.example.com/",
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := buildStrings(t, tt.patterns...).Match(mustParseURL(t, tt.url))
			if !slices.Equal(got, tt.want) {
				t.Errorf("Match(%q) =\n\t%s\nwant\n\t%s", tt.url, strings.Join(got, "\n\t"), strings.Join(tt.want, "\n\t"))
			}
		})
	}
}

func TestBuildErrorsAndLen(t *testing.T) {
	items := []Item[int]{
		{"https://good.example/***", 0},
		{"https://bad.example/?q", 1},
		{"http*://good.example:8080/", 2},
		{"http*://good.example/", 3},
		{"gopher://x/", 4},
	}
	ix, errs := Build(items)
	if ix.Len() != 2 {
		t.Errorf("Len = %d, want 2", ix.Len())
	}
	if len(errs) != 3 {
		t.Fatalf("got %d errors, want 3: %v", len(errs), errs)
	}
	for i, want := range []string{"item 1:", "item 2:", "item 4:"} {
		if !errors.Is(errs[i], ErrInvalid) || !strings.HasPrefix(errs[i].Error(), want) {
			t.Errorf("error %d = %v, want ErrInvalid starting %q", i, errs[i], want)
		}
	}
	if got := ix.Match(mustParseURL(t, "https://good.example/")); !slices.Equal(got, []int{3, 0}) {
		t.Errorf("Match = %v, want [3 0]", got)
	}
	var nilIx *Index[int]
	if nilIx.Len() != 0 || nilIx.Match(mustParseURL(t, "http://a/")) != nil {
		t.Error("nil index is not empty")
	}
	empty, errs := Build[int](nil)
	if empty.Len() != 0 || len(errs) != 0 || empty.Match(mustParseURL(t, "http://a/")) != nil {
		t.Error("empty index is not empty")
	}
}

func TestMatchRepeatsAndDedupe(t *testing.T) {
	ix, _ := Build([]Item[string]{
		{"https://***.e.com/***", "m1"},
		{"https://a.e.com/x", "m2"},
		{"https://a.e.com/***", "m1"},
		{"https://a.e.com/x", "m1"},
	})
	got := ix.Match(mustParseURL(t, "https://a.e.com/x"))
	if want := []string{"m2", "m1", "m1", "m1"}; !slices.Equal(got, want) {
		t.Errorf("Match = %q, want %q", got, want)
	}
	if got, want := Dedupe(got), []string{"m2", "m1"}; !slices.Equal(got, want) {
		t.Errorf("Dedupe = %q, want %q", got, want)
	}
	if got := Dedupe([]string(nil)); got != nil {
		t.Errorf("Dedupe(nil) = %q", got)
	}
}

// randomPattern builds patterns and URLs from a tiny alphabet so that random
// pairs match often and every wildcard, port, slash and path-parameter rule
// is exercised, URLs with labels and segments spelled like wildcards
// included.
func randomPattern(r *rand.Rand, isPattern bool) string {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	var b strings.Builder
	scheme := pick("http", "https", "ftp", "file", "http*")
	if !isPattern && scheme == "http*" {
		scheme = "https"
	}
	b.WriteString(scheme + "://")
	if scheme != "file" {
		if isPattern && r.IntN(2) == 0 {
			b.WriteString(pick("*", "**", "***") + ".")
		}
		n := r.IntN(4)
		if n == 0 && !strings.HasSuffix(b.String(), ".") {
			n = 1
		}
		for i := range n {
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(pick("a", "b", "c", "*", "**", "***", "A"))
		}
		if scheme != "http*" {
			b.WriteString(pick("", "", "", ":80", ":443", ":21", ":8080"))
		}
	}
	for range r.IntN(4) {
		b.WriteString("/" + pick("x", "y", "X", "*", "**", "***", "", "x;p"))
	}
	if isPattern && r.IntN(2) == 0 {
		b.WriteString("/" + pick("*", "**", "***"))
	}
	if r.IntN(2) == 0 {
		b.WriteByte('/')
	}
	if r.IntN(8) == 0 && strings.Contains(strings.TrimPrefix(b.String(), scheme+"://"), "/") {
		b.WriteString(";p")
	}
	if !isPattern && r.IntN(4) == 0 {
		b.WriteString(pick("?q=1", "#f", "?a/b#c"))
	}
	return b.String()
}

// specificity is the order Match promises for a pattern p matching u,
// written as a sort key so the brute-force oracle can produce it
// independently of the trie. A wildcard that u reaches with a label or
// segment spelled like it counts as one more literal label or segment.
func specificity(p, u Pattern, idx int) [6]int {
	slash := 1
	if p.slash && u.slash {
		slash = 0
	}
	host, hostWild := len(p.host), p.hostWild
	if hostWild.spelledBy(u.host[:len(u.host)-host]) {
		host, hostWild = host+1, wildNone
	}
	path, pathWild := len(p.path), p.pathWild
	if pathWild.spelledBy(u.path[path:]) {
		path, pathWild = path+1, wildNone
	}
	return [6]int{-host, int(hostWild), -path, int(pathWild), slash, idx}
}

func TestIndexAgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 7))
	for round := range 50 {
		n := 1 + r.IntN(300)
		items := make([]Item[int], n)
		parsed := make([]Pattern, n)
		for i := range items {
			s := randomPattern(r, true)
			p, err := Parse(s)
			if err != nil {
				t.Fatalf("generated pattern %q: %v", s, err)
			}
			items[i], parsed[i] = Item[int]{s, i}, p
		}
		ix, errs := Build(items)
		if len(errs) != 0 || ix.Len() != n {
			t.Fatalf("Build: len %d, errors %v", ix.Len(), errs)
		}
		for range 200 {
			s := randomPattern(r, false)
			u, err := ParseURL(s)
			if err != nil {
				t.Fatalf("generated URL %q: %v", s, err)
			}
			var want []int
			for i, p := range parsed {
				if p.Matches(u) {
					want = append(want, i)
				}
			}
			slices.SortFunc(want, func(a, b int) int {
				ka, kb := specificity(parsed[a], u, a), specificity(parsed[b], u, b)
				return slices.Compare(ka[:], kb[:])
			})
			got := ix.Match(u)
			if !slices.Equal(got, want) {
				t.Fatalf("round %d, URL %q:\n got %v\nwant %v\npatterns: %v", round, s, show(items, got), show(items, want), items)
			}
		}
	}
}

func show(items []Item[int], idx []int) []string {
	out := make([]string, len(idx))
	for i, j := range idx {
		out[i] = items[j].Pattern
	}
	return out
}
