package proxy_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/hydrilla/hydrillatest"
	"github.com/regmirror/regmirror/mirrorsync"
)

// deadUpstream refuses every connection.
const deadUpstream = "http://127.0.0.1:1"

// wantCacheHeadersAgree checks design.md's rule: X-Cache is HIT or STALE
// exactly when Cache-Status says hit, and a MISS carries fwd=.
func wantCacheHeadersAgree(t *testing.T, what string, r result) {
	t.Helper()
	xc, cs := r.Header.Get("X-Cache"), r.Header.Get("Cache-Status")
	if xc == "" || cs == "" {
		t.Errorf("%s: X-Cache %q, Cache-Status %q: both are set on every proxied answer", what, xc, cs)
		return
	}
	if hit := strings.Contains(cs, "; hit"); (xc == "HIT" || xc == "STALE") != hit {
		t.Errorf("%s: X-Cache %q with Cache-Status %q", what, xc, cs)
	}
	if xc == "MISS" && !strings.Contains(cs, "fwd=") {
		t.Errorf("%s: X-Cache MISS with Cache-Status %q (no fwd=)", what, cs)
	}
}

// wantGatewayError checks an answer is the mirror's JSON error for a
// failure upstream (502, 503 or 504), never a success made from nothing.
func wantGatewayError(t *testing.T, what string, r result) (message string) {
	t.Helper()
	if r.Status != http.StatusBadGateway && r.Status != http.StatusServiceUnavailable && r.Status != http.StatusGatewayTimeout {
		t.Errorf("%s: %d %.200s; want 502, 503 or 504", what, r.Status, r.Body)
		return ""
	}
	var e struct{ Error, Message string }
	if err := json.Unmarshal(r.Body, &e); err != nil || e.Error == "" || e.Message == "" {
		t.Errorf("%s: body %q is not {\"error\",\"message\"}", what, r.Body)
	}
	wantCacheHeadersAgree(t, what, r)
	return e.Message
}

// Defect 1: holding nothing, with every upstream dead (or offline), lists,
// searches, /list_all and /query are errors, not 200 with empty lists.
func TestNothingHeldUpstreamsDeadIsNeverAnEmptySuccess(t *testing.T) {
	routes := []string{"/packages", "/packages?q=country", "/packages/advanced-search?tags=geography", "/list_all",
		"/query?url=" + url.QueryEscape("https://example.com/a/b")}
	for _, offline := range []bool{false, true} {
		m := startMirror(t, "", []string{deadUpstream}, []string{deadUpstream}, func(c *config.Config) { c.Offline = offline })
		for _, r := range routes {
			for i := 0; i < 4; i++ { // past max-fails too
				got := get(t, m.URL+r)
				wantGatewayError(t, r+" (offline "+strconv.FormatBool(offline)+")", got)
				if offline && got.Status != http.StatusServiceUnavailable {
					t.Errorf("%s offline: %d, want 503", r, got.Status)
				}
			}
		}
	}
}

