package proxy_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/regmirror/regmirror/apikeys"
	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/refpack/registrytest"
)

// The hosted and the mirrored hit of the same package zip, through the same
// handler: a hosted package is answered on the cached-hit path, so the two
// should cost the same.

// zipHitMirror is a mirror holding the same zip as vendor/rates (mirrored,
// fetched once) and ourco/rates (hosted, pushed), and the path of the one asked.
func zipHitMirror(b *testing.B, hosted bool) (*mirror, string) {
	zip := registrytest.MakeZip("rates", "1.0.0", registrytest.WithDocs())
	reg := registrytest.New()
	reg.SetZip("vendor/rates", "1.0.0", zip)
	srv := httptest.NewServer(reg)
	keys := filepath.Join(b.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte(apikeys.Line("bench", "bench-key", "ourco")), 0o600); err != nil {
		b.Fatal(err)
	}
	m := startMirrorB(b, []string{srv.URL}, func(c *config.Config) {
		c.HostedOwners, c.APIKeysFile = []string{"ourco"}, keys
	})
	b.Cleanup(srv.Close) // after the mirror's own cleanup
	h := m.srv.Handler()
	path := "/packages/vendor/rates?version=1.0.0"
	if hosted {
		path = "/packages/ourco/rates?version=1.0.0"
		req := httptest.NewRequest(http.MethodPost, "/packages", bytes.NewReader(zip))
		req.Header.Set("Content-Type", "application/zip")
		req.Header.Set("Authorization", "Bearer bench-key")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("push: %d %s", rec.Code, rec.Body)
		}
	}
	return m, path
}

func benchZipHit(b *testing.B, hosted bool) {
	m, path := zipHitMirror(b, hosted)
	h := m.srv.Handler()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	w := &discard{h: http.Header{}}
	h.ServeHTTP(w, req) // fill (mirrored) or first read (hosted)
	h.ServeHTTP(w, req)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
	b.StopTimer()
	if w.h.Get("X-Cache") != "HIT" {
		b.Fatalf("not a hit: %v", w.h)
	}
}

// BenchmarkCachedHitZipMirrored is a cached package zip of the upstream.
func BenchmarkCachedHitZipMirrored(b *testing.B) { benchZipHit(b, false) }

// BenchmarkCachedHitZipHosted is the same zip pushed to a hosted owner.
func BenchmarkCachedHitZipHosted(b *testing.B) { benchZipHit(b, true) }

// BenchmarkFastLaneHitZipMirrored is the mirrored zip hit over a real
// keep-alive connection (the fast lane answers it).
func BenchmarkFastLaneHitZipMirrored(b *testing.B) { benchConnZip(b, false) }

// BenchmarkFastLaneHitZipHosted is the hosted zip hit over a real connection.
func BenchmarkFastLaneHitZipHosted(b *testing.B) { benchConnZip(b, true) }

func benchConnZip(b *testing.B, hosted bool) {
	m, target := zipHitMirror(b, hosted)
	benchKeepAlive(b, m.URL, target)
}
