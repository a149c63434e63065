package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/refpack"
)

// RefPack cache keys. Every key of one package shares the prefix of its
// mutable entries so a write can invalidate them.
func rpListKey(advanced bool, q url.Values) string {
	if advanced {
		return "rp/search?" + q.Encode()
	}
	return "rp/list?" + q.Encode()
}
func rpVersionsKey(id string) string              { return "rp/versions/" + id }
func rpZipKey(id, v string) string                { return "rp/zip/" + id + "@" + v }
func rpMetaKey(id, v string) string               { return "rp/meta/" + id + "@" + v }
func rpDocKey(sub, id, v string) string           { return "rp/doc/" + sub + "/" + id + "@" + v }
func rpUpstreamPath(id, sub, query string) string { return rpPath(id, sub) + query }

// rpPath is the upstream path of a package route; the id goes encoded, the
// form the RefWire CLI sends, which the registry accepts like the raw form.
func rpPath(id, sub string) string {
	p := "/packages/" + url.PathEscape(id)
	if sub != "" {
		p += "/" + sub
	}
	return p
}

func versionQuery(v string) string { return "?version=" + url.QueryEscape(v) }

func (s *Server) serveRefPack(w http.ResponseWriter, r *http.Request, path string) {
	if path == "/packages" || path == "/packages/" {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			s.rpList(w, r, false)
		case http.MethodPost:
			s.rpPush(w, r)
		default:
			methodNotAllowed(w, "GET, HEAD, POST")
		}
		return
	}
	if path == "/packages/advanced-search" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, "GET, HEAD")
			return
		}
		s.rpList(w, r, true)
		return
	}
	rt, err := refpack.ParsePackagePath(path)
	if err != nil {
		writeError(w, http.StatusBadRequest, "Invalid package id",
			"a package id is one or two segments (owner/name) of letters, digits, '-' and '_'")
		return
	}
	if rt.Sub == refpack.SubArchive {
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		s.rpArchive(w, r, rt.ID)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET, HEAD")
		return
	}
	q := r.URL.Query()
	version := q.Get("version")
	if version != "" {
		if !refpack.ValidVersion(version) {
			writeError(w, http.StatusBadRequest, refpack.ErrTitleInvalidVersion, refpack.MsgInvalidVersion)
			return
		}
	}
	if rt.Sub == refpack.SubVersions {
		s.serveExact(w, r, &target{
			api: "refpack", route: "versions", key: rpVersionsKey(rt.ID), class: cache.Mutable,
			pool: s.refpack, path: rpPath(rt.ID, refpack.SubVersions),
		})
		return
	}
	floor := Hit
	explicit := version != ""
	if !explicit {
		v, st, ok := s.rpLatest(w, r, rt.ID)
		if !ok {
			return
		}
		version, floor = v, st
	}
	switch rt.Sub {
	case "":
		if explicit {
			s.fastHint(w, rpZipKey(rt.ID, version))
		}
		if s.serveHeld(w, r, rpZipKey(rt.ID, version), floor) {
			return
		}
		s.serveAtLeast(w, r, s.rpZipTarget(rt.ID, version, false), floor)
	case refpack.SubMeta:
		if explicit {
			s.fastHint(w, rpMetaKey(rt.ID, version))
		}
		if s.serveHeld(w, r, rpMetaKey(rt.ID, version), floor) {
			return
		}
		s.serveAtLeast(w, r, s.rpMetaTarget(rt.ID, version, false), floor)
	default:
		s.rpDoc(w, r, rt.ID, version, rt.Sub, floor)
	}
}

// serveHeld answers from a held immutable entry without building the fetch
// target a miss needs: the cached-hit hot path. It reports whether it answered.
// Other entries (a not-found answer ages) are left to the fetch path.
func (s *Server) serveHeld(w http.ResponseWriter, r *http.Request, key string, floor State) bool {
	hot, err := s.cache.Lookup(r.Context(), key)
	if err != nil || hot.Entry.Class != cache.Immutable {
		return false
	}
	return s.respond(w, r, (&answer{hot: hot, state: Hit, status: "hit"}).atLeast(floor)) == nil
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, "Method not allowed", "this route answers "+allow)
}

