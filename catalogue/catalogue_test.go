package catalogue

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/cache/storetest"
	"github.com/regmirror/regmirror/engine"
	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/pattern"
)

// The index built at start-up, from Meta records decoded batch by batch on
// several cores, answers /query exactly as a rebuild from the held items
// does, ties included: both add mappings in key order.
func TestLoadIndexesAsRebuildDoes(t *testing.T) {
	dir := t.TempDir()
	d, digest := storetest.OpenDiskWithBlob(t, dir)
	// Several batches of 1,024 records, every mapping tied on one pattern.
	var es []*cache.Entry
	for i := range 3000 {
		it := &hydrilla.Item{Type: hydrilla.TypeMapping, Identifier: fmt.Sprintf("m%04d", (i*7919)%3000),
			Version: hydrilla.Version{1, i % 3}, Patterns: []string{"https://tie.example/***", fmt.Sprintf("https://m%d.example/***", i)}}
		es = append(es, &cache.Entry{Key: string(engine.HydrillaItem(hydrilla.ItemRef{Type: it.Type, Identifier: it.Identifier, Version: it.Version})),
			Digest: digest, Size: 2, Status: 200, Class: cache.Immutable, FetchedAt: time.Now(), Meta: MetaOf(it)})
	}
	if err := d.PutEntries(context.Background(), es); err != nil {
		t.Fatal(err)
	}
	c := New(nil)
	if err := c.Load(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	u, err := pattern.ParseURL("https://tie.example/a/b")
	if err != nil {
		t.Fatal(err)
	}
	loaded := c.Query(u)
	if len(loaded) != 3000 {
		t.Fatalf("%d mappings match after the load, want 3000", len(loaded))
	}
	for range 3 {
		c.Rebuild()
		rebuilt := c.Query(u)
		if !slices.EqualFunc(loaded, rebuilt, func(a, b hydrilla.QueryMapping) bool {
			return a.Identifier == b.Identifier && a.Version.Compare(b.Version) == 0
		}) {
			t.Fatalf("a rebuild answers in another order:\nload    %v\nrebuild %v", loaded[:5], rebuilt[:5])
		}
	}
	d.Close()
}

// A catalogue told to ignore notes (regmirror sync's) keeps nothing of what
// is stored, and its index stays empty; the store still has it all.
func TestIgnoredNotesAreNotKept(t *testing.T) {
	it := &hydrilla.Item{Type: hydrilla.TypeMapping, Identifier: "m", Version: hydrilla.Version{1},
		Patterns: []string{"https://m.example/***"}}
	e := &cache.Entry{Key: string(engine.HydrillaItem(hydrilla.ItemRef{Type: it.Type, Identifier: it.Identifier, Version: it.Version})),
		Status: 200, Class: cache.Immutable, FetchedAt: time.Now(), Meta: MetaOf(it)}
	c := New(nil)
	c.IgnoreNotes()
	c.Note(e)
	c.Rebuild()
	if c.Size() != 0 || c.Patterns() != 0 {
		t.Errorf("ignoring notes, the catalogue holds %d item versions and %d patterns", c.Size(), c.Patterns())
	}
	kept := New(nil)
	kept.Note(e)
	kept.Rebuild()
	if kept.Size() != 1 || kept.Patterns() != 1 {
		t.Errorf("a catalogue noting holds %d item versions and %d patterns, want 1 and 1", kept.Size(), kept.Patterns())
	}
}

// The index built at start-up on several shards answers every URL as a
// rebuild on one goroutine does: mappings of many sites under a few
// top-level domains, with every wildcard kind, several versions each, and
// patterns shared between mappings.
func TestLoadAnswersAsRebuildDoes(t *testing.T) {
	dir := t.TempDir()
	d, digest := storetest.OpenDiskWithBlob(t, dir)
	defer d.Close()
	r := rand.New(rand.NewPCG(5, 11))
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	site := func() string {
		return fmt.Sprintf("s%d.%s.%s", r.IntN(40), pick("example", "shop"), pick("com", "org", "test", "net"))
	}
	var es []*cache.Entry
	var urls []string
	for m := range 1500 {
		var patterns []string
		for range 1 + r.IntN(4) {
			host := site()
			patterns = append(patterns, pick("https", "http*", "http", "ftp")+"://"+pick("", "www.", "*.", "**.", "***.")+host+
				pick("", "/", "/a", "/a/*", "/docs/***", "/x/**/"))
			urls = append(urls, pick("https", "http", "ftp")+"://"+pick("", "www.", "a.b.")+host+pick("/", "/a", "/a/b", "/docs/x/y", "/x/1/2/"))
		}
		if m%100 == 0 {
			patterns = append(patterns, pick("https://***/", "https://***.com/***", "http*://*.org/*"))
		}
		for v := range 1 + r.IntN(3) {
			it := &hydrilla.Item{Type: hydrilla.TypeMapping, Identifier: fmt.Sprintf("m%04d", m), LongName: fmt.Sprint("M", m, v),
				Version: hydrilla.Version{1, v}, Patterns: patterns[:1+r.IntN(len(patterns))]}
			es = append(es, &cache.Entry{Key: string(engine.HydrillaItem(hydrilla.ItemRef{Type: it.Type, Identifier: it.Identifier, Version: it.Version})),
				Digest: digest, Size: 2, Status: 200, Class: cache.Immutable, FetchedAt: time.Now(), Meta: MetaOf(it)})
		}
	}
	if err := d.PutEntries(context.Background(), es); err != nil {
		t.Fatal(err)
	}
	loaded := New(nil)
	if err := loaded.Load(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	rebuilt := New(nil)
	if err := rebuilt.Load(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	rebuilt.Rebuild()
	matched := 0
	for _, s := range urls {
		u, err := pattern.ParseURL(s)
		if err != nil {
			t.Fatal(err)
		}
		got, want := loaded.Query(u), rebuilt.Query(u)
		if !slices.EqualFunc(got, want, func(a, b hydrilla.QueryMapping) bool {
			return a.Identifier == b.Identifier && a.LongName == b.LongName && a.Version.Compare(b.Version) == 0
		}) {
			t.Fatalf("%s: the loaded index answers\n%v\na rebuilt one\n%v", s, got, want)
		}
		if len(want) > 1 {
			matched++
		}
	}
	if matched < len(urls)/10 {
		t.Fatalf("only %d of %d URLs match more than one mapping; the test checks too little", matched, len(urls))
	}
}
