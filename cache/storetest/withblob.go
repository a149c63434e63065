package storetest

import (
	"bytes"
	"context"
	"testing"

	"github.com/regmirror/regmirror/cache"
)

// OpenDiskWithBlob opens a disk store in dir holding one committed blob, `{}`,
// and returns it with the blob's digest, for tests that write entries straight
// into a store.
func OpenDiskWithBlob(t testing.TB, dir string) (*cache.Disk, string) {
	t.Helper()
	d, err := cache.OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := cache.Stage(d.TempDir(), bytes.NewReader([]byte(`{}`)), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	return d, st.Digest
}
