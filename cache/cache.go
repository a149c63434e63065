package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	gojson "github.com/goccy/go-json"
)

// Options bound the tiers.
type Options struct {
	// MemoryBytes bounds the memory tier; 0 disables it.
	MemoryBytes int64
	// MemoryMaxItem is the largest body the memory tier holds.
	MemoryMaxItem int64
	// DiskBytes bounds the blobs on disk; 0 means no limit. Pinned entries are
	// never evicted, so they may hold the store above the limit.
	DiskBytes int64
	// Logger receives eviction and integrity events.
	Logger *slog.Logger
	// SweepUnnamedBlobs removes, once the start-up accounting has read the
	// index, blobs no entry names: what a process killed between committing a
	// blob and recording its entry left. Only for a store this process has to
	// itself (the disk store holds the index lock); in a shared bucket another
	// replica may be between those two steps.
	SweepUnnamedBlobs bool
	// DeferAccounting leaves the start-up size accounting until StartAccounting
	// (or Close) is called.
	DeferAccounting bool
}

// Hot is what a lookup returns: the entry and, for small bodies, the bytes.
type Hot struct {
	Entry *Entry
	Body  []byte // nil when the body is only in the store

	prepOnce sync.Once
	prepared http.Header
}

// Prepared is the header set a 200 answer of h carries (the replayed upstream
// headers, a strong ETag, Content-Length, Accept-Ranges), built once and
// shared: callers copy the map's entries but never change the value slices.
func (h *Hot) Prepared() http.Header {
	h.prepOnce.Do(func() {
		p := make(http.Header, len(h.Entry.Header)+3)
		for k, v := range h.Entry.Header {
			p[k] = v
		}
		if _, ok := p["Content-Type"]; !ok {
			p["Content-Type"] = nil // never sniff: the mirror does not rewrite what the upstream said
		}
		p["Etag"] = []string{h.Entry.StrongETag()}
		p["Content-Length"] = []string{strconv.FormatInt(h.Entry.Size, 10)}
		p["Accept-Ranges"] = []string{"bytes"}
		h.prepared = p
	})
	return h.prepared
}

// hotOverhead is the memory cost charged for an entry beside its body.
const hotOverhead = 512

// Cache layers the memory tier, size accounting and eviction over a Store.
// The store is the source of truth: the memory tier only ever holds copies of
// what the store has, and everything removed from the store is removed from it.
type Cache struct {
	store  Store
	tmpDir string
	opts   Options
	mem    *ristretto.Cache[string, *Hot]
	log    *slog.Logger

	mu       sync.Mutex
	ids      keyHasher
	keys     map[keyID]digest     // every stored key: the blob it names
	lru      map[string]int64     // every key eviction may take: its last use (unix nanos)
	blobs    map[digest]blobState // every named blob
	readers  map[string]int       // digest → open readers; such blobs are not evicted
	diskUsed int64

	evictions atomic.Int64
	loaded    chan struct{}           // closed when the start-up accounting is done
	deleted   map[keyID]bool          // keys deleted while it runs; nil after
	pending   map[string]int          // digests committed whose entry is not yet accounted
	queued    map[string]*queuedWrite // grouped writes not yet committed, by key

	commit committer

	startAccounting func()
}

// New opens the cache over store. tmpDir is where bodies are staged; it must be
// on the store's filesystem for a disk store.
func New(ctx context.Context, store Store, tmpDir string, opts Options) (*Cache, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MemoryMaxItem == 0 {
		opts.MemoryMaxItem = 1 << 20
	}
	c := &Cache{
		store: store, tmpDir: tmpDir, opts: opts, log: opts.Logger,
		ids: newKeyHasher(), keys: map[keyID]digest{}, lru: map[string]int64{}, blobs: map[digest]blobState{},
		readers: map[string]int{}, pending: map[string]int{}, queued: map[string]*queuedWrite{},
	}
	if opts.MemoryBytes > 0 {
		counters := opts.MemoryBytes / 100
		if counters < 1000 {
			counters = 1000
		}
		if counters > 10_000_000 {
			counters = 10_000_000
		}
		mem, err := ristretto.NewCache(&ristretto.Config[string, *Hot]{
			NumCounters: counters,
			MaxCost:     opts.MemoryBytes,
			BufferItems: 64,
			Metrics:     true,
			OnEvict:     func(*ristretto.Item[*Hot]) { c.evictions.Add(1) },
		})
		if err != nil {
			return nil, fmt.Errorf("memory tier: %w", err)
		}
		c.mem = mem
	}
	// Size accounting reads every entry; it runs in the background so a start
	// with a large index is ready at once. Eviction waits for it.
	c.loaded = make(chan struct{})
	c.deleted = map[keyID]bool{}
	c.startAccounting = sync.OnceFunc(func() { go c.loadAccounting(context.WithoutCancel(ctx)) })
	if !opts.DeferAccounting {
		c.startAccounting()
	}
	return c, nil
}

