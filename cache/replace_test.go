package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/regmirror/regmirror/cache"
)

// An entry rewritten with other bytes (a refreshed list, a sync record) leaves
// no blob behind that no entry names, grouped or not: verify finds nothing.
func TestRewrittenEntryLeavesNoUnnamedBlob(t *testing.T) {
	for _, grouped := range []bool{false, true} {
		ctx := context.Background()
		d, err := cache.OpenDisk(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		c, err := cache.New(ctx, d, d.TempDir(), cache.Options{SweepUnnamedBlobs: true})
		if err != nil {
			t.Fatal(err)
		}
		c.WaitLoaded()
		var g *cache.Group
		wctx := ctx
		if grouped {
			g = cache.NewGroup()
			wctx = cache.WithGroup(ctx, g)
		}
		for _, body := range []string{"first list", "second list", "third list"} {
			e := &cache.Entry{Key: "a/list", Status: 200, Class: cache.Mutable, FetchedAt: time.Now()}
			if _, err := c.PutBody(wctx, e, []byte(body)); err != nil {
				t.Fatal(err)
			}
		}
		if g != nil {
			if err := g.Wait(); err != nil {
				t.Fatal(err)
			}
		}
		problems, err := cache.Verify(ctx, d, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(problems) != 0 {
			t.Errorf("grouped=%v: verify found %v after an entry was rewritten twice", grouped, problems)
		}
		c.Close()
		d.Close()
	}
}
