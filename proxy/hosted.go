package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/engine"
	"github.com/regmirror/regmirror/hosted"
	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/pattern"
	"github.com/regmirror/regmirror/refpack"
)

// Hosted namespaces (design.md): RefPack packages of the hosted owners and
// the Hydrilla local repository are the mirror's own. Every route decides
// them before anything else, so nothing about them reaches an upstream; they
// are answered X-Cache HIT with Cache-Status `regmirror; hit; detail="hosted"`,
// on the same path as a cached hit.

// hostedOutcome is the cache result of every hosted answer.
var hostedOutcome = engine.HitBecause("hosted")

// rpHostsID reports whether a RefPack id belongs to a hosted owner.
func (s *Server) rpHostsID(id string) bool { return s.hosted != nil && s.hosted.Hosts(id) }

// rpHostedRoute answers every route of a hosted package: its archive
// (POST) and its reads (GET, HEAD).
func (s *Server) rpHostedRoute(w http.ResponseWriter, r *http.Request, rt refpack.Route) {
	switch {
	case rt.Sub == refpack.SubArchive && r.Method == http.MethodPost:
		s.rpHostedArchive(w, r, rt.ID)
	case rt.Sub == refpack.SubArchive:
		methodNotAllowed(w, "POST")
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		s.rpHosted(w, r, rt, r.URL.Query().Get("version"))
	default:
		methodNotAllowed(w, "GET, HEAD")
	}
}

// rpHosted answers a GET or HEAD of a hosted package route.
func (s *Server) rpHosted(w http.ResponseWriter, r *http.Request, rt refpack.Route, version string) {
	if rt.Sub != "" {
		s.writeHosted(w, r, s.hosted.Get(r.Context(), rt, version))
		return
	}
	hot, refused := s.hosted.Zip(r.Context(), rt.ID, version)
	if refused != nil {
		s.writeHosted(w, r, refused)
		return
	}
	if version != "" {
		// A version's zip never changes: its hits may go on the fast lane.
		s.fastHint(w, hot.Entry.Key)
	}
	s.writeHostedZip(w, r, hot)
}

// writeHosted writes an answer of the hosted store: a stored zip through
// respond (the cached-hit path), anything else as it is.
func (s *Server) writeHosted(w http.ResponseWriter, r *http.Request, a *hosted.Answer) {
	if a.Hot != nil {
		s.writeHostedZip(w, r, a.Hot)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		// A push or an archive (or its refusal) is a write: never a cache hit.
		s.writeRaw(w, r, engine.WriteOutcome, a.Status, a.Header, a.Body)
		return
	}
	if a.Status != http.StatusOK || a.Header.Get("ETag") == "" || plainGet(r) {
		s.writeRaw(w, r, hostedOutcome, a.Status, a.Header, a.Body)
		return
	}
	// Conditions and ranges as a mirrored answer has them (respond):
	// If-None-Match with the ETag is a 304.
	h := w.Header()
	for k, v := range a.Header {
		h[k] = v
	}
	hostedOutcome.SetHeaders(h)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.Body))
}

// writeHostedZip writes a stored hosted zip on the cached-hit path.
func (s *Server) writeHostedZip(w http.ResponseWriter, r *http.Request, hot *cache.Hot) {
	if err := s.respond(w, r, &engine.Answer{Hot: hot, Outcome: hostedOutcome}); err != nil {
		// A hosted blob that is gone has no other source: the operator's to
		// restore (verify reports it); the entry stays.
		s.log.Error("hosted package unreadable", "key", hot.Entry.Key, "err", err)
		s.noteError(r.Method + " " + r.URL.Path + ": hosted package unreadable: " + err.Error())
		w.Header().Del("Content-Disposition")
		hostedOutcome.SetHeaders(w.Header())
		writeError(w, http.StatusInternalServerError, "Internal Server Error", "the stored package cannot be read")
	}
}

// rpHostedPush stores a push for a hosted owner: its key is checked (401,
// 403), then the zip as any push is (400), then the registry's rules (409).
func (s *Server) rpHostedPush(w http.ResponseWriter, r *http.Request, to hosted.Write, zip *cache.Staged) {
	if to.Refuse != nil {
		s.writeHosted(w, r, to.Refuse)
		return
	}
	man, err := refpack.ValidateZip(zip, zip.Size, s.limits)
	if err != nil {
		engine.WriteOutcome.SetHeaders(w.Header())
		writeValidationFailed(w, strings.TrimPrefix(err.Error(), refpack.ErrInvalidPackage.Error()+": "))
		return
	}
	s.writeHosted(w, r, s.hosted.Publish(r.Context(), to.Owner, zip, man, to.KeyName))
}

