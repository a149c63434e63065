// Package catalogue is the mirror's knowledge of the Hydrilla items it holds:
// what it remembers of each stored item version (Meta), the per-upstream
// lists it can answer itself, the /query pattern index, and which upstreams
// have a complete sync. It reads the store; it never fetches.
package catalogue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gojson "github.com/goccy/go-json"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/engine"
	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/pattern"
	"github.com/regmirror/regmirror/upstream"
)

// ItemMeta is what the mirror remembers of a stored Hydrilla item version
// (cache.Entry.Meta), so /list_all and the /query index are rebuilt at start
// from the index of entries alone.
type ItemMeta struct {
	Type       string           `json:"type"`
	Identifier string           `json:"identifier"`
	LongName   string           `json:"long_name"`
	Version    hydrilla.Version `json:"version"`
	Revision   int              `json:"revision,omitempty"`
	Patterns   []string         `json:"patterns,omitempty"`
	Files      []string         `json:"files,omitempty"`
}

// MetaOf is the Meta kept with a stored item version.
func MetaOf(it *hydrilla.Item) json.RawMessage {
	m := ItemMeta{Type: it.Type, Identifier: it.Identifier, LongName: it.LongName, Version: it.Version.Normalize(),
		Revision: it.Revision, Patterns: it.Patterns}
	for _, f := range it.Files {
		m.Files = append(m.Files, f.SHA256)
	}
	b, _ := json.Marshal(m)
	return b
}

// ParseMeta reads a stored item version's Meta; ok is false when it has none.
// It uses go-json, which decodes these records as encoding/json does, at
// about twice its speed: a sync parses the Meta of every item version it
// stores. (Start-up reads them with a scanner of their own: decodeMetas.)
func ParseMeta(raw json.RawMessage) (ItemMeta, bool) {
	var m ItemMeta
	if len(raw) == 0 || gojson.Unmarshal(raw, &m) != nil || m.Identifier == "" {
		return m, false
	}
	return m, true
}

// heldItem is what the catalogue keeps of one item version: its Meta without
// the file list (liteMeta), and where it came from. The map holds pointers,
// so the items loaded at start live in a few large blocks.
type heldItem struct {
	meta     liteMeta
	upstream string
}

// mappingVal is one mapping version in the query index.
type mappingVal struct {
	id, longName string
	version      hydrilla.Version
}

// Catalogue is the mirror's knowledge of the Hydrilla items it holds: the
// per-upstream lists it can answer itself, the pattern index, and which
// upstreams have a complete sync.
type Catalogue struct {
	mu    sync.Mutex
	items map[string]*heldItem // by item cache key; the values are never changed
	syncs map[string]time.Time

	index     atomic.Pointer[pattern.Index[*mappingVal]]
	ignore    atomic.Bool // see IgnoreNotes
	dirty     chan struct{}
	onBuilt   func(patterns int)
	lastBuild atomic.Int64 // nanoseconds the last index build took
}

// New is an empty catalogue; onBuilt, when set, is told the size of every
// index built.
func New(onBuilt func(int)) *Catalogue {
	c := &Catalogue{items: map[string]*heldItem{}, syncs: map[string]time.Time{}, dirty: make(chan struct{}, 1), onBuilt: onBuilt}
	empty, _ := pattern.Build[*mappingVal](nil)
	c.index.Store(empty)
	return c
}

// Load reads what the store holds and builds the index. With a store that
// keeps compact Meta records (most of a large mirror's start-up) the index is
// built while they are still being decoded.
func (c *Catalogue) Load(ctx context.Context, st cache.Store) error {
	var ix *pattern.Index[*mappingVal]
	if mw, ok := st.(cache.MetaWalker); ok {
		// lastBuild stays unset: this build ran alongside the decoding, and
		// its time says nothing of a rebuild's.
		var err error
		if ix, err = c.loadMetas(ctx, mw, true); err != nil {
			return err
		}
	} else if err := c.loadItems(ctx, st); err != nil {
		return err
	}
	err := cache.WalkPrefix(ctx, st, engine.Prefix(engine.KindHydrillaSync), func(e *cache.Entry) error {
		c.syncs[strings.TrimPrefix(e.Key, engine.Prefix(engine.KindHydrillaSync))] = e.FetchedAt
		return nil
	})
	if err != nil {
		return err
	}
	if ix == nil {
		c.Rebuild()
		return nil
	}
	c.index.Store(ix)
	if c.onBuilt != nil {
		c.onBuilt(ix.Len())
	}
	return nil
}