// StartAccounting starts the start-up size accounting deferred by
// Options.DeferAccounting (a start-up that wants both cores for itself first).
// Calling it more than once is harmless.
func (c *Cache) StartAccounting() { c.startAccounting() }

func (c *Cache) loadAccounting(ctx context.Context) {
	defer close(c.loaded)
	err := c.accountingWalk(ctx, func(r *accountRecord) error {
		id := c.ids.idBytes(r.key)
		c.mu.Lock()
		defer c.mu.Unlock()
		// A key written or deleted since the walk began is already right.
		if _, ok := c.keys[id]; ok || c.deleted[id] {
			return nil
		}
		var key string
		if r.evictable {
			key = string(r.key)
		}
		c.accountKey(id, key, r.evictable, r.digest, r.size, r.fetchedAt)
		return nil
	})
	c.mu.Lock()
	c.deleted = nil
	c.mu.Unlock()
	if err != nil {
		c.log.Error("load index for size accounting", "err", err)
		return
	}
	if c.opts.SweepUnnamedBlobs {
		c.sweepUnnamedBlobs(ctx)
	}
	c.evict(ctx)
}

// sweepUnnamedBlobs deletes blobs that no accounted entry names and no fill is
// about to name.
func (c *Cache) sweepUnnamedBlobs(ctx context.Context) {
	var orphans []string
	err := c.store.Blobs(ctx, func(d string, _ int64) error {
		c.mu.Lock()
		unnamed := c.blobs[digestOf(d)].refs == 0 && c.pending[d] == 0
		c.mu.Unlock()
		if unnamed {
			orphans = append(orphans, d)
		}
		return nil
	})
	if err != nil {
		c.log.Error("sweep unnamed blobs", "err", err)
		return
	}
	for _, d := range orphans {
		// The check and the unlink are one step under c.mu, as in
		// dropReplaced: a fill placing these very bytes again (a client
		// retrying what a crash cut off) marks them pending under c.mu first,
		// so it either keeps this blob or places its own after the unlink.
		c.mu.Lock()
		still := c.blobs[digestOf(d)].refs == 0 && c.pending[d] == 0
		var err error
		if still {
			err = c.store.DeleteBlob(ctx, d)
		}
		c.mu.Unlock()
		if err != nil {
			c.log.Error("sweep unnamed blobs", "digest", d, "err", err)
			return
		}
		if still {
			c.log.Info("removed a blob no entry names (left by an interrupted write)", "digest", d)
		}
	}
}

// accountRecord is what size accounting reads of one stored entry.
type accountRecord struct {
	key       []byte // valid only during the call it is handed to
	digest    digest
	size      int64
	fetchedAt int64 // unix nanos: the last use of an entry not used since the start
	evictable bool  // neither pinned nor hosted
}

// accountingWalk reads only what size accounting needs of each entry when the
// store can hand over raw records, which is most of the cost of a large index.
func (c *Cache) accountingWalk(ctx context.Context, fn func(*accountRecord) error) error {
	rw, ok := c.store.(RawPrefixWalker)
	if !ok {
		return c.store.Entries(ctx, func(e *Entry) error {
			return fn(&accountRecord{key: []byte(e.Key), digest: digestOf(e.Digest), size: e.Size,
				fetchedAt: e.FetchedAt.UnixNano(), evictable: evictable(e)})
		})
	}
	var r accountRecord
	return rw.RawEntriesWithPrefix(ctx, "", func(key, rec []byte) error {
		// The record's key is the store's key: not decoded again.
		var e struct {
			Digest    string    `json:"digest"`
			Size      int64     `json:"size"`
			FetchedAt time.Time `json:"fetchedAt"`
			Pinned    bool      `json:"pinned"`
			Hosted    bool      `json:"hosted"`
		}
		if err := gojson.Unmarshal(rec, &e); err != nil {
			return err
		}
		r = accountRecord{key: key, digest: digestOf(e.Digest), size: e.Size, fetchedAt: e.FetchedAt.UnixNano(),
			evictable: !e.Pinned && !e.Hosted}
		return fn(&r)
	})
}

// evictable says whether eviction may take e: never a pinned or hosted entry.
func evictable(e *Entry) bool { return !e.Pinned && !e.Hosted }

