package hosted

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/refpack"
	"github.com/regmirror/regmirror/refpack/registrytest"
)

// fixture is a hosted store over a real disk store in a temporary folder.
type fixture struct {
	t     *testing.T
	dir   string
	disk  *cache.Disk
	cache *cache.Cache
	rp    *RefPack
	now   time.Time
}

func newFixture(t *testing.T, owners ...string) *fixture {
	f := &fixture{t: t, dir: t.TempDir(), now: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}
	f.open(owners...)
	return f
}

// open opens (or reopens, as after a restart) the store in f.dir.
func (f *fixture) open(owners ...string) {
	t := f.t
	t.Helper()
	if f.cache != nil {
		f.cache.Close()
		f.disk.Close()
	}
	d, err := cache.OpenDisk(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.New(context.Background(), d, d.TempDir(), cache.Options{MemoryBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); d.Close() })
	rp, err := NewRefPack(context.Background(), c, Options{Owners: owners, Now: func() time.Time { return f.now }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	f.disk, f.cache, f.rp = d, c, rp
}

// push checks zip as any push is checked and publishes it for owner.
func (f *fixture) push(owner string, zip []byte) *Answer {
	f.t.Helper()
	man, err := refpack.ValidateZip(bytes.NewReader(zip), int64(len(zip)), refpack.DefaultLimits())
	if err != nil {
		f.t.Fatalf("ValidateZip: %v", err)
	}
	st, err := f.cache.Stage(bytes.NewReader(zip), 0, "")
	if err != nil {
		f.t.Fatal(err)
	}
	defer st.Discard()
	return f.rp.Publish(context.Background(), owner, st, man, "test-key")
}

// get answers a GET of path (escaped, under /packages/) through Answer.Write.
func (f *fixture) get(path string) *httptest.ResponseRecorder {
	f.t.Helper()
	u, err := url.Parse(path)
	if err != nil {
		f.t.Fatal(err)
	}
	rt, err := refpack.ParsePackagePath(u.EscapedPath())
	if err != nil {
		f.t.Fatalf("%s: %v", path, err)
	}
	if !f.rp.Hosts(rt.ID) {
		f.t.Fatalf("%s: not hosted", path)
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	if err := f.rp.Get(context.Background(), rt, u.Query().Get("version")).Write(w, r, f.cache); err != nil {
		f.t.Fatalf("%s: %v", path, err)
	}
	return w
}

func TestHostedRoutesAnswerLikeTheRegistry(t *testing.T) {
	// The same pushes go to the test registry (which follows refpack.md) and
	// to the hosted store; every route must then answer the same.
	reg := registrytest.New()
	reg.SetAPIKey("k")
	reg.SetDefaultOwner("ourco")
	srv := reg.Start(t)
	f := newFixture(t, "ourco")

	zips := [][]byte{
		registrytest.MakeZip("rates", "1.0.0", registrytest.WithDocs(), registrytest.WithTags("fx")),
		registrytest.MakeZip("rates", "1.1.0-rc.1", registrytest.WithTitle("Rates RC")),
		registrytest.MakeZip("rates", "1.1.0", registrytest.WithReadme("# Rates\n")),
		registrytest.MakeZip("preview", "0.1.0-alpha.1"),
		registrytest.MakeZip("preview", "0.1.0-alpha.2"),
	}
	for _, z := range zips {
		if a := f.push("ourco", z); a.Status != http.StatusOK || string(a.Body) != `{"success":true}` {
			t.Fatalf("hosted push: %d %s", a.Status, a.Body)
		}
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/packages", bytes.NewReader(z))
		req.Header.Set("Content-Type", "application/zip")
		req.Header.Set("Authorization", "Bearer k")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("registry push: %d", resp.StatusCode)
		}
	}
	// An archived version leaves "latest" and lists, but still downloads.
	if a := f.rp.Archive(context.Background(), "ourco/rates", "version=1.1.0", "test-key"); a.Status != http.StatusOK {
		t.Fatalf("archive: %d %s", a.Status, a.Body)
	}
	reg.Archive("ourco/rates", "1.1.0")

	var paths []string
	for _, id := range []string{"ourco/rates", "ourco%2Frates", "ourco/preview", "ourco%2Fpreview", "ourco/absent"} {
		paths = append(paths, "/packages/"+id+"/versions")
		for _, v := range []string{"", "?version=1.0.0", "?version=1.1.0", "?version=1.1.0-rc.1", "?version=0.1.0-alpha.2", "?version=9.9.9", "?version=1.0", "?version=1.0.0+x"} {
			for _, sub := range []string{"", "/meta", "/data", "/schema", "/changelog", "/readme"} {
				paths = append(paths, "/packages/"+id+sub+v)
			}
		}
	}
	for _, p := range paths {
		got := f.get(p)
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got.Code != resp.StatusCode || !bytes.Equal(got.Body.Bytes(), want) {
			t.Errorf("GET %s:\n hosted   %d %s\n registry %d %s", p, got.Code, clipBody(got.Body.Bytes()), resp.StatusCode, clipBody(want))
			continue
		}
		for _, h := range []string{"Content-Type", "Content-Disposition"} {
			if got.Header().Get(h) != resp.Header.Get(h) {
				t.Errorf("GET %s: %s %q, registry %q", p, h, got.Header().Get(h), resp.Header.Get(h))
			}
		}
		if got.Header().Get("X-Cache") != "HIT" || got.Header().Get("Cache-Status") != CacheStatus {
			t.Errorf("GET %s: X-Cache %q, Cache-Status %q", p, got.Header().Get("X-Cache"), got.Header().Get("Cache-Status"))
		}
	}

	// A restart rebuilds everything, archive included, from the store.
	f.open("ourco")
	if got := f.get("/packages/ourco/rates"); got.Header().Get("Content-Disposition") != `attachment; filename="ourco-rates-1.0.0.refpack.zip"` || !bytes.Equal(got.Body.Bytes(), zips[0]) {
		t.Errorf("after a restart, latest is %q", got.Header().Get("Content-Disposition"))
	}
	if f.rp.Packages() != 2 || f.rp.Versions() != 5 {
		t.Errorf("after a restart: %d packages, %d versions", f.rp.Packages(), f.rp.Versions())
	}
}

func clipBody(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

func TestPushRules(t *testing.T) {
	f := newFixture(t, "OurCo")
	ok := func(a *Answer, want int) {
		t.Helper()
		if a.Status != want {
			t.Fatalf("status %d (%s), want %d", a.Status, a.Body, want)
		}
	}
	ok(f.push("ourco", registrytest.MakeZip("x", "1.2.0")), http.StatusOK)
	for _, v := range []string{"1.2.0", "1.1.9", "1.2.0-rc.1"} {
		a := f.push("ourco", registrytest.MakeZip("x", v))
		ok(a, http.StatusConflict)
		if !strings.Contains(string(a.Body), "1.2.0") {
			t.Errorf("409 for %s does not name the published version: %s", v, a.Body)
		}
	}
	ok(f.push("ourco", registrytest.MakeZip("x", "1.2.1-rc.1")), http.StatusOK)
	// Archived versions count too: a version is never published twice.
	ok(f.rp.Archive(context.Background(), "ourco/x", "", "k"), http.StatusOK)
	ok(f.rp.Archive(context.Background(), "ourco/x", "", "k"), http.StatusOK)
	ok(f.push("ourco", registrytest.MakeZip("x", "1.2.1-rc.1")), http.StatusConflict)
	ok(f.rp.Archive(context.Background(), "ourco/x", "version=7.0.0", "k"), http.StatusNotFound)
	ok(f.rp.Archive(context.Background(), "ourco/x", "version=7", "k"), http.StatusBadRequest)
	ok(f.rp.Archive(context.Background(), "ourco/nothing", "", "k"), http.StatusNotFound)
	// Every version archived: latest is gone, explicit versions download.
	if got := f.get("/packages/ourco/x"); got.Code != http.StatusNotFound || !strings.Contains(got.Body.String(), "version 'latest' was not found") {
		t.Errorf("latest of an archived package: %d %s", got.Code, got.Body)
	}
	if got := f.get("/packages/ourco/x?version=1.2.0"); got.Code != http.StatusOK || got.Header().Get("Content-Type") != "application/zip" {
		t.Errorf("archived version: %d %q", got.Code, got.Header().Get("Content-Type"))
	}
	// Owners are one namespace whatever their case; the id answers as configured.
	if got := f.get("/packages/ourco/x/meta?version=1.2.0"); !strings.Contains(got.Body.String(), `"id":"OurCo/x"`) {
		t.Errorf("meta id: %s", got.Body)
	}
	// Not hosted, bad names.
	ok(f.push("elsewhere", registrytest.MakeZip("y", "1.0.0")), http.StatusForbidden)
	ok(f.push("ourco", registrytest.MakeZip("y", "1.0", registrytest.WithManifestField("version", "1.0"))), http.StatusBadRequest)
	ok(f.push("ourco", registrytest.MakeZip("a.b", "1.0.0")), http.StatusBadRequest)
}

func TestMetaCreatedUtcIsThePushTime(t *testing.T) {
	f := newFixture(t, "ourco")
	f.now = time.Date(2026, 12, 3, 11, 22, 33, 0, time.UTC)
	if a := f.push("ourco", registrytest.MakeZip("x", "1.0.0", registrytest.WithoutManifestField("createdUtc"))); a.Status != http.StatusOK {
		t.Fatalf("push: %d %s", a.Status, a.Body)
	}
	var meta map[string]any
	if err := json.Unmarshal(f.get("/packages/ourco/x/meta").Body.Bytes(), &meta); err != nil {
		t.Fatal(err)
	}
	if meta["createdUtc"] != "2026-12-03T11:22:33Z" || meta["id"] != "ourco/x" {
		t.Errorf("meta %v", meta)
	}
	var vs refpack.VersionsAnswer
	if err := json.Unmarshal(f.get("/packages/ourco/x/versions").Body.Bytes(), &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs.Versions) != 1 || vs.Versions[0].CreatedAt != "2026-12-03T11:22:33Z" {
		t.Errorf("versions %+v", vs)
	}
}

func TestHosts(t *testing.T) {
	f := newFixture(t, "ourco", "Lab-2")
	for id, want := range map[string]bool{"ourco/x": true, "OURCO/x": true, "lab-2/y": true, "other/x": false, "ourco": false, "ourcox/x": false} {
		if got := f.rp.Hosts(id); got != want {
			t.Errorf("Hosts(%q) = %v", id, got)
		}
	}
	if _, err := NewRefPack(context.Background(), f.cache, Options{Owners: []string{"our/co"}}); err == nil {
		t.Error("an owner with a slash was accepted")
	}
}

// Hosted entries are pinned and marked hosted in the store.
func TestStoredPinnedAndHosted(t *testing.T) {
	f := newFixture(t, "ourco")
	f.push("ourco", registrytest.MakeZip("x", "1.0.0"))
	e, err := f.disk.Entry(context.Background(), KeyPrefix+"ourco/x@1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if !e.Pinned || !e.Hosted || e.Upstream != "" {
		t.Errorf("entry %+v", e)
	}
}
