// Package mirrorsync fetches what the upstreams hold ahead of time (regmirror
// sync, serve --sync-interval): a Hydrilla upstream whole, a RefPack
// upstream's catalogue and the packages in scope. Every object goes through
// the read-through engine, so it is verified exactly as on the read path,
// committed in rounds (cache.Group) and pinned; what is held is not fetched
// again. It knows nothing of HTTP serving: package proxy wires a Syncer and
// gives it the verified targets of its routes (Targets).
package mirrorsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/catalogue"
	"github.com/regmirror/regmirror/engine"
	"github.com/regmirror/regmirror/hosted/hydrillalocal"
	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/upstream"
)

// Targets builds the targets of the routes a sync fetches, with the same
// verification the read path uses (package proxy owns them).
type Targets interface {
	HydrillaListAll(up *upstream.Upstream) *engine.Target
	HydrillaItem(ref hydrilla.ItemRef, pin bool) *engine.Target
	HydrillaFile(hex string, pin bool) *engine.Target
	RefPackZip(id, version string, pin bool) *engine.Target
	RefPackMeta(id, version string, pin bool) *engine.Target
}

// Parts are what a Syncer works with: the mirror's engine and store, its
// upstream pools, and what it must never fetch upstream.
type Parts struct {
	Engine    *engine.Engine
	Cache     *cache.Cache
	Targets   Targets
	RefPack   *upstream.Pool
	Hydrilla  *upstream.Pool
	Catalogue *catalogue.Catalogue // told of complete Hydrilla syncs
	// Local is the Hydrilla local repository (nil: none): its identifiers are
	// the mirror's own and never fetched upstream.
	Local *hydrillalocal.Repo
	// HostedOwners are RefPack owners the mirror hosts: an upstream's packages
	// under them are never fetched.
	HostedOwners []string
	// FailTimeout is how long an upstream marked down stays skipped (a sync
	// waits a quarter of it before asking again).
	FailTimeout time.Duration
	Logger      *slog.Logger
	// NoteError, when set, records a problem for the status page.
	NoteError func(string)
	// LastSuccess, when set, is regmirror_sync_last_success_timestamp_seconds{api,upstream}.
	LastSuccess *prometheus.GaugeVec
	// Record, when set, is told of every result of Every (the status page).
	Record func(*Result)
}

// Syncer runs syncs of a mirror's upstreams.
type Syncer struct{ p Parts }

// New builds a Syncer.
func New(p Parts) *Syncer {
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	return &Syncer{p: p}
}

// Options narrow and pace a sync.
type Options struct {
	Jobs        int // objects being downloaded at once (default 4); storing them runs beside
	AllVersions bool
	Packages    []string // RefPack ids to take (empty: all)
	Owners      []string // RefPack owners to take (empty: all)
	// Progress, when set, is told after every object.
	Progress func(Progress)
}

// Progress is the running count of one upstream's sync.
type Progress struct {
	API, Upstream string
	Done, Total   int
	What          string // the object just handled
}

// Result is the summary of one upstream's sync.
type Result struct {
	API, Upstream string
	Started       time.Time
	Ended         time.Time
	Items         int // Hydrilla item versions or RefPack versions fetched now
	Files         int // Hydrilla files or RefPack documents fetched now
	Packages      int // RefPack packages in scope
	Held          int // objects already held, not fetched again
	Bytes         int64
	Failed        []string
	Err           error // the upstream's catalogue could not be read
}

// tally counts one object's outcome: failed, already held, or fetched (as an
// item, or as a file/document when secondary). Callers serialise calls.
func (r *Result) tally(what string, a *engine.Answer, err error, secondary bool) {
	switch {
	case err != nil:
		r.Failed = append(r.Failed, fmt.Sprintf("%s: %v", what, err))
	case a.Relay != nil || a.Hot.Entry.Status != http.StatusOK || a.Outcome.State == engine.Stale:
		r.Failed = append(r.Failed, fmt.Sprintf("%s: %s", what, describe(a)))
	case a.Outcome.State == engine.Hit:
		r.Held++
	default:
		r.Bytes += a.Hot.Entry.Size
		if secondary {
			r.Files++
		} else {
			r.Items++
		}
	}
}

// OK reports whether nothing failed.
func (r *Result) OK() bool { return r.Err == nil && len(r.Failed) == 0 }

// Hydrilla mirrors every Hydrilla upstream whole: its /list_all, every item
// version listed and every file the items name, each verified and pinned.
func (s *Syncer) Hydrilla(ctx context.Context, o Options) []*Result {
	var out []*Result
	for _, up := range s.p.Hydrilla.Upstreams() {
		out = append(out, s.hydrillaOne(ctx, up, o))
	}
	// With what the sync stored. In regmirror sync, which answers no query,
	// the catalogue keeps nothing (catalogue.IgnoreNotes): an empty build.
	s.p.Catalogue.Rebuild()
	return out
}

