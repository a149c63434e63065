// Package hosted is the mirror as the registry itself: RefPack packages
// pushed to it for its hosted owners (--hosted-owner), stored in the
// project's cache store (so every replica of a fleet sharing a bucket serves
// them), pinned and marked Hosted (never evicted, never dropped by repair),
// and answered in the registry's own shapes. Lists and searches merge them
// with an upstream's answer (MergeList).
//
// Nothing here contacts an upstream: a hosted owner is decided before any
// upstream call, and everything about it is answered from here.
package hosted

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/Masterminds/semver/v3"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/refpack"
)

// KeyPrefix starts the cache key of every hosted RefPack version:
// hosted/rp/<owner>/<name>@<version>.
const KeyPrefix = "hosted/rp/"

// entryKey is the cache key of one hosted version.
func entryKey(id, version string) string { return KeyPrefix + id + "@" + version }

// record is what an entry's Meta holds of a hosted version, so the index can
// be rebuilt from the store alone (on start, and on another replica).
type record struct {
	ID       string          `json:"id"` // owner/name
	Version  string          `json:"version"`
	PushedAt time.Time       `json:"pushedAt"`
	Archived bool            `json:"archived,omitempty"`
	Manifest json.RawMessage `json:"manifest"` // data.meta.json, compacted
}

// version is one hosted version as the index holds it.
type version struct {
	rec      record
	sv       *semver.Version
	entry    *cache.Entry
	manifest map[string]any // decoded with json.Number
	created  string         // the manifest's createdUtc, else the push time
	meta     []byte         // the /meta answer
}

// pkg is one hosted package.
type pkg struct {
	id       string
	versions map[string]*version
}

func (p *pkg) infos() []refpack.VersionInfo {
	out := make([]refpack.VersionInfo, 0, len(p.versions))
	for _, v := range p.versions {
		out = append(out, refpack.VersionInfo{Version: v.rec.Version, CreatedAt: v.created, IsArchived: v.rec.Archived})
	}
	return out
}

// Options configure a RefPack store.
type Options struct {
	// Owners are the hosted owners; an id is hosted when its owner is one of
	// them, compared case-insensitively (so "OurCo/x" upstream cannot shadow
	// "ourco/x" either).
	Owners []string
	// Now is the clock of push times; default time.Now.
	Now func() time.Time
	// Logger receives load problems and pushes (by key name, never the key).
	Logger *slog.Logger
	// RefreshEvery bounds how old the index may be on a store other processes
	// write too (a fleet's bucket) before a read reloads it; default 2 s. A
	// read of a version the index lacks, and every write, reads that package
	// again at once, so a push through another replica is served immediately.
	RefreshEvery time.Duration
}

// RefPack is the hosted RefPack store. It is safe for concurrent use.
type RefPack struct {
	c      *cache.Cache
	owners map[string]string // lower-case → as configured
	list   []string
	now    func() time.Time
	log    *slog.Logger
	shared bool
	every  time.Duration

	mu       sync.RWMutex
	pkgs     map[string]*pkg // by id
	loadedAt time.Time

	// writeMu orders pushes, archives and reloads, so a reload never swaps in
	// an index read before a push that then lacks it.
	writeMu sync.Mutex
}

