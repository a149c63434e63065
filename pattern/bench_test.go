package pattern

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/gobwas/glob"
)

var benchSizes = []int{1_000, 10_000, 100_000}

// templates are the shapes of real Haketilo mapping patterns: a site's whole
// domain, one subtree, one page, a CDN, with all wildcard kinds and a few
// explicit ports. %d is the mapping's site number.
var templates = []string{
	"https://www.site%d.example/***",
	"http*://***.site%d.org/path/*",
	"https://site%d.com/a/b/c",
	"http*://*.site%d.net/***",
	"https://**.cdn%d.io/assets/**",
	"ftp://files.site%d.org/pub/",
	"http://site%d.com:8080/api/***",
	"https://site%d.example/docs/*/",
	"https://site%d.com/***",
}

// broad patterns belong to a few mappings only, as in a real repository;
// they make many queries return more than one result.
var broad = []string{
	"https://***.example/***",
	"http*://***.org/path/***",
}

// benchItems generates n mappings with one to three patterns each; the value
// is the mapping number.
func benchItems(n int) []Item[int] {
	r := rand.New(rand.NewPCG(uint64(n), 99))
	items := make([]Item[int], 0, 2*n)
	for m := range n {
		for range 1 + r.IntN(3) {
			items = append(items, Item[int]{fmt.Sprintf(templates[r.IntN(len(templates))], m), m})
		}
		if m%5000 == 0 {
			items = append(items, Item[int]{broad[m/5000%len(broad)], m})
		}
	}
	return items
}

// benchURLs is a fixed mix of queries: two thirds are made from indexed
// patterns (wildcards filled in, so they match at least that pattern), a
// third aim at unknown sites, deeper hosts or the wrong scheme.
func benchURLs(items []Item[int]) []string {
	r := rand.New(rand.NewPCG(uint64(len(items)), 7))
	miss := []string{
		"https://www.site%d.example.invalid/",
		"https://unknown%d.org/path/x",
		"ftp://site%d.com/a/b/c",
		"https://deep.sub.site%d.net.example/",
	}
	urls := make([]string, 1024)
	for i := range urls {
		if i%3 == 2 {
			urls[i] = fmt.Sprintf(miss[r.IntN(len(miss))], r.IntN(len(items)))
			continue
		}
		p, err := Parse(items[r.IntN(len(items))].Pattern)
		if err != nil {
			panic(err)
		}
		u := p
		if u.schemes == schemeHTTPAny {
			u.schemes = []schemeSet{schemeHTTP, schemeHTTPS}[r.IntN(2)]
		}
		u.host = append([][]string{nil, {"www"}, {"a", "b"}, {"x"}}[u.hostWild], u.host...)
		u.path = append(u.path[:len(u.path):len(u.path)], [][]string{nil, {"p"}, {"p", "q.js"}, {"index.html"}}[u.pathWild]...)
		u.hostWild, u.pathWild = wildNone, wildNone
		urls[i] = u.String() + []string{"", "?q=1", "#top"}[r.IntN(3)]
	}
	return urls
}

func BenchmarkBuild(b *testing.B) {
	for _, n := range benchSizes {
		items := benchItems(n)
		b.Run(fmt.Sprintf("mappings=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, errs := Build(items); errs != nil {
					b.Fatal(errs)
				}
			}
			b.ReportMetric(float64(len(items)), "patterns")
			b.ReportMetric(float64(retainedHeap(func() any { ix, _ := Build(items); return ix })), "heap-bytes")
		})
	}
}

// retainedHeap measures how much live heap the value made by mk keeps.
func retainedHeap(mk func() any) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := mk()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(v)
	if after.HeapAlloc < before.HeapAlloc {
		return 0
	}
	return after.HeapAlloc - before.HeapAlloc
}

func BenchmarkMatch(b *testing.B) { benchmarkMatch(b, 0) }

// BenchmarkMatchShards is BenchmarkMatch over an index built by Shards (as
// the catalogue builds it at start-up), which looks each node up in its
// shard's part.
func BenchmarkMatchShards(b *testing.B) { benchmarkMatch(b, 2) }

func benchmarkMatch(b *testing.B, shards int) {
	for _, n := range benchSizes {
		items := benchItems(n)
		ix, errs := Build(items)
		if errs != nil {
			b.Fatal(errs)
		}
		if shards > 0 {
			ix = buildShards(items, shards)
		}
		raw := benchURLs(items)
		parsed := make([]Pattern, len(raw))
		for i, s := range raw {
			parsed[i] = mustParseURL(b, s)
		}
		// "parse+match" is what a /query answer costs; "match" is the
		// index alone.
		b.Run(fmt.Sprintf("mappings=%d/parse+match", n), func(b *testing.B) {
			b.ReportAllocs()
			results, i := 0, 0
			for b.Loop() {
				u, err := ParseURL(raw[i%len(raw)])
				if err != nil {
					b.Fatal(err)
				}
				results += len(ix.Match(u))
				i++
			}
			b.ReportMetric(float64(results)/float64(i), "results/op")
		})
		b.Run(fmt.Sprintf("mappings=%d/match", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				ix.Match(parsed[i%len(parsed)])
				i++
			}
		})
	}
}

// globOf translates a pattern roughly into a gobwas glob over the
// normalised URL, with '.' and '/' as separators so '*' stays within one
// label or segment.
func globOf(p Pattern) string {
	var b strings.Builder
	if p.schemes == schemeHTTPAny {
		b.WriteString("http{,s}")
	} else {
		b.WriteString(p.schemes.name())
	}
	b.WriteString("://")
	b.WriteString([...]string{"", "*.", "*.**.", "{,**.}"}[p.hostWild])
	b.WriteString(glob.QuoteMeta(strings.Join(p.host, ".")))
	if p.port != 0 {
		fmt.Fprintf(&b, ":%d", p.port)
	}
	for _, s := range p.path {
		b.WriteString("/" + glob.QuoteMeta(s))
	}
	b.WriteString([...]string{"", "/*", "/*/**", "{,/**}"}[p.pathWild])
	if p.slash {
		b.WriteString("/")
	} else {
		b.WriteString("{,/}")
	}
	return b.String()
}

// BenchmarkGlobBaseline is the naive alternative: every pattern compiled to
// a glob and the URL tried against all of them.
func BenchmarkGlobBaseline(b *testing.B) {
	for _, n := range benchSizes {
		items := benchItems(n)
		type compiled struct {
			g     glob.Glob
			value int
		}
		globs := make([]compiled, 0, len(items))
		for _, it := range items {
			g, err := glob.Compile(globOf(mustParse(b, it.Pattern)), '.', '/')
			if err != nil {
				b.Fatalf("%s: %v", it.Pattern, err)
			}
			globs = append(globs, compiled{g, it.Value})
		}
		raw := benchURLs(items)
		b.Run(fmt.Sprintf("mappings=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			results, i := 0, 0
			for b.Loop() {
				u, err := ParseURL(raw[i%len(raw)])
				if err != nil {
					b.Fatal(err)
				}
				s := u.String()
				var out []int
				for _, g := range globs {
					if g.g.Match(s) {
						out = append(out, g.value)
					}
				}
				results += len(out)
				i++
			}
			b.ReportMetric(float64(results)/float64(i), "results/op")
		})
	}
}