func (s *Syncer) hydrillaOne(ctx context.Context, up *upstream.Upstream, o Options) *Result {
	res := &Result{API: "hydrilla", Upstream: up.Base, Started: time.Now()}
	defer func() { res.Ended = time.Now() }()
	lt := s.p.Targets.HydrillaListAll(up)
	lt.Refresh = true
	a, err := s.fetchWithRetry(ctx, lt)
	if err == nil && (a.Relay != nil || a.Hot.Entry.Status != http.StatusOK || a.Outcome.State == engine.Stale) {
		err = fmt.Errorf("/list_all: %s", describe(a))
	}
	if err != nil {
		res.Err = fmt.Errorf("read /list_all of %s: %w", up.Base, err)
		return res
	}
	body, err := s.p.Cache.ReadAll(ctx, a.Hot.Entry)
	if err != nil {
		res.Err = err
		return res
	}
	list, err := hydrilla.ParseList(body)
	if err != nil {
		res.Err = err
		return res
	}
	// Identifiers of the local repository are its own: never fetched upstream.
	refs := s.p.Local.Without(list).Refs()
	// Fetched in the order of their keys, so each round of the group adds
	// entries next to each other in the index: a round then rewrites a few
	// of its pages, not one page per entry (as keys in the list's order, or
	// the random order of file digests, would).
	type keyed struct {
		key string
		ref hydrilla.ItemRef
	}
	byKey := make([]keyed, len(refs))
	for i, r := range refs {
		byKey[i] = keyed{r.String(), r}
	}
	slices.SortFunc(byKey, func(a, b keyed) int { return strings.Compare(a.key, b.key) })
	for i := range byKey {
		refs[i] = byKey[i].ref
	}
	byKey = nil
	var mu sync.Mutex
	var done atomic.Int64
	total := len(refs)
	progress := func(what string) {
		d := int(done.Add(1))
		if o.Progress != nil {
			mu.Lock()
			t := total
			mu.Unlock()
			o.Progress(Progress{API: "hydrilla", Upstream: up.Base, Done: d, Total: t, What: what})
		}
	}
	watch := watchUpstream(ctx, up.Base)
	defer watch.cancel(nil)
	record := func(kind, what string, a *engine.Answer, err error) {
		if watch.check(err) {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		res.tally(what, a, err, kind != "item")
	}
	files := map[string]bool{}
	var fileList []string
	// What is fetched is committed in rounds (design.md, "Sync at the speed
	// of the network"); the sync is complete once the group is.
	group := cache.NewGroup()
	gctx, workers := fetching(watch.ctx, group, o)
	parallel(watch.ctx, workers, len(refs), func(i int) {
		ref := refs[i]
		t := s.p.Targets.HydrillaItem(ref, true)
		t.From = up
		// The Meta of an item version stored now is parsed once, for the
		// catalogue (what the target's Stored does) and for the files it
		// names. Another fill of the same key may have stored it instead
		// (coalesced), or it was held: then it is parsed below.
		var meta catalogue.ItemMeta
		var parsed atomic.Bool
		if s.p.Catalogue != nil {
			t.Stored = func(e *cache.Entry) {
				if m, ok := catalogue.ParseMeta(e.Meta); ok {
					s.p.Catalogue.NoteMeta(e, m)
					meta = m
					parsed.Store(true)
				}
			}
		}
		a, err := s.fetchWithRetry(gctx, t)
		what := ref.String()
		record("item", what, a, err)
		progress(what)
		if err != nil || a.Hot == nil {
			return
		}
		m, ok := catalogue.ItemMeta{}, parsed.Load()
		if ok {
			m = meta
		} else {
			m, ok = catalogue.ParseMeta(a.Hot.Entry.Meta)
		}
		if ok {
			mu.Lock()
			for _, f := range m.Files {
				if !files[f] {
					files[f] = true
					fileList = append(fileList, f)
					total++
				}
			}
			mu.Unlock()
		}
	})
	slices.Sort(fileList)
	parallel(watch.ctx, workers, len(fileList), func(i int) {
		t := s.p.Targets.HydrillaFile(fileList[i], true)
		t.From = up
		a, err := s.fetchWithRetry(gctx, t)
		record("file", "file/sha256/"+fileList[i], a, err)
		progress("file/sha256/" + fileList[i])
	})
	if s.finish(ctx, group, res, watch, engine.HydrillaSync(up.Base)) {
		s.p.Catalogue.MarkSynced(up.Base, time.Now())
	}
	return res
}

// fetchWithRetry resolves t and pins what it holds; it backs off and retries
// when the upstream says 429 or 503 (honouring Retry-After) or is marked down,
// and, transientRetries times, after a failure another attempt may not meet.
// An error after an attempt found t's upstream marked down, while it is still
// marked down, is a *downError: the upstream stayed down through all of t's
// retries (a request that succeeded meanwhile, for any object, would have
// brought it back).
func (s *Syncer) fetchWithRetry(ctx context.Context, t *engine.Target) (a *engine.Answer, err error) {
	sawDown := false
	defer func() {
		if sawDown && err != nil && ctx.Err() == nil && !engine.IsVerify(err) &&
			t.From != nil && t.From.Health().SkipUntil.After(time.Now()) {
			err = &downError{err}
		}
	}()
	for attempt := 0; attempt < 5; attempt++ {
		a, err = s.p.Engine.Resolve(ctx, t)
		var wait time.Duration
		var ue *upstream.Error
		switch {
		case err == nil && a.Relay != nil && a.Relay.Status == http.StatusTooManyRequests:
			wait = upstream.ParseRetryAfter(a.Relay.Header.Get("Retry-After"))
		case errors.As(err, &ue) && (ue.Status == http.StatusServiceUnavailable || ue.Status == http.StatusTooManyRequests ||
			errors.Is(err, upstream.ErrBusy)):
			wait = ue.RetryAfter
		case errors.Is(err, upstream.ErrNoUpstream):
			sawDown = true
			wait = s.p.FailTimeout / 4
		case attempt < transientRetries && transient(ctx, err):
			// The default backoff.
		default:
			if err == nil && t.Pin && a.Hot != nil && !a.Hot.Entry.Pinned && a.Hot.Entry.Status == http.StatusOK {
				e := *a.Hot.Entry
				e.Pinned = true
				if h, perr := s.p.Cache.Put(ctx, &e, nil); perr == nil {
					a.Hot = h
				}
			}
			return a, err
		}
		if wait <= 0 {
			wait = time.Duration(1<<attempt) * 500 * time.Millisecond
		}
		wait = min(wait, 30*time.Second)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
	return a, err
}

// transientRetries is how many times a sync asks again for an object whose
// request failed in a way the next request may not (transient): a sync
// against a flaky upstream should complete, not fail on its first blip.
const transientRetries = 2

// transient reports whether err is an upstream failure another attempt may
// not meet: a 5xx, a connection refused or reset, a timeout, a body cut
// short. Answers the upstream meant (a 404, a 4xx relayed), bodies failing
// verification or over the size limit, the store failing, and a full
// upstream (busy, handled with its Retry-After) are not.
func transient(ctx context.Context, err error) bool {
	var ue *upstream.Error
	return ctx.Err() == nil && errors.As(err, &ue) && !errors.Is(err, upstream.ErrBusy) &&
		!errors.Is(err, cache.ErrTooLarge) && (ue.Status == 0 || ue.Status >= 500)
}

// downError is an object's failure after its upstream was found marked down
// during its retries: the upstream has been down (or failing) for longer than
// its fail timeout.
type downError struct{ err error }

func (e *downError) Error() string { return e.err.Error() }
func (e *downError) Unwrap() error { return e.err }

// upstreamWatch ends an upstream's sync early when the upstream stays down:
// once one object's retries have all found it down, the rest would each wait
// out theirs too (for a large repository, days). The sync of that upstream
// stops, and its result names the upstream down instead of listing every
// object it did not fetch.
type upstreamWatch struct {
	ctx    context.Context // the upstream's sync; cancelled when it is abandoned
	cancel context.CancelCauseFunc
	base   string
}

func watchUpstream(ctx context.Context, base string) *upstreamWatch {
	wctx, cancel := context.WithCancelCause(ctx)
	return &upstreamWatch{ctx: wctx, cancel: cancel, base: base}
}

// check abandons the upstream's sync when err says it stayed down, and
// reports whether err is to be left out of the result: once the sync is
// abandoned (by check, or by its parent context), an object's error says
// nothing about the object.
func (w *upstreamWatch) check(err error) (leaveOut bool) {
	var de *downError
	if errors.As(err, &de) {
		w.cancel(fmt.Errorf("upstream %s is down (marked down through every retry of an object: %v); "+
			"the rest of its sync is abandoned: run the sync again when it is back", w.base, de.err))
	}
	return err != nil && w.ctx.Err() != nil
}

// err is why the upstream's sync was abandoned, or nil.
func (w *upstreamWatch) err() error {
	if w.ctx.Err() == nil {
		return nil
	}
	return context.Cause(w.ctx)
}

func describe(a *engine.Answer) string {
	switch {
	case a.Relay != nil && a.Cause != nil:
		return "not stored: " + a.Cause.Error()
	case a.Relay != nil:
		return fmt.Sprintf("upstream answered %d", a.Relay.Status)
	case a.Outcome.State == engine.Stale && a.Cause != nil:
		return "upstream failed (only a stale copy is held): " + a.Cause.Error()
	case a.Outcome.State == engine.Stale:
		return "upstream failed (only a stale copy is held)"
	default:
		return fmt.Sprintf("upstream answered %d", a.Hot.Entry.Status)
	}
}

// parallel runs fn(0..n-1) on at most workers goroutines.
func parallel(ctx context.Context, workers, n int, fn func(i int)) {
	sem := make(chan struct{}, max(workers, 1))
	var wg sync.WaitGroup
	for i := 0; i < n && ctx.Err() == nil; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}(i)
	}
	wg.Wait()
}

