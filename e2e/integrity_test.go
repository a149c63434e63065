package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/engine"
	"github.com/regmirror/regmirror/hydrilla/hydrillatest"
	"github.com/regmirror/regmirror/refpack/registrytest"
)

// object is one answer the integrity test stores, tampers with and asks for.
type object struct {
	name    string
	path    string // on the mirror
	want    []byte
	fetches func() int // upstream requests for it so far
}

func (o *object) digest() string { return sum(o.want) }

// integritySetup serves a RefPack zip (2 MiB, above the memory tier's item
// limit), a RefPack /versions document (small JSON, mutable), a small
// Hydrilla file and a large one (1.5 MiB).
func integritySetup(t *testing.T) (rp, hy *gate, objs []*object) {
	reg := registrytest.New()
	zip := bigPackage(t, reg, 2<<20)
	rp = newGate(t, reg)
	t.Cleanup(reg.Close)
	repo := hydrillatest.New()
	small := randomBytes(t, 4<<10)
	large := randomBytes(t, 3<<19)
	smallSHA, largeSHA := repo.AddFile(small), repo.AddFile(large)
	hy = newGate(t, repo.Handler())

	// The versions document as the registry sends it.
	resp, err := http.Get(rp.URL() + "/packages/acme%2Fbig/versions")
	if err != nil {
		t.Fatal(err)
	}
	versions, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("registry versions: %d %v", resp.StatusCode, err)
	}
	regCount := func(path string) func() int {
		return func() int {
			n := 0
			for _, r := range reg.Requests() {
				if r.Path == path {
					n++
				}
			}
			return n
		}
	}
	objs = []*object{
		{name: "refpack zip", path: bigZipPath, want: zip, fetches: zipFetchesFunc(reg)},
		{name: "refpack versions JSON", path: "/packages/acme/big/versions", want: versions,
			fetches: regCount("/packages/acme%2Fbig/versions")},
		{name: "small hydrilla file", path: "/file/sha256/" + smallSHA, want: small,
			fetches: func() int { return repo.Count("/file/sha256/" + smallSHA) }},
		{name: "large hydrilla file", path: "/file/sha256/" + largeSHA, want: large,
			fetches: func() int { return repo.Count("/file/sha256/" + largeSHA) }},
	}
	return rp, hy, objs
}

func zipFetchesFunc(reg *registrytest.Registry) func() int {
	return func() int { return zipFetches(reg) }
}

