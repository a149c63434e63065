package registrytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regmirror/regmirror/refpack"
)

// get fetches path and returns status, headers and body.
func get(t *testing.T, base, path string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, b
}

func post(t *testing.T, base, path, ctype string, body []byte, hdr ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func newVendor(t *testing.T) (*Registry, string) {
	r := New()
	r.AddPackage("vendor", "country-codes", "1.1.0", WithTitle("Country Codes ISO3166"), WithCreated("2024-04-15T08:30:00Z"))
	r.AddPackage("vendor", "country-codes", "1.2.0", WithTitle("Country Codes ISO3166"), WithDescription("List of country codes based on ISO3166."),
		WithCreated("2024-05-20T10:00:00Z"), WithTags("countries", "iso3166", "geography"), WithLicense("MIT"), WithDocs())
	r.AddPackage("vendor", "country-codes", "2.0.0-rc.1", WithCreated("2024-06-01T00:00:00Z"))
	r.AddPackage("", "currencies", "0.1.0", WithTitle("Currencies"), WithTags("money"))
	r.AddPackage("acme", "old", "1.0.0", Archived())
	return r, r.Start(t).URL
}

func TestMakeZipIsValid(t *testing.T) {
	for _, opts := range [][]PackageOption{nil, {WithDocs(), WithAsset("logo.png", []byte("png")), WithTags("a")}, {WithAssetsDir(), WithAsset("a", nil)}, {Stored()}} {
		z := MakeZip("country-codes", "1.2.0", opts...)
		m, err := refpack.ValidateZip(bytes.NewReader(z), int64(len(z)), refpack.DefaultLimits())
		if err != nil {
			t.Fatalf("MakeZip: %v", err)
		}
		if m.Matches("vendor/country-codes", "1.2.0") != nil || m.Raw["license"] != "" {
			t.Fatalf("manifest %+v", m)
		}
	}
	if !bytes.Equal(MakeZip("a", "1.0.0"), MakeZip("a", "1.0.0")) {
		t.Error("MakeZip is not deterministic")
	}
	for name, opt := range map[string]PackageOption{
		"no data": Without("data.json"), "no jws": Without("data.meta.json.jws"), "traversal": WithEntry("../x", nil),
		"duplicate": WithEntry("data.json", []byte("[]")), "bad data": WithData([]byte("{}")),
		"no id": WithoutManifestField("id"), "sub-folder": WithAsset("a/b", nil),
	} {
		z := MakeZip("a", "1.0.0", opt)
		if _, err := refpack.ValidateZip(bytes.NewReader(z), int64(len(z)), refpack.Limits{}); !errors.Is(err, refpack.ErrInvalidPackage) {
			t.Errorf("%s: ValidateZip = %v", name, err)
		}
	}
}

func TestDownloadAndDocuments(t *testing.T) {
	r, base := newVendor(t)
	for _, path := range []string{"/packages/vendor/country-codes", "/packages/vendor%2Fcountry-codes", "//packages/vendor/country-codes?version=1.2.0"} {
		code, h, body := get(t, base, path)
		if code != 200 || h.Get("Content-Type") != "application/zip" ||
			h.Get("Content-Disposition") != `attachment; filename="vendor-country-codes-1.2.0.refpack.zip"` ||
			!bytes.Equal(body, r.Zip("vendor/country-codes", "1.2.0")) {
			t.Fatalf("GET %s = %d %v", path, code, h)
		}
	}
	code, h, _ := get(t, base, "/packages/currencies")
	if code != 200 || h.Get("Content-Disposition") != `attachment; filename="currencies-0.1.0.refpack.zip"` {
		t.Fatalf("one-segment download = %d %v", code, h)
	}
	// An archived version still downloads when asked for, but is not latest.
	if code, _, _ := get(t, base, "/packages/acme/old?version=1.0.0"); code != 200 {
		t.Fatalf("archived explicit = %d", code)
	}
	code, _, body := get(t, base, "/packages/acme/old")
	if code != 404 || string(body) != `{"error":"Package not found","message":"Package 'acme/old' version 'latest' was not found"}` {
		t.Fatalf("archived latest = %d %s", code, body)
	}
	code, _, body = get(t, base, "/packages/vendor/country-codes?version=9.9.9")
	if code != 404 || !strings.Contains(string(body), "version '9.9.9' was not found") {
		t.Fatalf("unknown version = %d %s", code, body)
	}
	for _, v := range []string{"v1.2.0", "1.2", "1.2.0+build"} { // raw "+" is a space
		code, _, body = get(t, base, "/packages/vendor/country-codes?version="+v)
		if code != 400 || string(body) != `{"error":"Invalid version format","message":"Version must be a valid SemVer string"}` {
			t.Fatalf("version %q = %d %s", v, code, body)
		}
	}

	code, h, body = get(t, base, "/packages/vendor%2Fcountry-codes/meta?version=1.2.0")
	var meta map[string]any
	if code != 200 || h.Get("Content-Type") != refpack.ContentTypeJSON || json.Unmarshal(body, &meta) != nil ||
		meta["id"] != "vendor/country-codes" || meta["version"] != "1.2.0" || meta["license"] != "MIT" || !strings.HasPrefix(string(body), `{"id":"vendor/country-codes","version":"1.2.0","title"`) {
		t.Fatalf("meta = %d %s", code, body)
	}
	for sub, ct := range map[string]string{"data": refpack.ContentTypeJSON, "schema": refpack.ContentTypeJSON, "changelog": refpack.ContentTypeJSON, "readme": refpack.ContentTypeMarkdown} {
		code, h, body := get(t, base, "/packages/vendor/country-codes/"+sub)
		if code != 200 || h.Get("Content-Type") != ct || len(body) == 0 {
			t.Fatalf("%s = %d %v", sub, code, h)
		}
	}
	code, _, body = get(t, base, "/packages/vendor/country-codes/schema?version=1.1.0")
	if code != 404 || string(body) != `{"error":"File not found","message":"Package 'vendor/country-codes' version '1.1.0' does not contain data.schema.json"}` {
		t.Fatalf("missing schema = %d %s", code, body)
	}
	code, _, body = get(t, base, "/packages/vendor/country-codes/versions")
	want := `{"packageId":"vendor/country-codes","versions":[{"version":"2.0.0-rc.1","createdAt":"2024-06-01T00:00:00Z","isArchived":false},{"version":"1.2.0","createdAt":"2024-05-20T10:00:00Z","isArchived":false},{"version":"1.1.0","createdAt":"2024-04-15T08:30:00Z","isArchived":false}]}`
	if code != 200 || string(body) != want {
		t.Fatalf("versions = %d %s", code, body)
	}
	if code, _, _ := get(t, base, "/packages/nobody/nothing/versions"); code != 404 {
		t.Fatalf("unknown versions = %d", code)
	}
}

func TestETag(t *testing.T) {
	_, base := newVendor(t)
	code, h, _ := get(t, base, "/packages/vendor/country-codes/versions")
	etag := h.Get("ETag")
	if code != 200 || etag == "" {
		t.Fatalf("no ETag: %d %v", code, h)
	}
	code, h, body := get(t, base, "/packages/vendor/country-codes/versions", "If-None-Match", etag)
	if code != 304 || len(body) != 0 || h.Get("ETag") != etag {
		t.Fatalf("revalidation = %d %q", code, body)
	}
	if code, _, _ := get(t, base, "/packages/vendor/country-codes/versions", "If-None-Match", `"other"`); code != 200 {
		t.Fatalf("other etag = %d", code)
	}
}

func TestLists(t *testing.T) {
	_, base := newVendor(t)
	code, _, body := get(t, base, "/packages?q=countr&page=1&pageSize=10")
	want := `{"items":[{"id":"vendor/country-codes","name":"Country Codes ISO3166","description":"List of country codes based on ISO3166.","version":"1.2.0","isArchived":false,"updatedAt":"2024-05-20T10:00:00Z"}],"totalCount":1,"pageNumber":1,"pageSize":10,"totalPages":1}`
	if code != 200 || string(body) != want {
		t.Fatalf("list = %d %s", code, body)
	}
	var page refpack.ListPage
	_, _, body = get(t, base, "/packages")
	if json.Unmarshal(body, &page) != nil || page.TotalCount != 2 || page.PageSize != 20 || page.Items[0]["id"] != "currencies" {
		t.Fatalf("default list = %s", body)
	}
	_, _, body = get(t, base, "/packages?includeArchived=true")
	if json.Unmarshal(body, &page) != nil || page.TotalCount != 3 || page.Items[0]["id"] != "acme/old" || page.Items[0]["isArchived"] != true {
		t.Fatalf("archived list = %s", body)
	}
	for _, q := range []string{"page=0", "pageSize=101", "pageSize=x"} {
		if code, _, _ := get(t, base, "/packages?"+q); code != 400 {
			t.Fatalf("%s = %d", q, code)
		}
	}
	_, _, body = get(t, base, "/packages/advanced-search?tags=geography&tags=iso3166&ownerId=vendor&filters=license:MIT")
	if json.Unmarshal(body, &page) != nil || page.TotalCount != 1 || page.Items[0]["id"] != "vendor/country-codes" {
		t.Fatalf("advanced = %s", body)
	}
	_, _, body = get(t, base, "/packages/advanced-search?tags=money&tags=geography")
	if json.Unmarshal(body, &page) != nil || page.TotalCount != 0 {
		t.Fatalf("advanced all tags = %s", body)
	}
	if code, _, _ := get(t, base, "/packages/advanced-search?filters=broken"); code != 400 {
		t.Fatalf("malformed filters = %d", code)
	}
}

func multipartBody(t *testing.T, filename string, zip []byte, owner string) (string, []byte) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if zip != nil {
		fw, _ := mw.CreateFormFile("file", filename)
		fw.Write(zip)
	}
	if owner != "" {
		mw.WriteField("ownerId", owner)
	}
	mw.Close()
	return mw.FormDataContentType(), buf.Bytes()
}

