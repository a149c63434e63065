package hydrillatest

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regmirror/regmirror/hydrilla"
)

func get(t *testing.T, url string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

// TestGeneratedRepositoryIsConsistent walks the repository the way
// Haketilo's refresh and a full sync do, and checks every answer with the
// hydrilla package the mirror will use.
func TestGeneratedRepositoryIsConsistent(t *testing.T) {
	r := Generate(40, 7)
	r.SetPrefix("/api_v2")
	r.Start(t)
	base := r.BaseURL()
	if !strings.HasSuffix(base, "/api_v2") {
		t.Fatalf("BaseURL %q", base)
	}

	status, hdr, body := get(t, base+"/list_all")
	if status != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("list_all: %d %s", status, hdr.Get("Content-Type"))
	}
	if !bytes.Equal(body, r.ListAll()) {
		t.Error("ListAll differs from /list_all")
	}
	list, err := hydrilla.ParseList(body)
	if err != nil || len(list.Skipped) > 0 {
		t.Fatalf("ParseList: %v %v", err, list.Skipped)
	}
	if list.GeneratedBy == nil || *list.GeneratedBy != Server {
		t.Errorf("generated_by %+v", list.GeneratedBy)
	}
	refs := list.Refs()
	if !slices.EqualFunc(refs, r.Refs(), func(a, b hydrilla.ItemRef) bool { return a.String() == b.String() }) {
		t.Error("Refs differs from /list_all")
	}

	majors := map[int]int{}
	multi := map[string]int{}
	trailingZero, unknownField, patterns := 0, 0, map[string]bool{}
	files := map[string]bool{}
	for _, ref := range refs {
		status, hdr, body := get(t, base+"/"+ref.String())
		if status != 200 || hdr.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d", ref, status)
		}
		want, ok := r.Item(ref)
		if !ok || !bytes.Equal(body, want) {
			t.Fatalf("%s: served bytes differ from Item", ref)
		}
		_, _, again := get(t, base+"/"+ref.String())
		if !bytes.Equal(body, again) {
			t.Fatalf("%s: bytes not stable", ref)
		}
		it, err := hydrilla.CheckItem(body, ref)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		majors[it.SchemaMajor]++
		multi[ref.Type+"/"+ref.Identifier]++
		if bytes.Contains(body, []byte(", 0]")) {
			trailingZero++
		}
		if bytes.Contains(body, []byte(`"comment"`)) {
			unknownField++
		}
		for _, p := range it.Patterns {
			patterns[p] = true
		}
		if len(it.Files) == 0 {
			t.Errorf("%s names no files", ref)
		}
		for _, f := range it.Files {
			files[f.SHA256] = true
		}
	}
	if majors[1] == 0 || majors[2] == 0 {
		t.Errorf("schema majors %v", majors)
	}
	versions := 0
	for _, n := range multi {
		if n > 1 {
			versions++
		}
	}
	if versions == 0 || trailingZero == 0 || unknownField == 0 {
		t.Errorf("items with several versions %d, trailing zero %d, unknown field %d", versions, trailingZero, unknownField)
	}
	for _, want := range []string{"://*.", "://**.", "://***.", "http*://", "/*", "/**", "/***", ":8080/", "ftp://"} {
		found := false
		for p := range patterns {
			if strings.Contains(p, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("no pattern contains %q", want)
		}
	}
	for sha := range files {
		status, hdr, body := get(t, base+"/file/sha256/"+sha)
		sum := sha256.Sum256(body)
		if status != 200 || hex.EncodeToString(sum[:]) != sha || hdr.Get("Content-Type") != "application/octet-stream" {
			t.Fatalf("file %s: %d, hash %x", sha, status, sum)
		}
	}
	if len(files) != len(r.Files()) {
		t.Errorf("items name %d files, repository holds %d", len(files), len(r.Files()))
	}

	// Every sample URL has an answer, and it is what Query says.
	for _, u := range r.SampleURLs() {
		status, _, body := get(t, base+"/query?url="+urlQueryEscape(u))
		if status != 200 {
			t.Fatalf("query %s: %d", u, status)
		}
		var ans struct {
			Schema   string                  `json:"$schema"`
			Mappings []hydrilla.QueryMapping `json:"mappings"`
		}
		if err := json.Unmarshal(body, &ans); err != nil || ans.Schema != hydrilla.SchemaQueryResult {
			t.Fatalf("query %s: %v %s", u, err, body)
		}
		if len(ans.Mappings) == 0 {
			t.Errorf("query %s: no mappings", u)
		}
		want, _ := r.Query(u)
		if !bytes.Equal(body, hydrilla.QueryAnswerBy(Server, want)) {
			t.Errorf("query %s: answer differs from Query", u)
		}
	}
}

