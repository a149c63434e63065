package proxy_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/regmirror/regmirror/refpack/registrytest"
)

// discard is a ResponseWriter that keeps nothing, so the benchmark measures
// the mirror, not a recorder's buffer.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

func benchHit(b *testing.B, path string) {
	reg := registrytest.New()
	reg.AddPackage("vendor", "country-codes", "1.2.0", registrytest.WithReadme("# hello\n"))
	bigPackage(reg, "zip", 1<<20)
	srv := httptest.NewServer(reg)
	defer srv.Close()
	m := startMirrorB(b, []string{srv.URL})
	h := m.srv.Handler()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	w := &discard{h: http.Header{}}
	h.ServeHTTP(w, req) // fill
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
	if w.h.Get("X-Cache") != "HIT" {
		b.Fatalf("not a hit: %v", w.h)
	}
}

// BenchmarkCachedHitMeta is a cached 1 KiB-class JSON answer (a /meta document).
func BenchmarkCachedHitMeta(b *testing.B) {
	benchHit(b, "/packages/vendor/country-codes/meta?version=1.2.0")
}

// BenchmarkCachedHitZip1MiB is a cached 1 MiB zip download.
func BenchmarkCachedHitZip1MiB(b *testing.B) {
	benchHit(b, "/packages/big/zip?version=1.0.0")
}

func doHandler(t testing.TB, h http.Handler, path string) string {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Body.String()
}
