package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/upstream"
)

// target is one cacheable answer: where it is stored, where it comes from, and
// how it is checked before it is stored.
type target struct {
	api, route string
	key        string
	class      cache.Class
	pool       *upstream.Pool
	path       string // escaped upstream path with its query, joined to the base URL
	// want, when set, is the sha256 the body must have (Hydrilla files).
	want string
	// verify checks a staged body before it is committed; an error is a 502.
	// What it returns is kept as the entry's Meta.
	verify func(st body) (json.RawMessage, error)
	// from, when set, is the one upstream to ask (answers merged per upstream).
	from *upstream.Upstream
	// stored is told of every entry the fill stores.
	stored func(*cache.Entry)
	// keep lists the upstream headers replayed with the stored body.
	keep []string
	// fixHeader adjusts the replayed headers (e.g. a zip always says application/zip).
	fixHeader func(http.Header)
	pin       bool
	// refresh asks the upstream even when a mutable entry is still fresh (sync).
	refresh bool
}

// State is how an answer was obtained, sent as X-Cache.
type State string

// X-Cache values (design.md).
const (
	Hit    State = "HIT"
	Miss   State = "MISS"
	Stale  State = "STALE"
	Bypass State = "BYPASS"
)

// answer is what resolve found: a stored entry, or an upstream answer that is
// relayed but not stored (a 401, a 400 …).
type answer struct {
	hot    *cache.Hot
	state  State
	status string // Cache-Status parameters after the cache name
	relay  *relayed
}

type relayed struct {
	status int
	header http.Header
	body   []byte
}

// body is an upstream answer's bytes held for verification: a staged file, or
// memory when the store cannot be written.
type body interface {
	io.ReaderAt
	Reader() io.Reader
	Len() int64
}

// memBody is a body held in memory.
type memBody []byte

func (m memBody) ReadAt(p []byte, off int64) (int, error) { return bytes.NewReader(m).ReadAt(p, off) }
func (m memBody) Reader() io.Reader                       { return bytes.NewReader(m) }
func (m memBody) Len() int64                              { return int64(len(m)) }

// verifyError is a body refused by verification: a 502, counted.
type verifyError struct{ err error }

func (e *verifyError) Error() string { return "verification failed: " + e.err.Error() }
func (e *verifyError) Unwrap() error { return e.err }

var defaultKeep = []string{"Content-Type"}

// maxUnstoredBody bounds what is held in memory to answer a client when the
// store cannot be written.
const maxUnstoredBody = 64 << 20

// fetchUnstored fetches t into memory, verifies it and returns it as a relayed
// answer: the path taken when the store cannot be written.
func (s *Server) fetchUnstored(ctx context.Context, t *target) (*answer, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.UpstreamTimeout)
	defer cancel()
	resp, err := t.pool.Get(ctx, t.path, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &upstream.Error{Upstream: resp.Upstream.Base, Status: resp.StatusCode, Err: fmt.Errorf("answered %d", resp.StatusCode)}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxUnstoredBody+1))
	if err != nil {
		return nil, &upstream.Error{Upstream: resp.Upstream.Base, Err: err}
	}
	if len(b) > maxUnstoredBody {
		return nil, &upstream.Error{Upstream: resp.Upstream.Base, Err: errors.New("body too large to answer without the store")}
	}
	if t.want != "" {
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != t.want {
			s.verifyFailed(t, resp.Upstream, cache.ErrDigestMismatch)
			return nil, &verifyError{cache.ErrDigestMismatch}
		}
	}
	if t.verify != nil {
		if _, err := t.verify(memBody(b)); err != nil {
			s.verifyFailed(t, resp.Upstream, err)
			return nil, &verifyError{err}
		}
	}
	h := keepHeaders(resp.Header, t.keep)
	if t.fixHeader != nil {
		t.fixHeader(h)
	}
	return &answer{state: Bypass, status: `fwd=uri-miss; detail="not stored: write error"`,
		relay: &relayed{status: http.StatusOK, header: h, body: b}}, nil
}

