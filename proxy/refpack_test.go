package proxy_test

import (
	"archive/zip"
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/refpack/registrytest"
)

// newRegistry is a test RefPack upstream with a few packages of every shape.
func newRegistry(t *testing.T) (*registrytest.Registry, string) {
	reg := registrytest.New()
	reg.AddPackage("vendor", "country-codes", "1.0.0", registrytest.WithTitle("Country Codes"), registrytest.WithTags("geography"))
	reg.AddPackage("vendor", "country-codes", "1.2.0", registrytest.WithTitle("Country Codes ISO3166"), registrytest.WithTags("geography", "iso3166"),
		registrytest.WithSchema([]byte(`{"type":"array","items":{"type":"object"}}`)),
		registrytest.WithChangelog([]byte(`[{"version":"1.2.0","date":"2024-05-20","description":"more codes"}]`)),
		registrytest.WithReadme("# Country codes\n"))
	reg.AddPackage("vendor", "country-codes", "2.0.0-beta.1")
	reg.AddPackage("", "currencies", "1.0.0", registrytest.WithDescription("first-party one-segment id"))
	reg.AddPackage("acme", "only-pre", "0.1.0-rc.1")
	srv := reg.Start(t)
	return reg, srv.URL
}

// routes of one package, each asked of the upstream and of the mirror.
func packageRoutes(id string) []string {
	enc := strings.ReplaceAll(id, "/", "%2F")
	var out []string
	for _, form := range []string{id, enc} {
		for _, sub := range []string{"", "/meta", "/data", "/schema", "/changelog", "/readme", "/versions"} {
			out = append(out, "/packages/"+form+sub)
			if sub != "/versions" {
				out = append(out, "/packages/"+form+sub+"?version=1.2.0", "/packages/"+form+sub+"?version=1.0.0")
			}
		}
	}
	return out
}

func TestRefPackRoutesEqualUpstreamAndHitSecondTime(t *testing.T) {
	reg, up := newRegistry(t)
	m := startMirror(t, "", []string{up}, []string{"http://127.0.0.1:1"})
	routes := append(packageRoutes("vendor/country-codes"),
		"/packages", "/packages?q=country", "/packages?q=codes&page=1&pageSize=10", "/packages?includeArchived=true",
		"/packages/advanced-search?tags=geography&tags=iso3166", "/packages/advanced-search?ownerId=vendor&q=country",
		"/packages/advanced-search?filters=title:Country%20Codes%20ISO3166",
		"/packages/currencies", "/packages/currencies/meta", "/packages/currencies/readme", "/packages/currencies/versions",
		"/packages/acme/only-pre", "/packages/acme%2Fonly-pre/meta",
		"/packages/vendor/unknown", "/packages/vendor/unknown/meta?version=1.0.0", "/packages/vendor/country-codes?version=9.9.9",
		"//packages/vendor/country-codes/meta?version=1.2.0",
	)
	for _, r := range routes {
		want := get(t, up+strings.Replace(r, "//packages", "/packages", 1))
		got := get(t, m.URL+r)
		if got.Status != want.Status || !bytes.Equal(got.Body, want.Body) || got.Header.Get("Content-Type") != want.Header.Get("Content-Type") {
			t.Errorf("%s: mirror %d %q %.80q, upstream %d %q %.80q", r, got.Status, got.Header.Get("Content-Type"), got.Body,
				want.Status, want.Header.Get("Content-Type"), want.Body)
			continue
		}
		if cd := want.Header.Get("Content-Disposition"); got.Header.Get("Content-Disposition") != cd {
			t.Errorf("%s: Content-Disposition %q, want %q", r, got.Header.Get("Content-Disposition"), cd)
		}
		if xc := got.Header.Get("X-Cache"); xc == "" || got.Header.Get("Cache-Status") == "" {
			t.Errorf("%s: no X-Cache/Cache-Status", r)
		}
	}
	// Everything again: all HITs, and the upstream sees nothing new.
	before := len(reg.Requests())
	for _, r := range routes {
		got := get(t, m.URL+r)
		if xc := got.Header.Get("X-Cache"); xc != "HIT" {
			t.Errorf("second %s: X-Cache %q, want HIT (%s)", r, xc, got.Header.Get("Cache-Status"))
		}
	}
	if n := len(reg.Requests()) - before; n != 0 {
		t.Errorf("warm run made %d upstream requests, want 0", n)
	}
	t.Logf("cold run: the registry saw %d requests (the test's own and the mirror's) for %d routes; warm run: 0", before, len(routes))
}