func TestPushAndArchive(t *testing.T) {
	r := New()
	r.SetAPIKey("secret")
	r.SetDefaultOwner("cli")
	base := r.Start(t).URL

	ct, body := multipartBody(t, "cc.refpack.zip", MakeZip("country-codes", "1.0.0", WithCreated("2024-01-01T00:00:00Z")), "vendor")
	if code, b := post(t, base, "/packages", ct, body); code != 401 || !strings.Contains(string(b), "API key is missing or invalid.") {
		t.Fatalf("no key = %d %s", code, b)
	}
	if code, _ := post(t, base, "/packages", ct, body, "X-API-Key", "wrong"); code != 401 {
		t.Fatalf("wrong key = %d", code)
	}
	if code, b := post(t, base, "/packages", ct, body, "X-API-Key", "secret"); code != 200 || string(b) != `{"success":true}` {
		t.Fatalf("push = %d %s", code, b)
	}
	if code, b := post(t, base, "/packages", ct, body, "X-API-Key", "secret"); code != 409 {
		t.Fatalf("same version = %d %s", code, b)
	}
	ct2, body2 := multipartBody(t, "cc.zip", MakeZip("country-codes", "0.9.0"), "vendor")
	if code, _ := post(t, base, "/packages", ct2, body2, "X-API-Key", "secret"); code != 409 {
		t.Fatalf("lower version = %d", code)
	}
	ct3, body3 := multipartBody(t, "cc.tar", MakeZip("country-codes", "2.0.0"), "vendor")
	if code, _ := post(t, base, "/packages", ct3, body3, "X-API-Key", "secret"); code != 400 {
		t.Fatalf("bad file name = %d", code)
	}
	ct4, body4 := multipartBody(t, "cc.zip", MakeZip("country-codes", "2.0.0", Without("data.json")), "vendor")
	if code, b := post(t, base, "/packages", ct4, body4, "X-API-Key", "secret"); code != 400 || !strings.Contains(string(b), `"error":"Package validation failed"`) {
		t.Fatalf("invalid package = %d %s", code, b)
	}
	ct5, body5 := multipartBody(t, "cc.zip", MakeZip("country-codes", "2.0.0"), "")
	if code, _ := post(t, base, "/packages", ct5, body5, "X-API-Key", "secret"); code != 400 {
		t.Fatalf("no owner = %d", code)
	}
	// The RefPack CLI's form: raw body, Bearer token, the default owner.
	if code, b := post(t, base, "/packages", "application/zip", MakeZip("tool", "1.0.0"), "Authorization", "Bearer secret"); code != 200 {
		t.Fatalf("cli push = %d %s", code, b)
	}
	if code, _ := post(t, base, "/packages", "application/zip", MakeZip("tool", "1.1.0"), "Authorization", "Bearer nope"); code != 401 {
		t.Fatalf("cli wrong token = %d", code)
	}
	if code, _, _ := get(t, base, "/packages/cli/tool/meta"); code != 200 {
		t.Fatalf("cli package meta = %d", code)
	}
	code, _, b := get(t, base, "/packages/vendor/country-codes/versions")
	if code != 200 || !strings.Contains(string(b), `"createdAt":"2024-01-01T00:00:00Z"`) {
		t.Fatalf("pushed versions = %d %s", code, b)
	}
	recs := r.Requests()
	if last := recs[len(recs)-3]; last.Header.Get("Authorization") != "Bearer nope" || last.BodySize == 0 || last.Method != "POST" {
		t.Fatalf("recorded %+v", last)
	}

	if code, _ := post(t, base, "/packages/vendor/country-codes/archive?version=1.0.0", "", nil); code != 401 {
		t.Fatalf("archive without key = %d", code)
	}
	code, b = post(t, base, "/packages/vendor%2Fcountry-codes/archive?version=1.0.0", "", nil, "X-API-Key", "secret")
	if code != 200 || string(b) != `{"message":"Package 'vendor/country-codes' version '1.0.0' has been archived","packageId":"vendor/country-codes","success":true,"version":"1.0.0"}` {
		t.Fatalf("archive = %d %s", code, b)
	}
	if code, _ := post(t, base, "/packages/vendor/country-codes/archive?version=1.0.0", "", nil, "X-API-Key", "secret"); code != 200 {
		t.Fatalf("archive twice = %d", code)
	}
	if code, _, _ := get(t, base, "/packages/vendor/country-codes"); code != 404 {
		t.Fatalf("latest after archive = %d", code)
	}
	if code, _ := post(t, base, "/packages/cli/tool/archive", "", nil, "X-API-Key", "secret"); code != 200 {
		t.Fatalf("archive all = %d", code)
	}
	if code, _ := post(t, base, "/packages/nobody/x/archive", "", nil, "X-API-Key", "secret"); code != 404 {
		t.Fatalf("archive unknown = %d", code)
	}
	_, _, b = get(t, base, "/packages")
	if !strings.Contains(string(b), `"totalCount":0`) {
		t.Fatalf("list after archive = %s", b)
	}
}

