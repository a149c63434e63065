package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/cache/storetest"
	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/engine"
	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/proxy"
)

// fillMappings writes n mapping-version entries (three URL patterns each) into
// a store in dir, as a sync of n mappings leaves them.
func fillMappings(tb testing.TB, dir string, n int) {
	d, err := cache.OpenDisk(dir)
	if err != nil {
		tb.Fatal(err)
	}
	defer d.Close()
	st, err := cache.Stage(d.TempDir(), bytes.NewReader([]byte(`{}`)), 0, "")
	if err != nil {
		tb.Fatal(err)
	}
	digest := st.Digest
	if err := d.Commit(context.Background(), st); err != nil {
		tb.Fatal(err)
	}
	var es []*cache.Entry
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("site-%d", i)
		meta, _ := json.Marshal(map[string]any{
			"type": "mapping", "identifier": id, "long_name": "Site " + id, "version": []int{2022, 1, i%7 + 1},
			"patterns": []string{
				fmt.Sprintf("https://www.site%d.example/***", i),
				fmt.Sprintf("http*://*.site%d.org/path/*", i),
				fmt.Sprintf("https://***.s%d.example.net/a/b/", i),
			},
		})
		ref := hydrilla.ItemRef{Type: "mapping", Identifier: id, Version: hydrilla.Version{2022, 1, i%7 + 1}}
		es = append(es, &cache.Entry{Key: string(engine.HydrillaItem(ref)), Digest: digest, Size: 2, Status: 200,
			Class: cache.Immutable, FetchedAt: time.Now(), Upstream: "http://127.0.0.1:1", Pinned: true, Meta: meta})
	}
	if err := d.PutEntries(context.Background(), es); err != nil {
		tb.Fatal(err)
	}
}

// startFrom opens the store and loads the server as serve does at start.
func startFrom(tb testing.TB, dir string) (*proxy.Server, *cache.Cache) {
	cfg := config.Default()
	cfg.Data = dir
	cfg.Offline = true
	cfg.RefPackUpstreams, cfg.HydrillaUpstreams = []string{"http://127.0.0.1:1"}, []string{"http://127.0.0.1:1"}
	cfg.MemoryCacheSize = 64 << 20
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := proxy.Open(context.Background(), &cfg, proxy.OpenOptions{Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	s, c := m.Server, m.Cache
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	if err := s.Load(ctx); err != nil {
		tb.Fatal(err)
	}
	return s, c
}

// BenchmarkStartup is the time from opening a data directory holding N
// mappings to ready (index of entries loaded, pattern index built).
func BenchmarkStartup(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("mappings=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			fillMappings(b, dir, n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_, c := startFrom(b, dir)
				b.StopTimer()
				c.Close()
				b.StartTimer()
			}
		})
	}
}

func TestStartupBuildsTheIndexFromStoredMappings(t *testing.T) {
	dir := t.TempDir()
	fillMappings(t, dir, 2000)
	s, c := startFrom(t, dir)
	defer c.Close()
	h := s.Handler()
	_ = h
	rec := doHandler(t, h, "/query?url=https://www.site1234.example/any/page")
	mustContain(t, rec, `"identifier":"site-1234"`)
}

// TestStartupAtScale measures start-up with a data directory shaped like a
// full sync of 100,000 Hydrilla mappings (with their resources and files):
// REGMIRROR_STARTUP_SCALE=100000 go test -run TestStartupAtScale -v ./proxy/
func TestStartupAtScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("REGMIRROR_STARTUP_SCALE"))
	if n == 0 {
		t.Skip("set REGMIRROR_STARTUP_SCALE to the number of mappings")
	}
	dir := os.Getenv("REGMIRROR_STARTUP_DIR") // kept between runs when given
	if dir == "" {
		dir = t.TempDir()
	}
	if _, err := os.Stat(dir + "/index.db"); err == nil {
		measureStartup(t, dir, n)
		return
	}
	fillMappings(t, dir, n)
	// Beside each mapping: about 2.5 resources and 5 files, as a real sync has.
	d, err := cache.OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	var es []*cache.Entry
	for i := 0; i < n*5/2; i++ {
		id := fmt.Sprintf("res-%d", i)
		meta, _ := json.Marshal(map[string]any{"type": "resource", "identifier": id, "long_name": "Resource " + id,
			"version": []int{2022, 1, 1}, "revision": 1, "files": []string{fmt.Sprintf("%064x", i), fmt.Sprintf("%064x", i+1<<40)}})
		es = append(es, &cache.Entry{Key: string(engine.HydrillaItem(hydrilla.ItemRef{Type: "resource", Identifier: id, Version: hydrilla.Version{2022, 1, 1}})), Digest: fmt.Sprintf("%064x", i+1<<50), Size: 900,
			Status: 200, Class: cache.Immutable, FetchedAt: time.Now(), Upstream: "http://127.0.0.1:1", Pinned: true, Meta: meta,
			Header: http.Header{"Content-Type": {"application/json"}}})
	}
	for i := 0; i < n*5; i++ {
		h := fmt.Sprintf("%064x", i+1<<44)
		es = append(es, &cache.Entry{Key: string(engine.HydrillaFile(h)), Digest: h, Size: 1500, Status: 200, Class: cache.Immutable,
			FetchedAt: time.Now(), Upstream: "http://127.0.0.1:1", Pinned: true, Header: http.Header{"Content-Type": {"application/javascript"}}})
	}
	if err := d.PutEntries(context.Background(), es); err != nil {
		t.Fatal(err)
	}
	d.Close()
	es = nil
	measureStartup(t, dir, n)
}