func TestRefPackOneZipServesVersionedDocuments(t *testing.T) {
	reg, up := newRegistry(t)
	m := startMirror(t, "", []string{up}, nil)
	r := get(t, m.URL+"/packages/vendor%2Fcountry-codes?version=1.2.0")
	if r.Status != 200 || r.Header.Get("X-Cache") != "MISS" || r.Header.Get("Content-Type") != "application/zip" {
		t.Fatalf("zip: %d %v", r.Status, r.Header)
	}
	if r.Header.Get("ETag") == "" || !strings.HasPrefix(r.Header.Get("ETag"), `"`) {
		t.Fatalf("no strong ETag: %q", r.Header.Get("ETag"))
	}
	zipReqs := reg.Count("/packages/vendor")
	for _, sub := range []string{"data", "schema", "changelog", "readme"} {
		d := get(t, m.URL+"/packages/vendor/country-codes/"+sub+"?version=1.2.0")
		want := get(t, up+"/packages/vendor/country-codes/"+sub+"?version=1.2.0")
		if d.Status != 200 || !bytes.Equal(d.Body, want.Body) || d.Header.Get("Content-Type") != want.Header.Get("Content-Type") {
			t.Errorf("%s: %d %q", sub, d.Status, d.Body)
		}
	}
	// The upstream was asked directly above (4) but not by the mirror.
	if n := reg.Count("/packages/vendor") - zipReqs - 4; n != 0 {
		t.Errorf("versioned documents made %d upstream requests, want 0", n)
	}
	// A document the package lacks is the registry's 404, answered locally.
	reg.Reset()
	m2 := get(t, m.URL+"/packages/vendor/country-codes/readme?version=1.0.0")
	if m2.Status != 200 && m2.Status != 404 {
		t.Fatalf("readme: %d", m2.Status)
	}
	get(t, m.URL+"/packages/vendor/country-codes?version=1.0.0")
	reg.Reset()
	nf := get(t, m.URL+"/packages/vendor/country-codes/schema?version=1.0.0")
	if nf.Status != 404 || !strings.Contains(string(nf.Body), `"File not found"`) {
		t.Errorf("absent schema: %d %s", nf.Status, nf.Body)
	}
	if n := len(reg.Requests()); n != 0 {
		t.Errorf("absent schema made %d upstream requests", n)
	}
}

func TestRefPackDownloadHeadRangeConditional(t *testing.T) {
	_, up := newRegistry(t)
	m := startMirror(t, "", []string{up}, nil)
	u := m.URL + "/packages/vendor/country-codes?version=1.2.0"
	full := get(t, u)
	etag := full.Header.Get("ETag")
	head := do(t, http.MethodHead, u, nil)
	if head.Status != 200 || len(head.Body) != 0 || head.Header.Get("Content-Length") != fmt.Sprint(len(full.Body)) {
		t.Errorf("HEAD: %d len=%s", head.Status, head.Header.Get("Content-Length"))
	}
	rg := get(t, u, "Range", "bytes=0-9")
	if rg.Status != http.StatusPartialContent || !bytes.Equal(rg.Body, full.Body[:10]) {
		t.Errorf("Range: %d %d bytes", rg.Status, len(rg.Body))
	}
	nm := get(t, u, "If-None-Match", etag)
	if nm.Status != http.StatusNotModified {
		t.Errorf("If-None-Match: %d", nm.Status)
	}
	if full.Header.Get("Accept-Ranges") != "bytes" {
		t.Errorf("Accept-Ranges: %q", full.Header.Get("Accept-Ranges"))
	}
}

func TestRefPackBadZipIs502AndNotStored(t *testing.T) {
	reg, up := newRegistry(t)
	m := startMirror(t, "", []string{up}, nil)
	good := reg.Zip("vendor/country-codes", "1.2.0")
	cases := map[string][]byte{
		"corrupt":   append([]byte("not a zip at all"), good[20:]...),
		"truncated": good[:len(good)/2],
		"wrong id":  rezip(t, good, func(name string, b []byte) []byte { return b }, "other-name"),
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			reg.SetZip("vendor/country-codes", "1.2.0", body)
			for i := 0; i < 2; i++ {
				before := reg.Count("/packages/vendor")
				r := get(t, m.URL+"/packages/vendor/country-codes?version=1.2.0")
				if r.Status != http.StatusBadGateway {
					t.Fatalf("attempt %d: status %d, want 502", i, r.Status)
				}
				mustContain(t, string(r.Body), `"error"`)
				if reg.Count("/packages/vendor") == before {
					t.Fatalf("attempt %d answered without asking the upstream: something was stored", i)
				}
			}
		})
	}
	if counter(t, m, "verify") < 6 {
		t.Errorf("regmirror_verify_failures_total = %v, want ≥ 6", counter(t, m, "verify"))
	}
}

