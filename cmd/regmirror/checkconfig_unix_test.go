//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A data directory whose index another process holds (a running serve, a
// sync) would stop serve at start ("locked: is another regmirror using …"),
// so check-config must not say serve would start. The lock is taken as the
// index's own library takes it: flock(2), exclusive.
func TestCheckConfigRefusesALockedStore(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(data, 0o750); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(data, "index.db"), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	r := run(t, t.TempDir(), nil, "check-config", "--listen", "127.0.0.1:0", "--data", data)
	if r.code != 1 || !strings.Contains(r.stderr, "data:") || !strings.Contains(r.stderr, "is another regmirror using") {
		t.Fatalf("check-config of a locked data directory: exit %d\nstdout:\n%s\nstderr:\n%s\nwant 1 naming data and the lock", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout, "serve would start") {
		t.Errorf("stdout says serve would start:\n%s", r.stdout)
	}
}
