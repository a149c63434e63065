package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/upstream"
)

// Filler obtains the answer of a target the cache cannot give: old is the
// stored entry being revalidated, if any. Fills are layered as decorators
// over this one interface (Coalescing, Leased, UpstreamFill).
type Filler interface {
	Fill(ctx context.Context, t *Target, old *cache.Hot) (*Answer, error)
}

// Coalescing makes concurrent fills of one key one fill (singleflight). The
// fill runs on a context detached from the first caller, with its own
// timeout, so one client hanging up does not abort it for the others.
type Coalescing struct {
	Next      Filler
	Timeout   time.Duration
	Coalesced prometheus.Counter // requests that joined another's fill
	group     singleflight.Group
}

// Fill is Next.Fill, once per key at a time.
func (c *Coalescing) Fill(ctx context.Context, t *Target, old *cache.Hot) (*Answer, error) {
	leader := false
	ch := c.group.DoChan(string(t.Key), func() (any, error) {
		leader = true
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.Timeout)
		defer cancel()
		return c.Next.Fill(fctx, t, old)
	})
	var r singleflight.Result
	select {
	case r = <-ch:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.Shared && !leader && c.Coalesced != nil {
		c.Coalesced.Inc()
	}
	if r.Err != nil {
		return nil, r.Err
	}
	a := *r.Val.(*Answer)
	if !leader && a.Relay == nil {
		a.Outcome = a.Outcome.Collapsed()
	}
	return &a, nil
}

// Leased is a fill for replicas sharing a bucket: one replica takes the key's
// lease and runs Next, the others wait for its entry record, so the fleet
// makes one upstream request per object (and one revalidation per max-age).
// When the bucket is slow or down it fails open: content addressing makes a
// duplicate fetch harmless.
type Leased struct {
	Next   Filler
	Fleet  *cache.S3
	Cache  *cache.Cache
	Policy *Policy
}

// Fill is Next.Fill under the fleet's lease of the key.
func (l *Leased) Fill(ctx context.Context, t *Target, old *cache.Hot) (*Answer, error) {
	start := l.Policy.Now()
	var a *Answer
	var oldEntry *cache.Entry
	if old != nil {
		oldEntry = old.Entry
	}
	done := func(e *cache.Entry) bool { return l.Policy.FilledSince(e, oldEntry, start, t.Refresh) }
	e, filled, err := l.Fleet.FillOnce(ctx, string(t.Key), 50*time.Millisecond, done, func(ctx context.Context) error {
		var err error
		a, err = l.Next.Fill(ctx, t, old)
		return err
	})
	if filled {
		return a, err
	}
	if err != nil {
		return nil, err
	}
	h, err := l.Cache.Reload(ctx, e.Key)
	if err != nil {
		return l.Next.Fill(ctx, t, old)
	}
	if t.Stored != nil {
		t.Stored(h.Entry)
	}
	return &Answer{Hot: h, Outcome: HitBecause("filled by another replica"), Upstream: h.Entry.Upstream}, nil
}

// UpstreamFill fetches a target from its upstreams, verifies and stores it:
// the innermost fill.
type UpstreamFill struct {
	Cache       *cache.Cache
	Policy      *Policy
	MaxBodySize int64
	Timeout     time.Duration
	eng         *Engine
	// group is what a fill's store write joins (cache.NewFillGroup): under a
	// burst of misses one round of fsyncs and one index transaction serve many.
	group *cache.Group
}

var defaultKeep = []string{"Content-Type"}

// maxUnstoredBody bounds what is held in memory to answer a client when the
// store cannot be written.
const maxUnstoredBody = 64 << 20

// Fill fetches, verifies and commits t.
func (f *UpstreamFill) Fill(ctx context.Context, t *Target, old *cache.Hot) (*Answer, error) {
	a, err := f.fill(ctx, t, old)
	if err != nil && !IsVerify(err) && !errors.Is(err, upstream.ErrNoUpstream) && !errors.Is(err, upstream.ErrBusy) &&
		!errors.Is(err, context.Canceled) {
		f.eng.note(string(t.Key) + ": " + err.Error())
	}
	return a, err
}

