package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/proxy"
	"github.com/regmirror/regmirror/refpack"
	"github.com/regmirror/regmirror/refpack/registrytest"
)

// testKey is recognisable wherever it might leak.
const testKey = "SECRET-KEY-regmirror-test-12345"

// syncBuffer is a log destination safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startLoggedMirror is startMirror with every log line of the mirror (server,
// cache, at debug level) written to logw.
func startLoggedMirror(t *testing.T, logw io.Writer, dir string, refpackUps, hydrillaUps []string, opts ...mirrorOpt) *mirror {
	t.Helper()
	return startMirrorLogged(t, logw, dir, refpackUps, hydrillaUps, opts...)
}

func withUploadLimit(n int64) mirrorOpt { return func(c *config.Config) { c.MaxUploadSize = n } }

// part is one field of a multipart form; header, when set, replaces the one
// multipart.Writer would write.
type part struct {
	name, filename string
	body           []byte
	header         textproto.MIMEHeader
}

func form(t testing.TB, parts ...part) (contentType string, body []byte) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, p := range parts {
		var w io.Writer
		var err error
		switch {
		case p.header != nil:
			w, err = mw.CreatePart(p.header)
		case p.filename != "":
			w, err = mw.CreateFormFile(p.name, p.filename)
		default:
			w, err = mw.CreateFormField(p.name)
		}
		if err != nil {
			t.Fatal(err)
		}
		w.Write(p.body)
	}
	mw.Close()
	return mw.FormDataContentType(), b.Bytes()
}

// pushForm is the documented push: file + ownerId, X-API-Key.
func pushForm(t *testing.T, m *mirror, key, owner, filename string, zip []byte) (result, []byte) {
	t.Helper()
	ct, body := form(t, part{name: "file", filename: filename, body: zip}, part{name: "ownerId", body: []byte(owner)})
	hdr := []string{"Content-Type", ct}
	if key != "" {
		hdr = append(hdr, "X-API-Key", key)
	}
	return do(t, http.MethodPost, m.URL+"/packages", bytes.NewReader(body), hdr...), body
}

// pushRaw is the RefPack CLI's push: the zip as the body, Authorization: Bearer.
func pushRaw(t *testing.T, m *mirror, key string, zip []byte) result {
	t.Helper()
	hdr := []string{"Content-Type", "application/zip"}
	if key != "" {
		hdr = append(hdr, "Authorization", "Bearer "+key)
	}
	return do(t, http.MethodPost, m.URL+"/packages", bytes.NewReader(zip), hdr...)
}

// captureWrites records the bodies of the POSTs the registry receives.
func captureWrites(reg *registrytest.Registry) func() [][]byte {
	var mu sync.Mutex
	var bodies [][]byte
	reg.SetHook(func(_ http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			bodies = append(bodies, b)
			mu.Unlock()
		}
		return false
	})
	return func() [][]byte {
		mu.Lock()
		defer mu.Unlock()
		return append([][]byte(nil), bodies...)
	}
}

func posts(reg *registrytest.Registry) []registrytest.RecordedRequest {
	var out []registrytest.RecordedRequest
	for _, r := range reg.Requests() {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			out = append(out, r)
		}
	}
	return out
}

func wantState(t *testing.T, what string, r result, status int, xcache string) {
	t.Helper()
	if r.Status != status || r.Header.Get("X-Cache") != xcache {
		t.Fatalf("%s: %d X-Cache %q (%s) %.200s, want %d %s", what, r.Status, r.Header.Get("X-Cache"), r.Header.Get("Cache-Status"), r.Body, status, xcache)
	}
}

func wantBypass(t *testing.T, what string, r result) {
	t.Helper()
	if r.Header.Get("X-Cache") != "BYPASS" || r.Header.Get("Cache-Status") != "regmirror; fwd=bypass" {
		t.Errorf("%s: X-Cache %q, Cache-Status %q, want BYPASS and \"regmirror; fwd=bypass\"", what, r.Header.Get("X-Cache"), r.Header.Get("Cache-Status"))
	}
}

