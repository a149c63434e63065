package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/catalogue"
	"github.com/regmirror/regmirror/engine"
	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/pattern"
	"github.com/regmirror/regmirror/upstream"
)

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
	case path == "/list_all" && s.local != nil:
		s.hyListAllWithLocal(w, r)
	case path == "/list_all":
		s.hyListAll(w, r)
	case path == "/query" && s.local != nil:
		s.hyQueryWithLocal(w, r)
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

// notFound answers what the upstream would answer 404 (an unknown route, an
// identifier no Hydrilla repository can hold) without asking it: the
// upstream is the judge of its own API, and this is its judgement
// (design.md, Errors).
func notFound(w http.ResponseWriter, msg string) {
	writeError(w, http.StatusNotFound, "Not Found", msg)
}

// hyItem answers /<type>/<id>.json (mutable, newest version), its ?ver= form,
// and /<type>/<id>/<ver> (immutable, identity checked).
func (s *Server) hyItem(w http.ResponseWriter, r *http.Request, typ, rest string) {
	if id, ok := strings.CutSuffix(rest, ".json"); ok && !strings.Contains(id, "/") {
		if !hydrilla.ValidID(id) {
			notFound(w, "no "+typ+" "+strconv.Quote(id)+": an item identifier matches ^[-0-9a-z.]+$")
			return
		}
		if ver := r.URL.Query().Get("ver"); ver != "" {
			v, _, err := hydrilla.ParseVersionRevision(ver)
			if err != nil {
				badRequest(w, "ver is a dotted version such as 2021.11.10")
				return
			}
			ref := hydrilla.ItemRef{Type: typ, Identifier: id, Version: v}
			if s.local.Holds(typ, id) {
				s.hyLocalItem(w, r, ref, false)
				return
			}
			s.serveExact(w, r, s.hyItemTarget(ref, false))
			return
		}
		if s.local.Holds(typ, id) {
			s.hyLocalItem(w, r, hydrilla.ItemRef{Type: typ, Identifier: id}, true)
			return
		}
		s.hyLatest(w, r, typ, id)
		return
	}
	id, ver, ok := strings.Cut(rest, "/")
	if !ok || strings.Contains(ver, "/") {
		notFound(w, "item routes are /"+typ+"/<identifier>.json and /"+typ+"/<identifier>/<version>")
		return
	}
	if !hydrilla.ValidID(id) {
		notFound(w, "no "+typ+" "+strconv.Quote(id)+": an item identifier matches ^[-0-9a-z.]+$")
		return
	}
	v, err := hydrilla.ParseVersion(ver)
	if err != nil {
		badRequest(w, "a version is dotted non-negative integers such as 2021.11.10")
		return
	}
	ref := hydrilla.ItemRef{Type: typ, Identifier: id, Version: v}
	if s.local.Holds(typ, id) {
		s.hyLocalItem(w, r, ref, false)
		return
	}
	s.serveExact(w, r, s.hyItemTarget(ref, false))
}