// rezip rewrites a package zip, optionally changing the manifest id.
func rezip(t *testing.T, z []byte, edit func(string, []byte) []byte, newID string) []byte {
	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range zr.File {
		rc, _ := f.Open()
		var b bytes.Buffer
		b.ReadFrom(rc)
		rc.Close()
		body := edit(f.Name, b.Bytes())
		if f.Name == "data.meta.json" && newID != "" {
			body = bytes.Replace(body, []byte(`"country-codes"`), []byte(`"`+newID+`"`), 1)
		}
		w, _ := zw.Create(f.Name)
		w.Write(body)
	}
	zw.Close()
	return buf.Bytes()
}

func TestRefPackBadInputIs400BeforeUpstream(t *testing.T) {
	reg, up := newRegistry(t)
	m := startMirror(t, "", []string{up}, nil)
	for _, p := range []string{
		"/packages/a/b/c", "/packages/..%2F..%2Fetc", "/packages/%2e%2e/meta", "/packages/vendor/..",
		"/packages/vendor%5Cx", "/packages/vendor/x%00", "/packages/-bad-/x", "/packages//x",
	} {
		r := get(t, m.URL+p)
		if r.Status != 400 {
			t.Errorf("%s: %d %s, want 400", p, r.Status, r.Body)
		}
	}
	for _, v := range []string{"1.2", "v1.2.0", "1.2.0+", "x", "1.2.0%20"} {
		r := get(t, m.URL+"/packages/vendor/country-codes?version="+v)
		if r.Status != 400 || !strings.Contains(string(r.Body), `"Invalid version format"`) {
			t.Errorf("version %q: %d %s", v, r.Status, r.Body)
		}
	}
	if n := len(reg.Requests()); n != 0 {
		t.Errorf("bad input reached the upstream %d times", n)
	}
}

func TestRefPackNotFoundIsCachedNegative(t *testing.T) {
	reg, up := newRegistry(t)
	m := startMirror(t, "", []string{up}, nil)
	a := get(t, m.URL+"/packages/vendor/missing/meta?version=1.0.0")
	b := get(t, m.URL+"/packages/vendor/missing/meta?version=1.0.0")
	if a.Status != 404 || b.Status != 404 || b.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("404s: %d %d %s", a.Status, b.Status, b.Header.Get("X-Cache"))
	}
	mustContain(t, string(b.Body), `"Package not found"`)
	if n := reg.Count("/packages/vendor%2Fmissing"); n != 1 {
		t.Errorf("upstream asked %d times, want 1", n)
	}
}

func TestRefPackSeveralUpstreams404FallsThrough(t *testing.T) {
	empty := registrytest.New()
	emptyURL := empty.Start(t).URL
	_, up := newRegistry(t)
	m := startMirror(t, "", []string{emptyURL, up}, nil)
	r := get(t, m.URL+"/packages/vendor/country-codes/meta?version=1.2.0")
	if r.Status != 200 {
		t.Fatalf("status %d %s", r.Status, r.Body)
	}
	if empty.Count("/packages") != 1 {
		t.Errorf("first upstream asked %d times", empty.Count("/packages"))
	}
}

func TestMetricsCountRequests(t *testing.T) {
	_, up := newRegistry(t)
	m := startMirror(t, "", []string{up}, nil)
	get(t, m.URL+"/packages/vendor/country-codes/meta?version=1.2.0")
	get(t, m.URL+"/packages/vendor/country-codes/meta?version=1.2.0")
	if v := counter(t, m, "requests", "refpack", "meta", "200", "HIT"); v != 1 {
		t.Errorf("requests_total{meta,200,HIT} = %v", v)
	}
	body := string(get(t, m.URL+"/metrics").Body)
	for _, name := range []string{"regmirror_requests_total", "regmirror_cache_size_bytes{tier=\"disk\"}", "regmirror_cache_entries{tier=\"memory\"}", "regmirror_upstream_requests_total"} {
		mustContain(t, body, name)
	}
}

// A document's not-found answer, fetched while the zip was not held, ages
// like every not-found answer: it is not held for ever.
func TestRefPackDocumentNotFoundAges(t *testing.T) {
	reg, up := newRegistry(t)
	m := startMirror(t, "", []string{up}, nil, func(c *config.Config) { c.NegativeMaxAge = 50 * time.Millisecond })
	for i := 0; i < 2; i++ {
		if r := get(t, m.URL+"/packages/currencies/readme?version=1.0.0"); r.Status != http.StatusNotFound {
			t.Fatalf("readme the package lacks: %d", r.Status)
		}
		m.advance(100 * time.Millisecond)
	}
	if n := reg.Count("/packages/currencies/readme"); n != 2 {
		t.Errorf("upstream asked %d times over two negative-max-ages, want 2", n)
	}
}