// resolve answers t from the cache, or with one coalesced upstream fetch, or
// with a stale copy when the upstreams fail.
func (s *Server) resolve(ctx context.Context, t *target) (*answer, error) {
	now := time.Now()
	hot, err := s.cache.Lookup(ctx, t.key)
	if err != nil && !errors.Is(err, cache.ErrNotFound) {
		s.metrics.StoreErrors.WithLabelValues("read").Inc()
		s.log.Error("store lookup", "key", t.key, "err", err)
		s.noteError("store read " + t.key + ": " + err.Error())
		hot = nil
	}
	if hot != nil && (hot.Entry.Class == cache.Immutable || !t.refresh) && hot.Entry.Fresh(now, s.cfg.MetadataMaxAge, s.cfg.NegativeMaxAge) {
		return &answer{hot: hot, state: Hit, status: "hit"}, nil
	}
	if t.pool.Offline() {
		if hot != nil {
			return s.stale(hot, "offline"), nil
		}
		return nil, upstream.ErrOffline
	}
	leader := false
	ch := s.fills.DoChan(t.key, func() (any, error) {
		leader = true
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.UpstreamTimeout)
		defer cancel()
		if s.fleet != nil {
			return s.fleetFill(fctx, t, hot)
		}
		return s.fill(fctx, t, hot)
	})
	var res singleflightResult
	select {
	case r := <-ch:
		res = singleflightResult{r.Val, r.Err, r.Shared}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if res.shared && !leader {
		s.metrics.Coalesced.Inc()
	}
	if res.err != nil {
		if leader && !isVerify(res.err) && !errors.Is(res.err, upstream.ErrNoUpstream) && !errors.Is(res.err, context.Canceled) {
			s.noteError(t.key + ": " + res.err.Error())
		}
		if hot != nil && s.staleAllowed(hot.Entry, now) && !isVerify(res.err) {
			return s.stale(hot, "upstream error"), nil
		}
		if hot != nil && isVerify(res.err) {
			// Bytes that failed verification never replace what we hold.
			return s.stale(hot, "upstream answer failed verification"), nil
		}
		return nil, res.err
	}
	a := *res.val.(*answer)
	if !leader && a.relay == nil {
		a.status += "; collapsed"
	}
	return &a, nil
}

type singleflightResult struct {
	val    any
	err    error
	shared bool
}

func isVerify(err error) bool {
	var ve *verifyError
	return errors.As(err, &ve)
}

func (s *Server) staleAllowed(e *cache.Entry, now time.Time) bool {
	if s.cfg.StaleIfError == 0 {
		return true
	}
	maxAge := s.cfg.MetadataMaxAge
	if e.Class == cache.Negative {
		maxAge = s.cfg.NegativeMaxAge
	}
	return e.Age(now) < maxAge+s.cfg.StaleIfError
}

func (s *Server) stale(hot *cache.Hot, why string) *answer {
	s.metrics.StaleServed.Inc()
	ttl := int64(s.cfg.MetadataMaxAge.Seconds()) - int64(hot.Entry.Age(time.Now()).Seconds())
	return &answer{hot: hot, state: Stale, status: fmt.Sprintf("hit; ttl=%d; detail=%q", ttl, "stale-if-error: "+why)}
}

// fleetFill is fill for replicas sharing a bucket: one replica takes the key's
// lease and fetches, the others wait for its entry record, so the fleet makes
// one upstream request per object (and one revalidation per max-age). When the
// bucket is slow or down it fails open: content addressing makes a duplicate
// fetch harmless.
func (s *Server) fleetFill(ctx context.Context, t *target, hot *cache.Hot) (*answer, error) {
	start := time.Now()
	var a *answer
	done := func(e *cache.Entry) bool {
		if t.refresh {
			return !e.FetchedAt.Before(start)
		}
		if hot != nil && !e.FetchedAt.After(hot.Entry.FetchedAt) {
			return false
		}
		return e.Fresh(time.Now(), s.cfg.MetadataMaxAge, s.cfg.NegativeMaxAge)
	}
	e, filled, err := s.fleet.FillOnce(ctx, t.key, 50*time.Millisecond, done, func(ctx context.Context) error {
		var err error
		a, err = s.fill(ctx, t, hot)
		return err
	})
	if filled {
		return a, err
	}
	if err != nil {
		return nil, err
	}
	h, err := s.cache.Reload(ctx, e.Key)
	if err != nil {
		return s.fill(ctx, t, hot)
	}
	if t.stored != nil {
		t.stored(h.Entry)
	}
	return &answer{hot: h, state: Hit, status: `hit; detail="filled by another replica"`}, nil
}

