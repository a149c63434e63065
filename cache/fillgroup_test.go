package cache_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/regmirror/regmirror/cache"
)

// TestFillGroupPutIsDurableWhenItReturns: concurrent Puts in the serve-time
// fill group share rounds, yet each returns only once its entry is in the
// index and accounted, with its body kept for the memory tier: what a fill
// answered is stored, as with an ordinary Put.
func TestFillGroupPutIsDurableWhenItReturns(t *testing.T) {
	c, d := openGroupCache(t, t.TempDir())
	defer c.Close()
	ctx := cache.WithGroup(context.Background(), cache.NewFillGroup())
	const n = 64
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key, body := fmt.Sprintf("fill/%02d", i), []byte(fmt.Sprintf("filled %d", i))
			h := putBody(t, ctx, c, key, body)
			if !bytes.Equal(h.Body, body) {
				t.Errorf("%s: Put returned body %q; want the stored bytes for the memory tier", key, h.Body)
			}
			e, err := d.Entry(context.Background(), key)
			if err != nil {
				t.Errorf("%s is not in the index when its fill's Put returns: %v", key, err)
				return
			}
			if e.Digest != h.Entry.Digest {
				t.Errorf("%s: index names %s, Put returned %s", key, e.Digest, h.Entry.Digest)
			}
		}()
	}
	wg.Wait()
	if got := c.Stats().DiskEntries; got != n {
		t.Errorf("%d entries accounted once every fill returned; want %d", got, n)
	}
	problems, err := cache.Verify(context.Background(), d, false)
	if err != nil || len(problems) > 0 {
		t.Errorf("verify: %v %v", problems, err)
	}
}

// TestOrdinaryPutWaitsForABlobPlacedByARound: an ordinary Put whose entry
// names a blob that a grouped write placed and whose round has not committed
// (a sync's round lingers for company) returns only once that blob is durable:
// the disk store trusts a blob this process placed, and an entry must never
// name one a crash could lose.
func TestOrdinaryPutWaitsForABlobPlacedByARound(t *testing.T) {
	c, d := openGroupCache(t, t.TempDir())
	defer c.Close()
	g := cache.NewGroup()
	body := []byte("the same bytes under two keys")
	putBody(t, cache.WithGroup(context.Background(), g), c, "synced", body)
	putBody(t, context.Background(), c, "served", body)
	// The round that made the shared blob durable has recorded its entry too.
	if _, err := d.Entry(context.Background(), "synced"); err != nil {
		t.Errorf("an ordinary Put naming a blob placed by a round returned before the round committed: %v", err)
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}
