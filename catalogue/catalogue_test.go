package catalogue

import (
	"context"
	"fmt"
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