func urlQueryEscape(s string) string {
	return strings.NewReplacer("%", "%25", "&", "%26", "+", "%2B", "#", "%23", "?", "%3F", " ", "%20").Replace(s)
}

func TestGenerateIsDeterministic(t *testing.T) {
	a, b, c := Generate(15, 3), Generate(15, 3), Generate(15, 4)
	if !bytes.Equal(a.ListAll(), b.ListAll()) || !slices.Equal(a.Files(), b.Files()) {
		t.Fatal("same seed, different repositories")
	}
	for _, ref := range a.Refs() {
		x, _ := a.Item(ref)
		y, _ := b.Item(ref)
		if !bytes.Equal(x, y) {
			t.Fatalf("%s differs", ref)
		}
	}
	if bytes.Equal(a.ListAll(), c.ListAll()) {
		t.Error("different seeds, same repository")
	}
}

// smallRepo builds a hand-made repository for route tests.
func smallRepo(t *testing.T) (*Repo, string) {
	r := New()
	js := r.AddScript("hello.js", []byte("console.log('hello');\n"))
	lic := r.AddScript("LICENSES/CC0-1.0.txt", []byte("CC0\n"))
	r.AddResource(Resource{Identifier: "helloapple", Version: hydrilla.Version{2021, 11, 10}, Scripts: []hydrilla.FileRef{js}, SourceCopyright: []hydrilla.FileRef{lic}, SourceName: "hello"})
	r.AddResource(Resource{Identifier: "helloapple", Version: hydrilla.Version{2, 0}, Revision: 3, SchemaMajor: 2, Scripts: []hydrilla.FileRef{js}, SourceName: "hello"})
	r.AddMapping(Mapping{Identifier: "helloapple", LongName: "Hello Apple", Version: hydrilla.Version{2021, 11, 10},
		Payloads: map[string]string{"https://hydrillabugs.koszko.org/***": "helloapple"}, SourceCopyright: []hydrilla.FileRef{lic}, SourceName: "hello"})
	r.Start(t)
	return r, r.BaseURL()
}

func TestRoutes(t *testing.T) {
	r, base := smallRepo(t)
	newest, _ := r.Item(hydrilla.ItemRef{Type: "resource", Identifier: "helloapple", Version: hydrilla.Version{2021, 11, 10}})
	old, _ := r.Item(hydrilla.ItemRef{Type: "resource", Identifier: "helloapple", Version: hydrilla.Version{2}})
	tests := []struct {
		path   string
		status int
		ctype  string
		body   []byte
	}{
		{"/", 200, "text/html; charset=utf-8", nil},
		{"/list_all", 200, "application/json", nil},
		{"/resource/helloapple.json", 200, "application/json", newest},
		{"/resource/helloapple.json?ver=2", 200, "application/json", newest}, // the real server ignores ver
		{"/resource/helloapple/2021.11.10", 200, "application/json", newest},
		{"/resource/helloapple/2", 200, "application/json", old},
		{"/resource/helloapple/2.0", 404, "", nil}, // only the canonical name exists
		{"/resource/helloapple/02", 404, "", nil},
		{"/resource/helloapple/3", 404, "", nil},
		{"/resource/helloapple", 404, "", nil},
		{"/resource/HelloApple.json", 404, "", nil},
		{"/resource/..json", 404, "", nil},
		{"/resource/nothere.json", 404, "", nil},
		{"/mapping/helloapple.json", 200, "application/json", nil},
		{"/mapping/helloapple/2021.11.10", 200, "application/json", nil},
		{"/mapping/helloapple/2", 404, "", nil},
		{"/file/sha256/" + strings.Repeat("0", 64), 404, "", nil},
		{"/file/sha256/nothex", 404, "", nil},
		{"/file/sha256/", 404, "", nil},
		{"/query", 400, "", nil},
		{"/query?url=", 500, "", nil},
		{"/query?url=notaurl", 500, "", nil},
		{"/query?url=https://hydrillabugs.koszko.org/issues/1", 200, "application/json", nil},
		{"/source/hello.json", 200, "application/json", nil},
		{"/source/hello.zip", 200, "application/zip", nil},
		{"/source/hello.tar", 404, "", nil},
		{"/source/nothere.json", 404, "", nil},
		{"/script?n=hello.js", 200, "application/json", nil},
		{"/script?n=nothere.js", 404, "", nil},
		{"/script", 400, "", nil},
		{"/bag?n=helloapple", 200, "application/json", nil},
		{"/pattern?n=https://hydrillabugs.koszko.org/***", 200, "application/json", nil},
		{"/pattern?n=https://nothere/***", 404, "", nil},
		{"/content/x", 404, "", nil},
		{"/nothing", 404, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			status, hdr, body := get(t, base+tt.path)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			if tt.ctype != "" && hdr.Get("Content-Type") != tt.ctype {
				t.Errorf("Content-Type %q, want %q", hdr.Get("Content-Type"), tt.ctype)
			}
			if status >= 400 && !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") {
				t.Errorf("error Content-Type %q", hdr.Get("Content-Type"))
			}
			if tt.body != nil && !bytes.Equal(body, tt.body) {
				t.Errorf("body %s, want %s", body, tt.body)
			}
		})
	}

	resp, err := http.Post(base+"/list_all", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}

