package mirrorsync_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/hydrilla/hydrillatest"
	"github.com/regmirror/regmirror/mirrorsync"
)

func TestHydrillaSyncThenUpstreamGone(t *testing.T) {
	repo, up := hydrillatest.StartGenerated(t, 30, 4)
	m := startMirror(t, nil, []string{up})
	routes := append(repo.Routes(), "/list_all")
	want := map[string][]byte{}
	for _, r := range routes {
		want[r] = get(t, up+r).Body
	}
	queries := map[string][]hydrilla.QueryMapping{}
	for _, u := range repo.SampleURLs() {
		queries[u] = hydrillatest.QueryMappings(t, get(t, up+"/query?url="+url.QueryEscape(u)).Body)
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
		if got.Status != 200 || !hydrillatest.SameMappings(hydrillatest.QueryMappings(t, got.Body), wantM) {
			t.Errorf("query %s: %d %s, want %v", u, got.Status, got.Body, wantM)
		}
	}
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

// A sync fetches each file once, however many items name it (the generated
// repository's license is named by many), though each item's files are
// fetched by the job that fetched the item, several jobs at once.
func TestHydrillaSyncFetchesEachFileOnce(t *testing.T) {
	repo, up := hydrillatest.StartGenerated(t, 40, 9)
	m := startMirror(t, nil, []string{up})
	res := m.sync.Hydrilla(t.Context(), mirrorsync.Options{Jobs: 3})
	if len(res) != 1 || !res[0].OK() || res[0].Files != len(repo.Files()) {
		t.Fatalf("sync: %+v (files %d)", res[0], len(repo.Files()))
	}
	asked := map[string]int{}
	for _, r := range repo.Requests() {
		if strings.Contains(r, "/file/sha256/") {
			asked[r]++
		}
	}
	if len(asked) != len(repo.Files()) {
		t.Errorf("%d distinct files asked for, want %d", len(asked), len(repo.Files()))
	}
	for r, n := range asked {
		if n != 1 {
			t.Errorf("%s asked for %d times", r, n)
		}
	}
}

// --jobs is the number of requests a sync has at the upstream at once. Each
// object's own work (staging, verifying, placing it) runs beside the next
// downloads, never as more of them (design.md, "Sync at the speed of the
// network": measured against a floor fetching with the same concurrency).
func TestHydrillaSyncKeepsJobsRequestsInFlight(t *testing.T) {
	repo, up := hydrillatest.StartGenerated(t, 60, 11)
	target, err := url.Parse(up)
	if err != nil {
		t.Fatal(err)
	}
	var inFlight, most atomic.Int64
	proxy := httputil.NewSingleHostReverseProxy(target)
	counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(time.Millisecond) // so that requests a sync has at once overlap here
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(counting.Close)
	m := startMirror(t, nil, []string{counting.URL})
	const jobs = 2
	res := m.sync.Hydrilla(t.Context(), mirrorsync.Options{Jobs: jobs})
	if len(res) != 1 || !res[0].OK() || res[0].Files != len(repo.Files()) {
		t.Fatalf("sync: %+v (files %d)", res[0], len(repo.Files()))
	}
	if n := most.Load(); n > jobs {
		t.Errorf("%d requests at the upstream at once, --jobs is %d", n, jobs)
	}
	if n := most.Load(); n < jobs {
		t.Errorf("at most %d request at the upstream at once, --jobs is %d", n, jobs)
	}
}

// A sync whose store cannot be written says so, with the store's cause, for
// every object it could not keep (not "upstream answered 200"), and asks the
// upstream for each object once: with no client waiting for the bytes, it
// does not fetch them again to relay them.
func TestHydrillaSyncReportsTheStoreFailing(t *testing.T) {
	repo, up := hydrillatest.StartGenerated(t, 12, 5)
	var data string
	m := startMirror(t, nil, []string{up}, func(c *config.Config) { data = c.Data })
	list := get(t, up+"/list_all")
	sum := sha256.Sum256(list.Body)
	keep := hex.EncodeToString(sum[:])[:2]
	// Every blob folder but the list's is a file: as if those folders could
	// not be written.
	for i := range 256 {
		name := fmt.Sprintf("%02x", i)
		if name == keep {
			continue
		}
		p := filepath.Join(data, "blobs", "sha256", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("not a folder"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	res := m.sync.Hydrilla(t.Context(), mirrorsync.Options{Jobs: 3})
	if len(res) != 1 || res[0].Err != nil || len(res[0].Failed) == 0 {
		t.Fatalf("sync: %+v", res[0])
	}
	for _, f := range res[0].Failed {
		if !strings.Contains(f, "not stored: ") || !strings.Contains(f, "not a directory") {
			t.Errorf("failure %q does not give the store's cause", f)
		}
	}
	asked := map[string]int{}
	for _, r := range repo.Requests() {
		asked[r]++
	}
	for r, n := range asked {
		if n != 1 && r != "/list_all" {
			t.Errorf("%s asked for %d times", r, n)
		}
	}

	// With the staging folder unwritable, the list itself is not kept.
	if err := os.RemoveAll(filepath.Join(data, "tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "tmp"), []byte("not a folder"), 0o600); err != nil {
		t.Fatal(err)
	}
	res = m.sync.Hydrilla(t.Context(), mirrorsync.Options{Jobs: 3})
	if len(res) != 1 || res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "not stored: ") {
		t.Errorf("sync with the staging folder unwritable: %+v, want an error naming the store's failure", res[0])
	}
}

// An upstream that goes down in the middle of a sync (its /list_all came,
// then every item fails) ends that upstream's sync once it has stayed down
// through an object's retries, naming it down: it is not tried object by
// object, each waiting out its retries, which for a large repository would
// keep the sync running for days.
func TestHydrillaSyncStopsWhenTheUpstreamStaysDown(t *testing.T) {
	repo, up := hydrillatest.StartGenerated(t, 20, 5)
	m := startMirror(t, nil, []string{up}, func(c *config.Config) { c.FailTimeout = 200 * time.Millisecond })
	repo.SetFailPath("/mapping/", http.StatusBadGateway)
	repo.SetFailPath("/resource/", http.StatusBadGateway)
	res := m.sync.Hydrilla(t.Context(), mirrorsync.Options{Jobs: 1})
	if len(res) != 1 {
		t.Fatalf("results: %v", res)
	}
	r := res[0]
	if r.Err == nil || !strings.Contains(r.Err.Error(), "down") || !strings.Contains(r.Err.Error(), up) {
		t.Errorf("sync of an upstream gone down: error %v, want one naming %s down", r.Err, up)
	}
	if refs := len(repo.Refs()); len(r.Failed) >= refs {
		t.Errorf("all %d items were tried and failed one by one while the upstream was down: %d failures: %q", refs, len(r.Failed), r.Failed[len(r.Failed)-3:])
	}
}

// A sync against a flaky upstream completes: a request that fails in a way
// the next one may not (a 502, a connection cut before the answer) is asked
// again, a few times, before the object counts as failed.
func TestHydrillaSyncRetriesTransientFailures(t *testing.T) {
	repo, _ := hydrillatest.StartGenerated(t, 30, 7)
	var n atomic.Int64
	var blips atomic.Int64
	inner := repo.Handler()
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch i := n.Add(1); {
		case strings.HasSuffix(r.URL.Path, "/list_all") || i%5 != 0:
			inner.ServeHTTP(w, r)
		case i%10 == 0: // the connection cut before any answer
			blips.Add(1)
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		default:
			blips.Add(1)
			http.Error(w, "bad gateway", http.StatusBadGateway)
		}
	}))
	t.Cleanup(flaky.Close)
	m := startMirror(t, nil, []string{flaky.URL + "/api_v2"})
	res := m.sync.Hydrilla(t.Context(), mirrorsync.Options{Jobs: 2})
	if len(res) != 1 || !res[0].OK() || res[0].Files != len(repo.Files()) || res[0].Items != len(repo.Refs()) {
		t.Fatalf("sync through an upstream failing one request in 5 (%d blips): %+v", blips.Load(), res[0])
	}
	if blips.Load() == 0 {
		t.Fatal("the upstream never failed: the test tests nothing")
	}
}
