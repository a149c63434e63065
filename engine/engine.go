// Package engine is the mirror's read-through engine, shared by every cached
// route of both APIs: lookup → freshness (Policy) → fill (a Filler, layered:
// per-key coalescing over the fleet lease over the upstream fetch) → verify →
// commit → an Answer with its Outcome. It makes every decision about freshness
// and failure; the handlers in package proxy say what to fetch (a Target) and
// write what it answered.
package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/upstream"
)

// Target is one cacheable answer: where it is stored, where it comes from, and
// how it is checked before it is stored.
type Target struct {
	API, Route string
	Key        Key
	Class      cache.Class
	Pool       *upstream.Pool
	Path       string // escaped upstream path with its query, joined to the base URL
	// Want, when set, is the sha256 the body must have (Hydrilla files).
	Want string
	// Verify checks a staged body before it is committed; an error is a 502.
	// What it returns is kept as the entry's Meta.
	Verify func(b Body) (json.RawMessage, error)
	// From, when set, is the one upstream to ask (answers merged per upstream).
	From *upstream.Upstream
	// Stored is told of every entry the fill stores.
	Stored func(*cache.Entry)
	// Keep lists the upstream headers replayed with the stored body.
	Keep []string
	// FixHeader adjusts the replayed headers (e.g. a zip always says application/zip).
	FixHeader func(http.Header)
	Pin       bool
	// Refresh asks the upstream even when a mutable entry is still fresh (sync).
	Refresh bool
}

// Answer is what Resolve found: a stored entry, or an upstream answer that is
// relayed but not stored (a 401, a 400 …).
type Answer struct {
	Hot     *cache.Hot
	Outcome Outcome
	Relay   *Relayed
	// Upstream is the base URL of the upstream asked, when one was.
	Upstream string
	// ContentType, when set, replaces the stored Content-Type: an entry
	// answering a route other than its own keeps that route's media type.
	ContentType string
	// Cause is the upstream failure a STALE answer stands in for, when one
	// was met, or the store's failure that made an answer relayed unstored
	// (BYPASS): a sync reports it; clients see the answer.
	Cause error
}

// Relayed is an upstream answer passed on without being stored.
type Relayed struct {
	Status int
	Header http.Header
	Body   []byte
}

// Body is an upstream answer's bytes held for verification: a staged file, or
// memory when the store cannot be written.
type Body interface {
	io.ReaderAt
	Reader() io.Reader
	Len() int64
}

// MemBody is a Body held in memory.
type MemBody []byte

// ReadAt reads from the bytes.
func (m MemBody) ReadAt(p []byte, off int64) (int, error) { return bytes.NewReader(m).ReadAt(p, off) }

// Reader reads the bytes from the start.
func (m MemBody) Reader() io.Reader { return bytes.NewReader(m) }

// Len is the number of bytes.
func (m MemBody) Len() int64 { return int64(len(m)) }

// VerifyError is a body refused by verification: a 502, counted, never stored.
type VerifyError struct{ Err error }

func (e *VerifyError) Error() string { return "verification failed: " + e.Err.Error() }
func (e *VerifyError) Unwrap() error { return e.Err }

// StoreError is a sync's fill whose body could not be stored (a full disk, a
// read-only folder). Serve relays such a body unstored to the client waiting
// for it; a sync has no one waiting for the bytes, so it reports the store's
// failure instead of fetching them again.
type StoreError struct{ Err error }

func (e *StoreError) Error() string { return "not stored: " + e.Err.Error() }
func (e *StoreError) Unwrap() error { return e.Err }

// IsVerify reports whether err is a refused body.
func IsVerify(err error) bool {
	var ve *VerifyError
	return errors.As(err, &ve)
}

// Counters are the engine's metrics; nil ones are not counted.
type Counters struct {
	StaleServed    prometheus.Counter
	VerifyFailures prometheus.Counter
	Coalesced      prometheus.Counter
	StoreErrors    *prometheus.CounterVec // by op: read, write
}

// Options wire an Engine.
type Options struct {
	Cache  *cache.Cache
	Policy *Policy
	// Fleet is the shared bucket when replicas share one: fills then take a
	// lease in it (nil: no lease layer).
	Fleet           *cache.S3
	UpstreamTimeout time.Duration
	MaxBodySize     int64
	Counters        Counters
	Logger          *slog.Logger
	// NoteError, when set, is told of failures worth showing on the status page.
	NoteError func(string)
	// Fill, when set, replaces the upstream fill as the innermost layer (the
	// engine's tests fill from memory, with no HTTP server).
	Fill Filler
}

