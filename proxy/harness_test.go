package proxy_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/mirrorsync"
	"github.com/regmirror/regmirror/proxy"
)

// mirror is a regmirror server in front of test upstreams.
type mirror struct {
	t       testing.TB
	URL     string
	srv     *proxy.Server
	sync    *mirrorsync.Syncer
	cache   *cache.Cache
	metrics *proxy.Metrics
	dir     string
	cfg     *config.Config
	// ahead is how far the mirror's freshness clock runs ahead of real time:
	// tests move it past max-age instead of sleeping.
	ahead atomic.Int64
}

// now is the mirror's freshness clock.
func (m *mirror) now() time.Time { return time.Now().Add(time.Duration(m.ahead.Load())) }

// advance moves the mirror's freshness clock forward by d.
func (m *mirror) advance(d time.Duration) { m.ahead.Add(int64(d)) }

type mirrorOpt func(*config.Config)

// startMirror opens a store in dir (a new temp dir when ""), builds the server
// and serves it on 127.0.0.1.
func startMirror(t *testing.T, dir string, refpackUps, hydrillaUps []string, opts ...mirrorOpt) *mirror {
	return startMirrorTB(t, dir, refpackUps, hydrillaUps, opts...)
}

// startMirrorB is startMirror for benchmarks.
func startMirrorB(b *testing.B, refpackUps []string, opts ...mirrorOpt) *mirror {
	return startMirrorTB(b, "", refpackUps, nil, opts...)
}

func startMirrorTB(t testing.TB, dir string, refpackUps, hydrillaUps []string, opts ...mirrorOpt) *mirror {
	return startMirrorLogged(t, io.Discard, dir, refpackUps, hydrillaUps, opts...)
}

// startMirrorLogged is the one way tests build a mirror; its log lines (debug
// level) go to logw.
func startMirrorLogged(t testing.TB, logw io.Writer, dir string, refpackUps, hydrillaUps []string, opts ...mirrorOpt) *mirror {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	cfg := config.Default()
	cfg.Data = dir
	cfg.RefPackUpstreams = refpackUps
	cfg.HydrillaUpstreams = hydrillaUps
	cfg.UpstreamTimeout = 10 * time.Second
	cfg.UpstreamHeaderTimeout = 5 * time.Second
	cfg.UpstreamConnectTimeout = 2 * time.Second
	cfg.MemoryCacheSize = 16 << 20
	for _, o := range opts {
		o(&cfg)
	}
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m := &mirror{t: t, dir: dir, cfg: &cfg}
	wired, err := proxy.Open(context.Background(), &cfg, proxy.OpenOptions{Logger: log, Version: "test", UserAgent: "regmirror/test",
		AccessLog: proxy.NewAccessLog(logw, false), Clock: m.now})
	if err != nil {
		t.Fatal(err)
	}
	m.srv, m.sync, m.cache, m.metrics = wired.Server, wired.Sync, wired.Cache, wired.Metrics
	c := wired.Cache
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.srv.Load(ctx); err != nil {
		t.Fatal(err)
	}
	// Served as cmd/regmirror serves it, fast lane included (unless the
	// configuration turns it off).
	hs := &http.Server{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		m.srv.Serve(hs, ln)
		close(served)
	}()
	m.URL = "http://" + ln.Addr().String()
	t.Cleanup(func() {
		// As httptest.Server.Close: wait for the requests being answered,
		// then for the server (fast lane included) to be done.
		sctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
		defer stop()
		hs.Shutdown(sctx)
		hs.Close()
		<-served
		cancel()
		c.Close()
	})
	return m
}

// close stops serving early (to reopen the same data directory).
type result struct {
	Status int
	Header http.Header
	Body   []byte
}

func get(t *testing.T, url string, hdr ...string) result {
	t.Helper()
	return do(t, http.MethodGet, url, nil, hdr...)
}

func do(t *testing.T, method, url string, body io.Reader, hdr ...string) result {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return result{resp.StatusCode, resp.Header, b}
}

func counter(t *testing.T, m *mirror, name string, labels ...string) float64 {
	t.Helper()
	switch name {
	case "stale":
		return testutil.ToFloat64(m.metrics.StaleServed)
	case "verify":
		return testutil.ToFloat64(m.metrics.VerifyFailures)
	case "coalesced":
		return testutil.ToFloat64(m.metrics.Coalesced)
	case "requests":
		return testutil.ToFloat64(m.metrics.Requests.WithLabelValues(labels...))
	}
	t.Fatalf("unknown counter %s", name)
	return 0
}

func mustContain(t *testing.T, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("%q does not contain %q", s, sub)
	}
}