func TestListAllShape(t *testing.T) {
	r, _ := smallRepo(t)
	want := `{"$schema": "https://hydrilla.koszko.org/schemas/api_package_list-2.schema.json", ` +
		`"resources": [{"version": [2], "identifier": "helloapple", "long_name": "helloapple", "revision": 3}, ` +
		`{"version": [2021, 11, 10], "identifier": "helloapple", "long_name": "helloapple", "revision": 1}], ` +
		`"mappings": [{"version": [2021, 11, 10], "identifier": "helloapple", "long_name": "Hello Apple"}], ` +
		`"generated_by": {"name": "hydrilla.server", "version": "3.0"}}`
	if got := string(r.ListAll()); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestItemJSON(t *testing.T) {
	r, _ := smallRepo(t)
	body, _ := r.Item(hydrilla.ItemRef{Type: "resource", Identifier: "helloapple", Version: hydrilla.Version{2}})
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	// Written as given ([2, 0]), served at /2; major 2 fields present.
	if fmt.Sprint(doc["version"]) != "[2 0]" || doc["$schema"] != hydrilla.SchemaBase+"api_resource_description-2.schema.json" {
		t.Errorf("version %v schema %v", doc["version"], doc["$schema"])
	}
	for _, k := range []string{"permissions", "required_mappings", "min_haketilo_version", "source_copyright", "scripts", "uuid", "generated_by"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("no %s", k)
		}
	}
}

func TestSource(t *testing.T) {
	_, base := smallRepo(t)
	_, _, desc := get(t, base+"/source/hello.json")
	_, _, zipBody := get(t, base+"/source/hello.zip")
	var d struct {
		Archives struct {
			Zip struct {
				SHA256 string `json:"sha256"`
			} `json:"zip"`
		} `json:"source_archives"`
		Definitions []map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(desc, &d); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(zipBody)
	if d.Archives.Zip.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("zip sha256 %s, description says %s", hex.EncodeToString(sum[:]), d.Archives.Zip.SHA256)
	}
	if len(d.Definitions) != 3 {
		t.Errorf("definitions %v", d.Definitions)
	}
	zr, err := zip.NewReader(bytes.NewReader(zipBody), int64(len(zipBody)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	if want := []string{"LICENSES/CC0-1.0.txt", "hello.js", "index.json"}; !slices.Equal(names, want) {
		t.Errorf("zip holds %v", names)
	}
	_, _, again := get(t, base+"/source/hello.zip")
	if !bytes.Equal(zipBody, again) {
		t.Error("zip bytes not stable")
	}
}

func TestStaticConditional(t *testing.T) {
	_, base := smallRepo(t)
	resp, err := http.Get(base + "/resource/helloapple/2")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag on a static item")
	}
	req, _ := http.NewRequest("GET", base+"/resource/helloapple/2", nil)
	req.Header.Set("If-None-Match", etag)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %d", resp.StatusCode)
	}
	resp, err = http.Get(base + "/resource/helloapple.json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("ETag") != "" {
		t.Error("<id>.json has an ETag; the real server sends none")
	}
}

