package cache_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/cache"
)

// Hosted entries are the only copy of what was pushed to the mirror: neither
// eviction, nor a blob found missing, nor verify --repair may remove them.
func TestHostedEntriesAreNeverDropped(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := cache.OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c, err := cache.New(ctx, d, d.TempDir(), cache.Options{DiskBytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.WaitLoaded()
	put := func(key, body string, hosted bool) *cache.Entry {
		e := &cache.Entry{Key: key, Status: 200, Class: cache.Immutable, FetchedAt: time.Now(), Hosted: hosted, Pinned: hosted}
		if _, err := c.PutBody(ctx, e, []byte(body)); err != nil {
			t.Fatal(err)
		}
		return e
	}
	hosted := put("hosted/one", "the only copy of a pushed package", true)
	put("cached/one", "an upstream answer, over the limit", false)
	if _, err := d.Entry(ctx, "cached/one"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("the cached entry over the disk limit was not evicted: %v", err)
	}
	if _, err := d.Entry(ctx, "hosted/one"); err != nil {
		t.Fatalf("the hosted entry was evicted: %v", err)
	}

	// Its blob goes missing: serving fails, the entry stays.
	blob := filepath.Join(dir, "blobs", "sha256", hosted.Digest[:2], hosted.Digest)
	if err := os.Remove(blob); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Open(ctx, hosted); err == nil {
		t.Fatal("Open of a missing blob succeeded")
	}
	if _, err := d.Entry(ctx, "hosted/one"); err != nil {
		t.Fatalf("Open dropped the hosted entry: %v", err)
	}

	problems, err := cache.Verify(ctx, d, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || !problems[0].Unrecoverable || problems[0].Key != "hosted/one" {
		t.Fatalf("problems %v, want one unrecoverable for hosted/one", problems)
	}
	if !strings.Contains(problems[0].String(), "unrecoverable") {
		t.Errorf("report %q does not say unrecoverable", problems[0])
	}
	if _, err := d.Entry(ctx, "hosted/one"); err != nil {
		t.Fatalf("verify --repair dropped the hosted entry: %v", err)
	}
}