func (f *UpstreamFill) fill(ctx context.Context, t *Target, old *cache.Hot) (*Answer, error) {
	gen := f.eng.writeGen.Load()
	// A write that succeeded while this fill ran may have made its answer old:
	// store it, but already stale, so the next read asks again.
	ageIfWritten := func(e *cache.Entry) {
		if e.Class == cache.Mutable && f.eng.writeGen.Load() != gen {
			e.FetchedAt = f.Policy.AlreadyStale()
		}
	}
	hdr := http.Header{}
	if old != nil && old.Entry.Class == cache.Mutable && old.Entry.Status == http.StatusOK {
		if old.Entry.ETag != "" {
			hdr.Set("If-None-Match", old.Entry.ETag)
		}
		if old.Entry.LastModified != "" {
			hdr.Set("If-Modified-Since", old.Entry.LastModified)
		}
	}
	var resp *upstream.Response
	var err error
	if t.From != nil {
		resp, err = t.Pool.GetFrom(ctx, t.From, t.Path, hdr)
	} else {
		resp, err = t.Pool.Get(ctx, t.Path, hdr)
	}
	var nf *upstream.NotFoundError
	if errors.As(err, &nf) {
		return f.storeNotFound(ctx, t, nf)
	}
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	base := resp.Upstream.Base
	switch {
	case resp.StatusCode == http.StatusNotModified && old != nil:
		e := *old.Entry
		e.FetchedAt = f.Policy.Now()
		e.Pinned = e.Pinned || t.Pin
		ageIfWritten(&e)
		// Revalidated is not a hit (RFC 9211, 2.2): it went forward.
		out := MissBecause("fwd=stale; fwd-status=304")
		hot, err := f.Cache.Put(ctx, &e, nil)
		if err != nil {
			f.eng.storeError("write")
			return &Answer{Hot: old, Outcome: out, Upstream: base}, nil
		}
		return &Answer{Hot: hot, Outcome: out, Upstream: base}, nil
	case resp.StatusCode != http.StatusOK:
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			t.Pool.Fail(resp.Upstream, err)
			return nil, &upstream.Error{Upstream: base, Err: err}
		}
		return &Answer{Outcome: MissBecause(fmt.Sprintf("fwd=uri-miss; fwd-status=%d", resp.StatusCode)), Upstream: base,
			Relay: &Relayed{Status: resp.StatusCode, Header: keepHeaders(resp.Header, t.Keep), Body: body}}, nil
	}
	body := &ReadTracker{R: resp.Body}
	st, err := f.Cache.Stage(body, f.MaxBodySize, t.Want)
	if err != nil {
		switch {
		case errors.Is(err, cache.ErrDigestMismatch):
			f.verifyFailed(t, resp.Upstream, err)
			return nil, &VerifyError{err}
		case errors.Is(err, cache.ErrTooLarge):
			return nil, &upstream.Error{Upstream: base, Err: err}
		case ctx.Err() != nil || body.Err != nil:
			t.Pool.Fail(resp.Upstream, err)
			return nil, &upstream.Error{Upstream: base, Timeout: errors.Is(ctx.Err(), context.DeadlineExceeded), Err: err}
		default:
			f.writeFailed(t, err)
			if cache.Grouped(ctx) { // a sync's fill: its context carries the sync's group
				return nil, &StoreError{err}
			}
			// Give this answer's upstream slot back first: the refetch takes
			// one of its own, and a burst of such fills holding theirs would
			// wait for each other until the queue timeout (503 busy).
			resp.Body.Close()
			// Inside the fill, so every waiting client shares this one refetch.
			return f.fetchUnstored(ctx, t, err)
		}
	}
	defer st.Discard()
	if resp.ContentLength >= 0 && st.Size != resp.ContentLength {
		err := fmt.Errorf("body cut short: %d of %d bytes", st.Size, resp.ContentLength)
		t.Pool.Fail(resp.Upstream, err)
		return nil, &upstream.Error{Upstream: base, Err: err}
	}
	var meta json.RawMessage
	if t.Verify != nil {
		if meta, err = t.Verify(st); err != nil {
			f.verifyFailed(t, resp.Upstream, err)
			return nil, &VerifyError{err}
		}
	}
	h := keepHeaders(resp.Header, t.Keep)
	if t.FixHeader != nil {
		t.FixHeader(h)
	}
	e := &cache.Entry{
		Key: string(t.Key), Status: http.StatusOK, Header: h, FetchedAt: f.Policy.Now(), Class: t.Class,
		ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified"),
		Upstream: base, Pinned: t.Pin, Meta: meta,
	}
	ageIfWritten(e)
	hot, err := f.Cache.Put(f.grouped(ctx), e, st)
	if err != nil {
		f.writeFailed(t, err)
		if cache.Grouped(ctx) {
			return nil, &StoreError{err}
		}
		if st.Size <= maxUnstoredBody {
			if b, rerr := io.ReadAll(st.Reader()); rerr == nil {
				return &Answer{Outcome: unstored, Upstream: base, Relay: &Relayed{Status: http.StatusOK, Header: h, Body: b}, Cause: err}, nil
			}
		}
		resp.Body.Close() // its slot, as above
		return f.fetchUnstored(ctx, t, err)
	}
	if t.Stored != nil {
		t.Stored(e)
	}
	out := MissBecause("fwd=uri-miss; stored")
	if old != nil {
		out = MissBecause("fwd=stale; fwd-status=200; stored")
	}
	return &Answer{Hot: hot, Outcome: out, Upstream: base}, nil
}

