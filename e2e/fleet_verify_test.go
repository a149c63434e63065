package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `regmirror verify --blob-store …` on a replica's own data directory hashes
// the bucket's bytes: one byte changed in the bucket is found although the
// replica's local tier still holds a good copy (issue 14, defect 9).
func TestFleetVerifyHashesTheBucket(t *testing.T) {
	f := newFleet(t)
	o := f.fileObject(4 << 10)
	m := f.start()
	m.mustGet(o.path, o.want, "MISS")
	m.stop()
	if code, out := verify(t, m.Data, f.s3Args()...); code != 0 {
		t.Fatalf("verify before the change exited %d; want 0:\n%s", code, out)
	}
	sha := strings.TrimPrefix(o.path, "/file/sha256/")
	// versitygw's posix backend keeps each object as <dir>/<bucket>/<key>.
	p := filepath.Join(f.gw.dir, f.bucket, f.prefix, "blobs", "sha256", sha)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("the blob in the bucket: %v", err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := verify(t, m.Data, f.s3Args()...)
	if code == 0 || !strings.Contains(out, sha) {
		t.Errorf("verify after one byte of blob %s changed in the bucket exited %d; want 1 naming it:\n%s", sha[:12], code, out)
	}
}
