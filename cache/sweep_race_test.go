package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"testing"
	"time"
)

// sweepRaceDisk is the real disk store with a hook run as the start-up sweep
// is about to unlink a blob.
type sweepRaceDisk struct {
	*Disk
	beforeDelete func(digest string)
}

func (d *sweepRaceDisk) DeleteBlob(ctx context.Context, digest string) error {
	if d.beforeDelete != nil {
		d.beforeDelete(digest)
	}
	return d.Disk.DeleteBlob(ctx, digest)
}

// The start-up sweep removes a blob left by an interrupted write. A fill of
// the same bytes (a client retrying what a crash cut off) may place that very
// blob again at the same moment; the sweep's check and its unlink must be one
// step, as dropReplaced's are, or it unlinks the fill's blob under the entry
// the fill then records. The hook puts the fill exactly between the two
// whenever nothing stops it from running there.
func TestSweepDoesNotRemoveABlobAFillPlacesMeanwhile(t *testing.T) {
	ctx := context.Background()
	disk, err := OpenDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer disk.Close()
	store := &sweepRaceDisk{Disk: disk}
	c, err := New(ctx, store, disk.TempDir(), Options{SweepUnnamedBlobs: true, DeferAccounting: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := []byte("a file a crash cut off, fetched again")
	sum := sha256.Sum256(body)
	digest := hex.EncodeToString(sum[:])
	// The interrupted write: a blob in place, no entry naming it.
	st, err := c.Stage(bytes.NewReader(body), 1<<20, digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := disk.Commit(ctx, st); err != nil {
		t.Fatal(err)
	}
	st.Discard()
	key := "hy/file/" + digest
	raced := false
	store.beforeDelete = func(d string) {
		if d != digest || raced || !c.mu.TryLock() {
			return // the sweep holds the cache's lock: no fill can run here
		}
		c.mu.Unlock()
		raced = true
		st, err := c.Stage(bytes.NewReader(body), 1<<20, digest)
		if err != nil {
			t.Error(err)
			return
		}
		defer st.Discard()
		e := &Entry{Key: key, Status: 200, Class: Immutable, FetchedAt: time.Now()}
		if _, err := c.Put(ctx, e, st); err != nil {
			t.Error(err)
		}
	}
	c.StartAccounting()
	c.WaitLoaded()
	if !raced {
		// The fill comes after the sweep, as it must.
		if _, err := c.PutBody(ctx, &Entry{Key: key, Status: 200, Class: Immutable, FetchedAt: time.Now()}, body); err != nil {
			t.Fatal(err)
		}
	}
	h, err := c.Lookup(ctx, key)
	if err != nil {
		t.Fatalf("lookup of the fill's entry: %v", err)
	}
	b, err := c.Open(ctx, h.Entry)
	if err != nil {
		t.Fatalf("the fill's entry names a blob the sweep removed: %v", err)
	}
	got, _ := io.ReadAll(b)
	b.Close()
	if !bytes.Equal(got, body) {
		t.Fatalf("blob holds %q", got)
	}
}
