package proxy_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/regmirror/regmirror/apikeys"
	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/refpack/registrytest"
)

// withHosted makes "ourco" a hosted owner that the key "test-key" may write.
func withHosted(t testing.TB) mirrorOpt {
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte(apikeys.Line("test", "test-key", "ourco")), 0o600); err != nil {
		t.Fatal(err)
	}
	return func(c *config.Config) { c.HostedOwners, c.APIKeysFile = []string{"ourco"}, keys }
}

// A hosted version's zip is a hit like a mirrored one: remembered by the fast
// lane, answered there with the same head; "latest" never is (a push moves it).
func TestHostedZipOnTheFastLane(t *testing.T) {
	reg, up := newRegistry(t)
	m := startMirror(t, "", []string{up}, nil, withHosted(t))
	zip := registrytest.MakeZip("rates", "1.0.0")
	if r := pushRaw(t, m, "test-key", zip); r.Status != http.StatusOK {
		t.Fatalf("push: %d", r.Status)
	}
	target := "/packages/ourco/rates?version=1.0.0"
	warmFast(t, m, target) // answered on the lane at least once
	if _, _, _, has := m.srv.FastMemos(target); !has {
		t.Error("the fast lane does not remember the hosted zip")
	}
	head, body := dialMirror(t, m).roundTrip(getReq(target))
	mustContain(t, head, "X-Cache: HIT")
	mustContain(t, head, `Cache-Status: regmirror; hit; detail="hosted"`)
	mustContain(t, head, `Content-Disposition: attachment; filename="ourco-rates-1.0.0.refpack.zip"`)
	if !bytes.Equal(body, zip) {
		t.Error("the fast lane's body is not the pushed zip")
	}
	latest := "/packages/ourco/rates"
	for range 3 {
		dialMirror(t, m).roundTrip(getReq(latest))
	}
	if _, _, _, has := m.srv.FastMemos(latest); has {
		t.Error("the fast lane remembers latest of a hosted package (a push moves it)")
	}
	if n := reg.Count("/packages/ourco"); n != 0 {
		t.Errorf("the upstream was asked %d times about the hosted owner", n)
	}

	// The status page counts it, and names no key.
	for _, p := range []string{"/status.json", "/"} {
		resp, err := http.Get(m.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if bytes.Contains(b, []byte("test-key")) || bytes.Contains(b, []byte(apikeys.Hash("test-key"))) {
			t.Errorf("%s shows the key", p)
		}
		if p != "/status.json" {
			continue
		}
		var st struct {
			Hosted struct {
				Owners   []string `json:"refpack_owners"`
				Packages int      `json:"refpack_packages"`
				Versions int      `json:"refpack_versions"`
				Keys     int      `json:"api_keys"`
			} `json:"hosted"`
		}
		if err := json.Unmarshal(b, &st); err != nil || len(st.Hosted.Owners) != 1 || st.Hosted.Packages != 1 || st.Hosted.Versions != 1 || st.Hosted.Keys != 1 {
			t.Errorf("%s: hosted %+v (%v)", p, st.Hosted, err)
		}
	}
}

// A hosted package's JSON answers carry an ETag and answer a client that
// already holds those bytes (If-None-Match) with 304 and no body, as mirrored
// answers do.
func TestHostedJSONAnswersIfNoneMatch(t *testing.T) {
	_, up := newRegistry(t)
	m := startMirror(t, "", []string{up}, nil, withHosted(t))
	if r := pushRaw(t, m, "test-key", registrytest.MakeZip("rates", "1.0.0")); r.Status != http.StatusOK {
		t.Fatalf("push: %d", r.Status)
	}
	for _, path := range []string{"/packages/ourco/rates/meta", "/packages/ourco/rates/meta?version=1.0.0",
		"/packages/ourco/rates/versions", "/packages/ourco/rates/data?version=1.0.0"} {
		first := get(t, m.URL+path)
		etag := first.Header.Get("ETag")
		if first.Status != http.StatusOK || etag == "" {
			t.Errorf("%s: %d ETag %q", path, first.Status, etag)
			continue
		}
		again := get(t, m.URL+path, "If-None-Match", etag)
		if again.Status != http.StatusNotModified || len(again.Body) != 0 || again.Header.Get("ETag") != etag {
			t.Errorf("%s with If-None-Match %s: %d ETag %q, %d bytes; want 304 with the same ETag",
				path, etag, again.Status, again.Header.Get("ETag"), len(again.Body))
		}
		mustContain(t, again.Header.Get("Cache-Status"), `detail="hosted"`)
		if other := get(t, m.URL+path, "If-None-Match", `"something-else"`); other.Status != http.StatusOK || string(other.Body) != string(first.Body) {
			t.Errorf("%s with another ETag: %d", path, other.Status)
		}
	}
}

// A write to a hosted owner, accepted or refused, is never a cache hit: its
// answer says BYPASS, as a forwarded write does.
func TestHostedWritesAreBypass(t *testing.T) {
	_, up := newRegistry(t)
	m := startMirror(t, "", []string{up}, nil, withHosted(t))
	post := func(path, key string, body []byte) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, m.URL+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/zip")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, c := range []struct {
		what, path, key string
		body            []byte
		status          int
	}{
		{"push", "/packages", "test-key", registrytest.MakeZip("rates", "1.0.0"), http.StatusOK},
		{"push, not a zip", "/packages", "test-key", []byte("not a zip"), http.StatusBadRequest},
		{"archive without a key", "/packages/ourco%2Frates/archive?version=1.0.0", "", nil, http.StatusUnauthorized},
		{"archive with a wrong key", "/packages/ourco%2Frates/archive?version=1.0.0", "wrong", nil, http.StatusUnauthorized},
		{"archive", "/packages/ourco%2Frates/archive?version=1.0.0", "test-key", nil, http.StatusOK},
	} {
		resp := post(c.path, c.key, c.body)
		if resp.StatusCode != c.status || resp.Header.Get("X-Cache") != "BYPASS" || resp.Header.Get("Cache-Status") != "regmirror; fwd=bypass" {
			t.Errorf("%s: %d X-Cache %q Cache-Status %q; want %d BYPASS", c.what, resp.StatusCode,
				resp.Header.Get("X-Cache"), resp.Header.Get("Cache-Status"), c.status)
		}
	}
}