// grouped is ctx with the fill group, unless it carries a group already (a
// sync's fills join the sync's).
func (f *UpstreamFill) grouped(ctx context.Context) context.Context {
	if f.group == nil || cache.Grouped(ctx) {
		return ctx
	}
	return cache.WithGroup(ctx, f.group)
}

// unstored is an upstream answer relayed because the store could not be written.
var unstored = Outcome{Bypass, `fwd=uri-miss; detail="not stored: write error"`}

func (f *UpstreamFill) writeFailed(t *Target, err error) {
	f.eng.storeError("write")
	f.eng.log.Error("store write failed; answering from the upstream without storing", "key", t.Key, "err", err)
	f.eng.note("store write " + string(t.Key) + ": " + err.Error())
}

// fetchUnstored fetches t into memory, verifies it and returns it as a relayed
// answer: the path taken when the store cannot be written (writeErr, the
// answer's Cause).
func (f *UpstreamFill) fetchUnstored(ctx context.Context, t *Target, writeErr error) (*Answer, error) {
	ctx, cancel := context.WithTimeout(ctx, f.Timeout)
	defer cancel()
	resp, err := t.Pool.Get(ctx, t.Path, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	base := resp.Upstream.Base
	if resp.StatusCode != http.StatusOK {
		return nil, &upstream.Error{Upstream: base, Status: resp.StatusCode, Err: fmt.Errorf("answered %d", resp.StatusCode)}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxUnstoredBody+1))
	if err != nil {
		return nil, &upstream.Error{Upstream: base, Err: err}
	}
	if len(b) > maxUnstoredBody {
		return nil, &upstream.Error{Upstream: base, Err: errors.New("body too large to answer without the store")}
	}
	if t.Want != "" {
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != t.Want {
			f.verifyFailed(t, resp.Upstream, cache.ErrDigestMismatch)
			return nil, &VerifyError{cache.ErrDigestMismatch}
		}
	}
	if t.Verify != nil {
		if _, err := t.Verify(MemBody(b)); err != nil {
			f.verifyFailed(t, resp.Upstream, err)
			return nil, &VerifyError{err}
		}
	}
	h := keepHeaders(resp.Header, t.Keep)
	if t.FixHeader != nil {
		t.FixHeader(h)
	}
	return &Answer{Outcome: unstored, Upstream: base, Relay: &Relayed{Status: http.StatusOK, Header: h, Body: b}, Cause: writeErr}, nil
}

func (f *UpstreamFill) verifyFailed(t *Target, u *upstream.Upstream, err error) {
	if f.eng.counters.VerifyFailures != nil {
		f.eng.counters.VerifyFailures.Inc()
	}
	f.eng.log.Error("upstream body failed verification; not stored", "api", t.API, "key", t.Key, "upstream", u.Base, "err", err)
	f.eng.note(fmt.Sprintf("%s from %s failed verification, not stored: %v", t.Key, u.Base, err))
	t.Pool.Fail(u, err)
}

func (f *UpstreamFill) storeNotFound(ctx context.Context, t *Target, nf *upstream.NotFoundError) (*Answer, error) {
	h := keepHeaders(nf.Header, defaultKeep)
	e := &cache.Entry{Key: string(t.Key), Status: http.StatusNotFound, Header: h, FetchedAt: f.Policy.Now(), Class: cache.Negative,
		Upstream: nf.Upstream}
	hot, err := f.Cache.PutBody(f.grouped(ctx), e, nf.Body)
	if err != nil {
		f.eng.storeError("write")
		return &Answer{Outcome: MissBecause("fwd=uri-miss; fwd-status=404"), Upstream: nf.Upstream,
			Relay: &Relayed{Status: http.StatusNotFound, Header: h, Body: nf.Body}}, nil
	}
	return &Answer{Hot: hot, Outcome: MissBecause("fwd=uri-miss; fwd-status=404; stored"), Upstream: nf.Upstream}, nil
}

// ReadTracker remembers a read error so a body cut short by its sender (an
// upstream, a client's upload) is told apart from a failed write of the
// staged file.
type ReadTracker struct {
	R   io.Reader
	Err error // the first read error other than io.EOF
}

// Read reads from R and remembers an error.
func (t *ReadTracker) Read(p []byte) (int, error) {
	n, err := t.R.Read(p)
	if err != nil && err != io.EOF && t.Err == nil {
		t.Err = err
	}
	return n, err
}

// keepHeaders copies the headers named in keep (Content-Type when nil).
func keepHeaders(from http.Header, keep []string) http.Header {
	if keep == nil {
		keep = defaultKeep
	}
	h := http.Header{}
	for _, k := range keep {
		if v := from.Values(k); len(v) > 0 {
			h[http.CanonicalHeaderKey(k)] = append([]string(nil), v...)
		}
	}
	return h
}
