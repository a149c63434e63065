// Package hydrillatest is a test-only Hydrilla 3.x repository: an httptest
// server on 127.0.0.1 serving generated resources, mappings and files in the
// real server's JSON shapes and routes, with knobs for the failures a mirror
// must survive (delays, error statuses, corrupt files, no /list_all).
//
// Every item version is rendered once, when added, and then served as the
// same bytes on every request, because the mirror under test must pass those
// bytes on unchanged.
package hydrillatest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/regmirror/regmirror/hydrilla"
)

// Builder is the generated_by of generated items (the real builder's name).
var Builder = hydrilla.GeneratedBy{Name: "hydrilla.builder", Version: "3.0"}

// Server is the generated_by of /list_all and /query answers, as the real
// 3.x server writes it.
var Server = hydrilla.GeneratedBy{Name: "hydrilla.server", Version: "3.0"}

// Resource describes a resource version to add. Zero fields get defaults:
// LongName the identifier, Revision 1, SchemaMajor 1, SourceName the
// identifier.
type Resource struct {
	Identifier      string
	LongName        string
	Version         hydrilla.Version // written as given; [1, 0] is served at /1
	Revision        int
	SchemaMajor     int // 1 or 2; 2 adds permissions and required_mappings
	Scripts         []hydrilla.FileRef
	SourceCopyright []hydrilla.FileRef
	Dependencies    []string
	SourceName      string
	Extra           map[string]string // unknown fields the mirror must ignore
}

// Mapping describes a mapping version to add; defaults as for Resource.
type Mapping struct {
	Identifier       string
	LongName         string
	Version          hydrilla.Version
	SchemaMajor      int
	Payloads         map[string]string // URL pattern → resource identifier
	SourceCopyright  []hydrilla.FileRef
	RequiredMappings []string // written for SchemaMajor 2 only
	SourceName       string
	Extra            map[string]string
}

// item is one item version as served.
type item struct {
	ref        hydrilla.ItemRef // Version normalised
	longName   string
	revision   int // resources only
	body       []byte
	etag       string
	payloads   map[string]string // mappings: pattern → resource
	parsed     map[string]parsed // mappings: the patterns that parse
	scripts    []hydrilla.FileRef
	copyright  []hydrilla.FileRef
	sourceName string
}

// Repo is a Hydrilla repository served over HTTP. It is safe for concurrent
// use: tests may add items and flip failure knobs while requests are served.
type Repo struct {
	mu      sync.RWMutex
	items   map[string]*item   // by ItemRef.String()
	byID    map[string][]*item // by "type/id", oldest version first
	files   map[string][]byte  // by sha256
	corrupt map[string]bool
	sources map[string]*source // rendered lazily, dropped on every change
	prefix  string
	url     string

	delay     time.Duration
	failAll   int
	failPaths map[string]int
	noListAll bool

	logMu    sync.Mutex
	requests []string
}

// New returns an empty repository served at the root path.
func New() *Repo {
	return &Repo{
		items:     map[string]*item{},
		byID:      map[string][]*item{},
		files:     map[string][]byte{},
		corrupt:   map[string]bool{},
		failPaths: map[string]int{},
	}
}

// SetPrefix serves the repository under prefix (like "/api_v2"), so mirror
// tests exercise upstream base URLs that carry a path. Requests outside it
// are 404.
func (r *Repo) SetPrefix(prefix string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prefix = "/" + strings.Trim(prefix, "/")
	if r.prefix == "/" {
		r.prefix = ""
	}
}

// BaseURL returns the repository's URL, prefix included, as a mirror should
// be configured with it. It is empty until Start.
func (r *Repo) BaseURL() string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.url
}

// AddFile stores content as /file/sha256/<hex> and returns the hex.
func (r *Repo) AddFile(content []byte) string {
	sum := sha256.Sum256(content)
	sha := hex.EncodeToString(sum[:])
	r.mu.Lock()
	defer r.mu.Unlock()
	r.files[sha] = slices.Clone(content)
	return sha
}