// forwardedHeaders checks that a forwarded write carried the client's key and
// nothing else of the client's but the content type.
func forwardedHeaders(t *testing.T, got http.Header, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got.Get(k) != v {
			t.Errorf("forwarded %s = %q, want %q", k, got.Get(k), v)
		}
	}
	allowed := map[string]bool{"Content-Type": true, "Content-Length": true, "Accept-Encoding": true, "User-Agent": true, "Accept": true}
	for k := range got {
		if !allowed[k] && want[k] == "" {
			t.Errorf("forwarded an unexpected header %s: %q", k, got[k])
		}
	}
}

func TestPushMultipartForwardedOnceAndVisible(t *testing.T) {
	reg, up := newRegistry(t)
	reg.SetAPIKey(testKey)
	m := startMirror(t, "", []string{up}, nil)
	reads := []string{
		"/packages", "/packages?q=country", "/packages/advanced-search?ownerId=vendor",
		"/packages/vendor/country-codes/versions", "/packages/vendor%2Fcountry-codes/meta",
		"/packages/vendor/country-codes/meta?version=2.0.0", // not found yet: a negative entry
		"/packages/vendor/country-codes?version=1.2.0",      // immutable
	}
	for _, p := range reads {
		get(t, m.URL+p)
		if r := get(t, m.URL+p); r.Header.Get("X-Cache") != "HIT" {
			t.Fatalf("%s: not cached before the push: %d %s", p, r.Status, r.Header.Get("X-Cache"))
		}
	}
	bodies := captureWrites(reg)
	z := registrytest.MakeZip("country-codes", "2.0.0", registrytest.WithTitle("Country Codes v2"))
	r, sent := pushForm(t, m, testKey, "vendor", "country-codes-2.0.0.refpack.zip", z)
	if r.Status != 200 || string(r.Body) != `{"success":true}` || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("push: %d %q %s", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	wantBypass(t, "push", r)

	ps := posts(reg)
	if len(ps) != 1 || ps[0].Path != "/packages" {
		t.Fatalf("registry received %d writes (%+v), want one POST /packages", len(ps), ps)
	}
	forwardedHeaders(t, ps[0].Header, map[string]string{"X-Api-Key": testKey})
	if ps[0].Header.Get("Authorization") != "" {
		t.Errorf("an Authorization header was invented")
	}
	if b := bodies(); len(b) != 1 || !bytes.Equal(b[0], sent) {
		t.Fatalf("the forwarded body is not the client's (%d bodies)", len(b))
	}
	if got, want := ps[0].Header.Get("Content-Type"), mustHeader(t, sent); got != want {
		t.Errorf("forwarded Content-Type %q, want the client's %q", got, want)
	}

	// Visible right after: the mutable entries are gone, the immutable one stays.
	v := get(t, m.URL+"/packages/vendor/country-codes/versions")
	wantState(t, "versions", v, 200, "MISS")
	mustContain(t, string(v.Body), `"2.0.0"`)
	l := get(t, m.URL+"/packages")
	wantState(t, "list", l, 200, "MISS")
	mustContain(t, string(l.Body), `"version":"2.0.0"`)
	mustContain(t, string(l.Body), `"Country Codes v2"`)
	wantState(t, "search", get(t, m.URL+"/packages/advanced-search?ownerId=vendor"), 200, "MISS")
	wantState(t, "query", get(t, m.URL+"/packages?q=country"), 200, "MISS")
	meta := get(t, m.URL+"/packages/vendor%2Fcountry-codes/meta")
	wantState(t, "latest meta", meta, 200, "MISS")
	mustContain(t, string(meta.Body), `"version":"2.0.0"`)
	wantState(t, "formerly not found", get(t, m.URL+"/packages/vendor/country-codes/meta?version=2.0.0"), 200, "HIT")
	wantState(t, "immutable zip", get(t, m.URL+"/packages/vendor/country-codes?version=1.2.0"), 200, "HIT")
	latest := get(t, m.URL+"/packages/vendor/country-codes")
	if latest.Status != 200 || !bytes.Equal(latest.Body, z) {
		t.Errorf("latest zip after the push: %d, not the pushed bytes", latest.Status)
	}
	checkDataDir(t, m.dir)
}

func mustHeader(t *testing.T, multipartBody []byte) string {
	t.Helper()
	// The boundary is the first line of the body without its leading "--".
	line, _, _ := bytes.Cut(multipartBody, []byte("\r\n"))
	return "multipart/form-data; boundary=" + strings.TrimPrefix(string(line), "--")
}

func TestPushRawFormForwardedAsItCame(t *testing.T) {
	reg, up := newRegistry(t)
	reg.SetAPIKey(testKey)
	reg.SetDefaultOwner("acme")
	m := startMirror(t, "", []string{up}, nil)
	before := get(t, m.URL+"/packages/acme/only-pre")
	if before.Status != 200 {
		t.Fatalf("latest before: %d %s", before.Status, before.Body)
	}
	for _, p := range []string{"/packages/acme/only-pre/versions", "/packages/vendor/country-codes/versions", "/packages"} {
		get(t, m.URL+p)
		wantState(t, p+" before", get(t, m.URL+p), 200, "HIT")
	}
	bodies := captureWrites(reg)
	z := registrytest.MakeZip("only-pre", "0.1.0")
	r := pushRaw(t, m, testKey, z)
	if r.Status != 200 {
		t.Fatalf("raw push: %d %s", r.Status, r.Body)
	}
	wantBypass(t, "raw push", r)
	ps := posts(reg)
	if len(ps) != 1 {
		t.Fatalf("registry received %d writes, want 1", len(ps))
	}
	forwardedHeaders(t, ps[0].Header, map[string]string{"Authorization": "Bearer " + testKey, "Content-Type": "application/zip"})
	if ps[0].Header.Get("X-Api-Key") != "" {
		t.Errorf("an X-API-Key header was invented")
	}
	if b := bodies(); len(b) != 1 || !bytes.Equal(b[0], z) {
		t.Fatalf("the forwarded body is not the client's zip")
	}
	// No owner in the raw form: every package of that name is invalidated, others stay.
	wantState(t, "versions of the pushed name", get(t, m.URL+"/packages/acme/only-pre/versions"), 200, "MISS")
	wantState(t, "versions of another package", get(t, m.URL+"/packages/vendor/country-codes/versions"), 200, "HIT")
	wantState(t, "list", get(t, m.URL+"/packages"), 200, "MISS")
	after := get(t, m.URL+"/packages/acme/only-pre")
	if after.Status != 200 || !bytes.Equal(after.Body, z) {
		t.Errorf("latest after the raw push: %d, not the pushed bytes", after.Status)
	}
	checkDataDir(t, m.dir)
}

func TestPushInvalidUploadsAre400AndNeverForwarded(t *testing.T) {
	reg, up := newRegistry(t)
	reg.SetAPIKey(testKey)
	const limit = 1 << 20
	m := startMirror(t, "", []string{up}, nil, withUploadLimit(limit))
	valid := registrytest.MakeZip("country-codes", "3.0.0")
	big := make([]byte, limit+1)
	for i := range big {
		big[i] = byte(i*7919 + i>>8) // does not compress much
	}
	zips := map[string][]byte{
		"bad layout":        registrytest.MakeZip("x", "1.0.0", registrytest.WithEntry("extra.txt", []byte("x"))),
		"sub-folder":        registrytest.MakeZip("x", "1.0.0", registrytest.WithAsset("a/b.txt", []byte("x"))),
		"dotdot segment":    registrytest.MakeZip("x", "1.0.0", registrytest.WithEntry("assets/../../evil.txt", []byte("x"))),
		"absolute name":     registrytest.MakeZip("x", "1.0.0", registrytest.WithEntry("/etc/evil", []byte("x"))),
		"backslash":         registrytest.MakeZip("x", "1.0.0", registrytest.WithEntry(`assets\evil.txt`, []byte("x"))),
		"duplicate":         registrytest.MakeZip("x", "1.0.0", registrytest.WithEntry("data.json", []byte("[]"))),
		"missing data.json": registrytest.MakeZip("x", "1.0.0", registrytest.Without("data.json")),
		"missing manifest":  registrytest.MakeZip("x", "1.0.0", registrytest.Without("data.meta.json")),
		"manifest no id":    registrytest.MakeZip("x", "1.0.0", registrytest.WithManifest([]byte(`{"version":"1.0.0"}`))),
		"data not array":    registrytest.MakeZip("x", "1.0.0", registrytest.WithData([]byte(`{"a":1}`))),
		"zip bomb by ratio": registrytest.MakeZip("x", "1.0.0", registrytest.WithAsset("zeros.bin", make([]byte, 8<<20))),
		"not a zip":         []byte("this is not a zip file"),
		"empty":             {},
		"truncated":         valid[:len(valid)/2],
	}
	for name, z := range zips {
		t.Run("multipart/"+name, func(t *testing.T) {
			r, _ := pushForm(t, m, testKey, "vendor", "pkg.refpack.zip", z)
			want400(t, r, refpack.ErrTitleValidationFailed)
		})
		t.Run("raw/"+name, func(t *testing.T) {
			want400(t, pushRaw(t, m, testKey, z), refpack.ErrTitleValidationFailed)
		})
	}
	formCases := map[string][]part{
		"missing file field":   {{name: "ownerId", body: []byte("vendor")}},
		"wrong extension":      {{name: "file", filename: "pkg.tar.gz", body: valid}, {name: "ownerId", body: []byte("vendor")}},
		"no file name":         {{name: "file", body: valid}, {name: "ownerId", body: []byte("vendor")}},
		"two files":            {{name: "file", filename: "a.zip", body: valid}, {name: "file", filename: "b.zip", body: valid}, {name: "ownerId", body: []byte("vendor")}},
		"file in another name": {{name: "upload", filename: "a.zip", body: valid}, {name: "file", filename: "b.zip", body: valid}},
		"ownerId twice":        {{name: "file", filename: "a.zip", body: valid}, {name: "ownerId", body: []byte("vendor")}, {name: "ownerId", body: []byte("acme")}},
		"quoted-printable file": {{header: textproto.MIMEHeader{
			"Content-Disposition":       {`form-data; name="file"; filename="a.zip"`},
			"Content-Transfer-Encoding": {"quoted-printable"},
		}, body: valid}},
	}
	for name, parts := range formCases {
		t.Run("form/"+name, func(t *testing.T) {
			ct, body := form(t, parts...)
			want400(t, do(t, http.MethodPost, m.URL+"/packages", bytes.NewReader(body), "Content-Type", ct, "X-API-Key", testKey), refpack.ErrTitleValidationFailed)
		})
	}
	t.Run("form/malformed multipart", func(t *testing.T) {
		want400(t, do(t, http.MethodPost, m.URL+"/packages", strings.NewReader("--nope\r\nbroken"),
			"Content-Type", "multipart/form-data; boundary=xyz", "X-API-Key", testKey), refpack.ErrTitleValidationFailed)
	})
	t.Run("form/no boundary", func(t *testing.T) {
		want400(t, do(t, http.MethodPost, m.URL+"/packages", bytes.NewReader(valid),
			"Content-Type", "multipart/form-data", "X-API-Key", testKey), refpack.ErrTitleValidationFailed)
	})
	t.Run("unsupported content type", func(t *testing.T) {
		r := do(t, http.MethodPost, m.URL+"/packages", bytes.NewReader(valid), "Content-Type", "text/plain", "X-API-Key", testKey)
		if r.Status != http.StatusUnsupportedMediaType {
			t.Errorf("text/plain push: %d %s", r.Status, r.Body)
		}
	})
	t.Run("over the size limit", func(t *testing.T) {
		r, _ := pushForm(t, m, testKey, "vendor", "big.zip", big)
		wantTooLarge(t, r)
		wantTooLarge(t, pushRaw(t, m, testKey, big))
		// Without a Content-Length the limit holds while reading.
		wantTooLarge(t, do(t, http.MethodPost, m.URL+"/packages", io.MultiReader(bytes.NewReader(big)),
			"Content-Type", "application/zip", "Authorization", "Bearer "+testKey))
	})
	if ps := posts(reg); len(ps) != 0 {
		t.Errorf("invalid uploads reached the registry %d times", len(ps))
	}
	// The same valid package is accepted, so the refusals above were about the upload.
	r, _ := pushForm(t, m, testKey, "vendor", "country-codes.zip", valid)
	if r.Status != 200 {
		t.Fatalf("valid push after the invalid ones: %d %s", r.Status, r.Body)
	}
	checkDataDir(t, m.dir)
}

func want400(t *testing.T, r result, title string) {
	t.Helper()
	var e struct{ Error, Message string }
	if r.Status != 400 || json.Unmarshal(r.Body, &e) != nil || e.Error != title || e.Message == "" {
		t.Fatalf("%d %s, want 400 %q with a message", r.Status, r.Body, title)
	}
	t.Logf("%s", e.Message)
}

func wantTooLarge(t *testing.T, r result) {
	t.Helper()
	var e struct{ Error, Message string }
	if (r.Status != 413 && r.Status != 400) || json.Unmarshal(r.Body, &e) != nil || e.Message == "" {
		t.Fatalf("over the limit: %d %s, want 413 with a JSON message", r.Status, r.Body)
	}
}

func TestWriteWithoutKeyIs401Locally(t *testing.T) {
	reg, up := newRegistry(t)
	reg.SetAPIKey(testKey)
	m := startMirror(t, "", []string{up}, nil)
	z := registrytest.MakeZip("country-codes", "3.0.0")
	want := string(refpack.ErrorBody("Unauthorized", "API key is missing or invalid."))
	r1, _ := pushForm(t, m, "", "vendor", "a.zip", z)
	r2 := pushRaw(t, m, "", z)
	r3 := do(t, http.MethodPost, m.URL+"/packages/vendor/country-codes/archive?version=1.0.0", nil)
	r4 := do(t, http.MethodPost, m.URL+"/packages", bytes.NewReader(z), "Content-Type", "application/zip", "X-API-Key", "", "Authorization", " ")
	for i, r := range []result{r1, r2, r3, r4} {
		if r.Status != 401 || string(r.Body) != want {
			t.Errorf("write %d without a key: %d %s", i, r.Status, r.Body)
		}
	}
	if n := len(reg.Requests()); n != 0 {
		t.Errorf("the registry was contacted %d times", n)
	}
}

func TestWriteUpstreamAnswersRelayed(t *testing.T) {
	reg, up := newRegistry(t)
	reg.SetAPIKey(testKey)
	m := startMirror(t, "", []string{up}, nil)
	get(t, m.URL+"/packages")
	z := registrytest.MakeZip("country-codes", "3.0.0")

	// A wrong key is the upstream's to judge: its 401 is relayed.
	r, _ := pushForm(t, m, "wrong-key", "vendor", "a.zip", z)
	direct := do(t, http.MethodPost, up+"/packages", strings.NewReader("x"), "Content-Type", "application/zip", "X-API-Key", "wrong-key")
	if r.Status != 401 || !bytes.Equal(r.Body, direct.Body) || r.Header.Get("Content-Type") != direct.Header.Get("Content-Type") {
		t.Errorf("wrong key: %d %s, want the registry's %d %s", r.Status, r.Body, direct.Status, direct.Body)
	}
	wantBypass(t, "401", r)
	if n := len(posts(reg)); n != 2 { // the mirror's and the test's own
		t.Errorf("registry received %d writes, want 2", n)
	}
	// A version not above the published ones: the registry's 409, and nothing invalidated.
	old := registrytest.MakeZip("country-codes", "1.0.0")
	r, _ = pushForm(t, m, testKey, "vendor", "a.zip", old)
	if r.Status != 409 {
		t.Errorf("republish: %d %s, want the registry's 409", r.Status, r.Body)
	}
	wantState(t, "list after a refused push", get(t, m.URL+"/packages"), 200, "HIT")
	// An archive of an unknown package: the registry's 404, relayed.
	r = do(t, http.MethodPost, m.URL+"/packages/vendor/unknown/archive", nil, "X-API-Key", testKey)
	if r.Status != 404 {
		t.Errorf("archive unknown: %d %s", r.Status, r.Body)
	}
	// A 5xx of the upstream is a 502 for the client.
	reg.FailNext(1, 500)
	r, _ = pushForm(t, m, testKey, "vendor", "a.zip", z)
	if r.Status != 502 {
		t.Errorf("upstream 500: %d %s, want 502", r.Status, r.Body)
	}
	wantBypass(t, "502", r)
}

func TestWriteUpstreamDownTimeoutOffline(t *testing.T) {
	z := registrytest.MakeZip("country-codes", "3.0.0")
	t.Run("down", func(t *testing.T) {
		m := startMirror(t, "", []string{"http://127.0.0.1:1"}, nil)
		r, _ := pushForm(t, m, testKey, "vendor", "a.zip", z)
		if r.Status != 502 {
			t.Errorf("upstream down: %d %s", r.Status, r.Body)
		}
		checkDataDir(t, m.dir)
	})
	t.Run("timeout", func(t *testing.T) {
		reg, up := newRegistry(t)
		reg.SetAPIKey(testKey)
		reg.SetDelay(3 * time.Second)
		m := startMirror(t, "", []string{up}, nil, func(c *config.Config) { c.UpstreamHeaderTimeout = 300 * time.Millisecond })
		r := do(t, http.MethodPost, m.URL+"/packages/vendor/country-codes/archive", nil, "X-API-Key", testKey)
		if r.Status != 504 {
			t.Errorf("upstream slow: %d %s", r.Status, r.Body)
		}
	})
	t.Run("offline", func(t *testing.T) {
		reg, up := newRegistry(t)
		reg.SetAPIKey(testKey)
		m := startMirror(t, "", []string{up}, nil, func(c *config.Config) { c.Offline = true })
		r, _ := pushForm(t, m, testKey, "vendor", "a.zip", z)
		a := do(t, http.MethodPost, m.URL+"/packages/vendor/country-codes/archive", nil, "X-API-Key", testKey)
		if r.Status != 503 || a.Status != 503 {
			t.Errorf("offline: push %d, archive %d", r.Status, a.Status)
		}
		if n := len(reg.Requests()); n != 0 {
			t.Errorf("offline mirror contacted the registry %d times", n)
		}
	})
}

func TestArchiveForwardsVersionAndInvalidates(t *testing.T) {
	reg, up := newRegistry(t)
	reg.SetAPIKey(testKey)
	m := startMirror(t, "", []string{up}, nil)
	latest := get(t, m.URL+"/packages/vendor/country-codes")
	if !bytes.Equal(latest.Body, reg.Zip("vendor/country-codes", "1.2.0")) {
		t.Fatalf("latest before the archive is not 1.2.0")
	}
	for _, p := range []string{"/packages/vendor/country-codes/versions", "/packages", "/packages/currencies/versions", "/packages/vendor/country-codes?version=1.2.0"} {
		get(t, m.URL+p)
		wantState(t, p+" before", get(t, m.URL+p), 200, "HIT")
	}
	r := do(t, http.MethodPost, m.URL+"/packages/vendor%2Fcountry-codes/archive?version=1.2.0", nil, "X-API-Key", testKey)
	if r.Status != 200 {
		t.Fatalf("archive: %d %s", r.Status, r.Body)
	}
	mustContain(t, string(r.Body), `"version":"1.2.0"`)
	wantBypass(t, "archive", r)
	ps := posts(reg)
	if len(ps) != 1 || ps[0].Path != "/packages/vendor%2Fcountry-codes/archive" || ps[0].RawQuery != "version=1.2.0" {
		t.Fatalf("forwarded archive: %+v", ps)
	}
	forwardedHeaders(t, ps[0].Header, map[string]string{"X-Api-Key": testKey})

	v := get(t, m.URL+"/packages/vendor/country-codes/versions")
	wantState(t, "versions", v, 200, "MISS")
	wantState(t, "list", get(t, m.URL+"/packages"), 200, "MISS")
	wantState(t, "another package's versions", get(t, m.URL+"/packages/currencies/versions"), 200, "HIT")
	wantState(t, "archived version, asked explicitly", get(t, m.URL+"/packages/vendor/country-codes?version=1.2.0"), 200, "HIT")
	latest = get(t, m.URL+"/packages/vendor/country-codes")
	if !bytes.Equal(latest.Body, reg.Zip("vendor/country-codes", "1.0.0")) {
		t.Errorf("latest after archiving 1.2.0 is not 1.0.0")
	}

	// No version: every version, forwarded without a query; raw id form too.
	reg.Reset()
	r = do(t, http.MethodPost, m.URL+"/packages/vendor/country-codes/archive", nil, "X-API-Key", testKey)
	if ps := posts(reg); r.Status != 200 || len(ps) != 1 || ps[0].RawQuery != "" {
		t.Errorf("archive all: %d %+v", r.Status, ps)
	}
	// A version that is not SemVer is refused before the upstream.
	reg.Reset()
	for _, q := range []string{"1.2", "v1.2.0", "..%2F..%2Fx", "1.2.0%00"} {
		r := do(t, http.MethodPost, m.URL+"/packages/vendor/country-codes/archive?version="+q, nil, "X-API-Key", testKey)
		want400(t, r, refpack.ErrTitleInvalidVersion)
	}
	if r := get(t, m.URL+"/packages/vendor/country-codes/archive"); r.Status != 405 {
		t.Errorf("GET archive: %d", r.Status)
	}
	if n := len(reg.Requests()); n != 0 {
		t.Errorf("refused archives reached the registry %d times", n)
	}
}

func TestKeysNeverLeak(t *testing.T) {
	reg, up := newRegistry(t)
	reg.SetAPIKey(testKey)
	var logs syncBuffer
	m := startLoggedMirror(t, &logs, "", []string{up}, nil)
	z := registrytest.MakeZip("country-codes", "2.0.0")
	if r, _ := pushForm(t, m, testKey, "vendor", "a.zip", z); r.Status != 200 {
		t.Fatalf("push: %d %s", r.Status, r.Body)
	}
	if r := pushRaw(t, m, testKey, registrytest.MakeZip("only-pre", "0.1.0")); r.Status != 200 {
		t.Fatalf("raw push: %d %s", r.Status, r.Body)
	}
	pushRaw(t, m, testKey, []byte("not a zip"))
	do(t, http.MethodPost, m.URL+"/packages/vendor/country-codes/archive?version=1.0.0", nil, "X-API-Key", testKey)
	do(t, http.MethodPost, m.URL+"/packages/vendor/country-codes/archive?version=bad", nil, "Authorization", "Bearer "+testKey)
	reg.FailNext(1, 500)
	pushForm(t, m, testKey, "vendor", "b.zip", registrytest.MakeZip("country-codes", "2.1.0"))
	// Reads carrying a key: the key is not the mirror's to pass on.
	for _, p := range []string{"/packages/vendor/country-codes/versions", "/packages/vendor/country-codes?version=2.0.0", "/packages?q=x"} {
		get(t, m.URL+p, "X-API-Key", testKey, "Authorization", "Bearer "+testKey)
	}
	var sawKey bool
	for _, r := range reg.Requests() {
		if r.Method == http.MethodGet && (strings.Contains(r.Header.Get("X-Api-Key"), testKey) || strings.Contains(r.Header.Get("Authorization"), testKey)) {
			t.Errorf("GET %s was sent upstream with the client's key", r.Path)
		}
		if r.Method == http.MethodPost && (r.Header.Get("X-Api-Key") == testKey || r.Header.Get("Authorization") == "Bearer "+testKey) {
			sawKey = true
		}
	}
	if !sawKey {
		t.Fatal("the key never reached the registry; the test proves nothing")
	}
	metrics := get(t, m.URL+"/metrics")
	if logs.String() == "" || !strings.Contains(logs.String(), "/packages") {
		t.Fatalf("the mirror logged nothing; the test proves nothing")
	}
	if strings.Contains(logs.String(), testKey) {
		t.Errorf("the key is in the mirror's log:\n%s", logs.String())
	}
	if bytes.Contains(metrics.Body, []byte(testKey)) {
		t.Errorf("the key is in /metrics")
	}
	err := filepath.WalkDir(m.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(testKey)) || bytes.Contains(b, []byte("SECRET-KEY")) {
			t.Errorf("the key is in %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The store itself (the index as the cache sees it) holds no request headers.
	m.cache.Store().Entries(context.Background(), func(e *cache.Entry) error {
		for k, vs := range e.Header {
			for _, v := range vs {
				if strings.Contains(v, testKey) {
					t.Errorf("entry %s header %s holds the key", e.Key, k)
				}
			}
		}
		return nil
	})
}

// FuzzPush sends arbitrary push requests straight to the handler: whatever the
// content type and body, the answer is never a 5xx of the mirror's making and
// nothing is left in tmp/.
func FuzzPush(f *testing.F) {
	valid := registrytest.MakeZip("country-codes", "9.0.0")
	ct, body := form(f, part{name: "file", filename: "a.refpack.zip", body: valid}, part{name: "ownerId", body: []byte("vendor")})
	f.Add(ct, body)
	f.Add("application/zip", valid)
	f.Add("application/zip", valid[:len(valid)-30])
	f.Add(ct, body[:len(body)/2])
	f.Add("multipart/form-data; boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.zip\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nPK=03=04\r\n--x--\r\n"))
	f.Add("multipart/form-data; boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=\"FILE\"; filename=\"../../a.zip\"\r\n\r\nPK\x03\x04\r\n--x\r\nContent-Disposition: form-data; name=\"ownerId\"\r\n\r\n../..\r\n--x--\r\n"))
	f.Add("multipart/mixed; boundary=x", body)
	f.Add("", []byte{})

	reg := registrytest.New()
	reg.SetAPIKey(testKey)
	reg.AddPackage("vendor", "country-codes", "1.0.0")
	srv := httptest.NewServer(reg)
	defer srv.Close()
	dir := f.TempDir()
	m := startFuzzMirror(f, dir, srv.URL)
	h := m.srv.Handler()
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/packages", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("X-API-Key", testKey)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%q, %d bytes: %d %s", contentType, len(body), rec.Code, rec.Body)
		}
		if des, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(des) != 0 {
			t.Fatalf("tmp/ holds %d files after the answer", len(des))
		}
	})
}

