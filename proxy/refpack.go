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

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/engine"
	"github.com/regmirror/regmirror/refpack"
)

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
	// From here on the package id (rt.ID, so its owner) is known and no
	// upstream has been asked: the place where an id's owner decides who
	// answers it.
	if s.rpHostsID(rt.ID) {
		s.rpHostedRoute(w, r, rt) // the mirror's own: never an upstream
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
		s.serveExact(w, r, &engine.Target{
			API: "refpack", Route: "versions", Key: engine.RefPackVersions(rt.ID), Class: cache.Mutable,
			Pool: s.refpack, Path: rpPath(rt.ID, refpack.SubVersions),
		})
		return
	}
	floor := engine.HitOutcome
	explicit := version != ""
	if !explicit {
		v, out, ok := s.rpLatest(w, r, rt.ID)
		if !ok {
			return
		}
		version, floor = v, out
	}
	switch rt.Sub {
	case "":
		if explicit {
			s.fastHint(w, string(engine.RefPackZip(rt.ID, version)))
		}
		if s.serveHeld(w, r, engine.RefPackZip(rt.ID, version), floor) {
			return
		}
		s.serveAtLeast(w, r, s.rpZipTarget(rt.ID, version, false), floor)
	case refpack.SubMeta:
		if explicit {
			s.fastHint(w, string(engine.RefPackMeta(rt.ID, version)))
		}
		if s.serveHeld(w, r, engine.RefPackMeta(rt.ID, version), floor) {
			return
		}
		s.serveAtLeast(w, r, s.rpMetaTarget(rt.ID, version, false), floor)
	default:
		s.rpDoc(w, r, rt.ID, version, rt.Sub, floor)
	}
}

// serveHeld answers from a held entry the policy calls fresh without
// building the fetch target a miss needs: the cached-hit hot path. It reports
// whether it answered; anything else is left to the fetch path.
func (s *Server) serveHeld(w http.ResponseWriter, r *http.Request, key engine.Key, floor engine.Outcome) bool {
	hot, err := s.cache.Lookup(r.Context(), string(key))
	if err != nil || !s.eng.Policy().Fresh(hot.Entry) {
		return false
	}
	a := &engine.Answer{Hot: hot, Outcome: engine.HitOutcome.AtLeast(floor), Upstream: hot.Entry.Upstream}
	return s.respond(w, r, a) == nil
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, "Method not allowed", "this route answers "+allow)
}

// rpZipTarget is the package zip at an explicit version: immutable, verified
// (it opens, follows the layout rules, its manifest names this id and version).
func (s *Server) rpZipTarget(id, version string, pin bool) *engine.Target {
	return &engine.Target{
		API: "refpack", Route: "download", Key: engine.RefPackZip(id, version), Class: cache.Immutable,
		Pool: s.refpack, Path: rpUpstreamPath(id, "", versionQuery(version)), Pin: pin,
		Keep: []string{"Content-Type", "Content-Disposition"},
		Verify: func(st engine.Body) (json.RawMessage, error) {
			m, err := refpack.ValidateZip(st, st.Len(), s.limits)
			if err != nil {
				return nil, err
			}
			return nil, m.Matches(id, version)
		},
		FixHeader: func(h http.Header) {
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
func (s *Server) rpMetaTarget(id, version string, pin bool) *engine.Target {
	return &engine.Target{
		API: "refpack", Route: "meta", Key: engine.RefPackMeta(id, version), Class: cache.Immutable,
		Pool: s.refpack, Path: rpUpstreamPath(id, refpack.SubMeta, versionQuery(version)), Pin: pin,
		Verify: func(st engine.Body) (json.RawMessage, error) {
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
func (s *Server) rpLatest(w http.ResponseWriter, r *http.Request, id string) (version string, out engine.Outcome, ok bool) {
	t := &engine.Target{API: "refpack", Route: "versions", Key: engine.RefPackVersions(id), Class: cache.Mutable,
		Pool: s.refpack, Path: rpPath(id, refpack.SubVersions)}
	a, err := s.eng.Resolve(r.Context(), t)
	if err != nil {
		s.fail(w, r, err)
		return "", out, false
	}
	notFound := func() {
		noteUpstream(w, a.Upstream)
		a.Outcome.SetHeaders(w.Header())
		writeError(w, http.StatusNotFound, refpack.ErrTitlePackageNotFound, refpack.PackageNotFoundMessage(id, ""))
	}
	if a.Relay != nil {
		s.respond(w, r, a)
		return "", out, false
	}
	if a.Hot.Entry.Status == http.StatusNotFound {
		notFound()
		return "", out, false
	}
	body := a.Hot.Body
	if body == nil {
		if body, err = s.cache.ReadAll(r.Context(), a.Hot.Entry); err != nil {
			s.fail(w, r, err)
			return "", out, false
		}
	}
	var vs struct {
		Versions []refpack.VersionInfo `json:"versions"`
	}
	if err := json.Unmarshal(body, &vs); err != nil {
		s.fail(w, r, &engine.VerifyError{Err: fmt.Errorf("versions of %s: %w", id, err)})
		return "", out, false
	}
	v, found := refpack.Latest(vs.Versions)
	if !found {
		notFound()
		return "", out, false
	}
	return v, a.Outcome, true
}

// rpDoc answers /data, /schema, /changelog or /readme at an explicit version:
// from the held zip of that version when there is one, else that one document
// is fetched (never the whole zip just for it) and kept as immutable.
func (s *Server) rpDoc(w http.ResponseWriter, r *http.Request, id, version, sub string, floor engine.Outcome) {
	ctx := r.Context()
	key := engine.RefPackDoc(sub, id, version)
	if s.serveHeld(w, r, key, floor) {
		return
	}
	v, err := s.eng.Do(key, func() (any, error) { return s.docFromZip(context.WithoutCancel(ctx), id, version, sub) })
	if h, _ := v.(*cache.Hot); err == nil && h != nil {
		a := &engine.Answer{Hot: h, Outcome: engine.HitBecause("from the stored package zip").AtLeast(floor), Upstream: h.Entry.Upstream}
		if err := s.respond(w, r, a); err == nil {
			return
		}
	}
	s.serveAtLeast(w, r, &engine.Target{
		API: "refpack", Route: sub, Key: key, Class: cache.Immutable, Pool: s.refpack,
		Path: rpUpstreamPath(id, sub, versionQuery(version)),
	}, floor)
}

// docFromZip stores the document sub of the held zip (id, version) under its
// own key, or returns nil when the zip is not held.
func (s *Server) docFromZip(ctx context.Context, id, version, sub string) (*cache.Hot, error) {
	zh, err := s.cache.Lookup(ctx, string(engine.RefPackZip(id, version)))
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
	e := &cache.Entry{Key: string(engine.RefPackDoc(sub, id, version)), Class: cache.Immutable, FetchedAt: s.eng.Policy().Now(), Status: http.StatusOK,
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
	if s.hosted != nil {
		s.rpMergedList(w, r, advanced)
		return
	}
	q := r.URL.Query()
	p := "/packages"
	route := "list"
	if advanced {
		p, route = "/packages/advanced-search", "search"
	}
	if r.URL.RawQuery != "" {
		p += "?" + r.URL.RawQuery
	}
	t := &engine.Target{API: "refpack", Route: route, Key: engine.RefPackList(advanced, q), Class: cache.Mutable, Pool: s.refpack, Path: p}
	a, err := s.eng.Resolve(r.Context(), t)
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