// rpHostedArchive archives a hosted package, when the key may write its owner.
func (s *Server) rpHostedArchive(w http.ResponseWriter, r *http.Request, id string) {
	to := s.hosted.ArchiveTarget(s.keys, r.Header, id)
	if to.Refuse != nil {
		s.writeHosted(w, r, to.Refuse)
		return
	}
	s.writeHosted(w, r, s.hosted.Archive(r.Context(), id, r.URL.RawQuery, to.KeyName))
}

// rpMergedList answers a list or search with hosted owners: the union of the
// hosted packages and the upstream's answer to the same query, sorted and
// paged by the mirror (hosted.MergeList). The upstream pages go through the
// engine like any list, so they are cached and served stale as lists are.
func (s *Server) rpMergedList(w http.ResponseWriter, r *http.Request, advanced bool) {
	q := r.URL.Query()
	lq, err := refpack.ParseListQuery(q, advanced)
	if err != nil {
		writeError(w, http.StatusBadRequest, "Invalid request", strings.TrimPrefix(err.Error(), refpack.ErrBadQuery.Error()+": "))
		return
	}
	route, path := "list", "/packages"
	if advanced {
		route, path = "search", "/packages/advanced-search"
	}
	var mu sync.Mutex
	out := hostedOutcome
	upstreamBase := ""
	fetch := func(ctx context.Context, page int) (refpack.ListPage, error) {
		uq := url.Values{}
		for k, v := range q {
			if k != "page" && k != "pageSize" {
				uq[k] = v
			}
		}
		uq.Set("page", strconv.Itoa(page))
		uq.Set("pageSize", strconv.Itoa(hosted.UpstreamPageSize))
		a, err := s.eng.Resolve(ctx, &engine.Target{API: "refpack", Route: route, Key: engine.RefPackList(advanced, uq),
			Class: cache.Mutable, Pool: s.refpack, Path: path + "?" + uq.Encode()})
		if err != nil {
			return refpack.ListPage{}, err
		}
		if a.Relay != nil {
			return refpack.ListPage{}, fmt.Errorf("the upstream answered %s %d", path, a.Relay.Status)
		}
		if a.Hot.Entry.Status != http.StatusOK {
			return refpack.ListPage{}, fmt.Errorf("the upstream answered %s %d", path, a.Hot.Entry.Status)
		}
		body := a.Hot.Body
		if body == nil {
			if body, err = s.cache.ReadAll(ctx, a.Hot.Entry); err != nil {
				return refpack.ListPage{}, err
			}
		}
		var p refpack.ListPage
		d := json.NewDecoder(bytes.NewReader(body))
		d.UseNumber() // keep the upstream's numbers as it wrote them
		if err := d.Decode(&p); err != nil {
			return refpack.ListPage{}, &engine.VerifyError{Err: fmt.Errorf("upstream list page %d: %w", page, err)}
		}
		mu.Lock()
		out = worse(out, a.Outcome)
		upstreamBase = a.Upstream
		mu.Unlock()
		return p, nil
	}
	page, uerr := s.hosted.MergeList(r.Context(), lq, fetch)
	if uerr != nil {
		if errors.Is(uerr, context.Canceled) && r.Context().Err() != nil {
			return
		}
		// The upstream part made from the packages the mirror holds, as
		// a list without hosted owners is (rpListLocal).
		held, holds, herr := s.rpHeldItems(r.Context(), lq)
		switch {
		case herr == nil && holds:
			page, _ = s.hosted.MergeList(r.Context(), lq, func(context.Context, int) (refpack.ListPage, error) {
				return refpack.ListPage{Items: held, TotalCount: len(held), TotalPages: 1}, nil
			})
			s.log.Warn("merged list: the upstream part failed; made from the packages the mirror holds", "err", uerr)
			out = s.eng.Derived("list made by the mirror from the packages it holds and hosted ones")
		case page.TotalCount == 0:
			// Nothing hosted matches and nothing held: never a list made
			// from nothing.
			s.fail(w, r, uerr)
			return
		default:
			s.log.Warn("merged list: the upstream part failed; hosted packages only", "err", uerr)
			out = s.eng.Derived("upstream failed, hosted packages only")
		}
	} else if out.State == engine.Miss {
		out = engine.MissBecause(`fwd=uri-miss; detail="merged with hosted packages"`)
	} else if out.State == engine.Hit {
		out = engine.HitBecause("merged with hosted packages")
	}
	noteUpstream(w, upstreamBase)
	w.Header().Set("Content-Type", refpack.ContentTypeJSON)
	s.writeRaw(w, r, out, http.StatusOK, nil, refpack.MarshalListPage(page))
}

