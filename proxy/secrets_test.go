package proxy_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// withCredentials puts user:password@ into an http:// base URL.
func withCredentials(base, user, password string) string {
	return strings.Replace(base, "http://", "http://"+user+":"+password+"@", 1)
}

// An upstream URL's password is a secret: asked every route, while its
// upstreams answer and while they fail, the mirror shows it in no body, no
// header, no metric, no status page and no log line. Upstreams behind basic
// auth still get it.
func TestUpstreamPasswordsAreNeverShown(t *testing.T) {
	const rpSecret, hySecret, deadSecret = "rp-pa55word-Q7", "hy-pa55word-Z9", "dead-pa55word-K3"
	reg, up := newRegistry(t)
	reg.SetAPIKey(testKey)
	repo := hydrillaRepo(t)
	var gotAuth []string
	reg.SetHook(func(w http.ResponseWriter, r *http.Request) bool {
		gotAuth = append(gotAuth, r.Header.Get("Authorization"))
		return false
	})
	var logs syncBuffer
	dead := "http://127.0.0.1:1"
	m := startMirrorLogged(t, &logs, "",
		[]string{withCredentials(dead, "carol", deadSecret), withCredentials(up, "alice", rpSecret)},
		[]string{withCredentials(dead, "carol", deadSecret), withCredentials(repo.BaseURL(), "bob", hySecret)})

	routes := append(packageRoutes("vendor/country-codes"),
		"/packages", "/packages?q=country", "/packages/advanced-search?tags=geography",
		"/packages/currencies", "/packages/vendor/unknown/meta?version=1.0.0", "/packages/vendor/country-codes?version=9.9.9",
		"/list_all", "/query?url=https://example.org/", "/resource/helloapple.json", "/mapping/helloapple.json",
		"/resource/helloapple/2021.11.10", "/mapping/helloapple/2021.11.10", "/resource/helloapple.json?ver=2021.11.10",
		"/source/hello.json", "/source/hello.zip", "/resource/unknown.json", "/pattern?n=1",
	)
	for _, sha := range repo.Files() {
		routes = append(routes, "/file/sha256/"+sha)
	}
	var seen bytes.Buffer
	ask := func(method, target string, body io.Reader, hdr ...string) {
		r := do(t, method, m.URL+target, body, hdr...)
		fmt.Fprintf(&seen, "%s %s -> %d\n", method, target, r.Status)
		r.Header.Write(&seen)
		seen.Write(r.Body)
		seen.WriteString("\n")
	}
	askAll := func() {
		for _, r := range routes {
			ask(http.MethodGet, r, nil)
			ask(http.MethodHead, r, nil)
		}
		ask(http.MethodPost, "/packages/vendor/country-codes/archive?version=1.0.0", nil, "X-API-Key", testKey)
		ask(http.MethodPost, "/packages", strings.NewReader("not a zip"), "X-API-Key", testKey, "Content-Type", "application/zip")
	}
	askAll()
	if len(gotAuth) == 0 || !strings.HasPrefix(gotAuth[0], "Basic ") {
		t.Errorf("the registry got Authorization %q, want the URL's credentials as basic auth", gotAuth)
	}
	// The live upstreams fail too now: errors name their upstream, masked.
	reg.SetFail(http.StatusBadGateway)
	repo.SetFail(http.StatusBadGateway)
	routes = append(routes, "/packages/vendor/country-codes/meta?version=2.0.0-beta.1", "/resource/helloapple/2021.11.11")
	askAll()
	for _, r := range []string{"/", "/status.json", "/metrics", "/healthz", "/readyz"} {
		ask(http.MethodGet, r, nil)
	}

	for what, text := range map[string]string{"answers": seen.String(), "log": logs.String()} {
		for _, secret := range []string{rpSecret, hySecret, deadSecret} {
			if i := strings.Index(text, secret); i >= 0 {
				t.Errorf("the %s show the password %q: …%s…", what, secret, text[max(0, i-200):min(len(text), i+100)])
			}
		}
	}
	// What is shown instead.
	for _, want := range []string{`upstream="http://alice:***@127.0.0.1`, "http://carol:***@127.0.0.1:1", "http://bob:***@127.0.0.1"} {
		if !strings.Contains(seen.String(), want) {
			t.Errorf("the answers never show %q", want)
		}
	}
}
