// Package registrytest is a test-only RefPack upstream registry: an
// httptest.Server on 127.0.0.1 that follows shared/docs/refpack.md and the
// registry's API document, with hooks to slow it down, fail, or cut answers for
// resilience tests, and MakeZip to build packages as the real packer does.
package registrytest

import (
	"archive/zip"
	"bytes"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/regmirror/regmirror/refpack"
)

// PackageOption changes a package built by MakeZip or AddPackage. Options that
// only concern the registry (Archived) are ignored by MakeZip.
type PackageOption func(*spec)

// entry is one zip entry in the order it is written.
type entry struct {
	name string
	body []byte
}

// spec collects the options.
type spec struct {
	title, description, license string
	created                     string
	tags, authors               []string
	fields                      map[string]any
	dropFields                  map[string]bool
	manifest                    []byte
	files                       map[string][]byte
	omit                        map[string]bool
	extra                       []entry
	assetsDir                   bool
	stored                      bool
	archived                    bool
}

// DefaultCreated is the createdUtc of packages built without WithCreated.
const DefaultCreated = "2024-05-20T10:00:00Z"

// DefaultJWS is the data.meta.json.jws of packages built without WithJWS: a
// compact JWS shape (three base64url parts), opaque like the real one.
const DefaultJWS = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE3MTYxOTkyMDAsImp0aSI6InRlc3QiLCJleHAiOjE3MTYyMDY0MDB9.c2lnbmF0dXJl"

// WithTitle sets the manifest title (the list's "name").
func WithTitle(s string) PackageOption { return func(p *spec) { p.title = s } }

// WithDescription sets the manifest description.
func WithDescription(s string) PackageOption { return func(p *spec) { p.description = s } }

// WithTags sets the manifest tags.
func WithTags(tags ...string) PackageOption { return func(p *spec) { p.tags = tags } }

// WithAuthors sets the manifest authors.
func WithAuthors(a ...string) PackageOption { return func(p *spec) { p.authors = a } }

// WithLicense sets the manifest license (default "", as real packages carry).
func WithLicense(s string) PackageOption { return func(p *spec) { p.license = s } }

// WithCreated sets the manifest createdUtc, which the registry reports as the
// version's createdAt and the list's updatedAt. Any string is kept as given.
func WithCreated(s string) PackageOption { return func(p *spec) { p.created = s } }

// WithManifestField sets (or overrides, "id" and "version" included) one
// manifest field.
func WithManifestField(key string, value any) PackageOption {
	return func(p *spec) {
		if p.fields == nil {
			p.fields = map[string]any{}
		}
		p.fields[key] = value
		delete(p.dropFields, key)
	}
}

// WithoutManifestField removes one manifest field ("id" or "version" included).
func WithoutManifestField(key string) PackageOption {
	return func(p *spec) {
		if p.dropFields == nil {
			p.dropFields = map[string]bool{}
		}
		p.dropFields[key] = true
		delete(p.fields, key)
	}
}

// WithManifest replaces data.meta.json by these exact bytes.
func WithManifest(b []byte) PackageOption { return func(p *spec) { p.manifest = b } }

// WithFile sets the content of a named root file (data.json, data.schema.json,
// data.changelog.json, data.readme.md, data.meta.json.jws).
func WithFile(name string, body []byte) PackageOption {
	return func(p *spec) {
		if p.files == nil {
			p.files = map[string][]byte{}
		}
		p.files[name] = body
		delete(p.omit, name)
	}
}

// WithData sets data.json.
func WithData(b []byte) PackageOption { return WithFile("data.json", b) }

// WithSchema adds data.schema.json.
func WithSchema(b []byte) PackageOption { return WithFile("data.schema.json", b) }

// WithChangelog adds data.changelog.json.
func WithChangelog(b []byte) PackageOption { return WithFile("data.changelog.json", b) }

// WithReadme adds data.readme.md.
func WithReadme(s string) PackageOption { return WithFile("data.readme.md", []byte(s)) }

// WithJWS sets data.meta.json.jws.
func WithJWS(b []byte) PackageOption { return WithFile("data.meta.json.jws", b) }

// WithAsset adds assets/<name>.
func WithAsset(name string, body []byte) PackageOption { return WithFile("assets/"+name, body) }