// worse is the outcome a merged answer reports: a miss over a stale answer
// over a hit.
func worse(a, b engine.Outcome) engine.Outcome {
	rank := map[engine.State]int{engine.Hit: 0, engine.Stale: 1, engine.Miss: 2}
	if rank[b.State] > rank[a.State] {
		return b
	}
	return a
}

// hyLocalItem answers an item route of an identifier the local repository
// holds: from it, and a 404 for a version it does not serve.
func (s *Server) hyLocalItem(w http.ResponseWriter, r *http.Request, ref hydrilla.ItemRef, newest bool) {
	it, ok := s.local.Item(ref)
	if newest {
		it, ok = s.local.Newest(ref.Type, ref.Identifier)
	}
	if !ok {
		hostedOutcome.SetHeaders(w.Header())
		notFound(w, "the local repository serves no "+ref.Type+" "+strconv.Quote(ref.Identifier)+" at that version")
		return
	}
	if !newest {
		s.fastHint(w, it.Hot.Entry.Key)
	}
	s.respond(w, r, &engine.Answer{Hot: it.Hot, Outcome: hostedOutcome})
}

// hyLocalFile answers a file of the local repository; it reports false when
// the repository does not hold it.
func (s *Server) hyLocalFile(w http.ResponseWriter, r *http.Request, hex string) bool {
	f, ok := s.local.File(hex)
	return ok && s.serveLocalFile(w, r, f.Path, "application/octet-stream", `"`+hex+`"`)
}

// hyLocalSource answers source/<name> from the local repository; false when
// it does not hold it.
func (s *Server) hyLocalSource(w http.ResponseWriter, r *http.Request, name string) bool {
	f, ok := s.local.Source(name)
	if !ok {
		return false
	}
	ct := "application/json"
	if strings.HasSuffix(name, ".zip") {
		ct = "application/zip"
	}
	return s.serveLocalFile(w, r, f.Path, ct, "")
}

func (s *Server) serveLocalFile(w http.ResponseWriter, r *http.Request, path, contentType, etag string) bool {
	f, err := os.Open(path)
	if err != nil {
		// Removed since the load: the next reload drops it; the upstream may have it.
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	if etag != "" {
		h.Set("ETag", etag)
	}
	h.Set("Accept-Ranges", "bytes")
	hostedOutcome.SetHeaders(h)
	http.ServeContent(w, r, "", fi.ModTime(), f)
	return true
}

// captured is a response held back to be merged with the local repository's
// part: the answer of a handler that would have gone to the client.
type captured struct {
	under  http.ResponseWriter
	header http.Header
	status int
	body   bytes.Buffer
}

func (c *captured) Header() http.Header { return c.header }
func (c *captured) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}
func (c *captured) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return c.body.Write(p)
}

// Unwrap lets noteUpstream and fastHint reach the recorder underneath.
func (c *captured) Unwrap() http.ResponseWriter { return c.under }

// passOn writes the captured answer as it was.
func (c *captured) passOn(w http.ResponseWriter, r *http.Request) {
	for k, v := range c.header {
		w.Header()[k] = v
	}
	w.WriteHeader(c.status)
	if r.Method != http.MethodHead {
		w.Write(c.body.Bytes())
	}
}

func capture(w http.ResponseWriter) *captured {
	return &captured{under: w, header: http.Header{}}
}

// hyListAllWithLocal answers /list_all as the local repository's item
// versions first, then the upstreams' (as hyListAll answers them) without the
// identifiers the local repository holds. With the upstreams failing and
// nothing held of them, the local items alone.
func (s *Server) hyListAllWithLocal(w http.ResponseWriter, r *http.Request) {
	c := capture(w)
	rr := r.Clone(r.Context())
	rr.Method = http.MethodGet // the upstream part's body is needed even for HEAD
	s.hyListAll(c, rr)
	local := s.local.List()
	var up *hydrilla.List
	out := hostedOutcome
	if c.status == http.StatusOK {
		if l, err := hydrilla.ParseList(c.body.Bytes()); err == nil {
			up = s.local.Without(l)
			out = outcomeOf(c.header)
		}
	}
	if up == nil {
		if len(local.Resources)+len(local.Mappings) == 0 {
			c.passOn(w, r) // nothing of ours to list instead of the failure
			return
		}
		s.log.Warn("/list_all: the upstream part failed; the local repository's items only", "status", c.status)
		out = s.eng.Derived("upstreams failed, local repository only")
	}
	w.Header().Set("Content-Type", "application/json")
	s.writeJSON(w, r, out, hydrilla.MergeLists(local, up))
}