// hyLatest answers /<type>/<id>.json: the upstream's newest version (mutable),
// else, with the upstreams down and this answer never stored, the newest
// version the mirror holds — as JSON, as the upstream answers this route.
func (s *Server) hyLatest(w http.ResponseWriter, r *http.Request, typ, id string) {
	t := &engine.Target{
		API: "hydrilla", Route: typ, Key: engine.HydrillaLatest(typ, id), Class: cache.Mutable,
		Pool: s.hydrilla, Path: "/" + typ + "/" + id + ".json",
		Verify: func(st engine.Body) (json.RawMessage, error) {
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
			return catalogue.MetaOf(it), nil
		},
		Stored: s.alsoStoreVersioned,
	}
	a, err := s.eng.Resolve(r.Context(), t)
	if err != nil {
		if key := s.hy.Newest(typ, id); key != "" {
			if hot, lerr := s.cache.Lookup(r.Context(), key); lerr == nil {
				a, err = s.eng.Stale(hot, "upstream error; newest held version"), nil
				a.ContentType = "application/json"
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
}

// hyItemTarget is one item version: immutable, stored only when the upstream's
// bytes carry that identifier and version.
func (s *Server) hyItemTarget(ref hydrilla.ItemRef, pin bool) *engine.Target {
	ref.Version = ref.Version.Normalize()
	return &engine.Target{
		API: "hydrilla", Route: ref.Type, Key: engine.HydrillaItem(ref), Class: cache.Immutable,
		Pool: s.hydrilla, Path: "/" + ref.String(), Pin: pin,
		Verify: func(st engine.Body) (json.RawMessage, error) {
			body, err := readStaged(st)
			if err != nil {
				return nil, err
			}
			it, err := hydrilla.CheckItem(body, ref)
			if err != nil {
				return nil, err
			}
			return catalogue.MetaOf(it), nil
		},
		Stored: s.hy.Note,
	}
}

func readStaged(st engine.Body) ([]byte, error) {
	if st.Len() > maxItemBytes {
		return nil, fmt.Errorf("item JSON of %d bytes is larger than %d", st.Len(), maxItemBytes)
	}
	// Read at its known size: io.ReadAll would grow its buffer from 512
	// bytes, once per item of a sync.
	body := make([]byte, st.Len())
	if _, err := io.ReadFull(st.Reader(), body); err != nil {
		return nil, err
	}
	return body, nil
}

// alsoStoreVersioned files the newest-version answer of <id>.json under its
// versioned key as well: the same checked bytes, so /list_all and /query can
// count it and /<type>/<id>/<ver> needs no second fetch.
func (s *Server) alsoStoreVersioned(e *cache.Entry) {
	m, ok := catalogue.ParseMeta(e.Meta)
	if !ok {
		return
	}
	ref := hydrilla.ItemRef{Type: m.Type, Identifier: m.Identifier, Version: m.Version}
	key := string(engine.HydrillaItem(ref))
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
	s.hy.Note(&ve)
}

// hyFile answers /file/sha256/<hex>: verified against <hex> while it streams
// from the upstream; shared by every upstream.
func (s *Server) hyFile(w http.ResponseWriter, r *http.Request, hex string) {
	if !hydrilla.ValidHex(hex) {
		badRequest(w, "a file is named by 64 lowercase hex digits of its sha256")
		return
	}
	if s.local != nil && s.hyLocalFile(w, r, hex) {
		return
	}
	s.serveExact(w, r, s.hyFileTarget(hex, false))
}

func (s *Server) hyFileTarget(hex string, pin bool) *engine.Target {
	return &engine.Target{
		API: "hydrilla", Route: "file", Key: engine.HydrillaFile(hex), Class: cache.Immutable,
		Pool: s.hydrilla, Path: "/file/sha256/" + hex, Want: hex, Pin: pin,
		Keep: []string{"Content-Type", "Content-Disposition"},
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
		notFound(w, "source routes are /source/<name>.json and /source/<name>.zip")
		return
	}
	if s.local != nil && s.hyLocalSource(w, r, rest) {
		return
	}
	desc := &engine.Target{API: "hydrilla", Route: "source", Key: engine.HydrillaSource(name), Class: cache.Mutable,
		Pool: s.hydrilla, Path: "/source/" + name + ".json"}
	if ext == "json" {
		s.serve(w, r, desc)
		return
	}
	a, err := s.eng.Resolve(r.Context(), desc)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if a.Relay != nil || a.Hot.Entry.Status != http.StatusOK {
		s.respond(w, r, a)
		return
	}
	body := a.Hot.Body
	if body == nil {
		if body, err = s.cache.ReadAll(r.Context(), a.Hot.Entry); err != nil {
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
		s.fail(w, r, &engine.VerifyError{Err: fmt.Errorf("source %s: description names no zip sha256", name)})
		return
	}
	sha := d.Archives.Zip.SHA256
	s.serveAtLeast(w, r, &engine.Target{API: "hydrilla", Route: "source", Key: engine.HydrillaSourceZip(name, sha),
		Class: cache.Immutable, Pool: s.hydrilla, Path: "/source/" + name + ".zip", Want: sha,
		Keep: []string{"Content-Type", "Content-Disposition"}}, a.Outcome)
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
	if s.local != nil && s.hyLocalLegacy(w, r, path) {
		return
	}
	q := r.URL.Query()
	p := path
	if r.URL.RawQuery != "" {
		p += "?" + q.Encode()
	}
	s.serve(w, r, &engine.Target{API: "hydrilla", Route: "legacy", Key: engine.HydrillaLegacy(p), Class: cache.Mutable, Pool: s.hydrilla, Path: p})
}

// hyQuery answers /query?url=: from the pattern index when every upstream is
// fully synced (and the mirror is online), else from the upstreams (merged in
// upstream order). When they all fail (or the mirror is offline):
//
//   - a stored answer of the upstream to this very URL, STALE: it is the
//     upstream's own word on the URL (design.md, honest answers, rule 3),
//     where the index knows only the mappings the mirror happened to fetch —
//     so an empty answer derived from an index that lacks the mappings never
//     replaces a stored one that lists them;
//   - else an answer derived from the pattern index when it holds any
//     pattern: with mappings held, "none of them matches" is an answer made
//     from something;
//   - else the failure (rule 1): holding no mapping, an empty answer would be
//     made from nothing, however many resources are held.
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
	offline := s.hydrilla.Offline()
	if !offline && s.hy.Synced(s.hydrilla.Upstreams(), s.eng.Policy(), s.cfg.SyncInterval) {
		s.writeJSON(w, r, engine.HitBecause("pattern index"), hydrilla.QueryAnswer(s.hy.Query(u)))
		return
	}
	ups := s.hydrilla.Upstreams()
	type part struct {
		a    *engine.Answer
		body []byte
	}
	var parts []part
	var lastErr error
	var stale []part // stored answers of upstreams that failed
	for _, up := range ups {
		a, err := s.eng.Resolve(r.Context(), &engine.Target{
			API: "hydrilla", Route: "query", Key: engine.HydrillaQuery(up.Base, raw), Class: cache.Mutable,
			Pool: s.hydrilla, From: up, Path: "/query?url=" + url.QueryEscape(raw),
		})
		if err != nil {
			lastErr = err
			continue
		}
		if a.Relay != nil || a.Hot.Entry.Status != http.StatusOK || a.Outcome.State == engine.Stale {
			if len(ups) == 1 && a.Relay != nil && a.Relay.Status < 500 {
				s.respond(w, r, a) // the upstream's own answer to a query it refuses
				return
			}
			if a.Outcome.State == engine.Stale && a.Relay == nil && a.Hot.Entry.Status == http.StatusOK {
				if body, err := s.queryBody(r.Context(), a); err == nil {
					stale = append(stale, part{a, body})
				}
			}
			continue
		}
		body, err := s.queryBody(r.Context(), a)
		if err != nil {
			continue
		}
		parts = append(parts, part{a, body})
	}
	fromStored := len(parts) == 0 && len(stale) > 0
	if fromStored {
		// Every upstream failed, some with a stored answer: theirs, stale.
		if len(stale) == 1 {
			s.respond(w, r, stale[0].a)
			return
		}
		parts = stale
	}
	switch {
	case len(parts) == 0 && s.hy.Patterns() == 0:
		// Never an empty answer made from nothing (design.md, honest answers).
		if lastErr == nil {
			lastErr = upstream.ErrOffline
			if !offline {
				lastErr = errors.New("no upstream gave an answer to this query")
			}
		}
		s.fail(w, r, lastErr)
	case len(parts) == 0 && offline:
		s.writeJSON(w, r, s.eng.Derived("offline, pattern index"), hydrilla.QueryAnswer(s.hy.Query(u)))
	case len(parts) == 0:
		s.writeJSON(w, r, s.eng.Derived("upstreams failed, pattern index"), hydrilla.QueryAnswer(s.hy.Query(u)))
	case len(ups) == 1:
		s.respond(w, r, parts[0].a)
	default:
		var merged []hydrilla.QueryMapping
		seen := map[string]bool{}
		out := engine.MissBecause(`fwd=uri-miss; detail="merged from upstreams"`)
		allHits := true
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
			allHits = allHits && p.a.Outcome.State == engine.Hit
		}
		switch {
		case fromStored:
			out = s.eng.Derived("upstreams failed, merged from their stored answers")
		case len(parts) < len(ups):
			out = s.eng.Derived("an upstream failed, merged from the others")
		case allHits:
			out = engine.HitBecause("merged from stored answers")
		}
		s.writeJSON(w, r, out, hydrilla.QueryAnswer(merged))
	}
}

// hyListAll answers /list_all with the item versions the mirror can serve now:
// an answering upstream's own list; for a failing one, its stored list when
// every item version it names is held, else the item versions held from it
// or from no configured upstream (Catalogue.HeldList: a cache filled through
// another upstream URL still lists what it holds); with several upstreams,
// one merged api_package_list-2 list. When no upstream answers and the list
// so derived is empty, it answers the failure, never an empty list.
func (s *Server) hyListAll(w http.ResponseWriter, r *http.Request) {
	ups := s.hydrilla.Upstreams()
	var lists []*hydrilla.List
	var bases, standIn []string // the configured upstreams; those the held items stand in for
	fresh, failed, answered := 0, 0, 0
	var lastErr error
	var stored *engine.Answer // the one upstream's stored list, stale, not all of it held
	for _, up := range ups {
		bases = append(bases, up.Base)
		a, err := s.eng.Resolve(r.Context(), s.hyListTarget(up))
		var nf *upstream.NotFoundError
		if err == nil && a.Relay != nil && len(ups) == 1 {
			s.respond(w, r, a) // the upstream's own answer (a 403, a redirect …)
			return
		}
		if err == nil && a.Relay == nil && a.Hot.Entry.Status == http.StatusOK {
			body := a.Hot.Body
			if body == nil {
				body, err = s.cache.ReadAll(r.Context(), a.Hot.Entry)
			}
			l, perr := hydrilla.ParseList(body)
			if err == nil && perr == nil {
				live := a.Outcome.State != engine.Stale
				if live || s.hy.HoldsAll(l) {
					if len(ups) == 1 {
						s.respond(w, r, a)
						return
					}
					lists = append(lists, l)
					answered++
					if live && a.Outcome.State == engine.Hit {
						fresh++
					} else if !live {
						failed++
					}
					continue
				}
				if len(ups) == 1 {
					stored = a
				}
			}
		}
		// An upstream without /list_all (1.x) is not a failure; one that fails is.
		if errors.As(err, &nf) || (err == nil && a.Hot != nil && a.Hot.Entry.Status == http.StatusNotFound) {
			fresh++
			answered++
		} else {
			failed++
			if err != nil {
				lastErr = err
			}
		}
		standIn = append(standIn, up.Base)
	}
	held := &hydrilla.List{}
	if len(standIn) > 0 {
		held = s.hy.HeldList(standIn, bases)
		lists = append(lists, held)
	}
	heldNothing := len(held.Resources) == 0 && len(held.Mappings) == 0
	var out engine.Outcome
	switch {
	case answered == 0 && heldNothing && stored != nil:
		// Nothing held to rebuild a list from: the upstream's own, stored.
		s.respond(w, r, stored)
		return
	case answered == 0 && heldNothing && lastErr != nil:
		// Never an empty list made from nothing (design.md, honest answers).
		s.fail(w, r, lastErr)
		return
	case failed > 0:
		out = s.eng.Derived("item versions held by the mirror")
	case fresh == len(ups):
		out = engine.HitBecause("merged list")
	default:
		out = engine.MissBecause(`fwd=uri-miss; detail="merged list"`)
	}
	s.writeJSON(w, r, out, hydrilla.MergeLists(lists...))
}

// queryBody is the stored body of a /query answer.
func (s *Server) queryBody(ctx context.Context, a *engine.Answer) ([]byte, error) {
	if a.Hot.Body != nil {
		return a.Hot.Body, nil
	}
	return s.cache.ReadAll(ctx, a.Hot.Entry)
}

func (s *Server) hyListTarget(up *upstream.Upstream) *engine.Target {
	return &engine.Target{
		API: "hydrilla", Route: "list_all", Key: engine.HydrillaListAll(up.Base), Class: cache.Mutable,
		Pool: s.hydrilla, From: up, Path: "/list_all",
		Verify: func(st engine.Body) (json.RawMessage, error) {
			b, err := io.ReadAll(st.Reader())
			if err != nil {
				return nil, err
			}
			_, err = hydrilla.ParseList(b)
			return nil, err
		},
	}
}
