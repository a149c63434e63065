package mirrorsync_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/hydrilla/hydrillatest"
	"github.com/regmirror/regmirror/mirrorsync"
)

func TestHydrillaSyncThenUpstreamGone(t *testing.T) {
	repo, up := newRepo(t, 30, 4)
	m := startMirror(t, nil, []string{up})
	routes := append(itemRoutes(repo), "/list_all")
	want := map[string][]byte{}
	for _, r := range routes {
		want[r] = get(t, up+r).Body
	}
	queries := map[string][]hydrilla.QueryMapping{}
	for _, u := range repo.SampleURLs() {
		queries[u] = queryMappings(t, get(t, up+"/query?url="+url.QueryEscape(u)).Body)
	}
	res := m.sync.Hydrilla(t.Context(), mirrorsync.Options{Jobs: 4})
	if len(res) != 1 || !res[0].OK() || res[0].Items != len(repo.Refs()) || res[0].Files != len(repo.Files()) {
		t.Fatalf("sync: %+v (refs %d files %d)", res[0], len(repo.Refs()), len(repo.Files()))
	}
	repo.Reset()
	again := m.sync.Hydrilla(t.Context(), mirrorsync.Options{Jobs: 4})
	if again[0].Items != 0 || again[0].Files != 0 || !again[0].OK() {
		t.Fatalf("second sync fetched again: %+v", again[0])
	}
	if n := len(repo.Requests()); n != 1 {
		t.Errorf("second sync made %d upstream requests, want 1 (/list_all): %v", n, repo.Requests())
	}
	repo.SetFail(http.StatusServiceUnavailable)
	// A sync that finds the upstream failing names its failure, not only that a
	// stale copy is held.
	failing := m.sync.Hydrilla(t.Context(), mirrorsync.Options{Jobs: 4})
	if failing[0].Err == nil || !strings.Contains(failing[0].Err.Error(), "503") {
		t.Errorf("sync with the upstream failing: %v; want its error naming the upstream's 503", failing[0].Err)
	}
	for _, r := range routes {
		got := get(t, m.URL+r)
		if r == "/list_all" {
			if got.Status != 200 || !sameLists(t, got.Body, want[r]) {
				t.Errorf("/list_all with upstream down: %d %.200s", got.Status, got.Body)
			}
			continue
		}
		if got.Status != 200 || !bytes.Equal(got.Body, want[r]) {
			t.Errorf("%s with upstream down: %d", r, got.Status)
		}
	}
	for u, wantM := range queries {
		got := get(t, m.URL+"/query?url="+url.QueryEscape(u))
		if got.Status != 200 || !sameMappings(queryMappings(t, got.Body), wantM) {
			t.Errorf("query %s: %d %s, want %v", u, got.Status, got.Body, wantM)
		}
	}
}

// newRepo is a generated Hydrilla upstream served under /api_v2, as the real
// public repository is.
func newRepo(t *testing.T, n int, seed int64) (*hydrillatest.Repo, string) {
	repo := hydrillatest.Generate(n, seed)
	repo.SetPrefix("/api_v2")
	repo.Start(t)
	return repo, repo.BaseURL()
}

// itemRoutes lists every item version path, each <id>.json, and every file.
func itemRoutes(repo *hydrillatest.Repo) []string {
	var out []string
	seen := map[string]bool{}
	for _, ref := range repo.Refs() {
		out = append(out, "/"+ref.String())
		latest := "/" + ref.Type + "/" + ref.Identifier + ".json"
		if !seen[latest] {
			seen[latest] = true
			out = append(out, latest)
		}
	}
	for _, f := range repo.Files() {
		out = append(out, "/file/sha256/"+f)
	}
	return out
}

func queryMappings(t *testing.T, body []byte) []hydrilla.QueryMapping {
	t.Helper()
	var qa struct {
		Mappings []hydrilla.QueryMapping `json:"mappings"`
	}
	if err := json.Unmarshal(body, &qa); err != nil {
		t.Fatalf("query answer %q: %v", body, err)
	}
	return qa.Mappings
}

func sameMappings(a, b []hydrilla.QueryMapping) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Identifier != b[i].Identifier || a[i].Version.Compare(b[i].Version) != 0 {
			return false
		}
	}
	return true
}

// sameLists compares two /list_all documents by their item versions.
func sameLists(t *testing.T, a, b []byte) bool {
	la, err := hydrilla.ParseList(a)
	if err != nil {
		t.Fatalf("list %q: %v", a, err)
	}
	lb, err := hydrilla.ParseList(b)
	if err != nil {
		t.Fatalf("list %q: %v", b, err)
	}
	keys := func(l *hydrilla.List) string {
		var ks []string
		for _, r := range l.Refs() {
			ks = append(ks, r.String())
		}
		sort.Strings(ks)
		return strings.Join(ks, " ")
	}
	return keys(la) == keys(lb)
}
