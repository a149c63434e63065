package e2e

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/refpack/registrytest"
)

// TestVerifyWhileServing runs `regmirror verify` on the data directory of a
// running mirror that is in the middle of a fill. The index is locked by the
// mirror, so verify must refuse, promptly and saying why, and must not touch
// the directory: in particular not the mirror's staging files. The fill then
// completes and is stored (the next request is a HIT).
func TestVerifyWhileServing(t *testing.T) {
	reg := registrytest.New()
	zip := bigPackage(t, reg, 2<<20)
	stall := stallZip(reg, zip)
	up := newGate(t, reg)
	t.Cleanup(reg.Close)
	t.Cleanup(stall.release)
	data := t.TempDir()
	tmp := filepath.Join(data, "tmp")

	m := startMirror(t, data, up.URL(), deadURL(t))
	got := make(chan *answer, 1)
	go func() {
		a, err := m.do(http.MethodGet, bigZipPath)
		if err != nil {
			a = &answer{Status: -1, Body: []byte(err.Error()), Header: http.Header{}}
		}
		got <- a
	}()
	select {
	case <-stall.halfSent:
	case <-time.After(20 * time.Second):
		t.Fatal("the registry never received the mirror's request for the zip")
	}
	waitStaged(t, m.proc, tmp, int64(len(zip)/2))
	staged := dirFiles(t, tmp)

	start := time.Now()
	code, out := verify(t, data)
	took := time.Since(start)
	if code == 0 {
		t.Errorf("verify exited 0 on the data directory of a running mirror:\n%s", out)
	}
	if took > 10*time.Second {
		t.Errorf("verify took %s to give up on a locked index", took)
	}
	t.Logf("verify on a running mirror's data: exit %d after %s: %s", code, took.Round(time.Millisecond), strings.TrimSpace(out))
	for name := range staged {
		if _, ok := dirFiles(t, tmp)[name]; !ok {
			t.Errorf("verify, refused by the locked index, still deleted the running mirror's staging file tmp/%s "+
				"(OpenDisk clears DATA/tmp before it takes the index lock)", name)
		}
	}

	stall.release()
	var a *answer
	select {
	case a = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("the fill did not finish after the registry sent the rest")
	}
	if a.Status != http.StatusOK || string(a.Body) != string(zip) {
		t.Fatalf("the fill across a verify: %s", a)
	}
	if a.cache() != "MISS" {
		t.Errorf("the fill across a verify: X-Cache %q, Cache-Status %q; want MISS (stored)", a.cache(), a.Header.Get("Cache-Status"))
	}
	m.mustGet(bigZipPath, zip, "HIT")
	m.stop()
	mustVerify(t, data)
}