func measureStartup(t *testing.T, dir string, n int) {
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	// REGMIRROR_STARTUP_CPUPROFILE names a file for a CPU profile of the
	// start-up until ready (go test's -cpuprofile also covers the accounting).
	if p := os.Getenv("REGMIRROR_STARTUP_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	s, c := startFrom(t, dir)
	ready := time.Since(start)
	pprof.StopCPUProfile()
	c.WaitLoaded()
	all := time.Since(start)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	t.Logf("%d mappings (%d entries): ready in %v, background accounting done in %v, heap after GC %d MiB (runtime sys %d MiB)",
		n, n+n*5/2+n*5, ready, all, int64(after.HeapAlloc-before.HeapAlloc)>>20, after.Sys>>20)
	_ = s
	c.Close()
}

// TestStartupReadsMetaAsEncodingJSONDoes stores item records in every form the
// start-up's Meta decoder (go-json, for speed) may meet (the usual one, with whitespace, keys
// in another order, escapes, other fields, non-ASCII text, versions with
// trailing zeros) and checks that what the mirror then holds is what
// encoding/json makes of them: the held /list_all, and /query.
func TestStartupReadsMetaAsEncodingJSONDoes(t *testing.T) {
	metas := []string{
		`{"type":"mapping","identifier":"plain","long_name":"Plain","version":[2022,1,3],"patterns":["https://plain.example/***"],"files":["aa"]}`,
		` { "identifier" : "spaced" , "type" : "mapping" , "version" : [ 1 , 0 , 0 ] , "patterns" : [ "https://spaced.example/a/*" ] } `,
		`{"type":"mapping","identifier":"esc\u0061ped","long_name":"A \"quoted\" name \u00e9","version":[3],"patterns":["https://escaped.example/***"]}`,
		`{"type":"mapping","identifier":"unicode","long_name":"Café 日本","version":[4,1],"patterns":["https://unicode.example/***"]}`,
		`{"type":"mapping","identifier":"extra","long_name":"Extra","version":[5],"patterns":["https://extra.example/***"],"schema_version":[2]}`,
		`{"type":"mapping","identifier":"nopatterns","long_name":"None","version":[6],"patterns":[]}`,
		`{"type":"mapping","identifier":"","long_name":"Skipped","version":[7],"patterns":["https://skipped.example/***"]}`,
		`{"type":"resource","identifier":"res","long_name":"Res","version":[1,2],"revision":3,"files":["bb","cc"]}`,
		`{"Type":"resource","Identifier":"folded","long_name":"Folded","version":[8],"revision":1}`,
	}
	dir := t.TempDir()
	d, digest := storetest.OpenDiskWithBlob(t, dir)
	type itemMeta struct {
		Type       string           `json:"type"`
		Identifier string           `json:"identifier"`
		LongName   string           `json:"long_name"`
		Version    hydrilla.Version `json:"version"`
		Revision   int              `json:"revision,omitempty"`
		Patterns   []string         `json:"patterns,omitempty"`
	}
	var es []*cache.Entry
	want := &hydrilla.List{}
	for i, m := range metas {
		var im itemMeta
		if err := json.Unmarshal([]byte(m), &im); err != nil {
			t.Fatal(err)
		}
		es = append(es, &cache.Entry{Key: string(engine.HydrillaItem(hydrilla.ItemRef{Type: im.Type, Identifier: fmt.Sprintf("item-%d", i), Version: hydrilla.Version{1}})), Digest: digest, Size: 2, Status: 200,
			Class: cache.Immutable, FetchedAt: time.Now(), Upstream: "http://127.0.0.1:1", Pinned: true, Meta: json.RawMessage(m)})
		if im.Identifier == "" {
			continue
		}
		e := hydrilla.ListEntry{Identifier: im.Identifier, LongName: im.LongName, Version: im.Version}
		if im.Type == hydrilla.TypeResource {
			e.Revision = &im.Revision
			want.Resources = append(want.Resources, e)
		} else {
			want.Mappings = append(want.Mappings, e)
		}
	}
	if err := d.PutEntries(context.Background(), es); err != nil {
		t.Fatal(err)
	}
	d.Close()

	s, c := startFrom(t, dir)
	defer c.Close()
	h := s.Handler()
	if got, want := doHandler(t, h, "/list_all"), string(hydrilla.MergeLists(want)); got != want {
		t.Errorf("/list_all:\n got %s\nwant %s", got, want)
	}
	for url, want := range map[string]string{
		"https://plain.example/x":     `"identifier":"plain","long_name":"Plain","version":[2022,1,3]`,
		"https://spaced.example/a/b":  `"identifier":"spaced","long_name":"","version":[1]`,
		"https://escaped.example/x":   `"identifier":"escaped","long_name":"A \"quoted\" name é","version":[3]`,
		"https://unicode.example/x":   `"identifier":"unicode","long_name":"Café 日本","version":[4,1]`,
		"https://extra.example/x":     `"identifier":"extra"`,
		"https://skipped.example/x":   `"mappings":[]`,
		"https://nopatterns.example/": `"mappings":[]`,
	} {
		mustContain(t, doHandler(t, h, "/query?url="+url), want)
	}
}