func TestQuerySemantics(t *testing.T) {
	r := New()
	add := func(id string, ver hydrilla.Version, patterns ...string) {
		p := map[string]string{}
		for _, pat := range patterns {
			p[pat] = "res"
		}
		r.AddMapping(Mapping{Identifier: id, Version: ver, Payloads: p})
	}
	add("lit", hydrilla.Version{1}, "https://a.example.com/x/y")
	add("one", hydrilla.Version{1}, "https://*.example.com/***")
	add("two", hydrilla.Version{1}, "https://**.example.com/***")
	add("any", hydrilla.Version{1}, "https://***.example.com/***")
	add("anyold", hydrilla.Version{1}, "https://***.example.com/***")
	add("anyold", hydrilla.Version{2}, "https://nothing.example/")
	add("both", hydrilla.Version{1}, "http*://example.com/a/*")
	add("slash", hydrilla.Version{1}, "https://example.com/a/b/")
	add("noslash", hydrilla.Version{1}, "https://example.com/a/b")
	add("port", hydrilla.Version{1}, "http://example.com:8080/***")
	add("defport", hydrilla.Version{1}, "https://example.com:443/***")
	add("ftp", hydrilla.Version{1}, "ftp://example.com/pub/**")
	add("file", hydrilla.Version{1}, "file:///home/***")
	add("broken", hydrilla.Version{1}, "https://example.com/?q", "gopher://example.com/")
	add("newest", hydrilla.Version{1}, "https://example.com/a/***")
	add("newest", hydrilla.Version{3}, "https://example.com/a/***")
	add("newest", hydrilla.Version{2, 0}, "https://example.com/a/***")

	tests := []struct {
		url  string
		want []string
	}{
		{"https://a.example.com/x/y", []string{"lit", "one", "any", "anyold"}},
		{"https://a.example.com/x/y?q=1#f", []string{"lit", "one", "any", "anyold"}},
		{"https://A.Example.COM/x/y", []string{"lit", "one", "any", "anyold"}},
		{"https://a.b.example.com/", []string{"two", "any", "anyold"}},
		// A literal domain node's own patterns come before its "***" child.
		{"https://example.com/", []string{"defport", "any", "anyold"}},
		{"https://example.com:443/", []string{"defport", "any", "anyold"}},
		{"https://example.com/a/b/", []string{"slash", "noslash", "both", "newest", "defport", "any", "anyold"}},
		{"https://example.com/a/b", []string{"noslash", "both", "newest", "defport", "any", "anyold"}},
		{"http://example.com/a/b", []string{"both"}},
		{"http://example.com:8080/z", []string{"port"}},
		{"http://example.com:8081/z", nil},
		{"ftp://user@example.com/pub/a/b", []string{"ftp"}},
		{"ftp://example.com/pub/a", nil},
		{"file:///home/me/x.html", []string{"file"}},
		{"https://example.org/", nil},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			got, err := r.Query(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, m := range got {
				ids = append(ids, m.Identifier)
				switch m.Identifier {
				case "newest":
					if m.Version.String() != "3" {
						t.Errorf("newest at version %s", m.Version)
					}
				case "anyold":
					if m.Version.String() != "1" {
						t.Errorf("anyold at version %s: the version must be one that matches", m.Version)
					}
				}
			}
			if !slices.Equal(ids, tt.want) {
				t.Errorf("got %v, want %v", ids, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "example.com", "gopher://x/", "http*://example.com/", "https://example.com:0/", "https://example.com:70000/", "https:///x"} {
		if _, err := r.Query(bad); err == nil {
			t.Errorf("Query(%q) accepted", bad)
		}
	}
}

func TestFaults(t *testing.T) {
	r, base := smallRepo(t)
	sha := r.Files()[0]
	content, _ := r.File(sha)

	r.CorruptFile(sha)
	_, _, body := get(t, base+"/file/sha256/"+sha)
	if bytes.Equal(body, content) || len(body) != len(content) {
		t.Errorf("corrupt file served %q", body)
	}
	r.CorruptFile(sha, false)
	if _, _, body = get(t, base+"/file/sha256/"+sha); !bytes.Equal(body, content) {
		t.Error("file still corrupt")
	}

	r.SetNoListAll(true)
	if status, _, _ := get(t, base+"/list_all"); status != 404 {
		t.Errorf("no list_all: %d", status)
	}
	r.SetNoListAll(false)

	r.SetFailPath("/file/", 503)
	if status, _, _ := get(t, base+"/file/sha256/"+sha); status != 503 {
		t.Errorf("SetFailPath: %d", status)
	}
	if status, _, _ := get(t, base+"/list_all"); status != 200 {
		t.Errorf("SetFailPath leaks: %d", status)
	}
	r.SetFailPath("/file/", 0)

	r.SetFail(502)
	if status, _, _ := get(t, base+"/list_all"); status != 502 {
		t.Errorf("SetFail: %d", status)
	}
	r.SetFail(0)

	r.SetDelay(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/list_all", nil)
	start := time.Now()
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("delayed request: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Error("delay not cut by the client")
	}
	// Left delayed on purpose: the cleanup must still end the server.
}

func TestRequestLog(t *testing.T) {
	r := New()
	r.SetPrefix("api_v2/")
	srv := r.Start(t)
	base := r.BaseURL()
	if base != srv.URL+"/api_v2" {
		t.Fatalf("BaseURL %q", base)
	}
	get(t, base+"/list_all")
	get(t, base+"/query?url=https://x/")
	get(t, base+"/file/sha256/"+strings.Repeat("a", 64))
	get(t, srv.URL+"/list_all") // outside the prefix
	if status, _, _ := get(t, srv.URL+"/list_all"); status != 404 {
		t.Errorf("outside the prefix: %d", status)
	}
	want := []string{"/list_all", "/query?url=https://x/", "/file/sha256/" + strings.Repeat("a", 64), "/list_all", "/list_all"}
	if got := r.Requests(); !slices.Equal(got, want) {
		t.Errorf("Requests %v", got)
	}
	if n := r.Count("/list_all"); n != 3 {
		t.Errorf("Count(/list_all) = %d", n)
	}
	if n := r.Count("/file/"); n != 1 {
		t.Errorf("Count(/file/) = %d", n)
	}
	r.Reset()
	if len(r.Requests()) != 0 || r.Count("/") != 0 {
		t.Error("Reset left requests")
	}
}

func TestRemoveAndRawItem(t *testing.T) {
	r, base := smallRepo(t)
	ref := hydrilla.ItemRef{Type: "resource", Identifier: "helloapple", Version: hydrilla.Version{2021, 11, 10}}
	r.RemoveItem(ref)
	if status, _, _ := get(t, base+"/"+ref.String()); status != 404 {
		t.Errorf("removed item: %d", status)
	}
	if _, _, body := get(t, base+"/resource/helloapple.json"); !bytes.Contains(body, []byte(`"revision": 3`)) {
		t.Errorf("newest after removal: %s", body)
	}

	liar := []byte(`{"$schema": "https://hydrilla.koszko.org/schemas/api_resource_description-1.schema.json", "identifier": "other", "version": [1]}`)
	r.AddRawItem("resource", "liar", hydrilla.Version{1}, "Liar", liar)
	_, _, body := get(t, base+"/resource/liar/1")
	if !bytes.Equal(body, liar) {
		t.Errorf("raw item served %s", body)
	}
	if _, err := hydrilla.CheckItem(body, hydrilla.ItemRef{Type: "resource", Identifier: "liar", Version: hydrilla.Version{1}}); !errors.Is(err, hydrilla.ErrItemMismatch) {
		t.Errorf("CheckItem on a lying item: %v", err)
	}
	if !bytes.Contains(r.ListAll(), []byte(`"identifier": "liar"`)) {
		t.Error("raw item not listed")
	}
}

// TestConcurrentUse adds items while others read; run with -race.
func TestConcurrentUse(t *testing.T) {
	r := Generate(5, 1)
	r.Start(t)
	base := r.BaseURL()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				for _, p := range []string{"/list_all", "/source/libs.json", "/query?url=https://x.example/"} {
					resp, err := http.Get(base + p)
					if err != nil {
						t.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	for i := 0; i < 50; i++ {
		r.AddMapping(Mapping{Identifier: fmt.Sprintf("m%d", i), Version: hydrilla.Version{1}, Payloads: map[string]string{"https://x.example/***": "r"}})
		r.SetDelay(0)
		r.Count("/")
	}
	wg.Wait()
}

func TestSampleURL(t *testing.T) {
	tests := map[string]string{
		"https://example.com/***":       "https://example.com/",
		"http*://*.example.com/**":      "https://a.example.com/x/y",
		"https://***.example.com/a/*":   "https://example.com/a/x",
		"https://www.example.com/path/": "https://www.example.com/path/",
		"http://example.com:8080/x/***": "http://example.com:8080/x",
		"file:///home/***":              "file:///home",
		"https://***/***":               "https://example/",
	}
	for pat, want := range tests {
		got, ok := sampleURL(pat)
		if !ok || got != want {
			t.Errorf("sampleURL(%q) = %q, want %q", pat, got, want)
		}
		pp, _ := parse(pat, true)
		u, err := parse(got, false)
		if err != nil || !matches(pp, u) {
			t.Errorf("%q does not match its sample %q", pat, got)
		}
	}
}
