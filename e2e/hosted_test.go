package e2e

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regmirror/regmirror/apikeys"
	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/hydrilla/hydrillatest"
	"github.com/regmirror/regmirror/refpack"
	"github.com/regmirror/regmirror/refpack/registrytest"
)

// Hosted namespaces (issue 16, design.md "Hosted namespaces"): the real
// binary as the registry of its own owners beside the mirror, and a Hydrilla
// repository directory served as the first repository.

// post sends body to the mirror with the given headers (name, value pairs).
func (m *mirror) post(path, contentType string, body []byte, hdr ...string) *answer {
	m.t.Helper()
	req, err := http.NewRequest(http.MethodPost, m.URL+path, bytes.NewReader(body))
	if err != nil {
		m.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := m.client.Do(req)
	if err != nil {
		m.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return &answer{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// pushForm is the documented push: multipart file + ownerId, X-API-Key.
func (m *mirror) pushForm(owner, key string, zip []byte) *answer {
	m.t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	mw.WriteField("ownerId", owner)
	fw, _ := mw.CreateFormFile("file", "package.refpack.zip")
	fw.Write(zip)
	mw.Close()
	var hdr []string
	if key != "" {
		hdr = []string{"X-API-Key", key}
	}
	return m.post("/packages", mw.FormDataContentType(), b.Bytes(), hdr...)
}

// pushRaw is the RefPack CLI's push: the zip as the body, Authorization: Bearer.
func (m *mirror) pushRaw(key string, zip []byte) *answer {
	m.t.Helper()
	return m.post("/packages", "application/zip", zip, "Authorization", "Bearer "+key)
}

// hostedKeys writes a keys file of fresh random keys and returns them.
func hostedKeys(t *testing.T, dir string) (path string, ci, admin, other string) {
	t.Helper()
	ci, admin, other = hex.EncodeToString(randomBytes(t, 24)), hex.EncodeToString(randomBytes(t, 24)), hex.EncodeToString(randomBytes(t, 24))
	path = filepath.Join(dir, "api-keys")
	file := "# keys of the hosted owners\n" + apikeys.Line("ci", ci, "ourco") + apikeys.Line("admin", admin) + apikeys.Line("other", other, "elsewhere")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, ci, admin, other
}

// hostedVersion is one pushed version and what its routes must answer.
type hostedVersion struct {
	owner, name, version string
	zip                  []byte
	docs                 bool
}

func (v hostedVersion) id() string { return v.owner + "/" + v.name }

// noHostedRequests fails the test if any upstream request named a hosted owner.
func noHostedRequests(t *testing.T, reg *registrytest.Registry, owners ...string) {
	t.Helper()
	for _, r := range reg.Requests() {
		p, _ := url.PathUnescape(r.Path)
		for _, o := range owners {
			if strings.Contains(strings.ToLower(p), strings.ToLower(o)+"/") || strings.EqualFold(r.Query.Get("ownerId"), o) {
				t.Errorf("the upstream was asked about hosted owner %s: %s %s?%s", o, r.Method, r.Path, r.RawQuery)
			}
		}
	}
}

func TestHostedRefPack(t *testing.T) {
	reg := registrytest.New()
	for i := range 7 {
		reg.AddPackage("vendor", fmt.Sprintf("pkg-%d", i), "1.0.0")
	}
	// Packages published upstream under the hosted owners: never seen through the mirror.
	reg.AddPackage("ourco", "rates", "9.9.9", registrytest.WithTitle("impostor"))
	reg.AddPackage("ourco", "evil", "1.0.0")
	reg.AddPackage("OurLab", "evil", "1.0.0")
	rp := newGate(t, reg)
	repo := hydrillatest.New()
	hy := newGate(t, repo.Handler())

	dir := t.TempDir()
	keysFile, ci, admin, other := hostedKeys(t, dir)
	data := filepath.Join(dir, "data")
	hostedArgs := []string{"--hosted-owner", "ourco", "--hosted-owner", "ourlab", "--api-keys-file", keysFile}
	m := startMirror(t, data, rp.URL(), hy.URL(), hostedArgs...)

	vs := []hostedVersion{
		{"ourco", "rates", "1.0.0", registrytest.MakeZip("rates", "1.0.0", registrytest.WithDocs(), registrytest.WithTags("fx")), true},
		{"ourco", "rates", "1.1.0-rc.1", registrytest.MakeZip("rates", "1.1.0-rc.1"), false},
		{"ourco", "rates", "1.1.0", registrytest.MakeZip("rates", "1.1.0", registrytest.WithReadme("# Rates\n")), false},
		{"ourco", "preview", "0.1.0-alpha.1", registrytest.MakeZip("preview", "0.1.0-alpha.1", registrytest.WithoutManifestField("createdUtc")), false},
		{"ourlab", "evil", "2.0.0", registrytest.MakeZip("evil", "2.0.0", registrytest.WithDocs()), true},
	}

	// Pushes: none, a wrong key and a key of another scope are refused; the
	// documented form and the RefPack CLI's raw form store.
	zip := vs[0].zip
	for _, c := range []struct {
		a    *answer
		want int
	}{
		{m.pushForm("ourco", "", zip), 401},
		{m.pushForm("ourco", "wrong-key", zip), 401},
		{m.pushForm("ourco", other, zip), 403},
		{m.pushForm("ourlab", ci, zip), 403},
		{m.pushForm("ourco", ci, []byte("not a zip")), 400},
		{m.pushRaw(admin, zip), 400}, // admin may write both hosted owners: the raw form must name one
	} {
		if c.a.Status != c.want {
			t.Errorf("push: %s; want %d", c.a, c.want)
		}
	}
	for _, v := range vs {
		var a *answer
		switch {
		case v.owner == "ourlab":
			a = m.pushForm(v.owner, admin, v.zip)
		case v.version == "1.1.0":
			a = m.pushRaw(ci, v.zip) // the raw form: ci's one hosted owner
		default:
			a = m.pushForm(v.owner, ci, v.zip)
		}
		if a.Status != http.StatusOK || string(a.Body) != `{"success":true}` {
			t.Fatalf("push %s@%s: %s", v.id(), v.version, a)
		}
	}
	if a := m.pushForm("ourco", ci, registrytest.MakeZip("rates", "1.0.5")); a.Status != http.StatusConflict {
		t.Errorf("push below the published version: %s; want 409", a)
	}
	for _, r := range reg.Requests() {
		if r.Method == http.MethodPost {
			t.Errorf("a hosted push reached the upstream: %s %s", r.Method, r.Path)
		}
	}

	// Archive 1.1.0: latest goes back to 1.0.0, 1.1.0 still downloads.
	if a := m.post("/packages/ourco%2Frates/archive?version=1.1.0", "", nil, "X-API-Key", "wrong"); a.Status != 401 {
		t.Errorf("archive with a wrong key: %s", a)
	}
	if a := m.post("/packages/ourco%2Frates/archive?version=1.1.0", "", nil, "X-API-Key", ci); a.Status != 200 {
		t.Fatalf("archive: %s", a)
	}

	checkHosted := func(m *mirror) {
		t.Helper()
		for _, v := range vs {
			for _, id := range []string{v.id(), strings.ReplaceAll(v.id(), "/", "%2F")} {
				q := "?version=" + url.QueryEscape(v.version)
				a := m.mustGet("/packages/"+id+q, v.zip, "HIT")
				if a.Header.Get("Content-Type") != "application/zip" || a.Header.Get("Content-Disposition") != `attachment; filename="`+v.owner+"-"+v.name+"-"+v.version+`.refpack.zip"` {
					t.Errorf("%s%s: %q %q", id, q, a.Header.Get("Content-Type"), a.Header.Get("Content-Disposition"))
				}
				if cs := a.Header.Get("Cache-Status"); cs != `regmirror; hit; detail="hosted"` {
					t.Errorf("%s%s: Cache-Status %q", id, q, cs)
				}
				meta := m.get("/packages/" + id + "/meta" + q)
				var man map[string]any
				if meta.Status != 200 || json.Unmarshal(meta.Body, &man) != nil || man["id"] != v.id() || man["version"] != v.version || man["createdUtc"] == "" {
					t.Errorf("%s/meta%s: %s", id, q, meta)
				}
				for _, sub := range []string{"data", "schema", "changelog", "readme"} {
					a := m.get("/packages/" + id + "/" + sub + q)
					want := 200
					if !v.docs && sub != "data" && !(sub == "readme" && v.version == "1.1.0") {
						want = 404
					}
					if a.Status != want || (want == 404 && !strings.Contains(string(a.Body), `"File not found"`)) {
						t.Errorf("%s/%s%s: %s; want %d", id, sub, q, a, want)
					}
				}
				vers := m.get("/packages/" + id + "/versions")
				var va refpack.VersionsAnswer
				if vers.Status != 200 || json.Unmarshal(vers.Body, &va) != nil || va.PackageID != v.id() || len(va.Versions) == 0 {
					t.Errorf("%s/versions: %s", id, vers)
				}
			}
		}
		// Latest: 1.0.0 (1.1.0 archived, 1.1.0-rc.1 a pre-release); a
		// package of pre-releases only has its highest.
		for id, want := range map[string]string{"ourco/rates": "1.0.0", "ourco%2Fpreview": "0.1.0-alpha.1", "ourlab/evil": "2.0.0"} {
			a := m.get("/packages/" + id)
			if a.Status != 200 || !strings.Contains(a.Header.Get("Content-Disposition"), "-"+want+".refpack.zip") {
				t.Errorf("latest of %s: %s %q; want %s", id, a, a.Header.Get("Content-Disposition"), want)
			}
		}
		var va refpack.VersionsAnswer
		json.Unmarshal(m.get("/packages/ourco/rates/versions").Body, &va)
		var got []string
		for _, v := range va.Versions {
			got = append(got, fmt.Sprintf("%s/%v", v.Version, v.IsArchived))
		}
		if want := []string{"1.1.0/true", "1.1.0-rc.1/false", "1.0.0/false"}; !slices.Equal(got, want) {
			t.Errorf("versions %v; want %v", got, want)
		}
		// Shadowed: the upstream's packages of hosted owners do not exist here.
		for _, p := range []string{"/packages/ourco/evil", "/packages/ourco%2Fevil/meta", "/packages/ourco/rates?version=9.9.9", "/packages/OurLab/evil?version=1.0.0", "/packages/ourco/evil/versions"} {
			if a := m.get(p); a.Status != 404 {
				t.Errorf("GET %s: %s; want the hosted 404", p, a)
			}
		}
	}
	checkHosted(m)

	// Merged lists: pages of 3 concatenate to the whole union.
	wantIDs := []string{"ourco/preview", "ourco/rates", "ourlab/evil"}
	for i := range 7 {
		wantIDs = append(wantIDs, fmt.Sprintf("vendor/pkg-%d", i))
	}
	slices.Sort(wantIDs)
	listAll := func(m *mirror) []string {
		t.Helper()
		var ids []string
		for page := 1; ; page++ {
			a := m.get("/packages?pageSize=3&page=" + strconv.Itoa(page))
			var p refpack.ListPage
			if a.Status != 200 || json.Unmarshal(a.Body, &p) != nil {
				t.Fatalf("list page %d: %s", page, a)
			}
			if p.TotalCount != len(wantIDs) || p.TotalPages != (len(wantIDs)+2)/3 {
				t.Errorf("list page %d: totalCount %d totalPages %d; want %d, %d", page, p.TotalCount, p.TotalPages, len(wantIDs), (len(wantIDs)+2)/3)
			}
			if len(p.Items) == 0 {
				return ids
			}
			for _, it := range p.Items {
				ids = append(ids, refpack.ItemID(it))
			}
		}
	}
	if got := listAll(m); !slices.Equal(got, wantIDs) {
		t.Errorf("merged list %v; want %v", got, wantIDs)
	}
	if a := m.get("/packages/advanced-search?ownerId=ourco"); a.Status != 200 || !strings.Contains(string(a.Body), `"totalCount":2`) {
		t.Errorf("search ownerId=ourco: %s", a)
	}
	noHostedRequests(t, reg, "ourco", "ourlab")
	if got := m.metric(`regmirror_hosted_packages{api="refpack"}`); got != 3 {
		t.Errorf("regmirror_hosted_packages{api=\"refpack\"} = %v; want 3", got)
	}

	// A restart with the upstream dead and a disk limit of one byte: every
	// hosted version is still served, and listed.
	m.stop()
	rp.down.Store(true)
	m = startMirror(t, data, deadURL(t), hy.URL(), append(hostedArgs, "--disk-cache-size", "1")...)
	checkHosted(m)
	// A list never asked before: the upstream part fails and is made from
	// the upstream packages the mirror holds (every vendor/pkg-N matches
	// q=e), beside the hosted packages (STALE: the mirror made it from what
	// it has, as without hosted owners).
	a := m.get("/packages?pageSize=50&q=e")
	var p refpack.ListPage
	if a.Status != 200 || a.cache() != "STALE" || json.Unmarshal(a.Body, &p) != nil || !slices.Equal(itemIDs(p), wantIDs) {
		t.Errorf("list with the upstream dead: %s", a)
	}
	// One asked before is still the union (its upstream pages are held).
	if got := listAll(m); !slices.Equal(got, wantIDs) {
		t.Errorf("merged list with the upstream dead %v; want %v", got, wantIDs)
	}

	// SIGHUP reloads the keys: a new key works, the old one no longer does.
	newKey := hex.EncodeToString(randomBytes(t, 24))
	os.WriteFile(keysFile, []byte(apikeys.Line("ci2", newKey, "ourco")), 0o600)
	m.signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for m.pushForm("ourco", newKey, registrytest.MakeZip("rates", "1.2.0")).Status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("the new key of a reloaded keys file was not accepted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if a := m.pushForm("ourco", ci, registrytest.MakeZip("rates", "1.3.0")); a.Status != 401 {
		t.Errorf("a key removed by the reload: %s; want 401", a)
	}

	// The keys appear in no log, metric or file.
	metrics := string(m.get("/metrics").Body)
	m.stop()

	// verify --repair keeps hosted entries: a lost blob is reported, never dropped.
	mustVerify(t, data)
	if err := os.Remove(blobPath(data, sum(vs[1].zip))); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		code, out := verify(t, data, "--repair")
		if code == 0 || !strings.Contains(out, "unrecoverable") || !strings.Contains(out, "ourco/rates@1.1.0-rc.1") {
			t.Errorf("verify --repair with a hosted blob lost exited %d:\n%s", code, out)
		}
	}
	for _, k := range []string{ci, admin, other, newKey} {
		if strings.Contains(m.out.String(), k) || strings.Contains(metrics, k) {
			t.Errorf("a key appears in the log or the metrics")
		}
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(k)) {
				t.Errorf("a key appears in %s", p)
			}
			return nil
		})
	}
}

