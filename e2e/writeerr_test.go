package e2e

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/regmirror/regmirror/hydrilla/hydrillatest"
	"github.com/regmirror/regmirror/refpack/registrytest"
)

// makeUnwritable makes each dir refuse new entries (create, rename into,
// mkdir): chmod 0555 for an ordinary user, and for root, whom modes do not
// stop, the immutable attribute (chattr +i, which binds root too). A probe
// write checks that it took; the test is skipped, with the reason, when it
// did not. The cleanup undoes it.
func makeUnwritable(t *testing.T, dirs ...string) (restore func()) {
	t.Helper()
	root := os.Geteuid() == 0
	var once sync.Once
	restore = func() {
		once.Do(func() {
			for _, d := range dirs {
				if root {
					exec.Command("chattr", "-i", d).Run()
				} else {
					os.Chmod(d, 0o750)
				}
			}
		})
	}
	t.Cleanup(restore)
	for _, d := range dirs {
		if root {
			if out, err := exec.Command("chattr", "+i", d).CombinedOutput(); err != nil {
				restore()
				t.Skipf("running as root, where chmod does not stop writes, and chattr +i %s failed (%v: %s): "+
					"cannot simulate permission denied here", d, err, strings.TrimSpace(string(out)))
			}
		} else if err := os.Chmod(d, 0o555); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range dirs {
		probe := filepath.Join(d, "probe")
		if err := os.WriteFile(probe, nil, 0o600); err == nil {
			os.Remove(probe)
			restore()
			t.Skipf("a probe write into %s succeeded after making it read-only (euid %d): "+
				"cannot simulate permission denied here", d, os.Geteuid())
		}
		if err := os.Mkdir(filepath.Join(d, "probe-dir"), 0o750); err == nil {
			os.Remove(filepath.Join(d, "probe-dir"))
			restore()
			t.Skipf("a probe mkdir in %s succeeded after making it read-only: cannot simulate permission denied here", d)
		}
	}
	return restore
}

// fanOut lists DATA/blobs/sha256 and its fan-out folders.
func fanOut(t *testing.T, data string) []string {
	t.Helper()
	root := filepath.Join(data, "blobs", "sha256")
	dirs := []string{root}
	des, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if de.IsDir() {
			dirs = append(dirs, filepath.Join(root, de.Name()))
		}
	}
	return dirs
}

// writeErrorUpstreams serves a RefPack zip of 2 MiB and three Hydrilla files.
func writeErrorUpstreams(t *testing.T) (rp, hy *gate, reg *registrytest.Registry, repo *hydrillatest.Repo, zip []byte, files [][]byte) {
	reg = registrytest.New()
	zip = bigPackage(t, reg, 2<<20)
	rp = newGate(t, reg)
	t.Cleanup(reg.Close)
	repo = hydrillatest.New()
	files = [][]byte{randomBytes(t, 2<<10), randomBytes(t, 3<<10), randomBytes(t, 3<<19)}
	for _, f := range files {
		repo.AddFile(f)
	}
	hy = newGate(t, repo.Handler())
	return rp, hy, reg, repo, zip, files
}

// checkUnstored checks an answer given while the store cannot be written: the
// upstream's bytes, whole, and not claimed to come from the cache.
func checkUnstored(t *testing.T, m *mirror, what, path string, want []byte) {
	t.Helper()
	a, err := m.do(http.MethodGet, path)
	if err != nil {
		t.Errorf("%s while the store cannot be written: %v", what, err)
		return
	}
	if a.Status != http.StatusOK || string(a.Body) != string(want) {
		t.Errorf("%s while the store cannot be written: %s; want 200 with the upstream's %d bytes", what, a, len(want))
		return
	}
	if c := a.cache(); c != "MISS" && c != "BYPASS" {
		t.Errorf("%s while the store cannot be written: X-Cache %q; want MISS or BYPASS", what, c)
	}
	t.Logf("%s while the store cannot be written: 200, %d bytes, X-Cache %s, Cache-Status %q",
		what, len(a.Body), a.cache(), a.Header.Get("Cache-Status"))
}