// loadItems reads every stored item version's identity and patterns: from the
// store's compact Meta records when it keeps them, else from the entries.
func (c *Catalogue) loadItems(ctx context.Context, st cache.Store) error {
	if mw, ok := st.(cache.MetaWalker); ok {
		_, err := c.loadMetas(ctx, mw, false)
		return err
	}
	return cache.WalkPrefix(ctx, st, engine.Prefix(engine.KindHydrillaItem), func(e *cache.Entry) error {
		if m, ok := ParseMeta(e.Meta); ok {
			c.items[e.Key] = &heldItem{meta: m.lite(), upstream: e.Upstream}
		}
		return nil
	})
}

// liteMeta is what the catalogue keeps of an item's Meta: no file lists, so
// they are not even allocated while a large store loads.
type liteMeta struct {
	Type       string           `json:"type"`
	Identifier string           `json:"identifier"`
	LongName   string           `json:"long_name"`
	Version    hydrilla.Version `json:"version"`
	Revision   int              `json:"revision,omitempty"`
	Patterns   []string         `json:"patterns,omitempty"`
}

func (m ItemMeta) lite() liteMeta {
	return liteMeta{Type: m.Type, Identifier: m.Identifier, LongName: m.LongName, Version: m.Version,
		Revision: m.Revision, Patterns: m.Patterns}
}

// loadedBatch is what one batch of Meta records decoded to: item versions
// and the mapping values for the index.
type loadedBatch struct {
	seq      int
	keys     []string // of the items
	items    []heldItem
	mappings []mappingVal    // one per item of type mapping, in order
	parsed   *parsedPatterns // when the index is built: the mappings' patterns
}

// loadMetas is loadItems over a store's compact Meta records, decoded on every
// core. With build, it also builds the pattern index of the mappings, in key
// order, on a goroutine of its own while the records are decoded, and
// returns it.
func (c *Catalogue) loadMetas(ctx context.Context, mw cache.MetaWalker, build bool) (*pattern.Index[*mappingVal], error) {
	workers := runtime.GOMAXPROCS(0)
	// A walk of the keys alone counts the records, so that the tables are
	// made at their size rather than grown (which takes about twice as
	// long). It runs beside the walk that decodes them, and what keeps them
	// waits for the count, so that nothing waits for it at the start.
	nItems, nMappings := 0, 0
	prefix := engine.Prefix(engine.KindHydrillaItem)
	mappingPrefix := []byte(prefix + hydrilla.TypeMapping + "/")
	counted := make(chan struct{})
	var countErr error
	go func() {
		defer close(counted)
		countErr = mw.MetaKeys(ctx, prefix, func(key []byte) error {
			nItems++
			if bytes.HasPrefix(key, mappingPrefix) {
				nMappings++
			}
			return nil
		})
	}()
	toItems, toIndex := make(chan *loadedBatch, 1024), make(chan *loadedBatch, 1024)
	itemsDone, ixBuilt := make(chan struct{}), make(chan *pattern.Index[*mappingVal], 1)
	go func() {
		defer close(itemsDone)
		<-counted
		c.mu.Lock()
		if len(c.items) == 0 {
			c.items = make(map[string]*heldItem, nItems)
		}
		c.mu.Unlock()
		for lb := range toItems {
			c.mu.Lock()
			for i, k := range lb.keys {
				c.items[k] = &lb.items[i]
			}
			c.mu.Unlock()
		}
	}()
	if build {
		go func() {
			<-counted
			// A mapping has a few patterns; 3 is a fair guess to size by.
			ixBuilt <- indexBatches(toIndex, 3*nMappings, workers)
		}()
	}
	err := mw.MetaBatches(ctx, prefix, workers, func(seq int, batch []cache.MetaRecord) error {
		lb, err := decodeMetas(batch, build)
		if err != nil {
			return err
		}
		lb.seq = seq
		toItems <- lb
		if build {
			toIndex <- lb
		}
		return nil
	})
	close(toItems)
	close(toIndex)
	<-itemsDone
	var ix *pattern.Index[*mappingVal]
	if build {
		ix = <-ixBuilt
	}
	if err == nil {
		err = countErr // the items and the index waited for the count
	}
	if err != nil {
		return nil, err
	}
	return ix, nil
}