// Defect 2: once an upstream is skipped after max-fails, the error still
// names it and its last failure, with Retry-After.
func TestSkippedUpstreamErrorNamesTheLastFailure(t *testing.T) {
	m := startMirror(t, "", []string{deadUpstream}, nil, func(c *config.Config) { c.MaxFails, c.FailTimeout = 2, 30*time.Second })
	var last result
	for i := 0; i < 3; i++ {
		last = get(t, m.URL+"/packages/vendor/x/meta?version=1.0."+strconv.Itoa(i))
	}
	msg := wantGatewayError(t, "after max-fails", last)
	if last.Status != http.StatusServiceUnavailable {
		t.Errorf("skipped: %d, want 503", last.Status)
	}
	re := regexp.MustCompile(`^upstream http://127\.0\.0\.1:1 skipped for \d+ s after 2 failures: .*connection refused`)
	if !re.MatchString(msg) {
		t.Errorf("message %q does not name the upstream, the skip and its last failure", msg)
	}
	if ra, err := strconv.Atoi(last.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 30 {
		t.Errorf("Retry-After %q, want the seconds left of the skip", last.Header.Get("Retry-After"))
	}
}

// Defect 3: "latest" answers past metadata-max-age say one thing in both
// headers (they said X-Cache: MISS with Cache-Status hit).
func TestLatestCacheHeadersAgreePastMaxAge(t *testing.T) {
	for _, etags := range []bool{true, false} {
		reg, up := newRegistry(t)
		if !etags { // an upstream that never answers 304
			reg.SetHook(func(_ http.ResponseWriter, r *http.Request) bool { r.Header.Del("If-None-Match"); return false })
		}
		m := startMirror(t, "", []string{up}, nil, withMaxAge(time.Minute))
		routes := []string{"/packages/vendor/country-codes", "/packages/vendor/country-codes/meta",
			"/packages/vendor/country-codes/readme", "/packages/vendor/country-codes/versions"}
		for _, r := range routes {
			wantCacheHeadersAgree(t, r+" first", get(t, m.URL+r))
			wantCacheHeadersAgree(t, r+" again", get(t, m.URL+r))
		}
		m.advance(2 * time.Minute)
		for _, r := range routes {
			got := get(t, m.URL+r)
			if got.Status != 200 {
				t.Fatalf("%s: %d", r, got.Status)
			}
			wantCacheHeadersAgree(t, r+" past max-age, ETags "+strconv.FormatBool(etags), got)
		}
	}
}

// Defect 4: each failed upstream request is one WARN line, becoming skipped
// is one more; access lines name the upstream tried, also when it failed and
// for a forwarded write, and the path with its query.
func TestUpstreamFailuresAreLogged(t *testing.T) {
	var logs syncBuffer
	m := startLoggedMirror(t, &logs, "", []string{deadUpstream}, nil, func(c *config.Config) { c.MaxFails, c.FailTimeout = 2, 30*time.Second })
	for i := 0; i < 3; i++ {
		get(t, m.URL+"/packages/vendor/x/meta?version=1.0."+strconv.Itoa(i))
	}
	var warns, skips, access int
	for _, l := range strings.Split(logs.String(), "\n") {
		switch {
		case strings.Contains(l, `level=WARN msg="upstream request failed"`):
			warns++
			if !strings.Contains(l, "upstream="+deadUpstream) || !strings.Contains(l, "route=/packages/vendor%2Fx/meta") ||
				!strings.Contains(l, "connection refused") {
				t.Errorf("WARN line without upstream, route or error: %s", l)
			}
		case strings.Contains(l, `level=WARN msg="upstream skipped"`):
			skips++
		case strings.Contains(l, "msg=request"):
			access++
			if !strings.Contains(l, "upstream="+deadUpstream) || !strings.Contains(l, `?version=1.0.`) {
				t.Errorf("access line of a failed fetch without its upstream or query: %s", l)
			}
		}
	}
	if warns != 2 || skips != 1 || access != 3 {
		t.Errorf("%d WARN lines, %d skip lines, %d access lines; want 2, 1, 3:\n%s", warns, skips, access, logs.String())
	}

	reg, up := newRegistry(t)
	reg.SetAPIKey(testKey)
	var logs2 syncBuffer
	m2 := startLoggedMirror(t, &logs2, "", []string{up}, nil)
	if r := do(t, http.MethodPost, m2.URL+"/packages/vendor/country-codes/archive?version=1.2.0", nil, "X-API-Key", testKey); r.Status != 200 {
		t.Fatalf("archive: %d %s", r.Status, r.Body)
	}
	if !regexp.MustCompile(`msg=request .*method=POST .*upstream=` + regexp.QuoteMeta(up)).MatchString(logs2.String()) {
		t.Errorf("the access line of a forwarded write does not name the upstream:\n%s", logs2.String())
	}
}

// contentTypeRewriter serves repo as a real Hydrilla server does behind its
// web server: item versions (/resource/<id>/<ver>) as application/octet-stream.
// With down set it answers 502.
type contentTypeRewriter struct {
	h    http.Handler
	down atomic.Bool
}

func (c *contentTypeRewriter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if c.down.Load() {
		http.Error(w, "down", http.StatusBadGateway)
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/api_v2")
	if (strings.HasPrefix(p, "/resource/") || strings.HasPrefix(p, "/mapping/")) && !strings.HasSuffix(p, ".json") {
		w = &fixedTypeWriter{ResponseWriter: w, ctype: "application/octet-stream"}
	}
	c.h.ServeHTTP(w, r)
}

type fixedTypeWriter struct {
	http.ResponseWriter
	ctype string
}

func (f *fixedTypeWriter) WriteHeader(code int) {
	f.Header().Set("Content-Type", f.ctype)
	f.ResponseWriter.WriteHeader(code)
}

func (f *fixedTypeWriter) Write(b []byte) (int, error) {
	f.Header().Set("Content-Type", f.ctype)
	return f.ResponseWriter.Write(b)
}

// Defect 5: /<type>/<id>.json answered from a held item version while the
// upstream is down keeps application/json.
func TestLatestItemFromAHeldVersionIsJSON(t *testing.T) {
	repo, _ := hydrillatest.StartGenerated(t, 5, 12)
	rw := &contentTypeRewriter{h: repo.Handler()}
	srv := httptest.NewServer(rw)
	t.Cleanup(srv.Close)
	m := startMirror(t, "", nil, []string{srv.URL + "/api_v2"})
	newest := map[string]hydrilla.ItemRef{}
	for _, ref := range repo.Refs() {
		k := ref.Type + "/" + ref.Identifier
		if old, ok := newest[k]; !ok || ref.Version.Compare(old.Version) > 0 {
			newest[k] = ref
		}
	}
	for _, ref := range newest {
		if r := get(t, m.URL+"/"+ref.String()); r.Status != 200 || r.Header.Get("Content-Type") != "application/octet-stream" {
			t.Fatalf("%s: %d %q", ref, r.Status, r.Header.Get("Content-Type"))
		}
	}
	rw.down.Store(true)
	for _, ref := range newest {
		r := get(t, m.URL+"/"+ref.Type+"/"+ref.Identifier+".json")
		if r.Status != 200 || r.Header.Get("X-Cache") != "STALE" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s.json with the upstream down: %d X-Cache %q Content-Type %q; want 200 STALE application/json",
				ref.Identifier, r.Status, r.Header.Get("X-Cache"), r.Header.Get("Content-Type"))
		}
		wantCacheHeadersAgree(t, ref.Identifier+".json", r)
	}
}

