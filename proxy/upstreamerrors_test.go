package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Every upstream failure is counted in regmirror_upstream_errors_total with
// its reason: no answer at all is "connect", a 5xx is "status".
func TestUpstreamErrorsAreCountedByReason(t *testing.T) {
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down for maintenance", http.StatusInternalServerError)
	}))
	defer broken.Close()
	dead := "http://127.0.0.1:1"
	m := startMirror(t, "", []string{dead}, []string{broken.URL})
	for _, p := range []string{"/packages/vendor/pkg?version=1.0.0", "/resource/lib-a.json"} {
		resp, err := http.Get(m.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 500 {
			t.Fatalf("%s with a failing upstream: %d", p, resp.StatusCode)
		}
	}
	resp, err := http.Get(m.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`regmirror_upstream_errors_total{reason="connect",upstream="` + dead + `"} 1`,
		`regmirror_upstream_errors_total{reason="status",upstream="` + broken.URL + `"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
