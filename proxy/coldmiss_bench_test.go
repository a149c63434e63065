package proxy_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/regmirror/regmirror/hydrilla/hydrillatest"
)

// coldFiles serves b.N distinct Hydrilla files of about 1 KiB (the size of a
// generated repository's files) and returns a mirror of them, on a data
// directory in the test's temp dir, and their paths.
func coldFiles(b *testing.B) (http.Handler, []string) {
	b.Helper()
	repo := hydrillatest.New()
	paths := make([]string, b.N)
	for i := range paths {
		body := fmt.Appendf(nil, "/* file %d of %d */\n%0900d\n", i, b.N, i)
		paths[i] = "/file/sha256/" + repo.AddFile(body)
	}
	srv := httptest.NewServer(repo.Handler())
	b.Cleanup(srv.Close)
	m := startMirrorTB(b, "", nil, []string{srv.URL})
	return m.srv.Handler(), paths
}

func coldMiss(b *testing.B, h http.Handler, path string) {
	w := &discard{h: http.Header{}}
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	if got := w.h.Get("X-Cache"); got != "MISS" {
		b.Fatalf("%s: X-Cache %q, want MISS", path, got)
	}
}

// BenchmarkColdMissFile is one miss at a time, each of an object the mirror
// does not hold: the latency of a lone fill (upstream fetch, hash check,
// store write made durable) with nothing to share its commit with.
func BenchmarkColdMissFile(b *testing.B) {
	h, paths := coldFiles(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		coldMiss(b, h, paths[i])
	}
}

// BenchmarkColdMissFileParallel is a burst of distinct misses, 16 goroutines
// per GOMAXPROCS asking at once: what fills sharing their commits gain.
func BenchmarkColdMissFileParallel(b *testing.B) {
	h, paths := coldFiles(b)
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			coldMiss(b, h, paths[next.Add(1)-1])
		}
	})
}