func mustItem(t *testing.T, r *hydrillatest.Repo, ref hydrilla.ItemRef) []byte {
	t.Helper()
	b, ok := r.Item(ref)
	if !ok {
		t.Fatalf("no item %s", ref)
	}
	return b
}

func itemIDs(p refpack.ListPage) []string {
	var ids []string
	for _, it := range p.Items {
		ids = append(ids, refpack.ItemID(it))
	}
	return ids
}

// A Haketilo refresh against a mirror serving a local repository directory
// and an upstream: /list_all, then every listed item in order, then the
// files of the items — all 200, the local items from the directory, and no
// request about a local identifier reaching the upstream.
func TestHydrillaLocalRepository(t *testing.T) {
	local := hydrillatest.New()
	lib := local.AddScript("ours.js", []byte("console.log('ours');\n"))
	local.AddResource(hydrillatest.Resource{Identifier: "ours", Version: hydrilla.Version{1, 0}, Scripts: []hydrilla.FileRef{lib}})
	local.AddMapping(hydrillatest.Mapping{Identifier: "ours-map", Version: hydrilla.Version{2021, 1, 1}, Payloads: map[string]string{"https://intranet.example/***": "ours"}})
	dir := filepath.Join(t.TempDir(), "repo")
	if err := local.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	up := hydrillatest.Generate(5, 3)
	// The upstream has a newer "ours": it must not be listed nor fetched.
	up.AddResource(hydrillatest.Resource{Identifier: "ours", Version: hydrilla.Version{9}})
	hy := newGate(t, up.Handler())
	m := startMirror(t, t.TempDir(), deadURL(t), hy.URL(), "--hydrilla-local", dir)

	a := m.get("/list_all")
	l, err := hydrilla.ParseList(a.Body)
	if a.Status != 200 || err != nil {
		t.Fatalf("/list_all: %s", a)
	}
	for _, ref := range l.Refs() {
		a := m.get("/" + ref.String())
		if a.Status != 200 {
			t.Fatalf("refresh: GET %s: %s", ref, a)
		}
		if want, ok := local.Item(ref); ok {
			if !bytes.Equal(a.Body, want) || a.Header.Get("Cache-Status") != `regmirror; hit; detail="hosted"` {
				t.Errorf("%s: not the local bytes, or %q", ref, a.Header.Get("Cache-Status"))
			}
		}
		if ref.Identifier == "ours" && ref.Version.Compare(hydrilla.Version{1}) != 0 {
			t.Errorf("the upstream's %s is listed", ref)
		}
	}
	m.mustGet("/file/sha256/"+lib.SHA256, []byte("console.log('ours');\n"), "HIT")
	q := m.get("/query?url=" + url.QueryEscape("https://intranet.example/page"))
	if q.Status != 200 || !strings.Contains(string(q.Body), `"ours-map"`) {
		t.Errorf("/query: %s", q)
	}
	if a := m.get("/resource/ours.json"); a.Status != 200 || !strings.Contains(string(a.Body), `"version": [1`) && !strings.Contains(string(a.Body), `"version":[1`) {
		t.Errorf("/resource/ours.json: %s", a)
	}
	for _, r := range up.Requests() {
		if strings.Contains(r, "/ours/") || strings.Contains(r, "/ours.json") || strings.Contains(r, "/ours-map") {
			t.Errorf("the upstream was asked for a local identifier: %s", r)
		}
	}
	if got := m.metric(`regmirror_hosted_packages{api="hydrilla"}`); got != 2 {
		t.Errorf(`regmirror_hosted_packages{api="hydrilla"} = %v; want 2`, got)
	}

	// sync mirrors the upstream but for the local repository's identifiers.
	if code, _, all := runCmd(t, 2*time.Minute, "sync", "--data", t.TempDir(), "--hydrilla-upstream", hy.URL(), "--hydrilla-local", dir); code != 0 {
		t.Fatalf("sync exited %d:\n%s", code, all)
	}
	if up.Count("/resource/lib-") == 0 {
		t.Error("sync fetched nothing of the upstream")
	}
	for _, r := range up.Requests() {
		if strings.Contains(r, "/ours/") || strings.Contains(r, "/ours.json") {
			t.Errorf("sync asked the upstream for a local identifier: %s", r)
		}
	}

	// The upstream dead: the local repository is still listed and queried.
	hy.down.Store(true)
	if a := m.get("/list_all"); a.Status != 200 || !strings.Contains(string(a.Body), `"ours-map"`) {
		t.Errorf("/list_all with the upstream dead: %s", a)
	}
	if a := m.get("/query?url=" + url.QueryEscape("https://intranet.example/other")); a.Status != 200 || !strings.Contains(string(a.Body), `"ours-map"`) {
		t.Errorf("/query with the upstream dead: %s", a)
	}
	m.mustGet("/resource/ours/1", mustItem(t, local, hydrilla.ItemRef{Type: "resource", Identifier: "ours", Version: hydrilla.Version{1}}), "HIT")

	// SIGHUP: a new local version appears.
	local.AddResource(hydrillatest.Resource{Identifier: "ours", Version: hydrilla.Version{2}, Scripts: []hydrilla.FileRef{lib}})
	local.WriteDir(dir)
	m.signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for m.get("/resource/ours/2").Status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not reload the local repository")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A fleet on one bucket: a push through replica A is served by replica B
// (the explicit version at once, latest and lists within the index refresh),
// an archive through B shows on A, and a replica started afterwards serves
// everything with its upstream dead.
func TestHostedFleet(t *testing.T) {
	f := newFleet(t)
	dir := t.TempDir()
	keysFile, ci, _, _ := hostedKeys(t, dir)
	args := []string{"--hosted-owner", "ourco", "--api-keys-file", keysFile}
	a, b := f.start(args...), f.start(args...)

	v1 := registrytest.MakeZip("rates", "1.0.0", registrytest.WithDocs())
	v2 := registrytest.MakeZip("rates", "1.1.0")
	if ans := a.pushForm("ourco", ci, v1); ans.Status != 200 {
		t.Fatalf("push through A: %s", ans)
	}
	b.mustGet("/packages/ourco%2Frates?version=1.0.0", v1, "HIT")
	if ans := b.pushForm("ourco", ci, registrytest.MakeZip("rates", "0.9.0")); ans.Status != 409 {
		t.Errorf("a push through B below A's version: %s; want 409", ans)
	}
	if ans := b.pushForm("ourco", ci, v2); ans.Status != 200 {
		t.Fatalf("push through B: %s", ans)
	}
	a.mustGet("/packages/ourco/rates?version=1.1.0", v2, "HIT")
	eventually(t, "A's latest is B's push", func() bool {
		return strings.Contains(a.get("/packages/ourco/rates").Header.Get("Content-Disposition"), "1.1.0")
	})
	if ans := b.post("/packages/ourco%2Frates/archive?version=1.1.0", "", nil, "X-API-Key", ci); ans.Status != 200 {
		t.Fatalf("archive through B: %s", ans)
	}
	eventually(t, "A's latest after B's archive", func() bool {
		return strings.Contains(a.get("/packages/ourco/rates").Header.Get("Content-Disposition"), "1.0.0")
	})
	f.checkBucket()

	// A new replica, its upstream dead: the bucket is the source of truth.
	f.rp.down.Store(true)
	c := f.start(args...)
	c.mustGet("/packages/ourco/rates?version=1.0.0", v1, "HIT")
	c.mustGet("/packages/ourco/rates?version=1.1.0", v2, "HIT")
	if ans := c.get("/packages/ourco/rates/data?version=1.0.0"); ans.Status != 200 {
		t.Errorf("C: /data: %s", ans)
	}
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 10 s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
