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
	"fmt"
	"log/slog"
	"maps"
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
		if !refpack.ValidSegment(ow) {
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