func TestHooks(t *testing.T) {
	r, base := newVendor(t)
	path := "/packages/vendor/country-codes"

	r.FailNext(2, 502)
	for i := range 2 {
		if code, _, _ := get(t, base, path); code != 502 {
			t.Fatalf("fail %d = %d", i, code)
		}
	}
	if code, _, _ := get(t, base, path); code != 200 {
		t.Fatalf("after FailNext = %d", code)
	}
	r.SetFail(500)
	code, _, body := get(t, base, path)
	if code != 500 || !strings.Contains(string(body), `"title":"Internal Server Error"`) {
		t.Fatalf("SetFail = %d %s", code, body)
	}
	r.SetFail(0)

	r.SetCutBody(10)
	res, err := http.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err == nil || len(b) != 10 {
		t.Fatalf("cut body: %d bytes, %v", len(b), err)
	}
	r.SetCutBody(-1)

	r.SetDown(true)
	if _, err := http.Get(base + path); err == nil {
		t.Fatal("down: no error")
	}
	r.SetDown(false)

	r.SetDelay(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("delay: %v", err)
	}
	cancel()
	r.SetDelay(0)

	// Hold piles up concurrent requests; WaitCount sees them arrive.
	r.Reset()
	release := r.Hold()
	var wg sync.WaitGroup
	codes := make([]int, 3)
	for i := range codes {
		wg.Go(func() {
			res, err := http.Get(base + path + "/versions")
			if err == nil {
				codes[i] = res.StatusCode
				res.Body.Close()
			}
		})
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := r.WaitCount(wctx, path+"/versions", 3); err != nil {
		t.Fatal(err)
	}
	release()
	wg.Wait()
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 200 || r.Count("/packages/vendor/country-codes/") != 3 || r.Count("/packages/other") != 0 {
		t.Fatalf("held requests: %v, count %d", codes, r.Count(path))
	}

	// SetZip serves other bytes; the documents follow them.
	r.SetZip("vendor/country-codes", "1.2.0", []byte("not a zip"))
	if _, _, b := get(t, base, path+"?version=1.2.0"); string(b) != "not a zip" {
		t.Fatalf("SetZip bytes = %q", b)
	}
	if code, _, _ := get(t, base, path+"/data?version=1.2.0"); code != 500 {
		t.Fatalf("data of corrupt zip = %d", code)
	}
	r.SetZip("other/pkg", "3.0.0", MakeZip("pkg", "3.0.0", WithTitle("From bytes")))
	code, _, b = get(t, base, "/packages/other/pkg/meta")
	if code != 200 || !strings.Contains(string(b), `"title":"From bytes"`) || !strings.Contains(string(b), `"id":"other/pkg"`) {
		t.Fatalf("SetZip new version meta = %d %s", code, b)
	}
}

// TestCloseReleasesHeld checks that ending the test cannot hang on a held
// request: Close answers it.
func TestCloseReleasesHeld(t *testing.T) {
	r := New()
	r.AddPackage("a", "b", "1.0.0")
	base := r.Start(t).URL
	r.Hold()
	done := make(chan int)
	go func() {
		res, err := http.Get(base + "/packages/a/b")
		if err != nil {
			done <- 0
			return
		}
		res.Body.Close()
		done <- res.StatusCode
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.WaitCount(ctx, "/packages/a/b", 1); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if code := <-done; code != 503 {
		t.Fatalf("held request after Close = %d", code)
	}
}

// TestConcurrentUse runs reads and writes at once, for the race detector.
func TestConcurrentUse(t *testing.T) {
	r, base := newVendor(t)
	r.SetAPIKey("k")
	// do reports with t.Error: t.Fatal must not be called off the test goroutine.
	do := func(method, path string) {
		req, _ := http.NewRequest(method, base+path, nil)
		req.Header.Set("X-API-Key", "k")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("%s %s = %d", method, path, res.StatusCode)
		}
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 5 {
				switch (i + j) % 4 {
				case 0:
					do("GET", "/packages/vendor/country-codes/versions")
				case 1:
					do("GET", "/packages?includeArchived=true")
				case 2:
					do("POST", "/packages/vendor/country-codes/archive?version=1.1.0")
				case 3:
					r.AddPackage("vendor", "country-codes", "1.1.0")
					do("GET", "/packages/vendor/country-codes?version=1.1.0")
				}
				_ = r.Count("/packages")
			}
		})
	}
	wg.Wait()
	if n := len(r.Requests()); n < 40 {
		t.Fatalf("recorded %d requests", n)
	}
}
