package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/engine"
	"github.com/regmirror/regmirror/refpack/registrytest"
	"github.com/regmirror/regmirror/status"
)

// statusServer is a Server over a fresh store, served on 127.0.0.1.
type statusServer struct {
	*Server
	URL string
}

func newStatusServer(t *testing.T, refpackUps, hydrillaUps []string, edit func(*config.Config)) *statusServer {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Data = dir
	cfg.RefPackUpstreams, cfg.HydrillaUpstreams = refpackUps, hydrillaUps
	cfg.MemoryCacheSize = 16 << 20
	cfg.DiskCacheSize = 1 << 30
	cfg.UpstreamConnectTimeout = 2 * time.Second
	cfg.UpstreamHeaderTimeout = 5 * time.Second
	if edit != nil {
		edit(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := Open(context.Background(), &cfg, OpenOptions{Logger: log, Version: "v1.2.3-test", UserAgent: "regmirror/test"})
	if err != nil {
		t.Fatal(err)
	}
	s, c := m.Server, m.Cache
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Load(ctx); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		hs.Close()
		cancel()
		c.Close()
	})
	return &statusServer{Server: s, URL: hs.URL}
}

// closedURL is the address of a server that no longer listens.
func closedURL(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	return u
}

func fetch(t *testing.T, method, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func statusJSON(t *testing.T, s *statusServer) status.Report {
	t.Helper()
	resp, body := fetch(t, http.MethodGet, s.URL+"/status.json")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("/status.json: %d %s %.200s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var r status.Report
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("/status.json: %v\n%s", err, body)
	}
	return r
}

func findUpstream(t *testing.T, r status.Report, api, url string) status.Upstream {
	t.Helper()
	for _, u := range r.Upstreams {
		if u.API == api && u.URL == url {
			return u
		}
	}
	t.Fatalf("no %s upstream %s in %+v", api, url, r.Upstreams)
	return status.Upstream{}
}

func TestStatusShowsUpstreamStates(t *testing.T) {
	reg := registrytest.New()
	reg.AddPackage("vendor", "country-codes", "1.0.0")
	up := reg.Start(t).URL
	down := closedURL(t)
	hyDown := closedURL(t)
	s := newStatusServer(t, []string{down, up}, []string{hyDown}, func(c *config.Config) {
		c.MaxFails = 1
		c.FailTimeout = time.Hour
	})

	// Before any request no upstream is known to be up.
	r := statusJSON(t, s)
	if len(r.Upstreams) != 3 {
		t.Fatalf("upstreams: %+v", r.Upstreams)
	}
	for _, u := range r.Upstreams {
		if u.State != "untried" {
			t.Errorf("%s before any request: state %q", u.URL, u.State)
		}
	}

	// The first upstream refuses the connection; the request falls through to the second.
	if resp, body := fetch(t, http.MethodGet, s.URL+"/packages/vendor/country-codes/meta?version=1.0.0"); resp.StatusCode != http.StatusOK {
		t.Fatalf("meta: %d %s", resp.StatusCode, body)
	}
	fetch(t, http.MethodGet, s.URL+"/list_all")

	r = statusJSON(t, s)
	if r.Version != "v1.2.3-test" || r.UptimeSeconds < 0 || !r.Ready {
		t.Errorf("header: %+v", r)
	}
	u := findUpstream(t, r, "refpack", up)
	if u.State != "up" || u.StateText != "up" || u.LatencyMS <= 0 || u.LastError != "" {
		t.Errorf("up upstream: %+v", u)
	}
	for _, d := range []status.Upstream{findUpstream(t, r, "refpack", down), findUpstream(t, r, "hydrilla", hyDown)} {
		if d.State != "skipped" || !strings.HasPrefix(d.StateText, "skipped until ") || d.SkipUntil == nil ||
			!strings.HasPrefix(d.StateDetail, "1 failure in a row; retried in ") ||
			d.LastErrorAt == nil || !strings.Contains(d.LastError, "connection refused") || d.Fails != 1 {
			t.Errorf("down upstream: %+v", d)
		}
	}

	// The page shows the same.
	resp, page := fetch(t, http.MethodGet, s.URL+"/")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("/: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{"v1.2.3-test", up, down, hyDown, "skipped until ", "connection refused", `data-state="up"`, `data-state="skipped"`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestStatusPageIsSelfContained(t *testing.T) {
	s := newStatusServer(t, []string{"http://user:s3cret-token@127.0.0.1:1"}, []string{"http://t0ken@127.0.0.1:1/api_v2"}, nil)
	s.noteError(`Get "https://bob:hunter2@example.org/x": refused`)
	resp, page := fetch(t, http.MethodGet, s.URL+"/")
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", resp.Header.Get("Cache-Control"))
	}
	for _, bad := range []string{"<script", " src=", `href="http`, "url(", "@import"} {
		if strings.Contains(page, bad) {
			t.Errorf("page holds %q: it must need nothing from elsewhere and no script", bad)
		}
	}
	_, js := fetch(t, http.MethodGet, s.URL+"/status.json")
	for _, secret := range []string{"s3cret-token", "t0ken", "hunter2"} {
		if strings.Contains(page, secret) || strings.Contains(js, secret) {
			t.Errorf("%q is shown", secret)
		}
	}
	if !strings.Contains(page, "http://user:***@127.0.0.1:1") || !strings.Contains(page, "http://***@127.0.0.1:1/api_v2") || !strings.Contains(page, "https://bob:***@example.org/x") {
		t.Errorf("masked URLs not shown:\n%s", page)
	}

	resp, body := fetch(t, http.MethodHead, s.URL+"/")
	if resp.StatusCode != http.StatusOK || body != "" || resp.ContentLength <= 0 {
		t.Errorf("HEAD /: %d len %d body %q", resp.StatusCode, resp.ContentLength, body)
	}
	if resp, _ := fetch(t, http.MethodPost, s.URL+"/"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d", resp.StatusCode)
	}
}

func TestStatusRequestFigures(t *testing.T) {
	s := newStatusServer(t, []string{"http://127.0.0.1:1"}, []string{"http://127.0.0.1:1"}, nil)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	s.stat.Now = func() time.Time { return now }

	// Since start comes from regmirror_requests_total, the series /metrics serves.
	for xc, n := range map[string]int{"HIT": 6, "STALE": 1, "MISS": 3, "BYPASS": 2, "NONE": 4} {
		s.metrics.Requests.WithLabelValues("hydrilla", "file", "200", xc).Add(float64(n))
	}
	// The last five minutes come from noteRequest.
	for _, xc := range []string{"HIT", "HIT", "MISS", "NONE"} {
		s.noteRequest(xc)
	}
	now = now.Add(4 * time.Minute)
	s.noteRequest("STALE")

	r := s.statusReport()
	ss := r.Requests.SinceStart
	if ss.Requests != 16 || ss.Hit != 6 || ss.Stale != 1 || ss.Miss != 3 || ss.Bypass != 2 || ss.HitRatio == nil || *ss.HitRatio != 0.7 {
		t.Errorf("since start: %+v", ss)
	}
	l := r.Requests.Last5Min
	if l.Requests != 5 || l.Hit != 2 || l.Miss != 1 || l.Stale != 1 || l.HitRatio == nil || *l.HitRatio != 0.75 {
		t.Errorf("last 5 minutes: %+v", l)
	}

	now = now.Add(90 * time.Second) // the first four are now 5m30s old
	l = s.statusReport().Requests.Last5Min
	if l.Requests != 1 || l.Stale != 1 || *l.HitRatio != 1 {
		t.Errorf("last 5 minutes, later: %+v", l)
	}
	now = now.Add(time.Hour)
	if l := s.statusReport().Requests.Last5Min; l.Requests != 0 || l.HitRatio != nil {
		t.Errorf("last 5 minutes, an hour later: %+v", l)
	}
	page := httptest.NewRecorder()
	s.ServeHTTP(page, httptest.NewRequest(http.MethodGet, "/", nil))
	if !strings.Contains(page.Body.String(), `<td class="num">70.0 %</td>`) {
		t.Errorf("page does not show the 70%% hit ratio:\n%s", page.Body)
	}
}

func TestStatusRecentErrors(t *testing.T) {
	s := newStatusServer(t, []string{"http://127.0.0.1:1"}, []string{"http://127.0.0.1:1"}, nil)
	if _, body := fetch(t, http.MethodGet, s.URL+"/status.json"); !strings.Contains(body, `"recent_errors": []`) {
		t.Errorf("no errors is not an empty list:\n%s", body)
	}
	if _, page := fetch(t, http.MethodGet, s.URL+"/"); !strings.Contains(page, "No errors since start.") {
		t.Errorf("the page does not say there are no errors")
	}
	for i := range 25 {
		s.noteError(fmt.Sprintf("error %d", i))
	}
	s.noteError("error 24")
	s.noteError("error 24")
	r := s.statusReport()
	if len(r.RecentErrors) != 20 {
		t.Fatalf("%d errors kept, want 20", len(r.RecentErrors))
	}
	if e := r.RecentErrors[0]; e.What != "error 24" || e.Count != 3 {
		t.Errorf("newest: %+v", e)
	}
	if e := r.RecentErrors[19]; e.What != "error 5" || e.Count != 1 {
		t.Errorf("oldest kept: %+v", e)
	}
	s.noteError(strings.Repeat("é", 600) + " https://u:pw@h.example/")
	if e := s.statusReport().RecentErrors[0]; len(e.What) > status.MaxErrorText+len("…") || !strings.HasSuffix(e.What, "é…") {
		t.Errorf("a long error is kept as %d bytes: %.40q…", len(e.What), e.What)
	}
}

func TestStatusRecordSync(t *testing.T) {
	hyA, hyB := "http://127.0.0.1:1/api_v2", "http://127.0.0.1:2"
	s := newStatusServer(t, []string{"http://127.0.0.1:3"}, []string{hyA, hyB}, nil)
	start := time.Now().Add(-time.Minute)
	s.RecordSync(&status.SyncRun{API: "hydrilla", Upstream: hyA, Started: start, Ended: start.Add(1500 * time.Millisecond),
		Items: 12, Files: 30, Held: 2, Bytes: 4096})
	s.RecordSync(&status.SyncRun{API: "hydrilla", Upstream: hyB, Started: start, Ended: start.Add(time.Second),
		Items: 1, Failed: []string{"a: x", "b: y", "c", "d", "e", "f", "g"}})
	s.RecordSync(&status.SyncRun{API: "refpack", Upstream: "http://127.0.0.1:3", Started: start, Ended: start,
		Err: errors.New("read package list: upstream answered 500")})

	r := statusJSON(t, s)
	if len(r.Syncs) != 3 {
		t.Fatalf("syncs: %+v", r.Syncs)
	}
	bySrc := map[string]status.Sync{}
	for _, x := range r.Syncs {
		bySrc[x.API+" "+x.Upstream] = x
	}
	if a := bySrc["hydrilla "+hyA]; a.Result != "ok" || a.Items != 12 || a.Files != 30 || a.Held != 2 || a.Bytes != 4096 ||
		a.DurationSeconds != 1.5 || a.LastSuccess == nil || a.Ended == nil {
		t.Errorf("ok sync: %+v", a)
	}
	if b := bySrc["hydrilla "+hyB]; b.Result != "failed" || b.FailedCount != 7 || len(b.Failed) != 5 || b.LastSuccess != nil {
		t.Errorf("partial sync: %+v", b)
	}
	if c := bySrc["refpack http://127.0.0.1:3"]; c.Result != "failed" || !strings.Contains(c.Error, "answered 500") {
		t.Errorf("failed sync: %+v", c)
	}
	if len(r.RecentErrors) != 2 || !strings.Contains(r.RecentErrors[0].What, "sync of refpack upstream http://127.0.0.1:3 failed") {
		t.Errorf("recent errors: %+v", r.RecentErrors)
	}
	_, page := fetch(t, http.MethodGet, s.URL+"/")
	for _, want := range []string{"12 item versions, 30 files", "7 failed, the first 5:", "answered 500"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestStatusCacheAndIndex(t *testing.T) {
	s := newStatusServer(t, []string{"http://127.0.0.1:1"}, []string{"http://127.0.0.1:1"}, func(c *config.Config) {
		c.MemoryCacheSize = 0
	})
	e := &cache.Entry{Key: string(engine.HydrillaFile("test")), Status: http.StatusOK, Class: cache.Immutable, FetchedAt: time.Now()}
	if _, err := s.cache.PutBody(context.Background(), e, []byte(strings.Repeat("x", 1000))); err != nil {
		t.Fatal(err)
	}
	r := s.statusReport()
	if len(r.Cache.Tiers) != 2 {
		t.Fatalf("tiers: %+v", r.Cache.Tiers)
	}
	mem, disk := r.Cache.Tiers[0], r.Cache.Tiers[1]
	if mem.Tier != "memory" || mem.LimitBytes != 0 || mem.LimitNote != "disabled" {
		t.Errorf("memory: %+v", mem)
	}
	if disk.Tier != "disk" || disk.Entries != 1 || disk.Bytes < 1000 || disk.LimitBytes != 1<<30 {
		t.Errorf("disk: %+v", disk)
	}
	if r.PatternIndex.Patterns != 0 {
		t.Errorf("index: %+v", r.PatternIndex)
	}
}