// Engine resolves targets through the cache and the layered fill.
type Engine struct {
	cache    *cache.Cache
	policy   *Policy
	log      *slog.Logger
	counters Counters
	note     func(string)
	coalesce *Coalescing
	fill     Filler
	// writeGen counts successful writes; a fill that saw it change stores its
	// (possibly pre-write) answer already stale.
	writeGen atomic.Uint64
}

// New builds an Engine and its fill layers: the upstream fill, inside the
// fleet lease when a bucket is configured, inside per-key coalescing. Local
// coalescing is outermost so that N concurrent misses on one replica take one
// lease, not N.
func New(o Options) *Engine {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.NoteError == nil {
		o.NoteError = func(string) {}
	}
	e := &Engine{cache: o.Cache, policy: o.Policy, log: o.Logger, counters: o.Counters, note: o.NoteError}
	uf := &UpstreamFill{Cache: o.Cache, Policy: o.Policy, MaxBodySize: o.MaxBodySize, Timeout: o.UpstreamTimeout, eng: e}
	uf.group = cache.NewFillGroup()
	var f Filler = uf
	if o.Fill != nil {
		f = o.Fill
	}
	if o.Fleet != nil {
		f = &Leased{Next: f, Fleet: o.Fleet, Cache: o.Cache, Policy: o.Policy}
	}
	e.coalesce = &Coalescing{Next: f, Timeout: o.UpstreamTimeout, Coalesced: o.Counters.Coalesced}
	e.fill = e.coalesce
	return e
}

// Policy is the engine's freshness policy.
func (e *Engine) Policy() *Policy { return e.policy }

// Resolve answers t from the cache, or with one coalesced upstream fill, or
// with a stale copy when the upstreams fail.
func (e *Engine) Resolve(ctx context.Context, t *Target) (*Answer, error) {
	now := e.policy.Now()
	hot, err := e.cache.Lookup(ctx, string(t.Key))
	if err != nil && !errors.Is(err, cache.ErrNotFound) {
		e.storeError("read")
		e.log.Error("store lookup", "key", t.Key, "err", err)
		e.note("store read " + string(t.Key) + ": " + err.Error())
		hot = nil
	}
	if hot != nil && (hot.Entry.Class == cache.Immutable || !t.Refresh) && e.policy.DecideAt(hot.Entry, now) == Fresh {
		return &Answer{Hot: hot, Outcome: HitOutcome, Upstream: hot.Entry.Upstream}, nil
	}
	if t.Pool != nil && t.Pool.Offline() {
		if hot != nil {
			return e.Stale(hot, "offline"), nil
		}
		return nil, upstream.ErrOffline
	}
	a, err := e.fill.Fill(ctx, t, hot)
	if err == nil {
		return a, nil
	}
	switch {
	case hot != nil && IsVerify(err):
		// Bytes that failed verification never replace what we hold.
		a := e.Stale(hot, "upstream answer failed verification")
		a.Cause = err
		return a, nil
	case hot != nil && e.policy.UsableStale(hot.Entry) && !errors.Is(err, context.Canceled):
		a := e.Stale(hot, "upstream error")
		a.Cause = err
		return a, nil
	}
	return nil, err
}

// Stale answers with a held entry because the upstreams failed (or are not
// contacted), counted and with the policy's ttl.
func (e *Engine) Stale(hot *cache.Hot, why string) *Answer {
	if e.counters.StaleServed != nil {
		e.counters.StaleServed.Inc()
	}
	ttl, ok := e.policy.TTL(hot.Entry)
	return &Answer{Hot: hot, Outcome: StaleBecause(why, ttl, ok), Upstream: hot.Entry.Upstream}
}

// Derived counts an answer the mirror made from what it holds because the
// upstreams failed, and returns its outcome.
func (e *Engine) Derived(why string) Outcome {
	if e.counters.StaleServed != nil {
		e.counters.StaleServed.Inc()
	}
	return StaleBecause(why, 0, false)
}

// Do runs fn once for concurrent callers of the same key (a fill that is not
// an upstream fetch, such as a document taken out of a held zip).
func (e *Engine) Do(key Key, fn func() (any, error)) (any, error) {
	v, err, _ := e.coalesce.group.Do(string(key), fn)
	return v, err
}

// Forget makes later requests of key start a fill of their own instead of
// joining one in flight (after a write made its answer out of date).
func (e *Engine) Forget(key Key) { e.coalesce.group.Forget(string(key)) }

// Wrote records a successful write: fills that began before it store their
// answer already stale.
func (e *Engine) Wrote() { e.writeGen.Add(1) }

func (e *Engine) storeError(op string) {
	if e.counters.StoreErrors != nil {
		e.counters.StoreErrors.WithLabelValues(op).Inc()
	}
}