// NewRefPack opens the hosted store over c and loads its index.
func NewRefPack(ctx context.Context, c *cache.Cache, o Options) (*RefPack, error) {
	s := &RefPack{c: c, owners: map[string]string{}, now: o.Now, log: o.Logger, every: o.RefreshEvery}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.every <= 0 {
		s.every = 2 * time.Second
	}
	for _, ow := range o.Owners {
		if !refpack.ValidID(ow) || strings.Contains(ow, "/") {
			return nil, fmt.Errorf("hosted owner %q is not a RefPack owner ([A-Za-z0-9_-], starting and ending alphanumeric)", ow)
		}
		if _, dup := s.owners[strings.ToLower(ow)]; dup {
			continue
		}
		s.owners[strings.ToLower(ow)] = ow
		s.list = append(s.list, ow)
	}
	if sh, ok := c.Store().(cache.SharedStore); ok {
		s.shared = sh.Shared()
	}
	if err := s.Reload(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Owners returns the hosted owners as configured.
func (s *RefPack) Owners() []string { return slices.Clone(s.list) }

// HostedOwner reports whether owner is hosted and returns it as configured.
func (s *RefPack) HostedOwner(owner string) (string, bool) {
	if s == nil || len(s.owners) == 0 {
		return "", false
	}
	o, ok := s.owners[strings.ToLower(owner)]
	return o, ok
}

// Hosts reports whether the registry id belongs to a hosted owner: such an id
// is answered here and never sent upstream. One-segment ids have no owner.
func (s *RefPack) Hosts(id string) bool {
	owner, _, two := strings.Cut(id, "/")
	if !two {
		return false
	}
	_, ok := s.HostedOwner(owner)
	return ok
}

// canonical rewrites the owner of a hosted id as configured (the id itself,
// without allocating, when it already is).
func (s *RefPack) canonical(id string) string {
	owner, name, _ := strings.Cut(id, "/")
	if o, _ := s.HostedOwner(owner); o != owner {
		return o + "/" + name
	}
	return id
}

// Reload rebuilds the index from the store. Entries that cannot be read are
// logged and left out (and left in the store).
func (s *RefPack) Reload(ctx context.Context) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.reloadLocked(ctx)
}

func (s *RefPack) reloadLocked(ctx context.Context) error {
	started := s.now()
	pkgs := map[string]*pkg{}
	err := cache.WalkPrefix(ctx, s.c.Store(), KeyPrefix, func(e *cache.Entry) error {
		v, err := versionOf(e)
		if err != nil {
			s.log.Error("hosted package entry is unreadable; not served", "key", e.Key, "err", err)
			return nil
		}
		if !s.Hosts(v.rec.ID) {
			s.log.Warn("hosted package of an owner no longer hosted; not served", "id", v.rec.ID, "version", v.rec.Version)
			return nil
		}
		addVersion(pkgs, v)
		return nil
	})
	if err != nil {
		return fmt.Errorf("load hosted packages: %w", err)
	}
	s.mu.Lock()
	s.pkgs, s.loadedAt = pkgs, started
	s.mu.Unlock()
	return nil
}

func addVersion(pkgs map[string]*pkg, v *version) {
	p := pkgs[v.rec.ID]
	if p == nil {
		p = &pkg{id: v.rec.ID, versions: map[string]*version{}}
		pkgs[v.rec.ID] = p
	}
	p.versions[v.rec.Version] = v
}

// versionOf rebuilds a version from its entry.
func versionOf(e *cache.Entry) (*version, error) {
	var rec record
	if err := json.Unmarshal(e.Meta, &rec); err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	if !refpack.ValidID(rec.ID) || !strings.Contains(rec.ID, "/") || entryKey(rec.ID, rec.Version) != e.Key {
		return nil, fmt.Errorf("meta names %q@%q", rec.ID, rec.Version)
	}
	return newVersion(rec, e)
}

func newVersion(rec record, e *cache.Entry) (*version, error) {
	sv, err := refpack.ParseVersion(rec.Version)
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(rec.Manifest))
	d.UseNumber()
	var man map[string]any
	if err := d.Decode(&man); err != nil || man == nil {
		return nil, fmt.Errorf("manifest: not a JSON object")
	}
	v := &version{rec: rec, sv: sv, entry: e, manifest: man}
	v.created, _ = man["createdUtc"].(string)
	if v.created == "" {
		v.created = rec.PushedAt.UTC().Format(time.RFC3339)
	}
	meta := maps.Clone(man)
	meta["id"] = rec.ID // the registry's view: its own id, not the manifest's name
	meta["createdUtc"] = v.created
	v.meta = refpack.OrderedJSON(meta, refpack.ManifestKeys)
	return v, nil
}

// fresh reloads the index when another process may have changed it: on a
// shared store, when it is older than RefreshEvery. A request that finds a
// reload or a write under way uses the index as it is rather than wait.
func (s *RefPack) fresh(ctx context.Context) {
	if !s.shared {
		return
	}
	s.mu.RLock()
	age := s.now().Sub(s.loadedAt)
	s.mu.RUnlock()
	if age < s.every || !s.writeMu.TryLock() {
		return
	}
	defer s.writeMu.Unlock()
	if err := s.reloadLocked(ctx); err != nil {
		s.log.Warn("reload hosted packages", "err", err)
	}
}