// AddScript stores content and returns the file reference naming it, for
// Resource.Scripts and SourceCopyright.
func (r *Repo) AddScript(name string, content []byte) hydrilla.FileRef {
	return hydrilla.FileRef{File: name, SHA256: r.AddFile(content)}
}

// AddResource adds (or replaces) a resource version and returns the exact
// bytes served for it. Referenced files should be added with AddFile; a
// missing one is served as 404, which is a useful failure too.
func (r *Repo) AddResource(res Resource) []byte {
	major := defaultInt(res.SchemaMajor, 1)
	rev := defaultInt(res.Revision, 1)
	longName := defaultStr(res.LongName, res.Identifier)
	source := defaultStr(res.SourceName, res.Identifier)
	deps := make([]any, len(res.Dependencies))
	for i, d := range res.Dependencies {
		deps[i] = obj{{"identifier", d}}
	}
	doc := obj{
		{"$schema", fmt.Sprintf("%sapi_resource_description-%d.schema.json", hydrilla.SchemaBase, major)},
		{"source_name", source},
		{"source_copyright", fileRefs(res.SourceCopyright)},
		{"type", "resource"},
		{"identifier", res.Identifier},
		{"long_name", longName},
		{"uuid", fakeUUID("resource/" + res.Identifier)},
		{"version", res.Version},
		{"revision", rev},
		{"description", "Resource " + longName + "."},
		{"dependencies", deps},
		{"scripts", fileRefs(res.Scripts)},
	}
	if major >= 2 {
		doc = append(doc,
			kv{"permissions", obj{{"cors_bypass", false}, {"eval", len(res.Scripts)%2 == 1}}},
			kv{"required_mappings", []any{}},
			kv{"min_haketilo_version", hydrilla.Version{1}},
			kv{"max_haketilo_version", hydrilla.Version{3}})
	}
	doc = appendExtra(doc, res.Extra)
	doc = append(doc, kv{"generated_by", generatedBy(Builder)})
	it := &item{
		ref:        hydrilla.ItemRef{Type: hydrilla.TypeResource, Identifier: res.Identifier, Version: res.Version.Normalize()},
		longName:   longName,
		revision:   rev,
		body:       render(doc, major),
		scripts:    slices.Clone(res.Scripts),
		copyright:  slices.Clone(res.SourceCopyright),
		sourceName: source,
	}
	r.add(it)
	return slices.Clone(it.body)
}

// AddMapping adds (or replaces) a mapping version and returns the exact
// bytes served for it. Patterns that do not parse are kept in the JSON but
// ignored by /query, as the real server logs and skips them.
func (r *Repo) AddMapping(m Mapping) []byte {
	major := defaultInt(m.SchemaMajor, 1)
	longName := defaultStr(m.LongName, m.Identifier)
	source := defaultStr(m.SourceName, m.Identifier)
	patterns := make([]string, 0, len(m.Payloads))
	for p := range m.Payloads {
		patterns = append(patterns, p)
	}
	slices.Sort(patterns)
	payloads := make(obj, 0, len(patterns))
	parsedPats := map[string]parsed{}
	for _, p := range patterns {
		payloads = append(payloads, kv{p, obj{{"identifier", m.Payloads[p]}}})
		if pp, err := parse(p, true); err == nil {
			parsedPats[p] = pp
		}
	}
	doc := obj{
		{"$schema", fmt.Sprintf("%sapi_mapping_description-%d.schema.json", hydrilla.SchemaBase, major)},
		{"source_name", source},
		{"source_copyright", fileRefs(m.SourceCopyright)},
		{"type", "mapping"},
		{"identifier", m.Identifier},
		{"long_name", longName},
		{"uuid", fakeUUID("mapping/" + m.Identifier)},
		{"version", m.Version},
		{"description", "Mapping " + longName + "."},
		{"payloads", payloads},
	}
	if major >= 2 {
		req := make([]any, len(m.RequiredMappings))
		for i, id := range m.RequiredMappings {
			req[i] = obj{{"identifier", id}}
		}
		doc = append(doc,
			kv{"permissions", obj{{"cors_bypass", len(patterns)%2 == 0}}},
			kv{"required_mappings", req},
			kv{"min_haketilo_version", hydrilla.Version{1}})
	}
	doc = appendExtra(doc, m.Extra)
	doc = append(doc, kv{"generated_by", generatedBy(Builder)})
	it := &item{
		ref:        hydrilla.ItemRef{Type: hydrilla.TypeMapping, Identifier: m.Identifier, Version: m.Version.Normalize()},
		longName:   longName,
		body:       render(doc, major),
		payloads:   maps.Clone(m.Payloads),
		parsed:     parsedPats,
		copyright:  slices.Clone(m.SourceCopyright),
		sourceName: source,
	}
	r.add(it)
	return slices.Clone(it.body)
}

