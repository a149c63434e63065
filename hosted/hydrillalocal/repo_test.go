package hydrillalocal

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/hydrilla/hydrillatest"
	"github.com/regmirror/regmirror/pattern"
)

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func open(t *testing.T, dirs ...string) (*Repo, *logBuffer) {
	t.Helper()
	lb := &logBuffer{}
	r, err := Open(dirs, slog.New(slog.NewTextHandler(lb, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return r, lb
}

func TestServesWhatTheBuilderWrote(t *testing.T) {
	src := hydrillatest.Generate(40, 7)
	dir := t.TempDir()
	if err := src.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	r, lb := open(t, dir)
	if strings.Contains(lb.String(), "not served") {
		t.Fatalf("a well-formed repository had problems:\n%s", lb)
	}
	// Every item version, with its exact bytes; /list_all the same versions.
	var refs []hydrilla.ItemRef
	for _, ref := range src.Refs() {
		want, _ := src.Item(ref)
		it, ok := r.Item(ref)
		if !ok || !bytes.Equal(it.Body, want) {
			t.Fatalf("item %s: ok=%v, same bytes=%v", ref, ok, ok && bytes.Equal(it.Body, want))
		}
		refs = append(refs, ref)
	}
	if got := r.List().Refs(); !reflect.DeepEqual(got, refs) {
		t.Errorf("list refs differ:\n got %v\nwant %v", got, refs)
	}
	// Every file, by its hash.
	for _, sha := range src.Files() {
		f, ok := r.File(sha)
		if !ok {
			t.Fatalf("file %s not served", sha)
		}
		b, _ := os.ReadFile(f.Path)
		want, _ := src.File(sha)
		if !bytes.Equal(b, want) {
			t.Fatalf("file %s: other bytes", sha)
		}
	}
	// Queries answer as the real server's matching does.
	for _, u := range src.SampleURLs() {
		want, err := src.Query(u)
		if err != nil {
			continue
		}
		pu, err := pattern.ParseURL(u)
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if got := r.Query(pu); !reflect.DeepEqual(got, append([]hydrilla.QueryMapping{}, want...)) {
			t.Errorf("query %s:\n got %v\nwant %v", u, got, want)
		}
	}
	// Newest versions and sources.
	for _, ref := range refs {
		n, ok := r.Newest(ref.Type, ref.Identifier)
		if !ok || n.Ref.Version.Compare(ref.Version) < 0 {
			t.Fatalf("newest %s/%s: %v", ref.Type, ref.Identifier, n)
		}
		if !r.Holds(ref.Type, ref.Identifier) {
			t.Fatalf("%s/%s not held", ref.Type, ref.Identifier)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "source"))
	if len(ents) == 0 {
		t.Fatal("the builder layout has no sources")
	}
	for _, e := range ents {
		if _, ok := r.Source(e.Name()); !ok {
			t.Errorf("source %s not served", e.Name())
		}
	}
}

func TestChecksAtLoad(t *testing.T) {
	src := hydrillatest.New()
	good := src.AddScript("good.js", []byte("good"))
	bad := src.AddScript("bad.js", []byte("bad"))
	gone := src.AddScript("gone.js", []byte("gone"))
	src.AddResource(hydrillatest.Resource{Identifier: "fine", Version: hydrilla.Version{1}, Scripts: []hydrilla.FileRef{good}})
	src.AddResource(hydrillatest.Resource{Identifier: "uses-bad", Version: hydrilla.Version{1}, Scripts: []hydrilla.FileRef{bad}})
	src.AddResource(hydrillatest.Resource{Identifier: "uses-gone", Version: hydrilla.Version{1}, Scripts: []hydrilla.FileRef{gone}})
	src.AddResource(hydrillatest.Resource{Identifier: "other", Version: hydrilla.Version{2}})
	src.AddMapping(hydrillatest.Mapping{Identifier: "map", Version: hydrilla.Version{1, 0}, Payloads: map[string]string{"https://example.com/***": "fine"}})
	dir := t.TempDir()
	if err := src.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	// A file whose bytes do not match its name, and one that is missing.
	if err := os.WriteFile(filepath.Join(dir, "file", "sha256", bad.SHA256), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "file", "sha256", gone.SHA256))
	// An item under another identifier's folder, and under another version.
	body, _ := os.ReadFile(filepath.Join(dir, "resource", "other", "2"))
	os.MkdirAll(filepath.Join(dir, "resource", "impostor"), 0o755)
	os.WriteFile(filepath.Join(dir, "resource", "impostor", "2"), body, 0o644)
	os.WriteFile(filepath.Join(dir, "resource", "other", "3"), body, 0o644)
	os.WriteFile(filepath.Join(dir, "resource", "other", "not-a-version"), body, 0o644)

	r, lb := open(t, dir)
	served := func(typ, id string, v ...int) bool {
		_, ok := r.Item(hydrilla.ItemRef{Type: typ, Identifier: id, Version: v})
		return ok
	}
	if !served("resource", "fine", 1) || !served("resource", "other", 2) || !served("mapping", "map", 1) {
		t.Error("a good item is not served")
	}
	for _, c := range []struct {
		id  string
		ver int
	}{{"uses-bad", 1}, {"uses-gone", 1}, {"impostor", 2}, {"other", 3}} {
		if served("resource", c.id, c.ver) {
			t.Errorf("resource %s/%d served", c.id, c.ver)
		}
	}
	if _, ok := r.File(bad.SHA256); ok {
		t.Error("a file whose bytes do not match its name is served")
	}
	log := lb.String()
	for _, want := range []string{"uses-bad", "uses-gone", "impostor", filepath.Join("other", "3"), "not-a-version", bad.SHA256} {
		if !strings.Contains(log, want) {
			t.Errorf("nothing logged about %s:\n%s", want, log)
		}
	}
	// An identifier with a folder is held even when no version of it passed.
	if !r.Holds("resource", "uses-gone") || !r.Holds("resource", "impostor") || r.Holds("mapping", "fine") {
		t.Error("Holds")
	}
	// The list names only what is served.
	var got []string
	for _, ref := range r.List().Refs() {
		got = append(got, ref.String())
	}
	if want := []string{"resource/fine/1", "resource/other/2", "mapping/map/1"}; !slices.Equal(got, want) {
		t.Errorf("list %v, want %v", got, want)
	}
}

func TestReloadAndSeveralDirs(t *testing.T) {
	a, b := hydrillatest.New(), hydrillatest.New()
	a.AddResource(hydrillatest.Resource{Identifier: "shared", Version: hydrilla.Version{1}, LongName: "from A"})
	b.AddResource(hydrillatest.Resource{Identifier: "shared", Version: hydrilla.Version{1}, LongName: "from B"})
	b.AddResource(hydrillatest.Resource{Identifier: "only-b", Version: hydrilla.Version{1}})
	da, db := t.TempDir(), t.TempDir()
	a.WriteDir(da)
	b.WriteDir(db)
	r, _ := open(t, da, db)
	it, ok := r.Item(hydrilla.ItemRef{Type: "resource", Identifier: "shared", Version: hydrilla.Version{1}})
	if !ok || it.LongName != "from A" {
		t.Errorf("the first directory does not win: %+v", it)
	}
	if _, ok := r.Item(hydrilla.ItemRef{Type: "resource", Identifier: "only-b", Version: hydrilla.Version{1}}); !ok {
		t.Error("the second directory is not served")
	}

	a.AddResource(hydrillatest.Resource{Identifier: "shared", Version: hydrilla.Version{2}, LongName: "new"})
	a.WriteDir(da)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.Newest("resource", "shared"); n.LongName != "new" {
		t.Errorf("after a reload the newest is %+v", n)
	}
	os.RemoveAll(db)
	if err := r.Reload(); err == nil {
		t.Error("a reload with a directory gone succeeded")
	}
	if n, _ := r.Newest("resource", "shared"); n.LongName != "new" {
		t.Error("a failed reload changed what is served")
	}
	if _, err := Open([]string{filepath.Join(t.TempDir(), "absent")}, nil); err == nil {
		t.Error("a missing directory opened")
	}
}

func TestUpstreamShadowed(t *testing.T) {
	src := hydrillatest.New()
	src.AddMapping(hydrillatest.Mapping{Identifier: "ours", Version: hydrilla.Version{1}, Payloads: map[string]string{"https://example.com/***": "x"}})
	dir := t.TempDir()
	src.WriteDir(dir)
	r, _ := open(t, dir)
	up := &hydrilla.List{
		Mappings:  []hydrilla.ListEntry{{Identifier: "ours", Version: hydrilla.Version{9}}, {Identifier: "theirs", Version: hydrilla.Version{1}}},
		Resources: []hydrilla.ListEntry{{Identifier: "ours", Version: hydrilla.Version{1}}},
	}
	f := r.Without(up)
	if len(f.Mappings) != 1 || f.Mappings[0].Identifier != "theirs" || len(f.Resources) != 1 {
		t.Errorf("Without: %+v", f)
	}
	if len(up.Mappings) != 2 {
		t.Error("Without changed its argument")
	}
	u, _ := pattern.ParseURL("https://example.com/page")
	merged := r.MergeQuery(r.Query(u), []hydrilla.QueryMapping{{Identifier: "ours", Version: hydrilla.Version{9}}, {Identifier: "theirs", Version: hydrilla.Version{1}}})
	if len(merged) != 2 || merged[0].Identifier != "ours" || merged[0].Version.Compare(hydrilla.Version{1}) != 0 || merged[1].Identifier != "theirs" {
		t.Errorf("MergeQuery: %+v", merged)
	}
}
