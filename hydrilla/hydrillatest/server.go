package hydrillatest

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/hydrilla"
)

// Start serves the repository on 127.0.0.1 until the test ends and records
// its base URL (see BaseURL). The server's URL has no prefix; add
// BaseURL's, or use BaseURL directly.
func (r *Repo) Start(t testing.TB) *httptest.Server {
	stop := make(chan struct{})
	srv := httptest.NewServer(r.handler(stop))
	t.Cleanup(func() {
		close(stop) // ends delayed requests, else Close would wait them out
		srv.Close()
	})
	r.mu.Lock()
	r.url = srv.URL + r.prefix
	r.mu.Unlock()
	return srv
}

// Handler returns the repository's HTTP handler, for callers that run their
// own server.
func (r *Repo) Handler() http.Handler {
	return r.handler(nil)
}

func (r *Repo) handler(stop <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		r.mu.RLock()
		prefix, delay := r.prefix, r.delay
		r.mu.RUnlock()

		path, inside := req.URL.Path, true
		if prefix != "" {
			if rest, ok := strings.CutPrefix(path, prefix); ok && (rest == "" || rest[0] == '/') {
				path = rest
			} else {
				inside = false
			}
		}
		if path == "" {
			path = "/"
		}
		logged := path
		if req.URL.RawQuery != "" {
			logged += "?" + req.URL.RawQuery
		}
		r.logRequest(logged)

		if delay > 0 {
			timer := time.NewTimer(delay)
			select {
			case <-timer.C:
			case <-req.Context().Done():
				timer.Stop()
				return
			case <-stop:
				timer.Stop()
				return
			}
		}
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD, OPTIONS")
			htmlError(w, http.StatusMethodNotAllowed)
			return
		}
		if status := r.failStatus(path); status != 0 {
			htmlError(w, status)
			return
		}
		if !inside {
			htmlError(w, http.StatusNotFound)
			return
		}
		r.route(w, req, path)
	}
}

func (r *Repo) failStatus(path string) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.failAll != 0 {
		return r.failAll
	}
	best, status := -1, 0
	for p, s := range r.failPaths {
		if strings.HasPrefix(path, p) && len(p) > best {
			best, status = len(p), s
		}
	}
	return status
}

func (r *Repo) route(w http.ResponseWriter, req *http.Request, path string) {
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	switch {
	case path == "/":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html>\n<html><head><title>Hydrilla</title></head><body><h1>Hydrilla test repository</h1></body></html>\n")
	case path == "/list_all":
		r.serveListAll(w)
	case path == "/query":
		r.serveQuery(w, req)
	case (segs[0] == "resource" || segs[0] == "mapping") && len(segs) == 2:
		r.serveNewest(w, segs[0], segs[1])
	case (segs[0] == "resource" || segs[0] == "mapping") && len(segs) == 3:
		r.serveVersion(w, req, segs[0], segs[1], segs[2])
	case len(segs) == 3 && segs[0] == "file" && segs[1] == "sha256":
		r.serveFile(w, req, segs[2])
	case len(segs) == 2 && segs[0] == "source":
		r.serveSource(w, req, segs[1])
	case path == "/script" || path == "/bag" || path == "/pattern":
		r.serveLegacy(w, req, segs[0])
	default:
		htmlError(w, http.StatusNotFound)
	}
}

// serveListAll answers as the 3.x server: one entry per item version, in
// make_ref's key order, revision on resources only.
func (r *Repo) serveListAll(w http.ResponseWriter) {
	r.mu.RLock()
	if r.noListAll {
		r.mu.RUnlock()
		htmlError(w, http.StatusNotFound)
		return
	}
	ref := func(it *item) any {
		o := obj{{"version", it.ref.Version}, {"identifier", it.ref.Identifier}, {"long_name", it.longName}}
		if it.ref.Type == hydrilla.TypeResource {
			o = append(o, kv{"revision", it.revision})
		}
		return o
	}
	var res, maps []any
	for _, it := range r.sortedItems(hydrilla.TypeResource) {
		res = append(res, ref(it))
	}
	for _, it := range r.sortedItems(hydrilla.TypeMapping) {
		maps = append(maps, ref(it))
	}
	r.mu.RUnlock()
	doc := obj{
		{"$schema", hydrilla.SchemaPackageList},
		{"resources", orEmpty(res)},
		{"mappings", orEmpty(maps)},
		{"generated_by", generatedBy(Server)},
	}
	writeJSON(w, pyDumps(doc, 0))
}

// ListAll returns the current /list_all answer.
func (r *Repo) ListAll() []byte {
	rec := httptest.NewRecorder()
	r.serveListAll(rec)
	return rec.Body.Bytes()
}