// serveAtLeast serves t but reports at least the given state: an answer found
// through a stale "latest" is stale even when the version itself is held.
func (s *Server) serveAtLeast(w http.ResponseWriter, r *http.Request, t *target, floor State) {
	if floor == Hit {
		s.serve(w, r, t)
		return
	}
	a, err := s.resolve(r.Context(), t)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	a = a.atLeast(floor)
	if err := s.respond(w, r, a); err != nil {
		s.serve(w, r, t)
	}
}

func (a *answer) atLeast(floor State) *answer {
	rank := map[State]int{Hit: 0, Miss: 1, Stale: 2}
	if rank[floor] > rank[a.state] {
		b := *a
		b.state = floor
		if floor == Stale {
			b.status = "hit; detail=\"stale-if-error: latest version resolved from a stale list\""
		}
		return &b
	}
	return a
}

// rpZipTarget is the package zip at an explicit version: immutable, verified
// (it opens, follows the layout rules, its manifest names this id and version).
func (s *Server) rpZipTarget(id, version string, pin bool) *target {
	return &target{
		api: "refpack", route: "download", key: rpZipKey(id, version), class: cache.Immutable,
		pool: s.refpack, path: rpUpstreamPath(id, "", versionQuery(version)), pin: pin,
		keep: []string{"Content-Type", "Content-Disposition"},
		verify: func(st body) (json.RawMessage, error) {
			m, err := refpack.ValidateZip(st, st.Len(), s.limits)
			if err != nil {
				return nil, err
			}
			return nil, m.Matches(id, version)
		},
		fixHeader: func(h http.Header) {
			// The RefWire CLI refuses a download whose type is not application/zip.
			if !strings.Contains(h.Get("Content-Type"), "application/zip") {
				h.Set("Content-Type", refpack.ContentTypeZip)
			}
			if h.Get("Content-Disposition") == "" {
				h.Set("Content-Disposition", `attachment; filename="`+strings.ReplaceAll(id, "/", "-")+"-"+version+`.refpack.zip"`)
			}
		},
	}
}

// rpMetaTarget is the registry's view of the manifest at an explicit version,
// fetched once per version and kept (the registry rewrites the manifest's id).
func (s *Server) rpMetaTarget(id, version string, pin bool) *target {
	return &target{
		api: "refpack", route: "meta", key: rpMetaKey(id, version), class: cache.Immutable,
		pool: s.refpack, path: rpUpstreamPath(id, refpack.SubMeta, versionQuery(version)), pin: pin,
		verify: func(st body) (json.RawMessage, error) {
			var m map[string]any
			if err := json.NewDecoder(st.Reader()).Decode(&m); err != nil {
				return nil, fmt.Errorf("meta is not a JSON object: %w", err)
			}
			if v, ok := m["version"].(string); ok && v != version {
				return nil, fmt.Errorf("meta says version %q, asked for %q", v, version)
			}
			return nil, nil
		},
	}
}

// rpLatest resolves the latest version from the package's /versions (mutable
// metadata). When it cannot, it has answered the request and ok is false.
func (s *Server) rpLatest(w http.ResponseWriter, r *http.Request, id string) (version string, st State, ok bool) {
	t := &target{api: "refpack", route: "versions", key: rpVersionsKey(id), class: cache.Mutable,
		pool: s.refpack, path: rpPath(id, refpack.SubVersions)}
	a, err := s.resolve(r.Context(), t)
	if err != nil {
		s.fail(w, r, err)
		return "", "", false
	}
	notFound := func() {
		setCacheHeaders(w.Header(), a)
		writeError(w, http.StatusNotFound, refpack.ErrTitlePackageNotFound, refpack.PackageNotFoundMessage(id, ""))
	}
	if a.relay != nil {
		s.respond(w, r, a)
		return "", "", false
	}
	if a.hot.Entry.Status == http.StatusNotFound {
		notFound()
		return "", "", false
	}
	body := a.hot.Body
	if body == nil {
		if body, err = s.cache.ReadAll(r.Context(), a.hot.Entry); err != nil {
			s.fail(w, r, err)
			return "", "", false
		}
	}
	var vs struct {
		Versions []refpack.VersionInfo `json:"versions"`
	}
	if err := json.Unmarshal(body, &vs); err != nil {
		s.fail(w, r, &verifyError{fmt.Errorf("versions of %s: %w", id, err)})
		return "", "", false
	}
	v, found := refpack.Latest(vs.Versions)
	if !found {
		notFound()
		return "", "", false
	}
	return v, a.state, true
}

