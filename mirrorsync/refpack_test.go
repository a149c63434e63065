package mirrorsync_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/mirrorsync"
	"github.com/regmirror/regmirror/refpack/registrytest"
)

// catalogueRegistry is a registry with several owners, archived versions,
// pre-releases and a package whose only versions are pre-releases. Two calls
// give identical registries.
func catalogueRegistry() *registrytest.Registry {
	reg := registrytest.New()
	docs := []registrytest.PackageOption{
		registrytest.WithSchema([]byte(`{"type":"array"}`)),
		registrytest.WithChangelog([]byte(`[{"version":"1.0.0","date":"2024-01-01","description":"first"}]`)),
		registrytest.WithReadme("# readme\n"),
	}
	reg.AddPackage("vendor", "country-codes", "1.0.0", append(docs, registrytest.WithTitle("Country Codes"), registrytest.WithTags("geo"), registrytest.WithCreated("2024-01-01T00:00:00Z"))...)
	reg.AddPackage("vendor", "country-codes", "1.2.0", registrytest.WithTitle("Country Codes ISO"), registrytest.WithTags("geo", "iso"), registrytest.WithCreated("2024-05-20T10:00:00Z"))
	reg.AddPackage("vendor", "country-codes", "1.3.0", registrytest.WithTitle("Country Codes next"), registrytest.Archived())
	reg.AddPackage("vendor", "country-codes", "2.0.0-rc.1", registrytest.WithTitle("Country Codes 2"))
	reg.AddPackage("vendor", "languages", "0.9.0", append(docs, registrytest.WithTitle("Languages"), registrytest.WithTags("lang"))...)
	reg.AddPackage("acme", "only-pre", "0.1.0-alpha", registrytest.WithTitle("Pre only"))
	reg.AddPackage("acme", "only-pre", "0.1.0-beta", registrytest.WithTitle("Pre only"))
	reg.AddPackage("acme", "retired", "1.0.0", registrytest.WithTitle("Retired"), registrytest.Archived())
	reg.AddPackage("", "currencies", "3.1.4", registrytest.WithTitle("Currencies"), registrytest.WithDescription("money"))
	return reg
}

var catalogueVersions = map[string][]string{
	"vendor/country-codes": {"1.0.0", "1.2.0", "1.3.0", "2.0.0-rc.1"},
	"vendor/languages":     {"0.9.0"},
	"acme/only-pre":        {"0.1.0-alpha", "0.1.0-beta"},
	"acme/retired":         {"1.0.0"},
	"currencies":           {"3.1.4"},
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(x, y)
}

func TestRefPackSyncThenEveryRouteOffline(t *testing.T) {
	reg := catalogueRegistry()
	up := reg.Start(t).URL
	twin := catalogueRegistry().Start(t).URL // never seen by the mirror
	m := startMirror(t, []string{up}, nil)
	res := m.sync.RefPack(t.Context(), mirrorsync.Options{AllVersions: true, Jobs: 3})
	if len(res) != 1 || !res[0].OK() || res[0].Packages != len(catalogueVersions) || res[0].Items != 9 {
		t.Fatalf("sync: %+v", res[0])
	}
	reg.SetDown(true)
	var routes []string
	for id, vs := range catalogueVersions {
		for _, form := range []string{id, strings.ReplaceAll(id, "/", "%2F")} {
			routes = append(routes, "/packages/"+form, "/packages/"+form+"/versions", "/packages/"+form+"/meta")
			for _, v := range vs {
				for _, sub := range []string{"", "/meta", "/data", "/schema", "/changelog", "/readme"} {
					routes = append(routes, "/packages/"+form+sub+"?version="+v)
				}
			}
		}
	}
	routes = append(routes, "/packages", "/packages?includeArchived=true", "/packages?q=country", "/packages?q=CODES&pageSize=1&page=2",
		"/packages?page=9", "/packages/advanced-search?tags=geo", "/packages/advanced-search?tags=geo&tags=iso",
		"/packages/advanced-search?ownerId=acme&includeArchived=true", "/packages/advanced-search?filters=title:Languages",
		"/packages/advanced-search?q=money")
	for _, r := range routes {
		want := get(t, twin+r)
		got := get(t, m.URL+r)
		if got.Status != want.Status || !jsonEqual(got.Body, want.Body) || got.Header.Get("Content-Type") != want.Header.Get("Content-Type") {
			t.Errorf("%s offline: %d %q %.120s\n  upstream: %d %q %.120s", r, got.Status, got.Header.Get("Content-Type"), got.Body,
				want.Status, want.Header.Get("Content-Type"), want.Body)
		}
		if cd := want.Header.Get("Content-Disposition"); cd != got.Header.Get("Content-Disposition") {
			t.Errorf("%s: Content-Disposition %q, want %q", r, got.Header.Get("Content-Disposition"), cd)
		}
	}
}

