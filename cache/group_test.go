package cache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/regmirror/regmirror/cache"
)

// openGroupCache opens a cache over a disk store in dir.
func openGroupCache(t *testing.T, dir string) (*cache.Cache, *cache.Disk) {
	t.Helper()
	d, err := cache.OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.New(context.Background(), d, d.TempDir(), cache.Options{MemoryBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return c, d
}

func putBody(t *testing.T, ctx context.Context, c *cache.Cache, key string, body []byte) *cache.Hot {
	t.Helper()
	st, err := c.Stage(bytes.NewReader(body), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Discard()
	e := &cache.Entry{Key: key, Status: http.StatusOK, Class: cache.Immutable, FetchedAt: time.Now(), Pinned: true}
	h, err := c.Put(ctx, e, st)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestGroupCommitsEveryWrite: writes made concurrently in a group are
// readable at once (from the queue until their round commits), all recorded
// once the group is waited for, and a reopened store holds every entry with
// its blob and nothing else.
func TestGroupCommitsEveryWrite(t *testing.T) {
	dir := t.TempDir()
	c, _ := openGroupCache(t, dir)
	g := cache.NewGroup()
	ctx := cache.WithGroup(context.Background(), g)
	const n = 300
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				key, body := fmt.Sprintf("k/%03d", i), []byte(fmt.Sprintf("body %d", i))
				putBody(t, ctx, c, key, body)
				h, err := c.Lookup(context.Background(), key)
				if err != nil {
					t.Errorf("lookup of %s right after its grouped put: %v", key, err)
					continue
				}
				got, err := c.ReadAll(context.Background(), h.Entry)
				if err != nil || !bytes.Equal(got, body) {
					t.Errorf("body of %s right after its grouped put: %q, %v", key, got, err)
				}
			}
		}()
	}
	wg.Wait()
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	d, err := cache.OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for i := range n {
		e, err := d.Entry(context.Background(), fmt.Sprintf("k/%03d", i))
		if err != nil {
			t.Fatalf("after the group: %v", err)
		}
		if !e.Pinned || e.Size != int64(len(fmt.Sprintf("body %d", i))) {
			t.Errorf("entry %s: %+v", e.Key, e)
		}
	}
	problems, err := cache.Verify(context.Background(), d, false)
	if err != nil || len(problems) > 0 {
		t.Errorf("verify after the group: %v %v", problems, err)
	}
}

// TestGroupedWriteIsNotOvertaken: a write or delete of a key that does not
// join the group happens after the grouped write of that key, never before it
// (else the round would bring back what was deleted or replaced).
func TestGroupedWriteIsNotOvertaken(t *testing.T) {
	c, d := openGroupCache(t, t.TempDir())
	defer c.Close()
	g := cache.NewGroup()
	gctx := cache.WithGroup(context.Background(), g)
	bg := context.Background()

	putBody(t, gctx, c, "deleted", []byte("one"))
	if err := c.Delete(bg, "deleted"); err != nil {
		t.Fatal(err)
	}
	putBody(t, gctx, c, "replaced", []byte("grouped"))
	newer := putBody(t, bg, c, "replaced", []byte("direct, later"))
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if e, err := d.Entry(bg, "deleted"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("a key deleted after its grouped write is in the index: %+v %v", e, err)
	}
	if e, err := d.Entry(bg, "replaced"); err != nil || e.Digest != newer.Entry.Digest {
		t.Errorf("a key written after its grouped write holds %+v (%v); want the later digest %s", e, err, newer.Entry.Digest)
	}
}

// plainStore hides the disk store's GroupStore ability, as a store whose
// every commit is durable by itself (S3) lacks it.
type plainStore struct{ cache.Store }

// TestGroupOnAPlainStoreWritesAtOnce: on a store without rounds a grouped Put
// is an ordinary one: its entry is recorded when Put returns.
func TestGroupOnAPlainStoreWritesAtOnce(t *testing.T) {
	d, err := cache.OpenDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.New(context.Background(), plainStore{d}, d.TempDir(), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	g := cache.NewGroup()
	putBody(t, cache.WithGroup(context.Background(), g), c, "k", []byte("body"))
	if _, err := d.Entry(context.Background(), "k"); err != nil {
		t.Errorf("a grouped put on a store without rounds is not recorded when Put returns: %v", err)
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}
