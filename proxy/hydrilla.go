package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/pattern"
	"github.com/regmirror/regmirror/upstream"
)

// Hydrilla cache keys.
const (
	hyItemPrefix = "hy/item/"
	hyFilePrefix = "hy/file/"
	hySyncPrefix = "hy/sync/"
)

func hyItemKey(ref hydrilla.ItemRef) string { return hyItemPrefix + ref.String() }
func hyFileKey(hex string) string           { return hyFilePrefix + hex }

// maxItemBytes bounds item JSON read into memory to check it.
const maxItemBytes = 16 << 20

// maxQueryURL bounds the url of /query; real page URLs are far shorter.
const maxQueryURL = 4096

func (s *Server) serveHydrilla(w http.ResponseWriter, r *http.Request, path string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET, HEAD")
		return
	}
	switch {
	case path == "/" || path == "/status.json":
		s.serveStatus(w, r, path)
	case path == "/list_all":
		s.hyListAll(w, r)
	case path == "/query":
		s.hyQuery(w, r)
	case strings.HasPrefix(path, "/file/sha256/"):
		s.hyFile(w, r, strings.TrimPrefix(path, "/file/sha256/"))
	case strings.HasPrefix(path, "/resource/"):
		s.hyItem(w, r, hydrilla.TypeResource, strings.TrimPrefix(path, "/resource/"))
	case strings.HasPrefix(path, "/mapping/"):
		s.hyItem(w, r, hydrilla.TypeMapping, strings.TrimPrefix(path, "/mapping/"))
	case strings.HasPrefix(path, "/source/"):
		s.hySource(w, r, strings.TrimPrefix(path, "/source/"))
	case path == "/script" || path == "/bag" || path == "/pattern" || strings.HasPrefix(path, "/content/"):
		s.hyLegacy(w, r, path)
	default:
		writeError(w, http.StatusNotFound, "Not Found", "no such route")
	}
}

func badRequest(w http.ResponseWriter, msg string) {
	writeError(w, http.StatusBadRequest, "Bad Request", msg)
}

