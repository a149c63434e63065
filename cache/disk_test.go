package cache_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
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