// Reload drops key from the memory tier and looks it up in the store again:
// another replica may have written a newer entry.
func (c *Cache) Reload(ctx context.Context, key string) (*Hot, error) {
	if c.mem != nil {
		c.mem.Del(key)
	}
	return c.Lookup(ctx, key)
}

// WaitLoaded blocks until the start-up size accounting has read the index.
func (c *Cache) WaitLoaded() { <-c.loaded }

// account records e's blob in the size bookkeeping, last used at lastUse;
// c.mu must be held. It returns the digest of the blob e's key named before,
// when no entry names it any more (see dropReplaced).
func (c *Cache) account(e *Entry, lastUse int64) (replaced string) {
	return c.accountKey(c.ids.id(e.Key), e.Key, evictable(e), digestOf(e.Digest), e.Size, lastUse)
}

// accountKey is account for the key with ID id, named key (which may be ""
// when it is not evictable and not accounted yet), naming blob d.
func (c *Cache) accountKey(id keyID, key string, evictable bool, d digest, size, lastUse int64) (replaced string) {
	if _, ok := c.keys[id]; ok {
		if old, orphaned := c.unaccountID(id, key); orphaned && old != d {
			replaced = old.String()
		}
	}
	c.keys[id] = d
	if evictable {
		c.lru[key] = lastUse
	}
	b := c.blobs[d]
	if b.refs == 0 {
		c.diskUsed += size
		b.size = size
	}
	b.refs++
	c.blobs[d] = b
	return replaced
}

// dropReplaced removes the blob an entry named before it was rewritten with
// other bytes (a refreshed list, a sync record), once no entry names it and
// no reader or write holds it; otherwise the start-up sweep takes it. Only a
// store whose blobs are this process's alone is swept (SweepUnnamedBlobs): a
// shared bucket's blobs may be named by other replicas' entries.
func (c *Cache) dropReplaced(ctx context.Context, digest string) {
	if digest == "" || !c.opts.SweepUnnamedBlobs {
		return
	}
	// The check and the unlink are one step under c.mu: a write of the same
	// bytes marks its digest pending under c.mu before it renames the blob
	// into place, so it either keeps this blob or places its own after.
	// (Only the local disk gets here: an unlink, not a network call.)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.blobs[digestOf(digest)].refs > 0 || c.readers[digest] > 0 || c.pending[digest] > 0 {
		return
	}
	if err := c.store.DeleteBlob(ctx, digest); err != nil {
		c.log.Warn("remove a replaced blob", "digest", digest, "err", err)
	}
}

// uncount takes one from k's count in m, dropping k at zero: the counts of
// blobs being read or written (readers, pending, placing), which stay small
// maps.
func uncount(m map[string]int, k string) {
	if m[k]--; m[k] <= 0 {
		delete(m, k)
	}
}

// unaccount reverses account for key and returns the digest of a blob that no
// entry names any more ("" when it is still named).
func (c *Cache) unaccount(key string) string {
	if d, orphaned := c.unaccountID(c.ids.id(key), key); orphaned {
		return d.String()
	}
	return ""
}

// unaccountID is unaccount for the key with ID id, named key: the blob the key
// named, and whether no entry names it any more.
func (c *Cache) unaccountID(id keyID, key string) (digest, bool) {
	d, ok := c.keys[id]
	if !ok {
		return d, false
	}
	delete(c.keys, id)
	delete(c.lru, key)
	b := c.blobs[d]
	if b.refs--; b.refs <= 0 {
		delete(c.blobs, d)
		c.diskUsed -= b.size
		return d, true
	}
	c.blobs[d] = b
	return d, false
}

// Store is the backend under the cache.
func (c *Cache) Store() Store { return c.store }

// Lookup returns what is stored under key: from memory when it is there, else
// from the store (and then remembered in memory). Absent keys wrap ErrNotFound.
func (c *Cache) Lookup(ctx context.Context, key string) (*Hot, error) {
	if h, ok := c.Memory(key); ok {
		return h, nil
	}
	if h, ok := c.queuedHot(key); ok {
		return h, nil
	}
	e, err := c.store.Entry(ctx, key)
	if err != nil {
		return nil, err
	}
	h := &Hot{Entry: e}
	if c.mem != nil && e.Size <= c.opts.MemoryMaxItem {
		body, err := c.ReadAll(ctx, e)
		if err != nil {
			if errors.Is(err, ErrNotFound) || errors.Is(err, ErrDigestMismatch) {
				return nil, fmt.Errorf("entry %q: %w", key, ErrNotFound)
			}
			return nil, err
		}
		h.Body = body
	}
	c.remember(h)
	c.touch(key)
	return h, nil
}