// AddRawItem serves body verbatim at typ/id/<ver> and lists it in /list_all
// with longName, so tests can make the upstream lie (wrong identifier,
// version or type, broken JSON) and check the mirror refuses to store it.
func (r *Repo) AddRawItem(typ, id string, ver hydrilla.Version, longName string, body []byte) {
	it := &item{
		ref:      hydrilla.ItemRef{Type: typ, Identifier: id, Version: ver.Normalize()},
		longName: longName,
		body:     slices.Clone(body),
	}
	if typ == hydrilla.TypeResource {
		it.revision = 1
	}
	r.add(it)
}

// RemoveItem deletes an item version, as when an upstream drops it.
func (r *Repo) RemoveItem(ref hydrilla.ItemRef) {
	ref.Version = ref.Version.Normalize()
	r.mu.Lock()
	defer r.mu.Unlock()
	key := ref.String()
	if _, ok := r.items[key]; !ok {
		return
	}
	delete(r.items, key)
	idKey := ref.Type + "/" + ref.Identifier
	r.byID[idKey] = slices.DeleteFunc(r.byID[idKey], func(it *item) bool { return it.ref.String() == key })
	if len(r.byID[idKey]) == 0 {
		delete(r.byID, idKey)
	}
	r.sources = nil
}

func (r *Repo) add(it *item) {
	sum := sha256.Sum256(it.body)
	it.etag = `"` + hex.EncodeToString(sum[:16]) + `"`
	key := it.ref.String()
	idKey := it.ref.Type + "/" + it.ref.Identifier
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.items[key]; ok {
		r.byID[idKey] = slices.DeleteFunc(r.byID[idKey], func(old *item) bool { return old.ref.String() == key })
	}
	r.items[key] = it
	vs := append(r.byID[idKey], it)
	slices.SortFunc(vs, func(a, b *item) int { return a.ref.Version.Compare(b.ref.Version) })
	r.byID[idKey] = vs
	r.sources = nil
}

// Item returns the bytes served for ref, and whether it exists.
func (r *Repo) Item(ref hydrilla.ItemRef) ([]byte, bool) {
	ref.Version = ref.Version.Normalize()
	r.mu.RLock()
	defer r.mu.RUnlock()
	it, ok := r.items[ref.String()]
	if !ok {
		return nil, false
	}
	return slices.Clone(it.body), true
}

// File returns the true content of a file (not the corrupt bytes
// CorruptFile makes the server send).
func (r *Repo) File(sha string) ([]byte, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	b, ok := r.files[sha]
	return slices.Clone(b), ok
}

// Refs returns every item version, resources first, each sorted by
// identifier then version: the order /list_all lists them in.
func (r *Repo) Refs() []hydrilla.ItemRef {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var refs []hydrilla.ItemRef
	for _, typ := range []string{hydrilla.TypeResource, hydrilla.TypeMapping} {
		for _, it := range r.sortedItems(typ) {
			refs = append(refs, it.ref)
		}
	}
	return refs
}

// Files returns the sha256 of every stored file, sorted.
func (r *Repo) Files() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	shas := make([]string, 0, len(r.files))
	for sha := range r.files {
		shas = append(shas, sha)
	}
	slices.Sort(shas)
	return shas
}