func (r *Repo) serveQuery(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	if !q.Has("url") {
		htmlError(w, http.StatusBadRequest) // Flask: request.args['url'] → 400
		return
	}
	ms, err := r.Query(q.Get("url"))
	if err != nil {
		htmlError(w, http.StatusInternalServerError) // the real server's uncaught error
		return
	}
	writeJSON(w, hydrilla.QueryAnswerBy(Server, ms))
}

// Query returns what /query?url= answers for url: each matching mapping once,
// at its most specific pattern's position, with its newest version among
// those that match. It is exported so tests can compare a mirror's answer.
func (r *Repo) Query(url string) ([]hydrilla.QueryMapping, error) {
	u, err := parse(url, false)
	if err != nil {
		return nil, err
	}
	type hit struct {
		spec specificity
		it   *item
	}
	best := map[string]*hit{}
	r.mu.RLock()
	for _, it := range r.items {
		if it.ref.Type != hydrilla.TypeMapping {
			continue
		}
		for _, p := range it.parsed {
			if !matches(p, u) {
				continue
			}
			s := specificityOf(p, u)
			h := best[it.ref.Identifier]
			if h == nil {
				best[it.ref.Identifier] = &hit{s, it}
				continue
			}
			if s.less(h.spec) {
				h.spec = s
			}
			if it.ref.Version.Compare(h.it.ref.Version) > 0 {
				h.it = it
			}
		}
	}
	r.mu.RUnlock()
	ids := make([]string, 0, len(best))
	for id := range best {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int {
		switch {
		case best[a].spec.less(best[b].spec):
			return -1
		case best[b].spec.less(best[a].spec):
			return 1
		}
		return strings.Compare(a, b)
	})
	out := make([]hydrilla.QueryMapping, len(ids))
	for i, id := range ids {
		it := best[id].it
		out[i] = hydrilla.QueryMapping{Identifier: id, LongName: it.longName, Version: it.ref.Version}
	}
	return out, nil
}

// serveNewest answers /<type>/<id>.json with the newest version. Like the
// real server it ignores ?ver= (the seed's form was never implemented there)
// and sends no ETag (send_file with etag=False).
func (r *Repo) serveNewest(w http.ResponseWriter, typ, name string) {
	id, ok := strings.CutSuffix(name, ".json")
	if !ok || !hydrilla.ValidID(id) {
		htmlError(w, http.StatusNotFound)
		return
	}
	r.mu.RLock()
	it := r.newest(typ, id)
	r.mu.RUnlock()
	if it == nil {
		htmlError(w, http.StatusNotFound)
		return
	}
	writeJSON(w, it.body)
}

// serveVersion answers /<type>/<id>/<ver>, a static file on the real server:
// only the canonical version string exists there.
func (r *Repo) serveVersion(w http.ResponseWriter, req *http.Request, typ, id, ver string) {
	v, err := hydrilla.ParseVersion(ver)
	if err != nil || v.String() != ver || !hydrilla.ValidID(id) {
		htmlError(w, http.StatusNotFound)
		return
	}
	r.mu.RLock()
	it := r.items[typ+"/"+id+"/"+ver]
	r.mu.RUnlock()
	if it == nil {
		htmlError(w, http.StatusNotFound)
		return
	}
	serveStatic(w, req, "application/json", it.etag, it.body)
}

func (r *Repo) serveFile(w http.ResponseWriter, req *http.Request, sha string) {
	r.mu.RLock()
	body, ok := r.files[sha]
	bad := r.corrupt[sha]
	r.mu.RUnlock()
	if !ok {
		htmlError(w, http.StatusNotFound)
		return
	}
	if bad {
		body = slices.Clone(body)
		if len(body) == 0 {
			body = []byte("corrupt")
		} else {
			body[len(body)-1] ^= 0xff
		}
	}
	serveStatic(w, req, "application/octet-stream", `"`+sha[:32]+`"`, body)
}

// source is a rendered source package: its description and zip.
type source struct {
	json, zip []byte
}

func (r *Repo) serveSource(w http.ResponseWriter, req *http.Request, file string) {
	name, ext := file, ""
	if i := strings.LastIndexByte(file, '.'); i > 0 {
		name, ext = file[:i], file[i:]
	}
	src := r.source(name)
	switch {
	case src == nil:
		htmlError(w, http.StatusNotFound)
	case ext == ".json":
		serveStatic(w, req, "application/json", "", src.json)
	case ext == ".zip":
		serveStatic(w, req, "application/zip", "", src.zip)
	default:
		htmlError(w, http.StatusNotFound)
	}
}

