package pattern

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// buildShards builds an index of items with n shards, each fed every item
// by a goroutine of its own, as the catalogue does at start-up.
func buildShards[V any](items []Item[V], n int) *Index[V] {
	s := NewShards[V](n, len(items))
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			b := s.Shard(i)
			for _, it := range items {
				b.Add(it.Pattern, it.Value) // errors: Build's are checked
			}
		})
	}
	wg.Wait()
	return s.Index()
}

// sitePattern is a pattern of a made-up site: few top-level and second-level
// labels, so that many patterns share the top of their host walk, with every
// wildcard kind on hosts and paths, explicit ports, hosts that are a
// wildcard alone, file:// patterns and the odd invalid one.
func sitePattern(r *rand.Rand) string {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	switch r.IntN(40) {
	case 0:
		return pick("https://***/", "http*://*/a/***", "https://**/x", "file:///etc/"+pick("a", "***", "b/*"))
	case 1:
		return pick("https://", "ftp://[::1/x", "https://a b.com/") // invalid
	}
	host := fmt.Sprintf("site%d.%s.%s", r.IntN(60), pick("example", "shop", "a"), pick("com", "org", "test", "net", "COM"))
	if r.IntN(3) == 0 {
		host = pick("www", "cdn", "x.y") + "." + host
	}
	if r.IntN(3) == 0 {
		host = pick("*", "**", "***") + "." + host
	}
	scheme := pick("https", "https", "http*", "http", "ftp")
	port := ""
	if scheme != "http*" {
		port = pick("", "", "", ":8080", ":443", ":21")
	}
	path := pick("", "/", "/a", "/a/", "/a/b", "/docs/*/", "/***", "/a/**", "/pub/***", "/x;p", "/*")
	return scheme + "://" + host + port + path
}

// siteURL is a URL that some of sitePattern's patterns match: one of them
// with its wildcards filled in, or made up from the same labels.
func siteURL(r *rand.Rand) string {
	for {
		p, err := Parse(sitePattern(r))
		if err != nil || p.schemes == schemeFile && r.IntN(2) == 0 {
			continue
		}
		if p.schemes == schemeHTTPAny {
			p.schemes = []schemeSet{schemeHTTP, schemeHTTPS}[r.IntN(2)]
		}
		p.host = append([][]string{nil, {"www"}, {"a", "b"}, {[]string{"x", "*", "**"}[r.IntN(3)]}}[p.hostWild], p.host...)
		p.path = append(p.path[:len(p.path):len(p.path)], [][]string{nil, {"p"}, {"p", "q.js"}, {[]string{"i", "*", "***"}[r.IntN(3)]}}[p.pathWild]...)
		p.hostWild, p.pathWild = wildNone, wildNone
		if p.schemes != schemeFile && len(p.host) == 0 {
			continue
		}
		return p.String()
	}
}

// TestShardsAnswerAsOneBuilder checks that an index built by several shards
// at once answers every URL exactly as one built by a single Builder from the
// same items: the same values in the same order, the same length.
func TestShardsAnswerAsOneBuilder(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 4))
	for round := range 40 {
		items := make([]Item[int], 1+r.IntN(3000))
		for i := range items {
			switch {
			case i > 0 && r.IntN(6) == 0:
				// Another version of a mapping: a pattern seen before.
				items[i] = Item[int]{items[r.IntN(i)].Pattern, i}
			case round%2 == 0 && r.IntN(2) == 0:
				items[i] = Item[int]{randomPattern(r, true), i}
			default:
				items[i] = Item[int]{sitePattern(r), i}
			}
		}
		one, _ := Build(items)
		urls := make([]Pattern, 0, 400)
		for len(urls) < cap(urls) {
			s := siteURL(r)
			if round%2 == 0 && r.IntN(2) == 0 {
				s = randomPattern(r, false)
			}
			u, err := ParseURL(s)
			if err != nil {
				t.Fatalf("generated URL %q: %v", s, err)
			}
			urls = append(urls, u)
		}
		matched := 0
		for _, n := range []int{1, 2, 3, 5, 8} {
			ix := buildShards(items, n)
			if ix.Len() != one.Len() {
				t.Fatalf("round %d, %d shards: Len %d, one builder's %d", round, n, ix.Len(), one.Len())
			}
			for _, u := range urls {
				got, want := ix.Match(u), one.Match(u)
				if !slices.Equal(got, want) {
					t.Fatalf("round %d, %d shards, URL %q:\n got %v\nwant %v", round, n, u, show(items, got), show(items, want))
				}
				if len(want) > 0 {
					matched++
				}
			}
		}
		if matched == 0 {
			t.Fatalf("round %d: no URL matched anything; the test checks nothing", round)
		}
	}
}

// TestShardsEmpty: shards given nothing, or nothing valid, make an index that
// matches nothing.
func TestShardsEmpty(t *testing.T) {
	u := mustParseURL(t, "https://example.com/")
	for _, items := range [][]Item[int]{nil, {{"https://", 1}, {"nope", 2}}} {
		ix := buildShards(items, 3)
		if ix.Len() != 0 || ix.Match(u) != nil {
			t.Errorf("%v: Len %d, Match %v", items, ix.Len(), ix.Match(u))
		}
	}
}
