package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The issue-14 check, with the real binary: an empty data directory, every
// upstream a dead port, --max-fails 2. Every API route, asked four times (so
// past max-fails, while the upstream is skipped), answers 502, 503 or 504 with
// a JSON body naming the cause; X-Cache and Cache-Status agree; and the log
// has a WARN line naming each upstream.
func TestEmptyMirrorWithDeadUpstreamsAnswersHonestly(t *testing.T) {
	rp, hy := deadURL(t), deadURL(t)
	m := startMirror(t, t.TempDir(), rp, hy, "--max-fails", "2")
	hex := strings.Repeat("ab", 32)
	routes := map[string]string{ // route → the upstream its error must name
		"/packages": rp, "/packages?q=country": rp, "/packages/advanced-search?tags=geo": rp,
		"/packages/vendor/x": rp, "/packages/vendor/x?version=1.0.0": rp, "/packages/vendor/x/meta": rp,
		"/packages/vendor/x/meta?version=1.0.0": rp, "/packages/vendor/x/versions": rp,
		"/packages/vendor/x/data?version=1.0.0": rp, "/packages/vendor/x/readme?version=1.0.0": rp,
		"/list_all": hy, "/query?url=" + url.QueryEscape("https://example.com/a/b"): hy,
		"/resource/x.json": hy, "/mapping/x.json": hy, "/resource/x/1.0": hy, "/mapping/x/1": hy,
		"/file/sha256/" + hex: hy, "/source/x.json": hy, "/source/x.zip": hy,
	}
	for route, up := range routes {
		for i := 1; i <= 4; i++ {
			a := m.get(route)
			if a.Status != http.StatusBadGateway && a.Status != http.StatusServiceUnavailable && a.Status != http.StatusGatewayTimeout {
				t.Errorf("%s, request %d: %s; want 502, 503 or 504", route, i, a)
				continue
			}
			var e struct{ Error, Message string }
			if err := json.Unmarshal(a.Body, &e); err != nil || e.Error == "" || !strings.Contains(e.Message, up) {
				t.Errorf("%s, request %d: %s; want a JSON error naming %s", route, i, a, up)
			}
			if !strings.Contains(e.Message, "refused") {
				t.Errorf("%s, request %d: message %q does not name the cause (connection refused)", route, i, e.Message)
			}
			xc, cs := a.cache(), a.Header.Get("Cache-Status")
			if xc != "MISS" || !strings.HasPrefix(cs, "regmirror; fwd=") {
				t.Errorf("%s, request %d: X-Cache %q with Cache-Status %q; want MISS with fwd=", route, i, xc, cs)
			}
			if a.Status == http.StatusServiceUnavailable && a.Header.Get("Retry-After") == "" {
				t.Errorf("%s, request %d: 503 without Retry-After", route, i)
			}
		}
	}
	log := m.out.String()
	for _, up := range []string{rp, hy} {
		found := false
		for _, l := range strings.Split(log, "\n") {
			if strings.Contains(l, "level=WARN") && strings.Contains(l, "upstream="+up) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no WARN line names %s", up)
		}
	}
}