// rpDoc answers /data, /schema, /changelog or /readme at an explicit version:
// from the held zip of that version when there is one, else that one document
// is fetched (never the whole zip just for it) and kept as immutable.
func (s *Server) rpDoc(w http.ResponseWriter, r *http.Request, id, version, sub string, floor State) {
	ctx := r.Context()
	key := rpDocKey(sub, id, version)
	if s.serveHeld(w, r, key, floor) {
		return
	}
	v, err, _ := s.fills.Do(key, func() (any, error) { return s.docFromZip(context.WithoutCancel(ctx), id, version, sub) })
	if h, _ := v.(*cache.Hot); err == nil && h != nil {
		a := &answer{hot: h, state: Hit, status: "hit; detail=\"from the stored package zip\""}
		if err := s.respond(w, r, a.atLeast(floor)); err == nil {
			return
		}
	}
	s.serveAtLeast(w, r, &target{
		api: "refpack", route: sub, key: key, class: cache.Immutable, pool: s.refpack,
		path: rpUpstreamPath(id, sub, versionQuery(version)),
	}, floor)
}

// docFromZip stores the document sub of the held zip (id, version) under its
// own key, or returns nil when the zip is not held.
func (s *Server) docFromZip(ctx context.Context, id, version, sub string) (*cache.Hot, error) {
	zh, err := s.cache.Lookup(ctx, rpZipKey(id, version))
	if err != nil || zh.Entry.Status != http.StatusOK {
		return nil, nil
	}
	var ra io.ReaderAt
	if zh.Body != nil {
		ra = bytes.NewReader(zh.Body)
	} else {
		b, err := s.cache.Open(ctx, zh.Entry)
		if err != nil {
			return nil, nil
		}
		defer b.Close()
		ra = b
	}
	name := refpack.FileName(sub)
	data, err := refpack.ReadZipFile(ra, zh.Entry.Size, name)
	e := &cache.Entry{Key: rpDocKey(sub, id, version), Class: cache.Immutable, FetchedAt: time.Now(), Status: http.StatusOK,
		Header: http.Header{"Content-Type": {refpack.DocContentType(sub)}}}
	if errors.Is(err, fs.ErrNotExist) {
		e.Status = http.StatusNotFound
		e.Header.Set("Content-Type", refpack.ContentTypeJSON)
		data = refpack.ErrorBody(refpack.ErrTitleFileNotFound, refpack.FileNotFoundMessage(id, version, name))
	} else if err != nil {
		return nil, err
	}
	e.Pinned = zh.Entry.Pinned
	return s.cache.PutBody(ctx, e, data)
}

// rpList answers /packages and /packages/advanced-search as mutable metadata.
func (s *Server) rpList(w http.ResponseWriter, r *http.Request, advanced bool) {
	q := r.URL.Query()
	p := "/packages"
	route := "list"
	if advanced {
		p, route = "/packages/advanced-search", "search"
	}
	if r.URL.RawQuery != "" {
		p += "?" + r.URL.RawQuery
	}
	t := &target{api: "refpack", route: route, key: rpListKey(advanced, q), class: cache.Mutable, pool: s.refpack, path: p}
	a, err := s.resolve(r.Context(), t)
	if err != nil {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			return
		}
		s.rpListLocal(w, r, advanced, q, err)
		return
	}
	if err := s.respond(w, r, a); err != nil {
		s.serve(w, r, t)
	}
}