func TestRefPackSyncTwiceFetchesNoZipOrMeta(t *testing.T) {
	reg := catalogueRegistry()
	m := startMirror(t, []string{reg.Start(t).URL}, nil)
	first := m.sync.RefPack(t.Context(), mirrorsync.Options{})
	if !first[0].OK() || first[0].Items != len(catalogueVersions) {
		t.Fatalf("first sync: %+v", first[0])
	}
	reg.Reset()
	second := m.sync.RefPack(t.Context(), mirrorsync.Options{})
	if !second[0].OK() || second[0].Items != 0 || second[0].Files != 0 || second[0].Held != 2*len(catalogueVersions) {
		t.Fatalf("second sync: %+v", second[0])
	}
	for _, rr := range reg.Requests() {
		if rr.Query.Get("version") != "" {
			t.Errorf("second sync fetched %s?%s", rr.Path, rr.RawQuery)
		}
	}
}

func TestRefPackSyncNarrowedByPackageAndOwner(t *testing.T) {
	for name, tc := range map[string]struct {
		o    mirrorsync.Options
		want []string
	}{
		"package raw":     {mirrorsync.Options{Packages: []string{"vendor/languages"}}, []string{"vendor%2Flanguages"}},
		"package encoded": {mirrorsync.Options{Packages: []string{"vendor%2Flanguages", "currencies"}}, []string{"vendor%2Flanguages", "currencies"}},
		"owner":           {mirrorsync.Options{Owners: []string{"acme"}}, []string{"acme%2Fonly-pre", "acme%2Fretired"}},
	} {
		t.Run(name, func(t *testing.T) {
			reg := catalogueRegistry()
			m := startMirror(t, []string{reg.Start(t).URL}, nil)
			res := m.sync.RefPack(t.Context(), tc.o)
			if !res[0].OK() || res[0].Packages != len(tc.want) {
				t.Fatalf("sync: %+v", res[0])
			}
			got := map[string]bool{}
			for _, rr := range reg.Requests() {
				if rr.Query.Get("version") != "" {
					got[strings.TrimPrefix(rr.Path, "/packages/")] = true
				}
			}
			for _, w := range tc.want {
				if !got[w] && !got[w+"/meta"] {
					t.Errorf("did not fetch %s (fetched %v)", w, got)
				}
			}
			for g := range got {
				ok := false
				for _, w := range tc.want {
					ok = ok || strings.HasPrefix(g, w)
				}
				if !ok {
					t.Errorf("fetched %s, which it was not asked for", g)
				}
			}
		})
	}
}

func TestSyncedEntriesSurviveEviction(t *testing.T) {
	reg := catalogueRegistry()
	for i := 0; i < 12; i++ {
		bigPackage(reg, "b"+string(rune('a'+i)), 128<<10)
	}
	up := reg.Start(t).URL
	m := startMirror(t, []string{up}, nil, func(c *config.Config) { c.DiskCacheSize = 512 << 10; c.MemoryCacheSize = 0 })
	if res := m.sync.RefPack(t.Context(), mirrorsync.Options{Packages: []string{"vendor/country-codes", "currencies"}}); !res[0].OK() {
		t.Fatalf("sync: %+v", res[0])
	}
	for i := 0; i < 12; i++ {
		if r := get(t, m.URL+"/packages/big/b"+string(rune('a'+i))+"?version=1.0.0"); r.Status != 200 {
			t.Fatalf("download: %d", r.Status)
		}
	}
	if m.cache.Stats().Evictions == 0 {
		t.Fatal("nothing was evicted; the test proves nothing")
	}
	reg.SetDown(true)
	for _, r := range []string{"/packages/vendor/country-codes?version=1.2.0", "/packages/currencies/meta?version=3.1.4", "/packages/currencies"} {
		if got := get(t, m.URL+r); got.Status != http.StatusOK {
			t.Errorf("synced %s after eviction pressure, upstream down: %d", r, got.Status)
		}
	}
}