// hyQueryWithLocal answers /query as the local repository's matches first,
// then the upstreams' (as hyQuery answers them) whose identifiers the local
// repository does not hold.
func (s *Server) hyQueryWithLocal(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	raw := q.Get("url")
	u, err := pattern.ParseURL(raw)
	if _, has := q["url"]; !has || len(raw) > maxQueryURL || err != nil {
		s.hyQuery(w, r) // the legacy form, or its 400
		return
	}
	local := s.local.Query(u)
	c := capture(w)
	rr := r.Clone(r.Context())
	rr.Method = http.MethodGet
	s.hyQuery(c, rr)
	var qa struct {
		Mappings []hydrilla.QueryMapping `json:"mappings"`
	}
	var out engine.Outcome
	switch {
	case c.status == http.StatusOK && json.Unmarshal(c.body.Bytes(), &qa) == nil:
		out = outcomeOf(c.header)
	case c.status >= 400 && c.status < 500, len(local) == 0:
		// The upstream's own refusal of this query, or its failure with no
		// local match to answer instead: pass it on (never an answer made
		// from nothing).
		c.passOn(w, r)
		return
	default:
		out = s.eng.Derived("upstreams failed, local repository only")
	}
	w.Header().Set("Content-Type", "application/json")
	s.writeJSON(w, r, out, hydrilla.QueryAnswer(s.local.MergeQuery(local, qa.Mappings)))
}

// outcomeOf reads back the outcome a captured answer was given.
func outcomeOf(h http.Header) engine.Outcome {
	o := engine.Outcome{State: engine.State(h.Get("X-Cache")), Params: "hit"}
	if cs, ok := strings.CutPrefix(h.Get("Cache-Status"), engine.CacheName+"; "); ok {
		o.Params = cs
	}
	if o.State == "" {
		o.State = engine.Hit
	}
	return o
}

// Reload reads again what SIGHUP reloads: the API keys file, the Hydrilla
// local repositories and the hosted packages index. Each part that fails
// keeps what it had; the errors are returned together.
func (s *Server) Reload(ctx context.Context) error {
	var errs []error
	if s.keys != nil {
		if err := s.keys.Reload(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.local != nil {
		if err := s.local.Reload(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.hosted != nil {
		if err := s.hosted.Reload(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// hyLocalLegacy answers a pre-1.0 route from the local repository, first as
// every other route is: /bag?n=<resource> for a resource it holds (never
// asked upstream, a 404 when no version of it is served), /script?n=<file>
// for a script of one of its newest resources, /pattern?n=<pattern> for a
// payload pattern of one of its newest mappings, in the shapes the legacy
// routes have. It reports false when the route is not the local one's.
func (s *Server) hyLocalLegacy(w http.ResponseWriter, r *http.Request, path string) bool {
	n := r.URL.Query().Get("n")
	if n == "" {
		return false
	}
	type legacyItem struct {
		id       string
		Scripts  []hydrilla.FileRef `json:"scripts"`
		Payloads map[string]struct {
			Identifier string `json:"identifier"`
		} `json:"payloads"`
	}
	newest := func(typ string) []legacyItem {
		l := s.local.List()
		entries := l.Resources
		if typ == hydrilla.TypeMapping {
			entries = l.Mappings
		}
		var out []legacyItem
		for _, e := range entries {
			if it, ok := s.local.Newest(typ, e.Identifier); ok && it.Ref.Version.Compare(e.Version) == 0 {
				li := legacyItem{id: e.Identifier}
				if json.Unmarshal(it.Body, &li) == nil {
					out = append(out, li)
				}
			}
		}
		return out
	}
	var doc any
	switch path {
	case "/bag":
		if !s.local.Holds(hydrilla.TypeResource, n) {
			return false
		}
		it, ok := s.local.Newest(hydrilla.TypeResource, n)
		var li legacyItem
		if !ok || json.Unmarshal(it.Body, &li) != nil {
			hostedOutcome.SetHeaders(w.Header())
			notFound(w, "the local repository serves no resource "+strconv.Quote(n))
			return true
		}
		comps := make([][2]string, 0, len(li.Scripts))
		for _, f := range li.Scripts {
			comps = append(comps, [2]string{"s", f.File})
		}
		doc = map[string]any{"name": n, "components": comps}
	case "/script":
		for _, li := range newest(hydrilla.TypeResource) {
			for _, f := range li.Scripts {
				if f.File == n {
					doc = map[string]any{"name": n, "location": li.id + "/" + n, "sha256": f.SHA256}
				}
			}
		}
	case "/pattern":
		for _, li := range newest(hydrilla.TypeMapping) {
			if p, ok := li.Payloads[n]; ok {
				doc = map[string]any{"pattern": n, "payload": [2]string{"b", p.Identifier}}
			}
		}
	}
	if doc == nil {
		return false
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return false
	}
	w.Header().Set("Content-Type", "application/json")
	s.writeRaw(w, r, hostedOutcome, http.StatusOK, nil, body)
	return true
}