// hyItem answers /<type>/<id>.json (mutable, newest version), its ?ver= form,
// and /<type>/<id>/<ver> (immutable, identity checked).
func (s *Server) hyItem(w http.ResponseWriter, r *http.Request, typ, rest string) {
	if id, ok := strings.CutSuffix(rest, ".json"); ok && !strings.Contains(id, "/") {
		if !hydrilla.ValidID(id) {
			badRequest(w, "an item identifier matches ^[-0-9a-z.]+$")
			return
		}
		if ver := r.URL.Query().Get("ver"); ver != "" {
			v, _, err := hydrilla.ParseVersionRevision(ver)
			if err != nil {
				badRequest(w, "ver is a dotted version such as 2021.11.10")
				return
			}
			s.serveExact(w, r, s.hyItemTarget(hydrilla.ItemRef{Type: typ, Identifier: id, Version: v}, false))
			return
		}
		t := &target{
			api: "hydrilla", route: typ, key: "hy/latest/" + typ + "/" + id, class: cache.Mutable,
			pool: s.hydrilla, path: "/" + typ + "/" + id + ".json",
			verify: func(st body) (json.RawMessage, error) {
				body, err := readStaged(st)
				if err != nil {
					return nil, err
				}
				it, err := hydrilla.ParseItem(body)
				if err != nil {
					return nil, err
				}
				if it.Identifier != id || it.Type != typ {
					return nil, fmt.Errorf("%w: %s/%s.json holds %s %q", hydrilla.ErrItemMismatch, typ, id, it.Type, it.Identifier)
				}
				return itemMetaOf(it), nil
			},
			stored: s.alsoStoreVersioned,
		}
		a, err := s.resolve(r.Context(), t)
		if err != nil {
			// Upstreams down and this answer never stored: the newest version the
			// mirror holds is the answer it can give.
			if key := s.hy.newest(typ, id); key != "" {
				if hot, lerr := s.cache.Lookup(r.Context(), key); lerr == nil {
					a, err = s.stale(hot, "upstream error; newest held version"), nil
				}
			}
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if err := s.respond(w, r, a); err != nil {
			s.serve(w, r, t)
		}
		return
	}
	id, ver, ok := strings.Cut(rest, "/")
	if !ok || !hydrilla.ValidID(id) || strings.Contains(ver, "/") {
		badRequest(w, "item routes are /"+typ+"/<identifier>.json and /"+typ+"/<identifier>/<version>")
		return
	}
	v, err := hydrilla.ParseVersion(ver)
	if err != nil {
		badRequest(w, "a version is dotted non-negative integers such as 2021.11.10")
		return
	}
	s.serveExact(w, r, s.hyItemTarget(hydrilla.ItemRef{Type: typ, Identifier: id, Version: v}, false))
}

// hyItemTarget is one item version: immutable, stored only when the upstream's
// bytes carry that identifier and version.
func (s *Server) hyItemTarget(ref hydrilla.ItemRef, pin bool) *target {
	ref.Version = ref.Version.Normalize()
	return &target{
		api: "hydrilla", route: ref.Type, key: hyItemKey(ref), class: cache.Immutable,
		pool: s.hydrilla, path: "/" + ref.String(), pin: pin,
		verify: func(st body) (json.RawMessage, error) {
			body, err := readStaged(st)
			if err != nil {
				return nil, err
			}
			it, err := hydrilla.CheckItem(body, ref)
			if err != nil {
				return nil, err
			}
			return itemMetaOf(it), nil
		},
		stored: s.noteItem,
	}
}

func readStaged(st body) ([]byte, error) {
	if st.Len() > maxItemBytes {
		return nil, fmt.Errorf("item JSON of %d bytes is larger than %d", st.Len(), maxItemBytes)
	}
	return io.ReadAll(st.Reader())
}

// alsoStoreVersioned files the newest-version answer of <id>.json under its
// versioned key as well: the same checked bytes, so /list_all and /query can
// count it and /<type>/<id>/<ver> needs no second fetch.
func (s *Server) alsoStoreVersioned(e *cache.Entry) {
	m, ok := parseItemMeta(e.Meta)
	if !ok {
		return
	}
	ref := hydrilla.ItemRef{Type: m.Type, Identifier: m.Identifier, Version: m.Version}
	key := hyItemKey(ref)
	ctx := context.Background()
	if _, err := s.cache.Store().Entry(ctx, key); err == nil {
		return
	}
	ve := *e
	ve.Key, ve.Class, ve.ETag, ve.LastModified = key, cache.Immutable, "", ""
	if _, err := s.cache.Put(ctx, &ve, nil); err != nil {
		s.log.Warn("store versioned item", "key", key, "err", err)
		return
	}
	s.noteItem(&ve)
}

// hyFile answers /file/sha256/<hex>: verified against <hex> while it streams
// from the upstream; shared by every upstream.
func (s *Server) hyFile(w http.ResponseWriter, r *http.Request, hex string) {
	if !hydrilla.ValidHex(hex) {
		badRequest(w, "a file is named by 64 lowercase hex digits of its sha256")
		return
	}
	s.serveExact(w, r, s.hyFileTarget(hex, false))
}

func (s *Server) hyFileTarget(hex string, pin bool) *target {
	return &target{
		api: "hydrilla", route: "file", key: hyFileKey(hex), class: cache.Immutable,
		pool: s.hydrilla, path: "/file/sha256/" + hex, want: hex, pin: pin,
		keep: []string{"Content-Type", "Content-Disposition"},
	}
}

// hySource answers /source/<name>.json (mutable) and /source/<name>.zip,
// verified against the sha256 the description gives.
func (s *Server) hySource(w http.ResponseWriter, r *http.Request, rest string) {
	name, ext := rest, ""
	if n, ok := strings.CutSuffix(rest, ".json"); ok {
		name, ext = n, "json"
	} else if n, ok := strings.CutSuffix(rest, ".zip"); ok {
		name, ext = n, "zip"
	}
	if ext == "" || !hydrilla.ValidID(name) {
		badRequest(w, "source routes are /source/<name>.json and /source/<name>.zip")
		return
	}
	desc := &target{api: "hydrilla", route: "source", key: "hy/source/" + name + ".json", class: cache.Mutable,
		pool: s.hydrilla, path: "/source/" + name + ".json"}
	if ext == "json" {
		s.serve(w, r, desc)
		return
	}
	a, err := s.resolve(r.Context(), desc)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if a.relay != nil || a.hot.Entry.Status != http.StatusOK {
		s.respond(w, r, a)
		return
	}
	body := a.hot.Body
	if body == nil {
		if body, err = s.cache.ReadAll(r.Context(), a.hot.Entry); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	var d struct {
		Archives struct {
			Zip struct {
				SHA256 string `json:"sha256"`
			} `json:"zip"`
		} `json:"source_archives"`
	}
	if json.Unmarshal(body, &d) != nil || !hydrilla.ValidHex(d.Archives.Zip.SHA256) {
		s.fail(w, r, &verifyError{fmt.Errorf("source %s: description names no zip sha256", name)})
		return
	}
	sha := d.Archives.Zip.SHA256
	s.serveAtLeast(w, r, &target{api: "hydrilla", route: "source", key: "hy/source-zip/" + name + "/" + sha,
		class: cache.Immutable, pool: s.hydrilla, path: "/source/" + name + ".zip", want: sha,
		keep: []string{"Content-Type", "Content-Disposition"}}, a.state)
}

// hyLegacy passes the pre-1.0 routes through as mutable answers.
func (s *Server) hyLegacy(w http.ResponseWriter, r *http.Request, path string) {
	if rest, ok := strings.CutPrefix(path, "/content/"); ok {
		un, err := url.PathUnescape(rest)
		if err != nil || rest == "" || strings.ContainsAny(un, "\\\x00") {
			badRequest(w, "bad content path")
			return
		}
		for _, seg := range strings.Split(un, "/") {
			if seg == ".." || seg == "." {
				badRequest(w, "a content path may not contain . or .. segments")
				return
			}
		}
	}
	q := r.URL.Query()
	p := path
	if r.URL.RawQuery != "" {
		p += "?" + q.Encode()
	}
	s.serve(w, r, &target{api: "hydrilla", route: "legacy", key: "hy/legacy" + p, class: cache.Mutable, pool: s.hydrilla, path: p})
}

// hyQuery answers /query?url=: from the pattern index when every upstream is
// fully synced, else from the upstreams (merged in upstream order), and from
// the index again when they all fail.
func (s *Server) hyQuery(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if _, ok := q["url"]; !ok {
		if _, legacy := q["n"]; legacy {
			s.hyLegacy(w, r, "/query")
			return
		}
		badRequest(w, "the url parameter is missing")
		return
	}
	raw := q.Get("url")
	if len(raw) > maxQueryURL {
		badRequest(w, fmt.Sprintf("url is longer than %d bytes", maxQueryURL))
		return
	}
	u, err := pattern.ParseURL(raw)
	if err != nil {
		badRequest(w, "url cannot be parsed: "+err.Error())
		return
	}
	if s.hy.synced(s.hydrilla.Upstreams(), s.syncFreshFor()) || s.hydrilla.Offline() {
		state, status := Hit, "hit; detail=\"pattern index\""
		if s.hydrilla.Offline() {
			state, status = Stale, "hit; detail=\"stale-if-error: offline, pattern index\""
			s.metrics.StaleServed.Inc()
		}
		s.writeJSON(w, r, state, status, hydrilla.QueryAnswer(s.hy.query(u)))
		return
	}
	ups := s.hydrilla.Upstreams()
	type part struct {
		a    *answer
		body []byte
	}
	var parts []part
	for _, up := range ups {
		a, err := s.resolve(r.Context(), &target{
			api: "hydrilla", route: "query", key: "hy/query/" + up.Base + "?" + raw, class: cache.Mutable,
			pool: s.hydrilla, from: up, path: "/query?url=" + url.QueryEscape(raw),
		})
		if err != nil || a.relay != nil || a.hot.Entry.Status != http.StatusOK || a.state == Stale {
			if len(ups) == 1 && a != nil && a.relay != nil && a.relay.status < 500 {
				s.respond(w, r, a) // the upstream's own answer to a query it refuses
				return
			}
			continue
		}
		body := a.hot.Body
		if body == nil {
			if body, err = s.cache.ReadAll(r.Context(), a.hot.Entry); err != nil {
				continue
			}
		}
		parts = append(parts, part{a, body})
	}
	switch {
	case len(parts) == 0:
		s.metrics.StaleServed.Inc()
		s.writeJSON(w, r, Stale, "hit; detail=\"stale-if-error: upstreams failed, pattern index\"", hydrilla.QueryAnswer(s.hy.query(u)))
	case len(ups) == 1:
		s.respond(w, r, parts[0].a)
	default:
		var merged []hydrilla.QueryMapping
		seen := map[string]bool{}
		state := Hit
		for _, p := range parts {
			var qa struct {
				Mappings []hydrilla.QueryMapping `json:"mappings"`
			}
			if json.Unmarshal(p.body, &qa) != nil {
				continue
			}
			for _, m := range qa.Mappings {
				if !seen[m.Identifier] {
					seen[m.Identifier] = true
					merged = append(merged, m)
				}
			}
			if p.a.state == Miss {
				state = Miss
			}
		}
		if len(parts) < len(ups) {
			state = Stale
			s.metrics.StaleServed.Inc()
		}
		s.writeJSON(w, r, state, "fwd=uri-miss; detail=\"merged from upstreams\"", hydrilla.QueryAnswer(merged))
	}
}

// hyListAll answers /list_all with the item versions the mirror can serve now:
// an answering upstream's own list, else the item versions held from it; with
// several upstreams, one merged api_package_list-2 list.
func (s *Server) hyListAll(w http.ResponseWriter, r *http.Request) {
	ups := s.hydrilla.Upstreams()
	var lists []*hydrilla.List
	state := Hit
	for _, up := range ups {
		a, err := s.resolve(r.Context(), s.hyListTarget(up))
		var nf *upstream.NotFoundError
		live := err == nil && a.relay == nil && a.hot.Entry.Status == http.StatusOK && a.state != Stale
		if live && len(ups) == 1 {
			s.respond(w, r, a)
			return
		}
		if live {
			body := a.hot.Body
			if body == nil {
				body, err = s.cache.ReadAll(r.Context(), a.hot.Entry)
			}
			if l, perr := hydrilla.ParseList(body); err == nil && perr == nil {
				lists = append(lists, l)
				if a.state == Miss {
					state = Miss
				}
				continue
			}
		}
		// An upstream without /list_all (1.x) is not a failure; one that fails is.
		if !(errors.As(err, &nf) || (err == nil && a.hot != nil && a.hot.Entry.Status == http.StatusNotFound)) {
			state = Stale
		}
		lists = append(lists, s.hy.heldList(up.Base))
	}
	status := "fwd=uri-miss; detail=\"merged list\""
	if state == Stale {
		s.metrics.StaleServed.Inc()
		status = "hit; detail=\"stale-if-error: item versions held by the mirror\""
	}
	s.writeJSON(w, r, state, status, hydrilla.MergeLists(lists...))
}

func (s *Server) hyListTarget(up *upstream.Upstream) *target {
	return &target{
		api: "hydrilla", route: "list_all", key: "hy/list_all/" + up.Base, class: cache.Mutable,
		pool: s.hydrilla, from: up, path: "/list_all",
		verify: func(st body) (json.RawMessage, error) {
			b, err := io.ReadAll(st.Reader())
			if err != nil {
				return nil, err
			}
			_, err = hydrilla.ParseList(b)
			return nil, err
		},
	}
}

// writeJSON writes a JSON document the mirror made itself.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, state State, status string, body []byte) {
	h := w.Header()
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	setCacheHeaders(h, &answer{state: state, status: status})
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// syncFreshFor is how long a completed sync lets /query answer from the index
// alone.
func (s *Server) syncFreshFor() time.Duration {
	if d := 2 * s.cfg.SyncInterval; d > s.cfg.MetadataMaxAge {
		return d
	}
	return s.cfg.MetadataMaxAge
}