// WithDocs adds a valid schema, changelog and readme, so that every document
// route of the package answers 200.
func WithDocs() PackageOption {
	return func(p *spec) {
		for _, o := range []PackageOption{
			WithSchema([]byte(`{"$schema":"http://json-schema.org/draft-07/schema#","type":"array","items":{"type":"object"}}`)),
			WithChangelog([]byte(`[{"version":"1.0.0","date":"2024-05-20","description":"First release"}]`)),
			WithReadme("# Example\n\nA test package.\n"),
		} {
			o(p)
		}
	}
}

// Without leaves out an entry the package would otherwise have (a required one
// included, to build invalid packages).
func Without(name string) PackageOption {
	return func(p *spec) {
		if p.omit == nil {
			p.omit = map[string]bool{}
		}
		p.omit[name] = true
	}
}

// WithEntry appends a raw entry after the regular ones, name and content as
// given (duplicates, traversal, directories ending in "/"), for invalid layouts.
func WithEntry(name string, body []byte) PackageOption {
	return func(p *spec) { p.extra = append(p.extra, entry{name, body}) }
}

// WithAssetsDir adds an "assets/" directory entry, which real packages lack.
func WithAssetsDir() PackageOption { return func(p *spec) { p.assetsDir = true } }

// Stored writes entries uncompressed instead of DEFLATE.
func Stored() PackageOption { return func(p *spec) { p.stored = true } }

// Archived makes AddPackage publish the version as archived.
func Archived() PackageOption { return func(p *spec) { p.archived = true } }

func buildSpec(opts []PackageOption) *spec {
	p := &spec{created: DefaultCreated}
	for _, o := range opts {
		o(p)
	}
	return p
}

// manifest builds data.meta.json's object the way the real packer fills it.
func (p *spec) manifestObject(id, version string) map[string]any {
	title := p.title
	if title == "" {
		title = id
	}
	m := map[string]any{
		"id": id, "version": version, "title": title, "idField": "", "nameField": "",
		"description": p.description, "authors": orEmpty(p.authors), "createdUtc": p.created,
		"tags": orEmpty(p.tags), "license": p.license,
	}
	maps.Copy(m, p.fields)
	for k := range p.dropFields {
		delete(m, k)
	}
	return m
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// MakeZip builds a valid .refpack.zip whose manifest id is id (the name part of a
// registry id: "country-codes", not "vendor/country-codes") and version version,
// shaped like the real packer's: every file DEFLATE, entries in directory
// (sorted) order so data.meta.json is not first, no assets/ directory entry, the
// required data.json, data.meta.json and data.meta.json.jws. Options add the
// optional files or break the package on purpose. The same arguments give the
// same bytes (times are fixed), so tests can compare hashes.
func MakeZip(id, version string, opts ...PackageOption) []byte {
	b, _ := makeZip(id, version, buildSpec(opts))
	return b
}

// makeZip also returns the manifest object it wrote.
func makeZip(id, version string, p *spec) ([]byte, map[string]any) {
	files := map[string][]byte{
		"data.json":          []byte(fmt.Sprintf(`[{"code":"XX","name":"Example %s %s"},{"code":"YY","name":"Other"}]`, id, version)),
		"data.meta.json.jws": []byte(DefaultJWS),
	}
	man := p.manifestObject(id, version)
	files["data.meta.json"] = refpack.OrderedJSON(man, refpack.ManifestKeys)
	if p.manifest != nil {
		files["data.meta.json"] = p.manifest
	}
	maps.Copy(files, p.files)
	for name := range p.omit {
		delete(files, name)
	}
	entries := make([]entry, 0, len(files)+len(p.extra)+1)
	if p.assetsDir {
		entries = append(entries, entry{name: "assets/"})
	}
	names := slices.Collect(maps.Keys(files))
	sort.Strings(names)
	for _, n := range names {
		entries = append(entries, entry{n, files[n]})
	}
	entries = append(entries, p.extra...)

	modified := time.Date(2024, 5, 20, 10, 0, 0, 0, time.UTC)
	if t, err := time.Parse(time.RFC3339, p.created); err == nil {
		modified = t.UTC()
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: modified}
		if p.stored || strings.HasSuffix(e.name, "/") {
			h.Method = zip.Store
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			panic(fmt.Sprintf("registrytest: zip entry %q: %v", e.name, err))
		}
		if _, err := w.Write(e.body); err != nil {
			panic(fmt.Sprintf("registrytest: zip entry %q: %v", e.name, err))
		}
	}
	if err := zw.Close(); err != nil {
		panic(fmt.Sprintf("registrytest: zip: %v", err))
	}
	return buf.Bytes(), man
}