// fill fetches t from the upstreams, verifies and stores it. old is the stale
// entry being revalidated, if any.
func (s *Server) fill(ctx context.Context, t *target, old *cache.Hot) (*answer, error) {
	gen := s.writeGen.Load()
	// A write that succeeded while this fill ran may have made its answer old:
	// store it, but already stale, so the next read asks again.
	ageIfWritten := func(e *cache.Entry) {
		if e.Class == cache.Mutable && s.writeGen.Load() != gen {
			e.FetchedAt = time.Now().Add(-s.cfg.MetadataMaxAge - time.Second)
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
	if t.from != nil {
		resp, err = t.pool.GetFrom(ctx, t.from, t.path, hdr)
	} else {
		resp, err = t.pool.Get(ctx, t.path, hdr)
	}
	var nf *upstream.NotFoundError
	if errors.As(err, &nf) {
		return s.storeNotFound(ctx, t, nf)
	}
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && old != nil:
		e := *old.Entry
		e.FetchedAt = time.Now()
		e.Pinned = e.Pinned || t.pin
		ageIfWritten(&e)
		hot, err := s.cache.Put(ctx, &e, nil)
		if err != nil {
			s.metrics.StoreErrors.WithLabelValues("write").Inc()
			return &answer{hot: old, state: Hit, status: "fwd=stale; fwd-status=304"}, nil
		}
		return &answer{hot: hot, state: Hit, status: "fwd=stale; fwd-status=304"}, nil
	case resp.StatusCode != http.StatusOK:
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			t.pool.Fail(resp.Upstream, err)
			return nil, &upstream.Error{Upstream: resp.Upstream.Base, Err: err}
		}
		return &answer{state: Miss, status: fmt.Sprintf("fwd=uri-miss; fwd-status=%d", resp.StatusCode),
			relay: &relayed{status: resp.StatusCode, header: keepHeaders(resp.Header, t.keep), body: body}}, nil
	}
	body := &readTracker{r: resp.Body}
	st, err := s.cache.Stage(body, s.cfg.MaxBodySize, t.want)
	if err != nil {
		switch {
		case errors.Is(err, cache.ErrDigestMismatch):
			s.verifyFailed(t, resp.Upstream, err)
			return nil, &verifyError{err}
		case errors.Is(err, cache.ErrTooLarge):
			return nil, &upstream.Error{Upstream: resp.Upstream.Base, Err: err}
		case ctx.Err() != nil || body.err != nil:
			t.pool.Fail(resp.Upstream, err)
			return nil, &upstream.Error{Upstream: resp.Upstream.Base, Timeout: errors.Is(ctx.Err(), context.DeadlineExceeded), Err: err}
		default:
			s.metrics.StoreErrors.WithLabelValues("write").Inc()
			s.log.Error("store write failed; answering from the upstream without storing", "key", t.key, "err", err)
			s.noteError("store write " + t.key + ": " + err.Error())
			// Inside the fill, so every waiting client shares this one refetch.
			return s.fetchUnstored(ctx, t)
		}
	}
	defer st.Discard()
	if resp.ContentLength >= 0 && st.Size != resp.ContentLength {
		err := fmt.Errorf("body cut short: %d of %d bytes", st.Size, resp.ContentLength)
		t.pool.Fail(resp.Upstream, err)
		return nil, &upstream.Error{Upstream: resp.Upstream.Base, Err: err}
	}
	var meta json.RawMessage
	if t.verify != nil {
		if meta, err = t.verify(st); err != nil {
			s.verifyFailed(t, resp.Upstream, err)
			return nil, &verifyError{err}
		}
	}
	h := keepHeaders(resp.Header, t.keep)
	if t.fixHeader != nil {
		t.fixHeader(h)
	}
	e := &cache.Entry{
		Key: t.key, Status: http.StatusOK, Header: h, FetchedAt: time.Now(), Class: t.class,
		ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified"),
		Upstream: resp.Upstream.Base, Pinned: t.pin, Meta: meta,
	}
	ageIfWritten(e)
	hot, err := s.cache.Put(ctx, e, st)
	if err != nil {
		s.metrics.StoreErrors.WithLabelValues("write").Inc()
		s.log.Error("store write failed; answering from the upstream without storing", "key", t.key, "err", err)
		s.noteError("store write " + t.key + ": " + err.Error())
		if st.Size <= maxUnstoredBody {
			if b, rerr := io.ReadAll(st.Reader()); rerr == nil {
				return &answer{state: Bypass, status: `fwd=uri-miss; detail="not stored: write error"`,
					relay: &relayed{status: http.StatusOK, header: h, body: b}}, nil
			}
		}
		return s.fetchUnstored(ctx, t)
	}
	if t.stored != nil {
		t.stored(e)
	}
	status := "fwd=uri-miss; stored"
	if old != nil {
		status = "fwd=stale; fwd-status=200; stored"
	}
	return &answer{hot: hot, state: Miss, status: status}, nil
}

// readTracker remembers a read error so a body cut short by the upstream is
// told apart from a failed write of the staged file.
type readTracker struct {
	r   io.Reader
	err error
}

func (t *readTracker) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

func (s *Server) verifyFailed(t *target, u *upstream.Upstream, err error) {
	s.metrics.VerifyFailures.Inc()
	s.log.Error("upstream body failed verification; not stored", "api", t.api, "key", t.key, "upstream", u.Base, "err", err)
	s.noteError(fmt.Sprintf("%s from %s failed verification, not stored: %v", t.key, u.Base, err))
	t.pool.Fail(u, err)
}

func (s *Server) storeNotFound(ctx context.Context, t *target, nf *upstream.NotFoundError) (*answer, error) {
	h := keepHeaders(nf.Header, defaultKeep)
	e := &cache.Entry{Key: t.key, Status: http.StatusNotFound, Header: h, FetchedAt: time.Now(), Class: cache.Negative}
	hot, err := s.cache.PutBody(ctx, e, nf.Body)
	if err != nil {
		s.metrics.StoreErrors.WithLabelValues("write").Inc()
		return &answer{state: Miss, status: "fwd=uri-miss; fwd-status=404",
			relay: &relayed{status: http.StatusNotFound, header: h, body: nf.Body}}, nil
	}
	return &answer{hot: hot, state: Miss, status: "fwd=uri-miss; fwd-status=404; stored"}, nil
}

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
