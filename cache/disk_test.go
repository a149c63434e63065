package cache_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/cache/storetest"
)

func TestDiskCompliance(t *testing.T) {
	storetest.Run(t, storetest.Backend{Open: openDisk})
}

// openDisk opens a disk store in a per-test folder; a second call in the same
// test reopens the same folder.
var diskDirs = map[string]string{}

func openDisk(t *testing.T) (cache.Store, string) {
	dir, ok := diskDirs[t.Name()]
	if !ok {
		dir = t.TempDir()
		diskDirs[t.Name()] = dir
		// A later run of the same test (-count) starts from a folder of its own.
		t.Cleanup(func() { delete(diskDirs, t.Name()) })
	}
	d, err := cache.OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d, d.TempDir()
}

func TestDiskDetectsBlobChangedAtRest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := cache.OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := cache.Stage(d.TempDir(), bytes.NewReader([]byte("original bytes")), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	digest := st.Digest
	if err := d.Commit(ctx, st); err != nil {
		t.Fatal(err)
	}
	d.Close()
	p := filepath.Join(dir, "blobs", "sha256", digest[:2], digest)
	if err := os.WriteFile(p, []byte("tampered bytes"), 0o640); err != nil {
		t.Fatal(err)
	}
	d, err = cache.OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Open(ctx, digest); !errors.Is(err, cache.ErrDigestMismatch) {
		t.Fatalf("Open(tampered) = %v, want ErrDigestMismatch", err)
	}
}

func TestDiskClearsStaleTempFiles(t *testing.T) {
	dir := t.TempDir()
	d, err := cache.OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(d.TempDir(), "stage-123"), []byte("partial"), 0o640)
	d.Close()
	d, err = cache.OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if des, _ := os.ReadDir(d.TempDir()); len(des) != 0 {
		t.Fatalf("temp files left after restart: %d", len(des))
	}
}