// Defect 6: after a full sync, with the upstream down past metadata-max-age,
// /list_all is the upstream's own stored bytes (everything it lists is held),
// not a list rebuilt by the mirror.
func TestStoredListAllServedWhenEveryItemIsHeld(t *testing.T) {
	repo, up := hydrillatest.StartGenerated(t, 20, 5)
	m := startMirror(t, "", nil, []string{up}, withMaxAge(time.Minute))
	want := get(t, up+"/list_all").Body
	res := m.sync.Hydrilla(t.Context(), mirrorsync.Options{Jobs: 4})
	if len(res) != 1 || !res[0].OK() {
		t.Fatalf("sync: %+v", res)
	}
	repo.SetFail(http.StatusServiceUnavailable)
	m.advance(2 * time.Minute)
	got := get(t, m.URL+"/list_all")
	if got.Status != 200 || got.Header.Get("X-Cache") != "STALE" || !bytes.Equal(got.Body, want) {
		t.Errorf("/list_all with the upstream down: %d X-Cache %q, same bytes as the upstream's: %v",
			got.Status, got.Header.Get("X-Cache"), bytes.Equal(got.Body, want))
	}
	if got.Header.Get("Content-Type") != "application/json" {
		t.Errorf("/list_all Content-Type %q", got.Header.Get("Content-Type"))
	}
	wantCacheHeadersAgree(t, "/list_all", got)
}

// Defect 7: what the upstream answers 404 (no such route, an identifier no
// repository can hold) the mirror answers 404, not 400.
func TestHydrillaRoutesTheUpstreamWould404Are404(t *testing.T) {
	_, up := hydrillatest.StartGenerated(t, 2, 7)
	m := startMirror(t, "", nil, []string{up})
	for _, p := range []string{"/resource/bars-hello", "/resource/Bars-Hello.json", "/mapping/c-001.jsonx",
		"/mapping/x/1/2", "/source/Hello.zip", "/source/hello.tar"} {
		upstream, mirror := get(t, up+p), get(t, m.URL+p)
		if upstream.Status != http.StatusNotFound || mirror.Status != http.StatusNotFound {
			t.Errorf("%s: upstream %d, mirror %d; want 404 from both", p, upstream.Status, mirror.Status)
		}
	}
}