// source renders (once per repository change) the source package name: a
// zip of its items' files and an api_source_description-1 naming the zip's
// sha256.
func (r *Repo) source(name string) *source {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.sources[name]; ok {
		return s
	}
	var defs []any
	files := map[string][]byte{}
	var copyright []hydrilla.FileRef
	seenCopy := map[string]bool{}
	for _, typ := range []string{hydrilla.TypeMapping, hydrilla.TypeResource} {
		for _, it := range r.sortedItems(typ) {
			if it.sourceName != name {
				continue
			}
			defs = append(defs, obj{{"type", typ}, {"identifier", it.ref.Identifier}, {"long_name", it.longName}, {"version", it.ref.Version}})
			for _, f := range it.copyright {
				if !seenCopy[f.File] {
					seenCopy[f.File] = true
					copyright = append(copyright, f)
				}
			}
			for _, f := range append(slices.Clone(it.scripts), it.copyright...) {
				if b, ok := r.files[f.SHA256]; ok {
					files[f.File] = b
				}
			}
		}
	}
	if defs == nil {
		return nil
	}
	index := pyDumps(obj{{"source_name", name}, {"definitions", defs}}, 4)
	files["index.json"] = index
	zipBytes := deterministicZip(files)
	sum := sha256.Sum256(zipBytes)
	desc := obj{
		{"$schema", hydrilla.SchemaBase + "api_source_description-1.schema.json"},
		{"source_name", name},
		{"source_copyright", fileRefs(copyright)},
		{"source_archives", obj{{"zip", obj{{"sha256", hex.EncodeToString(sum[:])}}}}},
		{"upstream_url", "https://git.example.org/" + name},
		{"definitions", defs},
		{"generated_by", generatedBy(Builder)},
	}
	s := &source{json: pyDumps(desc, 0), zip: zipBytes}
	if r.sources == nil {
		r.sources = map[string]*source{}
	}
	r.sources[name] = s
	return s
}

// deterministicZip zips files in name order with a fixed time, so a source
// zip's sha256 only changes when its content does.
func deterministicZip(files map[string][]byte) []byte {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range names {
		fw, err := zw.CreateHeader(&zip.FileHeader{Name: n, Method: zip.Deflate, Modified: time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err == nil {
			_, err = fw.Write(files[n])
		}
		if err != nil {
			panic(err) // writing to memory
		}
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// serveLegacy answers the pre-1.0 routes of the seed's "current schema"
// part: /script?n=, /bag?n=, /pattern?n=, built from the newest resources
// and mappings.
func (r *Repo) serveLegacy(w http.ResponseWriter, req *http.Request, kind string) {
	q := req.URL.Query()
	if !q.Has("n") {
		htmlError(w, http.StatusBadRequest)
		return
	}
	n := q.Get("n")
	r.mu.RLock()
	defer r.mu.RUnlock()
	var doc obj
	switch kind {
	case "script":
		for _, it := range r.sortedItems(hydrilla.TypeResource) {
			for _, f := range it.scripts {
				if f.File == n {
					doc = obj{{"name", n}, {"location", it.ref.Identifier + "/" + n}, {"sha256", f.SHA256}}
				}
			}
		}
	case "bag":
		if it := r.newest(hydrilla.TypeResource, n); it != nil {
			comps := make([]any, 0, len(it.scripts))
			for _, f := range it.scripts {
				comps = append(comps, []any{"s", f.File})
			}
			doc = obj{{"name", n}, {"components", comps}}
		}
	case "pattern":
		for _, it := range r.sortedItems(hydrilla.TypeMapping) {
			if res, ok := it.payloads[n]; ok {
				doc = obj{{"pattern", n}, {"payload", []any{"b", res}}}
			}
		}
	}
	if doc == nil {
		htmlError(w, http.StatusNotFound)
		return
	}
	writeJSON(w, pyDumps(doc, 0))
}

// serveStatic answers as Flask's static files do: ETag when given,
// conditional requests, Range and HEAD.
func serveStatic(w http.ResponseWriter, req *http.Request, contentType, etag string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(body))
}

func writeJSON(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.Write(body)
}

// htmlError answers status with a Werkzeug-like HTML page: real Hydrilla
// errors are not JSON, and the mirror must not assume they are.
func htmlError(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	text := http.StatusText(status)
	fmt.Fprintf(w, "<!doctype html>\n<html lang=en>\n<title>%d %s</title>\n<h1>%s</h1>\n", status, text, text)
}

func orEmpty(xs []any) []any {
	if xs == nil {
		return []any{}
	}
	return xs
}
