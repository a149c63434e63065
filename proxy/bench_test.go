package proxy_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/regmirror/regmirror/config"
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

// BenchmarkFastLaneHitMeta is the same /meta hit over a real keep-alive
// connection: one request written, one answer read, per op. On the fast lane
// (the default) neither side allocates; compare -fast-lane=false through
// BenchmarkNetHTTPHitMeta.
func BenchmarkFastLaneHitMeta(b *testing.B) { benchConnHit(b, true) }

// BenchmarkNetHTTPHitMeta is BenchmarkFastLaneHitMeta with every request
// through net/http.
func BenchmarkNetHTTPHitMeta(b *testing.B) { benchConnHit(b, false) }

func benchConnHit(b *testing.B, lane bool) {
	reg := registrytest.New()
	reg.AddPackage("vendor", "country-codes", "1.2.0")
	srv := httptest.NewServer(reg)
	defer srv.Close()
	m := startMirrorB(b, []string{srv.URL}, func(c *config.Config) { c.FastLane = lane })
	target := "/packages/vendor/country-codes/meta?version=1.2.0"
	benchKeepAlive(b, m.URL, target)
	if lane { // the last answer is counted once its write has returned
		settleCount(func() bool { return testutil.ToFloat64(m.metrics.FastLane) >= float64(b.N) })
	}
	if fast := testutil.ToFloat64(m.metrics.FastLane); lane != (fast >= float64(b.N)) {
		b.Fatalf("fast lane %v: %v of %d answers on it", lane, fast, b.N)
	}
}

// benchKeepAlive warms target into the memory tier, then times GETs of it on
// one keep-alive connection to the mirror at url, each answer read whole.
func benchKeepAlive(b *testing.B, url, target string) {
	for range 3 {
		get2(b, url+target)
	}
	time.Sleep(50 * time.Millisecond) // the memory tier takes its entry
	get2(b, url+target)
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET " + target + " HTTP/1.1\r\nHost: bench\r\n\r\n")
	br := bufio.NewReader(c)
	// readAnswer reads one answer: its head line by line, then Content-Length
	// bytes of body (the request id in the head grows by a digit now and then).
	readAnswer := func() {
		n := -1
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			if len(line) == 2 {
				break
			}
			if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
				n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
			}
		}
		if n < 0 {
			b.Fatal("an answer without Content-Length")
		}
		if _, err := br.Discard(n); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		readAnswer()
	}
	b.StopTimer()
}

func get2(b *testing.B, url string) {
	resp, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
