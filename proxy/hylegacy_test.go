package proxy_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/hydrilla/hydrillatest"
)

// The pre-1.0 routes put the local repository first, as every other route
// does: a resource it holds (/bag), a script of its resources (/script) and a
// payload pattern of its mappings (/pattern) are answered from it in the
// legacy shapes and never asked upstream; anything else still passes through.
func TestHydrillaLegacyRoutesLocalFirst(t *testing.T) {
	local := hydrillatest.New()
	lib := local.AddScript("ours.js", []byte("console.log('ours');\n"))
	local.AddResource(hydrillatest.Resource{Identifier: "ours", Version: hydrilla.Version{1}, Scripts: []hydrilla.FileRef{lib}})
	local.AddMapping(hydrillatest.Mapping{Identifier: "ours-map", Version: hydrilla.Version{2021, 1, 1},
		Payloads: map[string]string{"https://intranet.example/***": "ours"}})
	dir := filepath.Join(t.TempDir(), "repo")
	if err := local.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	up := hydrillatest.New()
	theirs := up.AddScript("ours.js", []byte("console.log('theirs');\n"))
	up.AddResource(hydrillatest.Resource{Identifier: "ours", Version: hydrilla.Version{9}, Scripts: []hydrilla.FileRef{theirs}})
	up.AddResource(hydrillatest.Resource{Identifier: "other", Version: hydrilla.Version{1}, Scripts: []hydrilla.FileRef{theirs}})
	up.AddMapping(hydrillatest.Mapping{Identifier: "their-map", Version: hydrilla.Version{1},
		Payloads: map[string]string{"https://intranet.example/***": "other"}})
	srv := up.Start(t)
	m := startMirror(t, "", nil, []string{srv.URL}, func(c *config.Config) { c.HydrillaLocal = []string{dir} })

	for path, want := range map[string]map[string]any{
		"/bag?n=ours":       {"name": "ours", "components": []any{[]any{"s", "ours.js"}}},
		"/script?n=ours.js": {"name": "ours.js", "location": "ours/ours.js", "sha256": lib.SHA256},
		"/pattern?n=" + url.QueryEscape("https://intranet.example/***"): {"pattern": "https://intranet.example/***", "payload": []any{"b", "ours"}},
	} {
		r := get(t, m.URL+path)
		var got map[string]any
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &got) != nil {
			t.Errorf("%s: %d %s", path, r.Status, r.Body)
			continue
		}
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(want)
		if string(gb) != string(wb) {
			t.Errorf("%s: %s, want %s", path, gb, wb)
		}
		mustContain(t, r.Header.Get("Cache-Status"), `detail="hosted"`)
	}
	for _, req := range up.Requests() {
		if strings.HasPrefix(req, "/bag") || strings.HasPrefix(req, "/script") || strings.HasPrefix(req, "/pattern") {
			t.Errorf("the upstream was asked %s", req)
		}
	}
	// Not the local repository's: the upstream's answer.
	if r := get(t, m.URL+"/bag?n=other"); r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"other"`) {
		t.Errorf("/bag?n=other: %d %s", r.Status, r.Body)
	}
	if up.Count("/bag") != 1 {
		t.Errorf("the upstream was asked /bag %d times, want once", up.Count("/bag"))
	}
}