// indexBatches builds the index of the mappings in the batches it receives,
// adding them in batch order (the order of their keys), on shards
// goroutines: the index build is the longest part of a large store's
// start-up, and the shards divide it (see pattern.Shards).
func indexBatches(in <-chan *loadedBatch, hint, shards int) *pattern.Index[*mappingVal] {
	s := pattern.NewShards[*mappingVal](shards, hint)
	outs := make([]chan *loadedBatch, shards)
	var wg sync.WaitGroup
	for i := range outs {
		outs[i] = make(chan *loadedBatch, cap(in))
		wg.Go(func() {
			b := s.Shard(i)
			for lb := range outs[i] {
				for _, bp := range lb.parsed.list {
					b.AddParsed(bp.p, &lb.mappings[bp.mapping])
				}
				lb.parsed.done()
			}
		})
	}
	send := func(lb *loadedBatch) {
		lb.parsed.left.Store(int32(shards))
		for _, out := range outs {
			out <- lb
		}
	}
	held := map[int]*loadedBatch{}
	next := 0
	for lb := range in {
		held[lb.seq] = lb
		for {
			lb, ok := held[next]
			if !ok {
				break
			}
			delete(held, next)
			send(lb)
			next++
		}
	}
	// After an error, batches may be missing: what came is added all the same
	// (the index is then thrown away).
	for len(held) > 0 {
		if lb, ok := held[next]; ok {
			delete(held, next)
			send(lb)
		}
		next++
	}
	for _, out := range outs {
		close(out)
	}
	wg.Wait()
	return s.Index()
}

// IgnoreNotes makes Note keep nothing: for a process that only syncs
// (regmirror sync), which never answers from the catalogue. A sync of a large
// repository would otherwise hold every item version it stores in memory (a
// few hundred megabytes at 100,000 mappings) and rebuild the pattern index as
// it goes; the serve that opens the store later reads them from there.
func (c *Catalogue) IgnoreNotes() { c.ignore.Store(true) }

// Note records a stored item version and schedules an index rebuild when
// it is a mapping.
func (c *Catalogue) Note(e *cache.Entry) {
	if m, ok := ParseMeta(e.Meta); ok {
		c.NoteMeta(e, m)
	}
}

// NoteMeta is Note for a caller that has parsed e.Meta already (m): a sync,
// which needs the files an item names too, parses it once.
func (c *Catalogue) NoteMeta(e *cache.Entry, m ItemMeta) {
	if c.ignore.Load() {
		return
	}
	c.mu.Lock()
	c.items[e.Key] = &heldItem{meta: m.lite(), upstream: e.Upstream}
	c.mu.Unlock()
	if m.Type == hydrilla.TypeMapping {
		select {
		case c.dirty <- struct{}{}:
		default:
		}
	}
}

// HoldsAll reports whether every item version l names is held: then a stored
// /list_all may answer as it is, rather than a list rebuilt from held items.
func (c *Catalogue) HoldsAll(l *hydrilla.List) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ref := range l.Refs() {
		ref.Version = ref.Version.Normalize()
		if _, ok := c.items[string(engine.HydrillaItem(ref))]; !ok {
			return false
		}
	}
	return true
}

// Patterns is the number of URL patterns in the index.
func (c *Catalogue) Patterns() int { return c.index.Load().Len() }

// Syncs returns when each upstream's last complete sync ended.
func (c *Catalogue) Syncs() map[string]time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.syncs)
}

// Run rebuilds the index after changes, at most a few times a second, so a
// sync of thousands of mappings builds it a handful of times, not per item.
func (c *Catalogue) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.dirty:
			// Wait longer the longer a build takes, so a sync of a large
			// repository spends a bounded share of its time rebuilding.
			select {
			case <-ctx.Done():
				return
			case <-time.After(max(200*time.Millisecond, 10*time.Duration(c.lastBuild.Load()))):
			}
			c.Rebuild()
		}
	}
}