// freshPackage reads one package's versions from a shared store again: what
// a read that found nothing, and every write, does, so that what another
// replica pushed is seen at once. It lists only that package's entries.
func (s *RefPack) freshPackage(ctx context.Context, id string) {
	if !s.shared {
		return
	}
	p := &pkg{id: id, versions: map[string]*version{}}
	err := cache.WalkPrefix(ctx, s.c.Store(), KeyPrefix+id+"@", func(e *cache.Entry) error {
		v, err := versionOf(e)
		if err != nil || v.rec.ID != id {
			return nil
		}
		p.versions[v.rec.Version] = v
		return nil
	})
	if err != nil {
		s.log.Warn("reload hosted package", "id", id, "err", err)
		return
	}
	if len(p.versions) == 0 {
		return
	}
	// Merge, never replace: versions are never unpublished, and a push of
	// this process may have landed after the walk.
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range p.versions {
		addVersion(s.pkgs, v)
	}
}

// find resolves id and version ("" = latest) in the index.
func (s *RefPack) find(id, ver string) (*pkg, *version) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.pkgs[id]
	if p == nil {
		return nil, nil
	}
	if ver == "" {
		l, ok := refpack.Latest(p.infos())
		if !ok {
			return p, nil
		}
		ver = l
	}
	return p, p.versions[ver]
}

// Get answers a GET or HEAD of a hosted package route (the zip, /meta,
// /data, /schema, /changelog, /readme, /versions) in the registry's shapes.
// ver is the request's ?version= ("" for latest); one that is not SemVer is
// the registry's 400.
func (s *RefPack) Get(ctx context.Context, rt refpack.Route, ver string) *Answer {
	id := s.canonical(rt.ID)
	if rt.Sub == refpack.SubVersions {
		return s.versions(ctx, id)
	}
	p, v, refused := s.resolve(ctx, id, ver)
	if refused != nil {
		return refused
	}
	switch rt.Sub {
	case "":
		h, refused := s.zipOf(ctx, v)
		if refused != nil {
			return refused
		}
		return &Answer{Status: http.StatusOK, Hot: h, Body: h.Body}
	case refpack.SubMeta:
		return jsonAnswer(http.StatusOK, v.meta)
	}
	file := refpack.FileName(rt.Sub)
	if file == "" {
		return notFound(id, ver)
	}
	b, err := s.readFile(ctx, v, file)
	if errors.Is(err, fs.ErrNotExist) {
		return errorAnswer(http.StatusNotFound, refpack.ErrTitleFileNotFound, refpack.FileNotFoundMessage(p.id, v.rec.Version, file))
	}
	if err != nil {
		s.log.Error("read hosted package file", "key", v.entry.Key, "file", file, "err", err)
		return errorAnswer(http.StatusInternalServerError, "Internal Server Error", "the stored package cannot be read")
	}
	a := jsonAnswer(http.StatusOK, b)
	a.Header.Set("Content-Type", refpack.DocContentType(rt.Sub))
	return a
}

// Zip is Get of the zip alone, for the cached-hit path: the stored entry, or
// the answer refusing it.
func (s *RefPack) Zip(ctx context.Context, id, ver string) (*cache.Hot, *Answer) {
	_, v, refused := s.resolve(ctx, s.canonical(id), ver)
	if refused != nil {
		return nil, refused
	}
	return s.zipOf(ctx, v)
}

// resolve finds the version a read asks for ("" = latest): on a shared
// store, a version the index lacks is looked for in the store at once.
func (s *RefPack) resolve(ctx context.Context, id, ver string) (*pkg, *version, *Answer) {
	if ver != "" && !refpack.ValidVersion(ver) {
		return nil, nil, errorAnswer(http.StatusBadRequest, refpack.ErrTitleInvalidVersion, refpack.MsgInvalidVersion)
	}
	s.fresh(ctx)
	p, v := s.find(id, ver)
	if v == nil && s.shared {
		s.freshPackage(ctx, id)
		p, v = s.find(id, ver)
	}
	if v == nil {
		return nil, nil, notFound(id, ver)
	}
	return p, v, nil
}

