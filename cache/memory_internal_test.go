package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The tests here look inside: what they check is how much the cache and the
// disk store keep in memory for a large store (issue 17), which no answer
// shows.

func fakeDigest(i int) string {
	h := sha256.Sum256([]byte(fmt.Sprint(i)))
	return hex.EncodeToString(h[:])
}

// A blob this process wrote is not hashed again at its next open; once many
// others have been written since, it is: the set of verified blobs stays
// bounded however many a sync writes, and forgetting one costs a hash, never
// a wrong answer.
func TestVerifiedBlobsAreBounded(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	st, err := Stage(d.TempDir(), bytes.NewReader([]byte("original bytes")), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	dg := st.Digest
	if err := d.Commit(ctx, st); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "blobs", "sha256", dg[:2], dg)
	if err := os.WriteFile(p, []byte("tampered bytes"), 0o640); err != nil {
		t.Fatal(err)
	}
	b, err := d.Open(ctx, dg)
	if err != nil {
		t.Fatalf("a blob this process wrote is trusted until forgotten: %v", err)
	}
	b.Close()
	for i := range 2*verifiedMax + 1 {
		d.verified.add(fakeDigest(i))
	}
	if n := len(d.verified.cur) + len(d.verified.old); n > 2*verifiedMax {
		t.Errorf("verified set holds %d digests, more than 2×%d", n, verifiedMax)
	}
	if _, err := d.Open(ctx, dg); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("open of a forgotten, changed blob: %v, want ErrDigestMismatch", err)
	}
}

// A digest used while in the older generation moves to the newer one, so
// what is used often is not forgotten.
func TestVerifiedBlobsKeepWhatIsUsed(t *testing.T) {
	var v verifiedSet
	hot := fakeDigest(-1)
	v.add(hot)
	for i := range 3 * verifiedMax {
		if i%(verifiedMax/2) == 0 && !v.has(hot) {
			t.Fatalf("used digest forgotten after %d others", i)
		}
		v.add(fakeDigest(i))
	}
	if v.has(fakeDigest(0)) {
		t.Error("a digest not used since 3×verifiedMax others is still held")
	}
}

// mappedKiB is how much of the mapping of path is resident in this process
// (the Rss lines of /proc/self/smaps for it).
func mappedKiB(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skip("no /proc/self/smaps:", err)
	}
	total, in := 0, false
	for _, l := range bytes.Split(b, []byte("\n")) {
		f := bytes.Fields(l)
		if len(f) == 0 {
			continue
		}
		if bytes.Contains(f[0], []byte("-")) && !bytes.HasSuffix(f[0], []byte(":")) {
			in = len(f) >= 6 && string(f[len(f)-1]) == path
			continue
		}
		if in && string(f[0]) == "Rss:" {
			var kib int
			fmt.Sscan(string(f[1]), &kib)
			total += kib
		}
	}
	return total
}

// A walk of the whole index (what start-up does) leaves none of its pages
// mapped in the process; nor does the release that follows other use.
func TestIndexPagesAreNotKeptMapped(t *testing.T) {
	if _, err := os.Stat("/proc/self/smaps"); err != nil {
		t.Skip("needs /proc/self/smaps (Linux)")
	}
	ctx := context.Background()
	dir := t.TempDir()
	d, err := OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var es []*Entry
	for i := range 20000 {
		es = append(es, &Entry{Key: fmt.Sprintf("k/%06d", i), Digest: fakeDigest(i), Size: 100, Status: http.StatusOK,
			FetchedAt: time.Unix(int64(i), 0), Class: Immutable, Header: http.Header{"Content-Type": {"application/json"}},
			Meta: []byte(fmt.Sprintf(`{"n":%d,"pad":%q}`, i, bytes.Repeat([]byte("x"), 200)))})
	}
	if err := d.PutEntries(ctx, es); err != nil {
		t.Fatal(err)
	}
	index := filepath.Join(dir, "index.db")
	fi, err := os.Stat(index)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := d.Entries(ctx, func(*Entry) error { n++; return nil }); err != nil || n != len(es) {
		t.Fatalf("walk: %d entries, %v", n, err)
	}
	if kib := mappedKiB(t, index); kib > 256 {
		t.Errorf("after a walk of an index of %d KiB, %d KiB of it are still mapped", fi.Size()>>10, kib)
	}
	if err := d.MetaBatches(ctx, "", 2, func(int, []MetaRecord) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if kib := mappedKiB(t, index); kib > 256 {
		t.Errorf("after a walk of the meta records, %d KiB of the index are still mapped", kib)
	}
	for i := 0; i < len(es); i += 7 {
		if _, err := d.Entry(ctx, es[i].Key); err != nil {
			t.Fatal(err)
		}
	}
	if kib := mappedKiB(t, index); kib < 256 {
		t.Logf("lookups left %d KiB mapped; the check below may pass without the release", kib)
	}
	d.release() // what releaseSoon schedules
	if kib := mappedKiB(t, index); kib > 256 {
		t.Errorf("after the release, %d KiB of the index are still mapped", kib)
	}
}

// The accounting keeps no name for a key eviction never takes (pinned or
// hosted), and keeps counting right when an entry changes between the two.
func TestAccountingNamesOnlyEvictableKeys(t *testing.T) {
	ctx := context.Background()
	d, err := OpenDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var es []*Entry
	for i := range 100 {
		es = append(es, &Entry{Key: fmt.Sprintf("k/%03d", i), Digest: fakeDigest(i % 60), Size: int64(10 + i%60),
			Status: http.StatusOK, Class: Immutable, FetchedAt: time.Unix(int64(i), 0), Pinned: i%4 != 0, Hosted: i == 1})
	}
	if err := d.PutEntries(ctx, es); err != nil {
		t.Fatal(err)
	}
	c, err := New(ctx, d, d.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.WaitLoaded()
	var wantBytes int64
	for i := range 60 {
		wantBytes += int64(10 + i)
	}
	check := func(when string, entries, named int) {
		t.Helper()
		st := c.Stats()
		c.mu.Lock()
		lru, blobs := len(c.lru), len(c.blobs)
		c.mu.Unlock()
		if st.DiskEntries != int64(entries) || st.DiskBytes != wantBytes || lru != named || blobs != 60 {
			t.Errorf("%s: %d entries (want %d), %d bytes (want %d), %d named (want %d), %d blobs (want 60)",
				when, st.DiskEntries, entries, st.DiskBytes, wantBytes, lru, named, blobs)
		}
	}
	check("loaded", 100, 25)
	// Unpinned → pinned and back, by writes of the same blob.
	e := *es[0]
	e.Pinned = true
	if _, err := c.Put(ctx, &e, nil); err != nil {
		t.Fatal(err)
	}
	check("one more pinned", 100, 24)
	e.Pinned = false
	if _, err := c.Put(ctx, &e, nil); err != nil {
		t.Fatal(err)
	}
	check("unpinned again", 100, 25)
	if err := c.Delete(ctx, es[4].Key); err != nil { // unpinned; its blob is named by k/064 too
		t.Fatal(err)
	}
	if err := c.Delete(ctx, es[5].Key); err != nil { // pinned; its blob by k/065 too
		t.Fatal(err)
	}
	check("two deleted", 98, 24)
}