func (c *Cache) remember(h *Hot) {
	if c.mem == nil {
		return
	}
	c.mem.Set(h.Entry.Key, h, int64(len(h.Body))+hotOverhead)
}

func (c *Cache) touch(key string) {
	now := time.Now().UnixNano()
	c.mu.Lock()
	if _, ok := c.lru[key]; ok {
		c.lru[key] = now
	}
	c.mu.Unlock()
}

// Stage writes r to a temporary file, hashing it; see Stage. For the disk
// store the file has no name until it is committed (StageUnnamed).
func (c *Cache) Stage(r io.Reader, maxSize int64, want string) (*Staged, error) {
	if _, ok := c.store.(*Disk); ok {
		return StageUnnamed(c.tmpDir, r, maxSize, want)
	}
	return Stage(c.tmpDir, r, maxSize, want)
}

// Put commits s (when not nil) and records e, then evicts if the disk limit is
// passed. e.Digest and e.Size are taken from s. It returns once both are
// durable, unless ctx carries a Group (see WithGroup): then once they are
// queued for the group's next round.
func (c *Cache) Put(ctx context.Context, e *Entry, s *Staged) (*Hot, error) {
	if g := groupOf(ctx); g != nil {
		if gs, ok := c.store.(GroupStore); ok {
			return c.putGrouped(ctx, gs, g, e, s)
		}
	}
	c.settle(e.Key)
	var body []byte
	// release ends the blob's protection from the orphan sweep and from Delete;
	// it must run before evict, which may remove this very entry (a body larger
	// than the disk limit) and must then remove its blob too.
	release := func() {}
	if s != nil {
		e.Digest, e.Size = s.Digest, s.Size
		if c.mem != nil && s.Size <= c.opts.MemoryMaxItem {
			// Keep the bytes for the memory tier before the staged file is moved.
			body, _ = io.ReadAll(s.Reader())
		}
		// Between the commit and the accounting below the blob is named by no
		// entry; the orphan sweep must leave it alone.
		c.mu.Lock()
		c.pending[e.Digest]++
		c.mu.Unlock()
		digest, released := e.Digest, false
		release = func() {
			if released {
				return
			}
			released = true
			c.mu.Lock()
			uncount(c.pending, digest)
			c.mu.Unlock()
		}
		defer release()
		if err := c.store.Commit(ctx, s); err != nil {
			return nil, err
		}
	}
	if c.mem != nil {
		// Del is applied at once; the following Set may be dropped, never reordered before it.
		c.mem.Del(e.Key)
	}
	c.awaitDurable(e.Digest)
	if err := c.store.PutEntry(ctx, e); err != nil {
		return nil, err
	}
	c.mu.Lock()
	replaced := c.account(e, time.Now().UnixNano())
	c.mu.Unlock()
	release()
	c.dropReplaced(ctx, replaced)
	h := &Hot{Entry: e, Body: body}
	if c.mem != nil && e.Size <= c.opts.MemoryMaxItem && s == nil {
		// A refreshed entry keeps its body; read it back for the memory tier.
		if body, err := c.ReadAll(ctx, e); err == nil {
			h.Body = body
		}
	}
	c.remember(h)
	c.evict(ctx)
	return h, nil
}

// PutBody is Put for a body already in memory (small, derived answers).
func (c *Cache) PutBody(ctx context.Context, e *Entry, body []byte) (*Hot, error) {
	s, err := c.Stage(bytesReader(body), 0, "")
	if err != nil {
		return nil, err
	}
	defer s.Discard()
	h, err := c.Put(ctx, e, s)
	if err != nil {
		return nil, err
	}
	if c.mem != nil && int64(len(body)) <= c.opts.MemoryMaxItem {
		h.Body = body
		c.remember(h)
	}
	return h, nil
}

// Open opens the body of e. A blob that is missing or fails its digest check
// drops the entry (so the next request refetches it) and wraps ErrNotFound.
func (c *Cache) Open(ctx context.Context, e *Entry) (Blob, error) {
	b, err := c.store.Open(ctx, e.Digest)
	if err != nil {
		if e.Hosted && (errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrNotFound)) {
			// The only copy: keep the entry for the operator to restore the blob.
			c.log.Error("stored blob of a hosted entry is missing or corrupt; kept, restore it from a backup", "key", e.Key, "digest", e.Digest, "err", err)
			return nil, fmt.Errorf("entry %q: %w", e.Key, err)
		}
		if errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrNotFound) {
			c.log.Error("stored blob is missing or corrupt; dropping its entry", "key", e.Key, "digest", e.Digest, "err", err)
			c.Delete(ctx, e.Key)
			if errors.Is(err, ErrDigestMismatch) {
				c.store.DeleteBlob(ctx, e.Digest)
			}
			return nil, fmt.Errorf("entry %q: %w", e.Key, ErrNotFound)
		}
		return nil, err
	}
	c.mu.Lock()
	c.readers[e.Digest]++
	c.mu.Unlock()
	return &trackedBlob{Blob: b, release: func() {
		c.mu.Lock()
		uncount(c.readers, e.Digest)
		c.mu.Unlock()
	}}, nil
}

