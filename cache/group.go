package cache

import (
	"context"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// GroupStore is an optional ability of a Store: writes whose durability is
// paid once for many. A blob is placed (readable at once, not yet durable),
// then a round makes every blob of a group durable together and records the
// group's entries in one atomic step. The disk store has it; a store whose
// blob commit is durable by itself (an S3 PUT) does not need it.
type GroupStore interface {
	// Place moves a staged body into the store under its digest without
	// waiting for it to be durable. Placing a digest already placed is not an
	// error.
	Place(ctx context.Context, s *Staged) error
	// Persist makes the blobs placed under these digests durable.
	Persist(ctx context.Context, digests []string) error
	// PutEntries records all of es in one atomic step (all or none). Each
	// blob they name must already be durable.
	PutEntries(ctx context.Context, es []*Entry) error
}

// Group is a set of writes that share their durability: why a sync costs
// about its downloads rather than a round of fsyncs and an index transaction
// per object (design.md, "Sync at the speed of the network").
//
// On a store that can commit in rounds (a GroupStore: the disk store), a Put
// made with a context carrying a group (WithGroup) returns as soon as
// its blob is in place and its entry is queued; the cache then commits what is
// queued in rounds: one round of durability for every blob of the round, then
// one index transaction for all its entries. A crash loses at most the rounds
// not yet committed, and never leaves an entry whose blob is not durable (a
// blob placed by a lost round is named by no entry: the start-up sweep and
// verify --repair remove it, and the next sync places it again). Until its
// round commits, the cache answers Lookup of a queued key from the queue.
// On other stores (S3, where each PUT is durable by itself and another
// replica may be waiting for an entry's record) a grouped Put is an ordinary
// one.
type Group struct {
	wg  sync.WaitGroup
	mu  sync.Mutex
	err error
	// eager: each write waits for its own round, and a round such a write
	// starts commits at once with what is queued instead of lingering for
	// company (see NewFillGroup).
	eager bool
}

// NewGroup returns an empty group.
func NewGroup() *Group { return &Group{} }

// NewFillGroup returns the group serve-time fills join. A Put in it returns,
// like an ordinary Put, once its blob and entry are durable (so what a fill
// answered is stored, accounted and seen by every walk of the store), but
// concurrent fills share that work: under a burst of distinct misses one round
// of durability (one syncfs from syncfsFrom blobs) and one index transaction
// serve many instead of fsyncs and an index commit per object.
//
// Its rounds are classic group commit: a round a fill starts commits at once
// with whatever is queued, and what arrives while it is being made durable
// forms the next round. A lone miss never waits for company.
func NewFillGroup() *Group { return &Group{eager: true} }

type groupKey struct{}

// WithGroup returns a context whose Puts join g.
func WithGroup(ctx context.Context, g *Group) context.Context {
	return context.WithValue(ctx, groupKey{}, g)
}

func groupOf(ctx context.Context) *Group {
	g, _ := ctx.Value(groupKey{}).(*Group)
	return g
}

// Grouped reports whether ctx carries a group: a fill made by a sync joins the
// sync's group, not the serve-time one.
func Grouped(ctx context.Context) bool { return groupOf(ctx) != nil }

// Wait blocks until every write of the group made so far is committed, and
// returns the first error a round of the group met (its writes are then not
// recorded).
func (g *Group) Wait() error {
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

func (g *Group) fail(err error) {
	g.mu.Lock()
	if g.err == nil {
		g.err = err
	}
	g.mu.Unlock()
}

const (
	// roundMax bounds the writes of one round: what a crash may lose at most.
	roundMax = 1024
	// roundLinger is how long a round waits for company once it has a first
	// write: long enough that a round's fixed cost (the fsyncs, the index
	// commit) is shared by many, short next to a sync.
	roundLinger = 50 * time.Millisecond
	// queueMax bounds the writes queued and not committed; a Put waits for
	// room, which bounds the memory a fast sync holds.
	queueMax = 2 * roundMax
)

// queuedWrite is one grouped write, or (entry nil) a barrier: the rounds
// before it are committed when its done channel closes.
type queuedWrite struct {
	hot    *Hot
	placed string // digest placed by this write, to be made durable
	g      *Group
	done   chan struct{}
	err    error // the round's outcome for this write
	// committed, for a write of an eager group, is closed once its round is
	// over (err then says how it went).
	committed chan struct{}
}

// committer runs the rounds of grouped writes, one at a time, in queue order.
type committer struct {
	// queued counts the writes queued and not committed, so a lookup when
	// none is (every lookup of a serve without a sync) takes no lock.
	queued atomic.Int64
	// placing counts, by digest, the queued writes that placed that blob: it
	// is not durable until their round commits (guarded by Cache.mu).
	placing map[string]int
	once    sync.Once
	q       chan *queuedWrite
	quit    chan struct{}
}

func (c *Cache) startCommitter() {
	c.commit.once.Do(func() {
		c.commit.q = make(chan *queuedWrite, queueMax)
		c.commit.quit = make(chan struct{})
		go c.runRounds()
	})
}

// runRounds gathers the rounds and makes their blobs durable; a second
// goroutine records each round's entries, in the same order, so one round's
// index transaction overlaps the next round's fsyncs (a round's entries are
// still recorded only once its own blobs are durable).
func (c *Cache) runRounds() {
	defer close(c.commit.quit)
	persisted := make(chan *persistedRound, 1)
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		for r := range persisted {
			c.recordRound(r)
		}
	}()
	for w := range c.commit.q {
		round := []*queuedWrite{w}
		switch {
		case w.done != nil:
		case w.g.eager:
			// Let the fills that are runnable queue their writes first: free
			// when nothing else runs (a lone miss), and where commits cost
			// little (tmpfs) it makes rounds of a burst's fills, not of one.
			runtime.Gosched()
			round = c.drain(round)
		default:
			round = c.gather(round)
		}
		persisted <- c.persistRound(round)
	}
	close(persisted)
	<-recorded
}

// gather adds to round what is queued, waiting up to roundLinger for more,
// until roundMax writes or a barrier. A fill's write (an eager group's) ends
// the wait: a client is waiting for it.
func (c *Cache) gather(round []*queuedWrite) []*queuedWrite {
	linger := time.NewTimer(roundLinger)
	defer linger.Stop()
	for len(round) < roundMax {
		select {
		case w, ok := <-c.commit.q:
			if !ok {
				return round
			}
			round = append(round, w)
			if w.done != nil {
				return round
			}
			if w.g.eager {
				return c.drain(round)
			}
		case <-linger.C:
			return round
		}
	}
	return round
}

// drain adds to round what is queued now, without waiting, until roundMax
// writes or a barrier: a round of whatever arrived while the last one was
// being committed.
func (c *Cache) drain(round []*queuedWrite) []*queuedWrite {
	for len(round) < roundMax {
		select {
		case w, ok := <-c.commit.q:
			if !ok {
				return round
			}
			round = append(round, w)
			if w.done != nil {
				return round
			}
		default:
			return round
		}
	}
	return round
}

// persistedRound is a round whose blobs persistRound made durable (or failed
// to: err).
type persistedRound struct {
	round, writes []*queuedWrite
	es            []*Entry
	blobs         int
	persist       time.Duration
	err           error
}

// persistRound makes the round's blobs durable.
func (c *Cache) persistRound(round []*queuedWrite) *persistedRound {
	writes := make([]*queuedWrite, 0, len(round))
	es := make([]*Entry, 0, len(round))
	var digests []string
	for _, w := range round {
		if w.hot != nil {
			writes = append(writes, w)
			es = append(es, w.hot.Entry)
			if w.placed != "" {
				digests = append(digests, w.placed)
			}
		}
	}
	start := time.Now()
	err := c.store.(GroupStore).Persist(context.Background(), digests)
	return &persistedRound{round: round, writes: writes, es: es, blobs: len(digests), persist: time.Since(start), err: err}
}

// recordRound records the entries of a persisted round in one transaction,
// and only then accounts them and tells their writers and groups.
func (c *Cache) recordRound(r *persistedRound) {
	round, writes, err := r.round, r.writes, r.err
	start := time.Now()
	if err == nil && len(r.es) > 0 {
		err = c.store.(GroupStore).PutEntries(context.Background(), r.es)
	}
	c.log.Debug("group commit round", "entries", len(r.es), "blobs", r.blobs,
		"persist", r.persist, "index", time.Since(start), "err", err)
	for _, w := range writes {
		w.err = err
	}
	now := time.Now().UnixNano()
	var replaced []string // blobs the round's entries named before
	var remember []*Hot   // fills' bodies for the memory tier, now that they are stored
	c.mu.Lock()
	for _, w := range writes {
		e := w.hot.Entry
		latest := c.queued[e.Key] == w
		if latest {
			delete(c.queued, e.Key)
		}
		c.commit.queued.Add(-1)
		if w.placed != "" {
			uncount(c.pending, w.placed)
			uncount(c.commit.placing, w.placed)
		}
		if w.err == nil {
			if d := c.account(e, now); d != "" {
				replaced = append(replaced, d)
			}
			// A later write of the key, queued or not, has its own say.
			if latest && w.hot.Body != nil {
				remember = append(remember, w.hot)
			}
		}
	}
	c.mu.Unlock()
	for _, h := range remember {
		c.remember(h)
	}
	for _, d := range replaced {
		c.dropReplaced(context.Background(), d)
	}
	for _, w := range round {
		switch {
		case w.hot == nil:
			close(w.done)
		case w.err != nil:
			w.g.fail(w.err)
			w.g.wg.Done()
		default:
			w.g.wg.Done()
		}
		if w.committed != nil {
			close(w.committed)
		}
	}
	// No eviction here: it may delete a key with a write queued, which waits
	// for the rounds (settle), so this goroutine must not run it. Grouped
	// writes evict as they come (putGrouped).
}

// putGrouped is Put for a write that joins g: see Group.
func (c *Cache) putGrouped(ctx context.Context, gs GroupStore, g *Group, e *Entry, s *Staged) (*Hot, error) {
	w := &queuedWrite{g: g}
	if g.eager {
		w.committed = make(chan struct{})
	}
	var body []byte
	if s != nil {
		e.Digest, e.Size = s.Digest, s.Size
		if g.eager && c.mem != nil && s.Size <= c.opts.MemoryMaxItem {
			// As Put: the bytes go to the memory tier, once they are stored.
			body, _ = io.ReadAll(s.Reader())
		}
		// Until its round commits the blob is named by no entry; the orphan
		// sweep and a Delete naming the same digest must leave it alone, and
		// an ordinary Put naming it must wait for it to be durable.
		c.mu.Lock()
		c.pending[e.Digest]++
		if c.commit.placing == nil {
			c.commit.placing = map[string]int{}
		}
		c.commit.placing[e.Digest]++
		c.mu.Unlock()
		w.placed = e.Digest
		if err := gs.Place(ctx, s); err != nil {
			c.mu.Lock()
			uncount(c.pending, e.Digest)
			uncount(c.commit.placing, e.Digest)
			c.mu.Unlock()
			return nil, err
		}
	}
	if c.mem != nil {
		// A sync's grouped write does not fill the memory tier (it is for
		// hits), and an older copy must not outlive this write.
		c.mem.Del(e.Key)
	}
	w.hot = &Hot{Entry: e, Body: body}
	// What the rounds before this one accounted may have passed the limit.
	c.evict(ctx)
	c.startCommitter()
	g.wg.Add(1)
	c.mu.Lock()
	c.queued[e.Key] = w
	c.commit.queued.Add(1)
	c.mu.Unlock()
	c.commit.q <- w
	if w.committed != nil {
		<-w.committed
		if w.err != nil {
			return nil, w.err
		}
	}
	return w.hot, nil
}

// queuedHot is the grouped write of key not yet committed, if any.
func (c *Cache) queuedHot(key string) (*Hot, bool) {
	if c.commit.queued.Load() == 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if w, ok := c.queued[key]; ok {
		return w.hot, true
	}
	return nil, false
}

// awaitDurable waits, when digest names a blob placed by a grouped write not
// yet committed, until that blob is durable: an entry recorded by an ordinary
// Put must never name a blob a crash could lose (the disk store's Commit
// trusts a blob this process placed, durable or not).
func (c *Cache) awaitDurable(digest string) {
	if digest == "" || c.commit.queued.Load() == 0 {
		return
	}
	c.mu.Lock()
	placing := c.commit.placing[digest] > 0
	c.mu.Unlock()
	if placing {
		c.barrier()
	}
}

// settle waits until a grouped write of key, if one is queued, is committed:
// a write or delete that does not join the round must not be overtaken by it.
func (c *Cache) settle(key string) {
	if _, ok := c.queuedHot(key); ok {
		c.barrier()
	}
}

// barrier waits until every grouped write queued before it is committed.
func (c *Cache) barrier() {
	c.startCommitter()
	w := &queuedWrite{done: make(chan struct{})}
	c.commit.q <- w
	<-w.done
}

// stopCommitter commits what is queued and ends the rounds.
func (c *Cache) stopCommitter() {
	c.commit.once.Do(func() {}) // a committer never started stays so
	if c.commit.q != nil {
		close(c.commit.q)
		<-c.commit.quit
	}
}