// SampleURLs returns, sorted and once each, a URL matched by each pattern of
// each mapping: queries that have answers, for tests and benchmarks.
func (r *Repo) SampleURLs() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	seen := map[string]bool{}
	var urls []string
	for _, it := range r.items {
		for p := range it.parsed {
			if u, ok := sampleURL(p); ok && !seen[u] {
				seen[u] = true
				urls = append(urls, u)
			}
		}
	}
	slices.Sort(urls)
	return urls
}

// sortedItems returns items of typ by identifier, then version. Callers hold
// r.mu.
func (r *Repo) sortedItems(typ string) []*item {
	var ids []string
	for key := range r.byID {
		if t, id, _ := strings.Cut(key, "/"); t == typ {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	var out []*item
	for _, id := range ids {
		out = append(out, r.byID[typ+"/"+id]...)
	}
	return out
}

// newest returns the newest version of typ/id. Callers hold r.mu.
func (r *Repo) newest(typ, id string) *item {
	vs := r.byID[typ+"/"+id]
	if len(vs) == 0 {
		return nil
	}
	return vs[len(vs)-1]
}

// SetDelay makes every answer wait d first (a slow or hanging upstream).
// The wait ends early when the client goes away or the server stops.
func (r *Repo) SetDelay(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delay = d
}

// SetFail makes every request answer status (with an HTML error page, as
// Flask does); 0 turns it off.
func (r *Repo) SetFail(status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failAll = status
}

// SetFailPath makes requests whose path (below the prefix) starts with
// pathPrefix answer status; 0 removes the rule. The longest matching prefix
// wins, and SetFail overrides all.
func (r *Repo) SetFailPath(pathPrefix string, status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if status == 0 {
		delete(r.failPaths, pathPrefix)
	} else {
		r.failPaths[pathPrefix] = status
	}
}

// CorruptFile makes /file/sha256/<sha> serve bytes that do not hash to sha
// (same length, last byte changed), as a broken disk or a lying upstream
// would; on false it serves the true bytes again.
func (r *Repo) CorruptFile(sha string, on ...bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.corrupt[sha] = len(on) == 0 || on[0]
}

// SetNoListAll makes /list_all a 404, as on a Hydrilla 1.x server.
func (r *Repo) SetNoListAll(v bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.noListAll = v
}

// Requests returns the request log: each request's path below the prefix
// (the full path when outside it), with "?query" when it had one, oldest
// first.
func (r *Repo) Requests() []string {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	return slices.Clone(r.requests)
}

// Count returns how many logged requests start with pathPrefix, e.g.
// Count("/file/") or Count("/list_all").
func (r *Repo) Count(pathPrefix string) int {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	n := 0
	for _, q := range r.requests {
		if strings.HasPrefix(q, pathPrefix) {
			n++
		}
	}
	return n
}

// Reset clears the request log. Failure knobs stay as set.
func (r *Repo) Reset() {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	r.requests = nil
}

func (r *Repo) logRequest(s string) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	r.requests = append(r.requests, s)
}

// render formats an item the way its schema generation's tools tend to:
// major 1 items on one Python-style line, major 2 indented with a final
// newline. Both must reach Haketilo unchanged through the mirror.
func render(doc obj, major int) []byte {
	if major >= 2 {
		return append(pyDumps(doc, 2), '\n')
	}
	return pyDumps(doc, 0)
}

func fileRefs(refs []hydrilla.FileRef) []any {
	out := make([]any, len(refs))
	for i, f := range refs {
		out[i] = obj{{"file", f.File}, {"sha256", f.SHA256}}
	}
	return out
}

func generatedBy(g hydrilla.GeneratedBy) obj {
	return obj{{"name", g.Name}, {"version", g.Version}}
}

func appendExtra(doc obj, extra map[string]string) obj {
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		doc = append(doc, kv{k, extra[k]})
	}
	return doc
}

// fakeUUID derives a stable UUID-shaped string from s, so regenerated
// repositories are byte-identical.
func fakeUUID(s string) string {
	h := sha256.Sum256([]byte(s))
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-4" + x[13:16] + "-a" + x[17:20] + "-" + x[20:32]
}

func defaultInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func defaultStr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