// workersPerFetch is how many objects a sync works on per upstream request in
// flight. An object's own work (staging, hashing, verifying and placing it)
// comes after its body is read and holds no fetch place (upstream.FetchLimit),
// so with more workers than fetches it overlaps the next downloads instead of
// adding to them, and --jobs stays the number of requests at the upstream.
// Two is enough to keep the downloads busy; more only adds files created at
// once, which on ext4 cost system time (measured with --jobs 4 at 10,000
// mappings: 2 and 4 per download tie on tmpfs, and on disk 4 took 18–19 s
// against 15.5 s, its system time 16–20 s against 12–13).
const workersPerFetch = 2

// fetching returns the context a sync's objects are fetched with, its writes
// joining group and at most o.Jobs of its upstream requests in flight, and how
// many objects to work on at once.
func fetching(ctx context.Context, group *cache.Group, o Options) (context.Context, int) {
	jobs := o.Jobs
	if jobs < 1 {
		jobs = 4
	}
	ctx = upstream.WithFetchLimit(cache.WithGroup(ctx, group), upstream.NewFetchLimit(jobs))
	return ctx, jobs * workersPerFetch
}

// finish is the end both APIs' syncs share: it waits until the group has
// recorded what was fetched, and marks the upstream synced (reporting true)
// only when every object came and the sync was neither cancelled nor
// abandoned (watch).
func (s *Syncer) finish(ctx context.Context, group *cache.Group, res *Result, watch *upstreamWatch, key engine.Key) bool {
	if err := group.Wait(); err != nil && res.Err == nil {
		res.Err = fmt.Errorf("record what was fetched from %s: %w", res.Upstream, err)
	}
	if ctx.Err() != nil {
		res.Err = ctx.Err()
		return false
	}
	if err := watch.err(); err != nil {
		res.Err = err
		return false
	}
	if !res.OK() {
		return false
	}
	s.markSynced(ctx, res.API, res.Upstream, string(key))
	return true
}

