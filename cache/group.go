package cache

import (
	"context"
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
}

// NewGroup returns an empty group.
func NewGroup() *Group { return &Group{} }

type groupKey struct{}

// WithGroup returns a context whose Puts join g.
func WithGroup(ctx context.Context, g *Group) context.Context {
	return context.WithValue(ctx, groupKey{}, g)
}

func groupOf(ctx context.Context) *Group {
	g, _ := ctx.Value(groupKey{}).(*Group)
	return g
}

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
}

// committer runs the rounds of grouped writes, one at a time, in queue order.
type committer struct {
	// queued counts the writes queued and not committed, so a lookup when
	// none is (every lookup of a serve without a sync) takes no lock.
	queued atomic.Int64
	once   sync.Once
	q      chan *queuedWrite
	quit   chan struct{}
}

func (c *Cache) startCommitter() {
	c.commit.once.Do(func() {
		c.commit.q = make(chan *queuedWrite, queueMax)
		c.commit.quit = make(chan struct{})
		go c.runRounds()
	})
}

func (c *Cache) runRounds() {
	defer close(c.commit.quit)
	for w := range c.commit.q {
		round := []*queuedWrite{w}
		if w.done == nil {
			round = c.gather(round)
		}
		c.commitRound(round)
	}
}

// gather adds to round what is queued, waiting up to roundLinger for more,
// until roundMax writes or a barrier.
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
		case <-linger.C:
			return round
		}
	}
	return round
}

// commitRound makes the round's blobs durable, records its entries, and only
// then accounts them and tells their groups.
func (c *Cache) commitRound(round []*queuedWrite) {
	ctx := context.Background()
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
	gs := c.store.(GroupStore)
	start := time.Now()
	err := gs.Persist(ctx, digests)
	persisted := time.Now()
	if err == nil && len(es) > 0 {
		err = gs.PutEntries(ctx, es)
	}
	c.log.Debug("group commit round", "entries", len(es), "blobs", len(digests),
		"persist", persisted.Sub(start), "index", time.Since(persisted), "err", err)
	for _, w := range writes {
		w.err = err
	}
	now := time.Now().UnixNano()
	var replaced []string // blobs the round's entries named before
	c.mu.Lock()
	for _, w := range writes {
		e := w.hot.Entry
		if c.queued[e.Key] == w {
			delete(c.queued, e.Key)
		}
		c.commit.queued.Add(-1)
		if w.placed != "" {
			if c.pending[w.placed]--; c.pending[w.placed] <= 0 {
				delete(c.pending, w.placed)
			}
		}
		if w.err == nil {
			if d := c.account(e, now); d != "" {
				replaced = append(replaced, d)
			}
		}
	}
	c.mu.Unlock()
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
	}
	// No eviction here: it may delete a key with a write queued, which waits
	// for the rounds (settle), so this goroutine must not run it. Grouped
	// writes evict as they come (putGrouped).
}

// putGrouped is Put for a write that joins g: see Group.
func (c *Cache) putGrouped(ctx context.Context, gs GroupStore, g *Group, e *Entry, s *Staged) (*Hot, error) {
	w := &queuedWrite{g: g}
	if s != nil {
		e.Digest, e.Size = s.Digest, s.Size
		// Until its round commits the blob is named by no entry; the orphan
		// sweep and a Delete naming the same digest must leave it alone.
		c.mu.Lock()
		c.pending[e.Digest]++
		c.mu.Unlock()
		w.placed = e.Digest
		if err := gs.Place(ctx, s); err != nil {
			c.mu.Lock()
			if c.pending[e.Digest]--; c.pending[e.Digest] <= 0 {
				delete(c.pending, e.Digest)
			}
			c.mu.Unlock()
			return nil, err
		}
	}
	if c.mem != nil {
		// The memory tier is for hits; a grouped write does not fill it, and
		// an older copy must not outlive this write.
		c.mem.Del(e.Key)
	}
	w.hot = &Hot{Entry: e}
	// What the rounds before this one accounted may have passed the limit.
	c.evict(ctx)
	c.startCommitter()
	g.wg.Add(1)
	c.mu.Lock()
	c.queued[e.Key] = w
	c.commit.queued.Add(1)
	c.mu.Unlock()
	c.commit.q <- w
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
