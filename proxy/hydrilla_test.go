package proxy_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/hydrilla/hydrillatest"
)

func TestHydrillaRoutesEqualUpstream(t *testing.T) {
	repo, up := hydrillatest.StartGenerated(t, 20, 1)
	m := startMirror(t, "", []string{"http://127.0.0.1:1"}, []string{up})
	routes := append(repo.Routes(), "/list_all", "/source/"+firstSource(t, repo)+".json", "/source/"+firstSource(t, repo)+".zip",
		"/resource/nonexistent.json", "/mapping/nonexistent/1", "/script?n=x", "/query?n=x")
	for _, u := range repo.SampleURLs()[:10] {
		routes = append(routes, "/query?url="+url.QueryEscape(u))
	}
	var cacheable []string
	for _, r := range routes {
		want := get(t, up+r)
		got := get(t, m.URL+r)
		if got.Status != want.Status || !bytes.Equal(got.Body, want.Body) {
			t.Errorf("%s: mirror %d %.100q, upstream %d %.100q", r, got.Status, got.Body, want.Status, want.Body)
		}
		// Errors other than not-found are relayed, never stored.
		if want.Status == 200 || want.Status == 404 {
			cacheable = append(cacheable, r)
		}
	}
	before := len(repo.Requests())
	for _, r := range cacheable {
		if got := get(t, m.URL+r); got.Header.Get("X-Cache") != "HIT" {
			t.Errorf("second %s: X-Cache %q", r, got.Header.Get("X-Cache"))
		}
	}
	if n := len(repo.Requests()) - before; n != 0 {
		t.Errorf("warm run made %d upstream requests", n)
	}
}

func firstSource(t *testing.T, repo *hydrillatest.Repo) string {
	for _, ref := range repo.Refs() {
		body, _ := repo.Item(ref)
		var it struct {
			Source string `json:"source_name"`
		}
		json.Unmarshal(body, &it)
		if it.Source != "" {
			return it.Source
		}
	}
	t.Fatal("no source")
	return ""
}

func TestHydrillaFileVerifiedAgainstItsName(t *testing.T) {
	repo, up := hydrillatest.StartGenerated(t, 3, 2)
	m := startMirror(t, "", nil, []string{up})
	sha := repo.Files()[0]
	repo.CorruptFile(sha)
	for i := 0; i < 2; i++ {
		r := get(t, m.URL+"/file/sha256/"+sha)
		if r.Status != http.StatusBadGateway {
			t.Fatalf("corrupt file: %d", r.Status)
		}
	}
	if n := repo.Count("/file/sha256/" + sha); n != 2 {
		t.Errorf("upstream asked %d times, want 2 (nothing stored)", n)
	}
	if v := counter(t, m, "verify"); v != 2 {
		t.Errorf("verify failures = %v", v)
	}
	repo.CorruptFile(sha, false)
	if r := get(t, m.URL+"/file/sha256/"+sha); r.Status != 200 {
		t.Fatalf("good file: %d", r.Status)
	}
	for _, bad := range []string{"ABC", strings.Repeat("g", 64), strings.ToUpper(sha), sha[:63], sha + "0", "..%2F..%2Fetc%2Fpasswd"} {
		if r := get(t, m.URL+"/file/sha256/"+bad); r.Status != 400 {
			t.Errorf("hash %q: %d", bad, r.Status)
		}
	}
}

func TestHydrillaItemIdentityChecked(t *testing.T) {
	repo, up := hydrillatest.StartGenerated(t, 3, 3)
	m := startMirror(t, "", nil, []string{up})
	ref := repo.Refs()[0]
	other, _ := repo.Item(repo.Refs()[1])
	repo.AddRawItem(ref.Type, ref.Identifier, ref.Version, "x", other)
	for i := 0; i < 2; i++ {
		if r := get(t, m.URL+"/"+ref.String()); r.Status != http.StatusBadGateway {
			t.Fatalf("mismatched item: %d %s", r.Status, r.Body)
		}
	}
}

func TestHydrillaSeveralUpstreamsMerge(t *testing.T) {
	a, upA := hydrillatest.StartGenerated(t, 5, 5)
	b, upB := hydrillatest.StartGenerated(t, 5, 6)
	m := startMirror(t, "", nil, []string{upA, upB})
	got := get(t, m.URL+"/list_all")
	l, err := hydrilla.ParseList(got.Body)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(l.Refs()); n != len(mergeRefs(a, b)) {
		t.Errorf("merged list has %d item versions, want %d", n, len(mergeRefs(a, b)))
	}
	for _, u := range append(a.SampleURLs()[:3], b.SampleURLs()[:3]...) {
		wa, _ := a.Query(u)
		wb, _ := b.Query(u)
		want := wa
		for _, x := range wb {
			dup := false
			for _, y := range wa {
				dup = dup || y.Identifier == x.Identifier
			}
			if !dup {
				want = append(want, x)
			}
		}
		got := hydrillatest.QueryMappings(t, get(t, m.URL+"/query?url="+url.QueryEscape(u)).Body)
		if !hydrillatest.SameMappings(got, want) {
			t.Errorf("query %s: %v, want %v", u, got, want)
		}
	}
}

func mergeRefs(repos ...*hydrillatest.Repo) map[string]bool {
	out := map[string]bool{}
	for _, r := range repos {
		for _, ref := range r.Refs() {
			out[ref.String()] = true
		}
	}
	return out
}

func TestHydrillaBadInput(t *testing.T) {
	repo, up := hydrillatest.StartGenerated(t, 2, 7)
	m := startMirror(t, "", nil, []string{up})
	for _, p := range []string{
		"/resource/UPPER.json", "/resource/a%2F..%2Fb.json", "/mapping/x/1.a", "/mapping/x/-1", "/mapping/x/1/2",
		"/mapping/..%2F..%2Fetc/1", "/query", "/query?url=not%20a%20url", "/query?url=https://a.example:0/",
		"/source/..%2Fx.zip", "/content/..%2F..%2Fetc%2Fpasswd", "/content/a%5Cb",
		"/query?url=https://" + strings.Repeat("a", 5000) + ".example/",
	} {
		if r := get(t, m.URL+p); r.Status < 400 || r.Status >= 500 {
			t.Errorf("%s: %d %s", p, r.Status, r.Body)
		}
	}
	if n := len(repo.Requests()); n != 0 {
		t.Errorf("bad input reached the upstream: %v", repo.Requests())
	}
}