// TestDiskMetaBatches walks the Meta records of one prefix in batches on
// several goroutines: each record once, in key order by batch number, with its
// upstream and Meta; entries without Meta, and other prefixes, left out; an
// error from fn, or a cancelled context, stops the walk and is returned.
func TestDiskMetaBatches(t *testing.T) {
	ctx := context.Background()
	d, err := cache.OpenDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	const n = 2500 // a few batches and a partial one
	var es []*cache.Entry
	for i := range n {
		es = append(es, &cache.Entry{Key: fmt.Sprintf("p/%05d", i), Digest: strings.Repeat("a", 64), Upstream: fmt.Sprintf("u%d", i%3),
			Meta: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
	}
	es = append(es, &cache.Entry{Key: "p/no-meta", Digest: strings.Repeat("a", 64)},
		&cache.Entry{Key: "q/00000", Digest: strings.Repeat("a", 64), Meta: json.RawMessage(`{}`)})
	if err := d.PutEntries(ctx, es); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	batches := map[int][]string{}
	err = d.MetaBatches(ctx, "p/", 3, func(seq int, batch []cache.MetaRecord) error {
		var got []string
		for _, r := range batch {
			got = append(got, string(r.Key)+" "+string(r.Upstream)+" "+string(r.Meta))
		}
		mu.Lock()
		defer mu.Unlock()
		if _, dup := batches[seq]; dup {
			t.Errorf("batch %d handed over twice", seq)
		}
		batches[seq] = got
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for seq := range len(batches) {
		all = append(all, batches[seq]...)
	}
	if len(all) != n {
		t.Fatalf("%d records in %d batches, want %d", len(all), len(batches), n)
	}
	for i, r := range all {
		if want := fmt.Sprintf(`p/%05d u%d {"n":%d}`, i, i%3, i); r != want {
			t.Fatalf("record %d = %q, want %q", i, r, want)
		}
	}
	keys := 0
	if err := d.MetaKeys(ctx, "p/", func(k []byte) error { keys++; return nil }); err != nil || keys != n {
		t.Fatalf("MetaKeys: %d keys, %v; want %d", keys, err, n)
	}

	boom := errors.New("boom")
	if err := d.MetaBatches(ctx, "p/", 2, func(int, []cache.MetaRecord) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("MetaBatches with a failing fn = %v, want %v", err, boom)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.MetaBatches(cctx, "p/", 2, func(int, []cache.MetaRecord) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("MetaBatches with a cancelled context = %v, want context.Canceled", err)
	}
	if err := d.MetaKeys(cctx, "p/", func([]byte) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("MetaKeys with a cancelled context = %v, want context.Canceled", err)
	}
}

// TestDiskStagesUnnamed: on Linux a body staged for the disk store has no
// name until it is placed (one directory entry per blob, nothing left in the
// temp folder by a killed process), and placing it replaces a file found
// under its blob name that this process has not checked (a torn blob left by
// a power cut), grouped or not.
func TestDiskStagesUnnamed(t *testing.T) {
	for _, grouped := range []bool{false, true} {
		ctx := context.Background()
		dir := t.TempDir()
		d, err := cache.OpenDisk(dir)
		if err != nil {
			t.Fatal(err)
		}
		c, err := cache.New(ctx, d, d.TempDir(), cache.Options{})
		if err != nil {
			t.Fatal(err)
		}
		body := []byte(fmt.Sprintf("whole body, grouped=%v", grouped))
		st, err := c.Stage(bytes.NewReader(body), 0, "")
		if err != nil {
			t.Fatal(err)
		}
		if des, _ := os.ReadDir(d.TempDir()); runtime.GOOS == "linux" && (len(des) != 0 || st.Path() != "") {
			t.Fatalf("a staged body has a name: %q, temp folder holds %d", st.Path(), len(des))
		}
		p := filepath.Join(dir, "blobs", "sha256", st.Digest[:2], st.Digest)
		os.MkdirAll(filepath.Dir(p), 0o750)
		if err := os.WriteFile(p, body[:5], 0o640); err != nil {
			t.Fatal(err)
		}
		wctx := ctx
		g := cache.NewGroup()
		if grouped {
			wctx = cache.WithGroup(ctx, g)
		}
		e := &cache.Entry{Key: "k", Status: 200, Class: cache.Immutable}
		if _, err := c.Put(wctx, e, st); err != nil {
			t.Fatalf("grouped=%v: Put over a torn blob: %v", grouped, err)
		}
		st.Discard()
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(p); !bytes.Equal(got, body) {
			t.Errorf("grouped=%v: blob holds %q, want %q", grouped, got, body)
		}
		if des, _ := os.ReadDir(d.TempDir()); len(des) != 0 {
			t.Errorf("grouped=%v: temp folder holds %d files after the commit", grouped, len(des))
		}
		if problems, err := cache.Verify(ctx, d, false); err != nil || len(problems) != 0 {
			t.Errorf("grouped=%v: verify: %v %v", grouped, problems, err)
		}
		c.Close()
	}
}

// TestDiskPutEntriesKeepsTheLastRecordOfAKey: a round records its entries in
// key order, and a key written twice in one round keeps its later record.
func TestDiskPutEntriesKeepsTheLastRecordOfAKey(t *testing.T) {
	ctx := context.Background()
	d, err := cache.OpenDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var es []*cache.Entry
	for i := range 50 {
		es = append(es, &cache.Entry{Key: fmt.Sprintf("k/%02d", (i*7)%25), Status: 200, Size: int64(i)})
	}
	if err := d.PutEntries(ctx, es); err != nil {
		t.Fatal(err)
	}
	for i := 25; i < 50; i++ {
		key := fmt.Sprintf("k/%02d", (i*7)%25)
		e, err := d.Entry(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if e.Size != int64(i) {
			t.Errorf("%s holds the record of write %d, want %d", key, e.Size, i)
		}
	}
}