// zipOf is the stored zip of a version.
func (s *RefPack) zipOf(ctx context.Context, v *version) (*cache.Hot, *Answer) {
	h, err := s.c.Lookup(ctx, v.entry.Key)
	if err != nil {
		// The index names it but the store does not (any more): the
		// operator's to restore; never a fetch from anywhere else.
		s.log.Error("hosted package is indexed but not stored", "key", v.entry.Key, "err", err)
		return nil, errorAnswer(http.StatusInternalServerError, "Internal Server Error", "the stored package cannot be read")
	}
	return h, nil
}

// readFile reads one file of a stored zip.
func (s *RefPack) readFile(ctx context.Context, v *version, name string) ([]byte, error) {
	if h, ok := s.c.Memory(v.entry.Key); ok && h.Body != nil {
		return refpack.ReadZipFile(bytes.NewReader(h.Body), int64(len(h.Body)), name)
	}
	b, err := s.c.Open(ctx, v.entry)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	return refpack.ReadZipFile(b, v.entry.Size, name)
}

func (s *RefPack) versions(ctx context.Context, id string) *Answer {
	s.fresh(ctx)
	infos := s.infos(id)
	if len(infos) == 0 && s.shared {
		s.freshPackage(ctx, id)
		infos = s.infos(id)
	}
	if len(infos) == 0 {
		return notFound(id, "")
	}
	refpack.SortNewestFirst(infos)
	return marshalAnswer(http.StatusOK, refpack.VersionsAnswer{PackageID: id, Versions: infos})
}

func (s *RefPack) infos(id string) []refpack.VersionInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if p := s.pkgs[id]; p != nil {
		return p.infos()
	}
	return nil
}

// versionParam reads ?version=: "" for latest, or the registry's 400 when it is
// not SemVer.
func versionParam(query string) (string, *Answer) {
	v := ""
	if query != "" {
		q, err := url.ParseQuery(query)
		if err != nil {
			return "", errorAnswer(http.StatusBadRequest, "Invalid request", "the query string cannot be parsed")
		}
		v = q.Get("version")
	}
	if v == "" {
		return "", nil
	}
	if !refpack.ValidVersion(v) {
		return "", errorAnswer(http.StatusBadRequest, refpack.ErrTitleInvalidVersion, refpack.MsgInvalidVersion)
	}
	return v, nil
}

// Publish stores a pushed package for a hosted owner. zip is the upload,
// staged and already checked with refpack.ValidateZip, which returned man; it
// is moved into the store (the caller still Discards it). keyName labels the
// key in the log line. Answers: 400 for a manifest whose id or version the
// registry could not take, 409 for a version not above every published one,
// 200 {"success": true}.
func (s *RefPack) Publish(ctx context.Context, owner string, zip *cache.Staged, man *refpack.Manifest, keyName string) *Answer {
	owner, ok := s.HostedOwner(owner)
	if !ok {
		return errorAnswer(http.StatusForbidden, "Forbidden", "the owner is not hosted by this mirror")
	}
	if !refpack.ValidID(man.ID) || strings.Contains(man.ID, "/") {
		return validationFailed(fmt.Sprintf("manifest id %q is not a valid package name", clip(man.ID)))
	}
	sv, err := refpack.ParseVersion(man.Version)
	if err != nil {
		return validationFailed(fmt.Sprintf("manifest version %q is not SemVer", clip(man.Version)))
	}
	manifest, err := json.Marshal(man.Raw)
	if err != nil {
		return validationFailed("the manifest cannot be read")
	}
	id := owner + "/" + man.ID

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	// Another replica may have pushed: judge against the store, not a cache.
	s.freshPackage(ctx, id)
	s.mu.RLock()
	var above *version
	if p := s.pkgs[id]; p != nil {
		for _, v := range p.versions {
			if sv.Compare(v.sv) <= 0 && (above == nil || v.sv.Compare(above.sv) > 0) {
				above = v
			}
		}
	}
	s.mu.RUnlock()
	if above != nil {
		return errorAnswer(http.StatusConflict, "Conflict", fmt.Sprintf("Package '%s' version '%s' is not greater than published version '%s'", id, man.Version, above.rec.Version))
	}

	rec := record{ID: id, Version: man.Version, PushedAt: s.now().UTC(), Manifest: manifest}
	meta, _ := json.Marshal(rec)
	e := &cache.Entry{
		Key: entryKey(id, man.Version), Status: http.StatusOK, Class: cache.Immutable,
		FetchedAt: rec.PushedAt, Pinned: true, Hosted: true, Meta: meta,
		Header: http.Header{
			"Content-Type":        {refpack.ContentTypeZip},
			"Content-Disposition": {refpack.ContentDisposition(id, man.Version)},
		},
	}
	v, err := newVersion(rec, e)
	if err != nil {
		return validationFailed(err.Error())
	}
	if _, err := s.c.Put(ctx, e, zip); err != nil {
		s.log.Error("store hosted package", "id", id, "version", man.Version, "err", err)
		return errorAnswer(http.StatusInternalServerError, "Internal Server Error", "the mirror could not store the package")
	}
	s.mu.Lock()
	addVersion(s.pkgs, v)
	s.mu.Unlock()
	s.log.Info("hosted package pushed", "id", id, "version", man.Version, "bytes", e.Size, "key_name", keyName)
	return marshalAnswer(http.StatusOK, map[string]bool{"success": true})
}