// TestIntegrityAtRest changes bytes of stored blobs while the mirror is
// stopped. After a restart a tampered object is never served: with the
// upstream up it is fetched again and served correctly (MISS), with the
// upstream down the answer is a 502 or 504 JSON error. verify reports a
// tampered blob and exits non-zero; --repair drops it; verify then exits 0.
func TestIntegrityAtRest(t *testing.T) {
	rp, hy, objs := integritySetup(t)
	data := t.TempDir()

	// Store them all.
	m := startMirror(t, data, rp.URL(), hy.URL())
	for _, o := range objs {
		a := m.mustGet(o.path, o.want, "MISS")
		if etag := a.Header.Get("ETag"); etag != `"`+o.digest()+`"` {
			t.Errorf("%s: ETag %s; want the sha256 of the body", o.name, etag)
		}
		m.mustGet(o.path, o.want, "HIT")
	}
	m.stop()
	mustVerify(t, data)
	for _, o := range objs {
		if _, ok := dirFiles(t, data)[strings.TrimPrefix(blobPath("", o.digest()), "/")]; !ok {
			t.Fatalf("%s: no blob %s on disk", o.name, blobPath(data, o.digest()))
		}
	}

	t.Run("verify reports tampered blobs", func(t *testing.T) {
		for _, o := range objs {
			flipBytes(t, blobPath(data, o.digest()))
		}
		code, out := verify(t, data)
		if code == 0 {
			t.Fatalf("verify exited 0 with %d tampered blobs:\n%s", len(objs), out)
		}
		problems := strings.Join(verifyProblems(out), "\n")
		for _, o := range objs {
			if !strings.Contains(problems, o.digest()) {
				t.Errorf("verify did not name the tampered blob of the %s (%s):\n%s", o.name, o.digest(), out)
			}
		}
		t.Logf("verify exited %d:\n%s", code, out)
	})

	t.Run("upstream up: refetched", func(t *testing.T) {
		// The blobs are still tampered (verify did not repair).
		m := startMirror(t, data, rp.URL(), hy.URL())
		for i, o := range objs {
			before := o.fetches()
			switch i {
			case 0: // a Range request first: the check must cover the whole blob
				a := m.get(o.path, "Range", "bytes=0-1023")
				if a.Status != http.StatusPartialContent || string(a.Body) != string(o.want[:1024]) {
					t.Errorf("%s: Range 0-1023 after tampering: %s", o.name, a)
				} else if a.cache() != "MISS" {
					t.Errorf("%s: Range after tampering: X-Cache %q; want MISS", o.name, a.cache())
				}
				m.mustGet(o.path, o.want, "HIT")
			case 3: // HEAD first
				a, err := m.do(http.MethodHead, o.path)
				if err != nil {
					t.Fatal(err)
				}
				if a.Status != http.StatusOK || a.Header.Get("Content-Length") != strconv.Itoa(len(o.want)) || a.cache() != "MISS" {
					t.Errorf("%s: HEAD after tampering: %s, Content-Length %s", o.name, a, a.Header.Get("Content-Length"))
				}
				m.mustGet(o.path, o.want, "HIT")
			default:
				m.mustGet(o.path, o.want, "MISS")
				m.mustGet(o.path, o.want, "HIT")
			}
			if n := o.fetches() - before; n != 1 {
				t.Errorf("%s: %d upstream fetches after tampering; want 1", o.name, n)
			}
		}
		m.stop()
		mustVerify(t, data)
	})

	t.Run("upstream down: 502 not tampered bytes", func(t *testing.T) {
		for _, o := range objs {
			flipBytes(t, blobPath(data, o.digest()))
		}
		rp.down.Store(true)
		hy.down.Store(true)
		defer rp.down.Store(false)
		defer hy.down.Store(false)
		m := startMirror(t, data, rp.URL(), hy.URL())
		for i, o := range objs {
			for try := 0; try < 2; try++ {
				hdr := []string{}
				if i == 0 && try == 0 {
					hdr = []string{"Range", "bytes=0-1023"}
				}
				a := m.get(o.path, hdr...)
				checkGatewayError(t, o.name, a)
			}
		}
		m.stop()
		// The mirror dropped the tampered entries and their blobs: the index is
		// consistent again.
		mustVerify(t, data)
		idx := readIndex(t, data)
		for _, o := range objs {
			for k, e := range idx {
				if e.Digest == o.digest() {
					t.Errorf("%s: entry %q still names the tampered blob", o.name, k)
				}
			}
		}
	})

	t.Run("verify --repair", func(t *testing.T) {
		m := startMirror(t, data, rp.URL(), hy.URL())
		for _, o := range objs {
			m.mustGet(o.path, o.want, "MISS")
		}
		m.stop()
		zip := objs[0]
		flipBytes(t, blobPath(data, zip.digest()))
		code, out := verify(t, data)
		if code == 0 || !strings.Contains(out, zip.digest()) {
			t.Fatalf("verify exited %d; want non-zero naming %s:\n%s", code, zip.digest(), out)
		}
		if n := len(verifyProblems(out)); n != 1 {
			t.Errorf("verify reported %d problems for one tampered blob:\n%s", n, out)
		}
		code, out = verify(t, data, "--repair")
		t.Logf("verify --repair exited %d:\n%s", code, out)
		mustVerify(t, data)
		for _, o := range objs[1:] {
			if e, ok := readIndex(t, data)[keyOf(o)]; ok && e.Digest != o.digest() {
				t.Errorf("%s: entry changed by the repair: %+v", o.name, e)
			}
		}
		m = startMirror(t, data, rp.URL(), hy.URL())
		before := zip.fetches()
		m.mustGet(zip.path, zip.want, "MISS")
		if zip.fetches() != before+1 {
			t.Errorf("the repaired zip was not fetched again")
		}
		for _, o := range objs[1:] {
			m.mustGet(o.path, o.want, "HIT")
		}
		m.stop()
		mustVerify(t, data)
	})

	t.Run("missing blobs", func(t *testing.T) {
		gone := []*object{objs[0], objs[2]}
		for _, o := range gone {
			if err := os.Remove(blobPath(data, o.digest())); err != nil {
				t.Fatal(err)
			}
		}
		code, out := verify(t, data)
		if code == 0 || strings.Count(out, "blob is missing") != len(gone) {
			t.Errorf("verify with %d blobs removed exited %d; want non-zero, each reported missing:\n%s", len(gone), code, out)
		}
		m := startMirror(t, data, rp.URL(), hy.URL())
		for _, o := range gone {
			before := o.fetches()
			m.mustGet(o.path, o.want, "MISS")
			if o.fetches() != before+1 {
				t.Errorf("%s: not fetched again after its blob vanished", o.name)
			}
		}
		m.stop()
		mustVerify(t, data)
	})
}

func keyOf(o *object) string {
	switch {
	case o.path == bigZipPath:
		return bigZipKey
	case strings.HasPrefix(o.path, "/file/sha256/"):
		return string(engine.HydrillaFile(strings.TrimPrefix(o.path, "/file/sha256/")))
	default:
		return string(engine.RefPackVersions("acme/big"))
	}
}

// checkGatewayError checks an answer is a 502 or 504 JSON error made by the
// mirror, not a stored body (or 503, once the failing upstream is skipped:
// design.md, "When things fail").
func checkGatewayError(t *testing.T, what string, a *answer) {
	t.Helper()
	if a.Status != http.StatusBadGateway && a.Status != http.StatusGatewayTimeout && a.Status != http.StatusServiceUnavailable {
		t.Errorf("%s with the upstream down after tampering: %s; want 502, 503 (skipped) or 504", what, a)
		return
	}
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(a.Body, &e); err != nil || e.Error == "" {
		t.Errorf("%s: %d answer is not a JSON error: %q", what, a.Status, a.Body)
	}
	if !strings.Contains(a.Header.Get("Content-Type"), "json") {
		t.Errorf("%s: %d answer has Content-Type %q", what, a.Status, a.Header.Get("Content-Type"))
	}
	if c := a.cache(); c == "HIT" || c == "STALE" {
		t.Errorf("%s: %d answer says X-Cache %s", what, a.Status, c)
	}
}