// startFuzzMirror is startMirror for a fuzz target (which has no *testing.T
// before f.Fuzz).
func startFuzzMirror(f *testing.F, dir, refpackUp string) *mirror {
	cfg := config.Default()
	cfg.Data = dir
	cfg.RefPackUpstreams = []string{refpackUp}
	cfg.HydrillaUpstreams = nil
	cfg.MaxUploadSize = 1 << 20
	cfg.MemoryCacheSize = 1 << 20
	cfg.UpstreamConnectTimeout, cfg.UpstreamHeaderTimeout = 2*time.Second, 5*time.Second
	cfg.MaxFails, cfg.FailTimeout = 1000, time.Second
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	wired, err := proxy.Open(context.Background(), &cfg, proxy.OpenOptions{Logger: log, Version: "fuzz", UserAgent: "regmirror/fuzz"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { wired.Close() })
	m := &mirror{cache: wired.Cache, dir: dir, cfg: &cfg, metrics: wired.Metrics, srv: wired.Server}
	return m
}

// An invalidated list is revalidated on the next read, but while the upstream
// is down the copy held before the write is still served, STALE.
func TestWriteInvalidationKeepsStaleFallback(t *testing.T) {
	reg, up := newRegistry(t)
	reg.SetAPIKey(testKey)
	m := startMirror(t, "", []string{up}, nil)
	for _, p := range []string{"/packages", "/packages/vendor/country-codes/versions"} {
		get(t, m.URL+p)
	}
	if r := do(t, http.MethodPost, m.URL+"/packages/vendor/country-codes/archive?version=1.2.0", nil, "X-API-Key", testKey); r.Status != 200 {
		t.Fatalf("archive: %d %s", r.Status, r.Body)
	}
	reg.SetFail(http.StatusServiceUnavailable)
	for _, p := range []string{"/packages", "/packages/vendor/country-codes/versions"} {
		wantState(t, p+" with the upstream down", get(t, m.URL+p), 200, "STALE")
	}
	reg.SetFail(0)
	// Back up: revalidated, and both changed with the archive.
	for _, p := range []string{"/packages", "/packages/vendor/country-codes/versions"} {
		wantState(t, p+" after recovery", get(t, m.URL+p), 200, "MISS")
	}
	mustContain(t, string(get(t, m.URL+"/packages").Body), `"version":"1.0.0"`)
}