// Rebuild builds a new index from every held mapping version and swaps it in;
// queries never see a half-built index.
func (c *Catalogue) Rebuild() {
	c.mu.Lock()
	// In key order, as the start-up load adds them: the order of equally
	// specific matches in /query must not change with a rebuild.
	keys := make([]string, 0, len(c.items))
	for k, h := range c.items {
		if h.meta.Type == hydrilla.TypeMapping {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var items []pattern.Item[*mappingVal]
	for _, k := range keys {
		h := c.items[k]
		v := &mappingVal{id: h.meta.Identifier, longName: h.meta.LongName, version: h.meta.Version}
		for _, p := range h.meta.Patterns {
			items = append(items, pattern.Item[*mappingVal]{Pattern: p, Value: v})
		}
	}
	c.mu.Unlock()
	start := time.Now()
	ix, _ := pattern.Build(items)
	c.index.Store(ix)
	c.lastBuild.Store(int64(time.Since(start)))
	if c.onBuilt != nil {
		c.onBuilt(ix.Len())
	}
}

// Query answers a URL from the index: most specific first, each mapping once
// at its first position, with its newest version among those that match.
func (c *Catalogue) Query(u pattern.Pattern) []hydrilla.QueryMapping {
	vals := c.index.Load().Match(u)
	pos := map[string]int{}
	out := []hydrilla.QueryMapping{}
	for _, v := range vals {
		if i, ok := pos[v.id]; ok {
			if v.version.Compare(out[i].Version) > 0 {
				out[i].Version, out[i].LongName = v.version, v.longName
			}
			continue
		}
		pos[v.id] = len(out)
		out = append(out, hydrilla.QueryMapping{Identifier: v.id, LongName: v.longName, Version: v.version})
	}
	return out
}

// HeldList is the /list_all of the held item versions that came from one of
// the failing upstreams, or from none of the configured ones. Item versions
// are stored by (type, identifier, version), not by upstream, and the mirror
// serves every held one on its item routes, whatever upstream filled it: a
// cache filled through another URL (the host moved, credentials were added,
// `regmirror sync` was run with another upstream) is as much what the mirror
// can serve as one filled through the configured URL, so an upstream that
// fails is stood in for by those too. What came from an upstream that answers
// is left to that upstream's own list, which may have dropped it.
func (c *Catalogue) HeldList(failing, configured []string) *hydrilla.List {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := &hydrilla.List{}
	for _, h := range c.items {
		if !slices.Contains(failing, h.upstream) && slices.Contains(configured, h.upstream) {
			continue
		}
		e := hydrilla.ListEntry{Identifier: h.meta.Identifier, LongName: h.meta.LongName, Version: h.meta.Version}
		if h.meta.Type == hydrilla.TypeResource {
			rev := h.meta.Revision
			e.Revision = &rev
			l.Resources = append(l.Resources, e)
		} else {
			l.Mappings = append(l.Mappings, e)
		}
	}
	return l
}

// Synced reports whether every upstream has a complete sync that the policy
// still counts as current.
func (c *Catalogue) Synced(ups []*upstream.Upstream, p *engine.Policy, syncInterval time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(ups) == 0 {
		return false
	}
	for _, u := range ups {
		at, ok := c.syncs[u.Base]
		if !ok || !p.SyncCurrent(at, syncInterval) {
			return false
		}
	}
	return true
}

// MarkSynced records a complete sync of an upstream that ended at at.
func (c *Catalogue) MarkSynced(base string, at time.Time) {
	c.mu.Lock()
	c.syncs[base] = at
	c.mu.Unlock()
}

// Size is the number of held item versions.
func (c *Catalogue) Size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

// Newest returns the cache key of the newest held version of an item, or "".
func (c *Catalogue) Newest(typ, id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var best string
	var bestV hydrilla.Version
	for k, h := range c.items {
		if h.meta.Type == typ && h.meta.Identifier == id && (best == "" || h.meta.Version.Compare(bestV) > 0) {
			best, bestV = k, h.meta.Version
		}
	}
	return best
}

// RefreshFromStore brings the catalogue up to date with the syncs other
// processes recorded in a shared store (replicas, `regmirror sync`): when an
// upstream's sync record there is newer than the one this replica knows, it
// reads the item records again and rebuilds the index. One entry read per
// upstream when nothing changed.
func (c *Catalogue) RefreshFromStore(ctx context.Context, st cache.Store, bases []string) error {
	newer := false
	for _, base := range bases {
		e, err := st.Entry(ctx, string(engine.HydrillaSync(base)))
		if errors.Is(err, cache.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		c.mu.Lock()
		newer = newer || e.FetchedAt.After(c.syncs[base])
		c.mu.Unlock()
	}
	if !newer {
		return nil
	}
	fresh := New(nil)
	if err := fresh.loadItems(ctx, st); err != nil {
		return err
	}
	syncs := map[string]time.Time{}
	if err := cache.WalkPrefix(ctx, st, engine.Prefix(engine.KindHydrillaSync), func(e *cache.Entry) error {
		syncs[strings.TrimPrefix(e.Key, engine.Prefix(engine.KindHydrillaSync))] = e.FetchedAt
		return nil
	}); err != nil {
		return err
	}
	c.mu.Lock()
	maps.Copy(c.items, fresh.items)
	for k, at := range syncs {
		if at.After(c.syncs[k]) {
			c.syncs[k] = at
		}
	}
	c.mu.Unlock()
	c.Rebuild()
	return nil
}