// markSynced records a complete sync of an upstream in the store (so /query
// can answer from the index after a restart) and in the metrics.
func (s *Syncer) markSynced(ctx context.Context, api, base, key string) {
	now := time.Now()
	e := &cache.Entry{Key: key, Status: http.StatusOK, Class: cache.Immutable, FetchedAt: now, Pinned: true, Upstream: base}
	if _, err := s.p.Cache.PutBody(ctx, e, []byte(now.UTC().Format(time.RFC3339)+"\n")); err != nil {
		s.p.Logger.Warn("record sync", "upstream", base, "err", err)
		if s.p.NoteError != nil {
			s.p.NoteError("record sync of " + base + ": " + err.Error())
		}
	}
	if s.p.LastSuccess != nil {
		s.p.LastSuccess.WithLabelValues(api, base).Set(float64(now.Unix()))
	}
}

// Every runs the syncs of both APIs now and then every interval until ctx
// ends (serve --sync-interval), logging each upstream's result and handing it
// to Parts.Record.
func (s *Syncer) Every(ctx context.Context, interval time.Duration, o Options) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		s.Round(ctx, o)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Round runs the syncs of both APIs once (a round of Every), logging each
// upstream's result and handing it to Parts.Record.
func (s *Syncer) Round(ctx context.Context, o Options) []*Result {
	results := append(s.Hydrilla(ctx, o), s.RefPack(ctx, o)...)
	for _, r := range results {
		s.note(r)
	}
	return results
}

// note logs a sync result and hands it to Parts.Record.
func (s *Syncer) note(r *Result) {
	attrs := []any{"api", r.API, "upstream", r.Upstream, "items", r.Items, "files", r.Files, "held", r.Held,
		"bytes", r.Bytes, "failed", len(r.Failed), "duration", r.Ended.Sub(r.Started)}
	if r.OK() {
		s.p.Logger.Info("sync done", attrs...)
	} else {
		s.p.Logger.Warn("sync failed", append(attrs, "err", r.Err, "failures", r.Failed)...)
	}
	if s.p.Record != nil {
		s.p.Record(r)
	}
}
