package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/proxy"
	"github.com/regmirror/regmirror/upstream"
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
		es = append(es, &cache.Entry{Key: "hy/item/" + ref.String(), Digest: digest, Size: 2, Status: 200,
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
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d, err := cache.OpenDisk(dir)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := cache.New(context.Background(), d, d.TempDir(), cache.Options{MemoryBytes: 64 << 20, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	pool, _ := upstream.NewPool("hydrilla", []string{"http://127.0.0.1:1"}, upstream.Options{Offline: true})
	s := proxy.New(proxy.Options{Config: &cfg, Cache: c, RefPack: pool, Hydrilla: pool, Logger: log})
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