// ReadAll returns the whole body of e.
func (c *Cache) ReadAll(ctx context.Context, e *Entry) ([]byte, error) {
	b, err := c.Open(ctx, e)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	buf := make([]byte, e.Size)
	if _, err := io.ReadFull(b, buf); err != nil {
		return nil, fmt.Errorf("read %s: %w", e.Key, err)
	}
	return buf, nil
}

// Delete removes the entry under key (its blob goes when nothing else names it).
func (c *Cache) Delete(ctx context.Context, key string) error {
	c.settle(key)
	if c.mem != nil {
		c.mem.Del(key)
	}
	if err := c.store.DeleteEntry(ctx, key); err != nil {
		return err
	}
	c.mu.Lock()
	if c.deleted != nil {
		c.deleted[c.ids.id(key)] = true
	}
	orphan := c.unaccount(key)
	// A write about to name the same blob (a grouped one waits for its round)
	// needs it as much as a reader does.
	busy := c.readers[orphan] > 0 || c.pending[orphan] > 0
	c.mu.Unlock()
	if orphan != "" && !busy {
		return c.store.DeleteBlob(ctx, orphan)
	}
	return nil
}

// evict removes least-recently-used unpinned entries until the disk limit holds.
func (c *Cache) evict(ctx context.Context) {
	if c.opts.DiskBytes <= 0 {
		return
	}
	select {
	case <-c.loaded:
	default:
		return // sizes are not known yet; loadAccounting evicts when done
	}
	c.mu.Lock()
	if c.diskUsed <= c.opts.DiskBytes {
		c.mu.Unlock()
		return
	}
	type cand struct {
		key string
		at  int64
	}
	// Only keys eviction may take are candidates: pinned and hosted entries
	// are not even remembered by name.
	cands := make([]cand, 0, len(c.lru))
	for k, at := range c.lru {
		cands = append(cands, cand{k, at})
	}
	c.mu.Unlock()
	sort.Slice(cands, func(i, j int) bool { return cands[i].at < cands[j].at })
	for _, cd := range cands {
		c.mu.Lock()
		over := c.diskUsed > c.opts.DiskBytes
		c.mu.Unlock()
		if !over {
			return
		}
		e, err := c.store.Entry(ctx, cd.key)
		if err != nil || e.Pinned || e.Hosted {
			continue
		}
		c.mu.Lock()
		busy := c.readers[e.Digest] > 0
		c.mu.Unlock()
		if busy {
			continue
		}
		if err := c.Delete(ctx, cd.key); err != nil {
			c.log.Warn("evict", "key", cd.key, "err", err)
			continue
		}
		c.evictions.Add(1)
		c.log.Debug("evicted", "key", cd.key, "size", e.Size)
	}
}

// Stats are the figures the metrics and status page show.
type Stats struct {
	DiskBytes, DiskEntries int64
	MemoryBytes            int64
	MemoryEntries          int64
	Evictions              int64
}

// Stats reports the current sizes.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	s := Stats{DiskBytes: c.diskUsed, DiskEntries: int64(len(c.keys)), Evictions: c.evictions.Load()}
	c.mu.Unlock()
	if c.mem != nil && c.mem.Metrics != nil {
		m := c.mem.Metrics
		s.MemoryBytes = int64(m.CostAdded() - m.CostEvicted())
		s.MemoryEntries = int64(m.KeysAdded() - m.KeysEvicted())
	}
	return s
}

// Close closes the memory tier and the store.
func (c *Cache) Close() error {
	c.stopCommitter()
	c.startAccounting() // a deferred accounting that never ran must not block Close
	<-c.loaded
	if c.mem != nil {
		c.mem.Close()
	}
	return c.store.Close()
}

type trackedBlob struct {
	Blob
	once    sync.Once
	release func()
}

// Unwrap returns the backend's blob, e.g. an *os.File that net/http can sendfile.
func (t *trackedBlob) Unwrap() Blob { return t.Blob }

// Close releases the blob.
func (t *trackedBlob) Close() error {
	t.once.Do(t.release)
	return t.Blob.Close()
}
