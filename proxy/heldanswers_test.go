package proxy_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/hydrilla/hydrillatest"
	"github.com/regmirror/regmirror/mirrorsync"
)

// listedRefs is every item version a /list_all body names, as strings, sorted.
func listedRefs(t *testing.T, body []byte) []string {
	t.Helper()
	l, err := hydrilla.ParseList(body)
	if err != nil {
		t.Fatalf("list %q: %v", body, err)
	}
	var out []string
	for _, ref := range l.Refs() {
		ref.Version = ref.Version.Normalize()
		out = append(out, ref.String())
	}
	slices.Sort(out)
	return out
}

// A mirror whose cache was filled through another upstream URL (the host
// moved, credentials were added, `regmirror sync` ran with another
// --hydrilla-upstream) still lists every item version it holds when its
// upstream fails, offline too: never an empty /list_all while items are held.
func TestListAllFromItemsHeldThroughAnotherUpstreamURL(t *testing.T) {
	repo, up := hydrillatest.StartGenerated(t, 5, 31)
	moved := httptest.NewServer(repo.Handler()) // the same repository at another address
	t.Cleanup(moved.Close)
	dir := t.TempDir()
	t.Run("sync through the first URL", func(t *testing.T) {
		m := startMirror(t, dir, nil, []string{up})
		res := m.sync.Hydrilla(t.Context(), mirrorsync.Options{Jobs: 4})
		if len(res) != 1 || !res[0].OK() {
			t.Fatalf("sync: %+v", res)
		}
	})
	var want []string
	for _, ref := range repo.Refs() {
		ref.Version = ref.Version.Normalize()
		want = append(want, ref.String())
	}
	slices.Sort(want)
	repo.SetFail(http.StatusServiceUnavailable)

	for _, tc := range []struct {
		name string
		opt  mirrorOpt
	}{
		{"online, the moved upstream failing", func(*config.Config) {}},
		{"offline", func(c *config.Config) { c.Offline = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := startMirror(t, dir, nil, []string{moved.URL + "/api_v2"}, tc.opt)
			got := get(t, m.URL+"/list_all")
			if got.Status != http.StatusOK || got.Header.Get("X-Cache") != "STALE" {
				t.Fatalf("/list_all: %d X-Cache %q %s; want 200 STALE", got.Status, got.Header.Get("X-Cache"), got.Body)
			}
			if refs := listedRefs(t, got.Body); !slices.Equal(refs, want) {
				t.Errorf("/list_all lists %d item versions, want the %d held: %v", len(refs), len(want), refs)
			}
			wantCacheHeadersAgree(t, "/list_all", got)
		})
	}
}

// A stale /query whose upstream fails is the upstream's stored answer, not an
// empty one derived from a pattern index that holds no mapping (resources
// held are nothing to derive a /query from); a URL never asked, with no
// mapping held, is the failure.
func TestStaleQueryIsTheStoredAnswerNotAnEmptyDerivedOne(t *testing.T) {
	repo, up := hydrillatest.StartGenerated(t, 5, 32)
	m := startMirror(t, "", nil, []string{up}, withMaxAge(time.Second))
	q := "/query?url=" + url.QueryEscape(repo.SampleURLs()[0])
	first := get(t, m.URL+q)
	if first.Status != http.StatusOK || len(hydrillatest.QueryMappings(t, first.Body)) == 0 {
		t.Fatalf("first %s: %d %s", q, first.Status, first.Body)
	}
	if get(t, m.URL+"/list_all").Status != http.StatusOK {
		t.Fatal("/list_all")
	}
	var resource hydrilla.ItemRef
	for _, ref := range repo.Refs() {
		if ref.Type == hydrilla.TypeResource {
			resource = ref
			break
		}
	}
	if r := get(t, m.URL+"/"+resource.String()); r.Status != http.StatusOK {
		t.Fatalf("%s: %d", resource, r.Status)
	}
	repo.SetFail(http.StatusServiceUnavailable)
	m.advance(2 * time.Second)

	got := get(t, m.URL+q)
	if got.Status != http.StatusOK || got.Header.Get("X-Cache") != "STALE" || !bytes.Equal(got.Body, first.Body) {
		t.Errorf("stale %s with the upstream down: %d X-Cache %q %s; want 200 STALE and the stored answer %s",
			q, got.Status, got.Header.Get("X-Cache"), got.Body, first.Body)
	}
	wantCacheHeadersAgree(t, q, got)

	never := "/query?url=" + url.QueryEscape("https://never-asked.example/")
	if r := get(t, m.URL+never); r.Status != http.StatusBadGateway {
		t.Errorf("%s, no mapping held, upstream down: %d %s; want 502", never, r.Status, r.Body)
	}
}