// TestWriteErrorPermissionDenied makes the blob folders unwritable while the
// mirror runs: misses are still answered from the upstream, whole and
// correct, the error is counted, nothing partial is stored or left in
// DATA/tmp, and once the folders are writable again the mirror stores as
// before and verify finds nothing wrong.
func TestWriteErrorPermissionDenied(t *testing.T) {
	rp, hy, reg, repo, zip, files := writeErrorUpstreams(t)
	data := t.TempDir()
	m := startMirror(t, data, rp.URL(), hy.URL())
	held := "/file/sha256/" + sum(files[0])
	m.mustGet(held, files[0], "MISS")

	restore := makeUnwritable(t, fanOut(t, data)...)
	before := m.metric(`regmirror_blob_store_errors_total{op="write"}`)
	small, large := "/file/sha256/"+sum(files[1]), "/file/sha256/"+sum(files[2])
	zipBefore, smallBefore := zipFetches(reg), repo.Count(small)
	checkUnstored(t, m, "small Hydrilla file", small, files[1])
	checkUnstored(t, m, "large Hydrilla file", large, files[2])
	checkUnstored(t, m, "RefPack zip", bigZipPath, zip)
	t.Logf("upstream requests to answer one miss while the store is unwritable: zip %d, small file %d",
		zipFetches(reg)-zipBefore, repo.Count(small)-smallBefore)
	if after := m.metric(`regmirror_blob_store_errors_total{op="write"}`); after < before+3 {
		t.Errorf(`regmirror_blob_store_errors_total{op="write"} went from %v to %v for 3 failed writes`, before, after)
	}
	checkUnstored(t, m, "small Hydrilla file again", small, files[1])
	m.mustGet(held, files[0], "HIT")
	waitFor(t, 5*time.Second, "DATA/tmp to be empty", func() bool { return len(dirFiles(t, filepath.Join(data, "tmp"))) == 0 })

	restore()
	m.mustGet(small, files[1], "MISS")
	m.mustGet(small, files[1], "HIT")
	m.mustGet(bigZipPath, zip, "MISS")
	m.mustGet(bigZipPath, zip, "HIT")
	m.stop()
	mustVerify(t, data)
}

// TestWriteErrorDiskFull puts the data directory on a 1 MiB tmpfs: a small
// answer is stored, a 2 MiB zip and a 1.5 MiB file do not fit. They are still
// answered from the upstream, whole and correct; nothing partial is left, and
// verify finds nothing wrong. Mounting needs root (CAP_SYS_ADMIN).
func TestWriteErrorDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs for the data directory needs root")
	}
	data := t.TempDir()
	if err := syscall.Mount("tmpfs", data, "tmpfs", 0, "size=1m,mode=0750"); err != nil {
		t.Skipf("cannot mount a tmpfs to fill up (%v): disk full not simulated", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(data, 0); err != nil {
			if err := syscall.Unmount(data, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
				t.Errorf("unmount %s: %v", data, err)
			}
		}
	})
	rp, hy, reg, repo, zip, files := writeErrorUpstreams(t)
	m := startMirror(t, data, rp.URL(), hy.URL())
	small, large := "/file/sha256/"+sum(files[0]), "/file/sha256/"+sum(files[2])
	m.mustGet(small, files[0], "MISS")
	m.mustGet(small, files[0], "HIT")

	zipBefore, largeBefore := zipFetches(reg), repo.Count(large)
	checkUnstored(t, m, "2 MiB RefPack zip on a full disk", bigZipPath, zip)
	checkUnstored(t, m, "1.5 MiB Hydrilla file on a full disk", large, files[2])
	t.Logf("upstream requests to answer one miss on a full disk: zip %d, large file %d",
		zipFetches(reg)-zipBefore, repo.Count(large)-largeBefore)
	if n := m.metric(`regmirror_blob_store_errors_total{op="write"}`); n < 2 {
		t.Errorf(`regmirror_blob_store_errors_total{op="write"} is %v after 2 failed writes`, n)
	}

	// Five clients at once for the zip that cannot be stored: each is answered.
	zipBefore = zipFetches(reg)
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			checkUnstored(t, m, "concurrent zip on a full disk", bigZipPath, zip)
		}()
	}
	wg.Wait()
	t.Logf("FIGURE: 5 concurrent misses for the zip on a full disk made %d upstream requests", zipFetches(reg)-zipBefore)

	m.mustGet(small, files[0], "HIT")
	waitFor(t, 5*time.Second, "DATA/tmp to be empty", func() bool { return len(dirFiles(t, filepath.Join(data, "tmp"))) == 0 })
	if _, err := os.Stat(blobPath(data, sum(zip))); err == nil {
		t.Errorf("a blob of the zip is on the full disk")
	}
	m.stop()
	mustVerify(t, data)
	idx := readIndex(t, data)
	if e, ok := idx[bigZipKey]; ok {
		t.Errorf("the index holds the zip that did not fit: %+v", e)
	}
}