func validationFailed(detail string) *Answer {
	return errorAnswer(http.StatusBadRequest, refpack.ErrTitleValidationFailed, refpack.MsgValidationFailed+": "+detail)
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Archive archives one version of a hosted package (query ?version=V) or
// all of them (none); archiving twice is fine. Archived versions leave lists
// and "latest" but still download when asked for.
func (s *RefPack) Archive(ctx context.Context, id, query, keyName string) *Answer {
	id = s.canonical(id)
	ver, bad := versionParam(query)
	if bad != nil {
		return bad
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.freshPackage(ctx, id)
	s.mu.RLock()
	var targets []*version
	if p := s.pkgs[id]; p != nil {
		for _, v := range p.versions {
			if ver == "" || v.rec.Version == ver {
				targets = append(targets, v)
			}
		}
	}
	s.mu.RUnlock()
	if len(targets) == 0 {
		return notFound(id, ver)
	}
	for _, v := range targets {
		if v.rec.Archived {
			continue
		}
		rec := v.rec
		rec.Archived = true
		meta, _ := json.Marshal(rec)
		e := *v.entry
		e.Meta = meta
		if _, err := s.c.Put(ctx, &e, nil); err != nil {
			s.log.Error("archive hosted package", "id", id, "version", rec.Version, "err", err)
			return errorAnswer(http.StatusInternalServerError, "Internal Server Error", "the mirror could not record the archive")
		}
		nv := *v
		nv.rec, nv.entry = rec, &e
		s.mu.Lock()
		addVersion(s.pkgs, &nv)
		s.mu.Unlock()
	}
	s.log.Info("hosted package archived", "id", id, "version", ver, "key_name", keyName)
	if ver == "" {
		return marshalAnswer(http.StatusOK, map[string]any{"success": true, "packageId": id, "message": fmt.Sprintf("Package '%s' (all versions) has been archived", id)})
	}
	return marshalAnswer(http.StatusOK, map[string]any{"success": true, "packageId": id, "version": ver, "message": fmt.Sprintf("Package '%s' version '%s' has been archived", id, ver)})
}

// Packages is the number of hosted packages (for the metric and status page).
func (s *RefPack) Packages() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.pkgs)
}

// Versions is the number of hosted package versions.
func (s *RefPack) Versions() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, p := range s.pkgs {
		n += len(p.versions)
	}
	return n
}

// listing returns one list item per hosted package, as the registry lists
// them (its listed version; see refpack.ListedVersion), and each item's
// manifest fields for tag and filter searches.
func (s *RefPack) listing(ctx context.Context) ([]refpack.ListItem, map[string]map[string]any) {
	s.fresh(ctx)
	s.mu.RLock()
	defer s.mu.RUnlock()
	items := make([]refpack.ListItem, 0, len(s.pkgs))
	fields := make(map[string]map[string]any, len(s.pkgs))
	for id, p := range s.pkgs {
		l, ok := refpack.ListedVersion(p.infos())
		if !ok {
			continue
		}
		v := p.versions[l]
		title, _ := v.manifest["title"].(string)
		desc, _ := v.manifest["description"].(string)
		items = append(items, refpack.ListItem{
			"id": id, "name": title, "description": desc, "version": v.rec.Version,
			"isArchived": v.rec.Archived, "updatedAt": v.created,
		})
		fields[id] = v.manifest
	}
	return items, fields
}
