package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// ErrLeaseHeld means another replica holds the lease on the key and is filling
// it: wait for its entry record (WaitEntry) instead of fetching.
var ErrLeaseHeld = errors.New("lease held by another replica")

// ErrLeaseFree is WaitEntry's answer when the lease went away (released, or
// expired because its holder died) without an entry record being written:
// acquire it and fetch.
var ErrLeaseFree = errors.New("lease released or expired without an entry")

// ErrLeaseLost means a renewal found the lease taken over by another replica
// (this one did not renew it within its TTL).
var ErrLeaseLost = errors.New("lease lost to another replica")

// leaseRecord is a lease object's body.
type leaseRecord struct {
	Key     string    `json:"key"`
	Holder  string    `json:"holder"`
	Token   string    `json:"token"` // tells this holder's own writes apart (a retried PUT)
	Expires time.Time `json:"expires"`
}

// Lease is a held fill lease: the right to fetch one key from the upstream for
// the whole fleet. Acquire starts a goroutine that renews it every TTL/3;
// Release stops it and deletes the lease. Expiry compares the holder's clock
// with the reader's, so replicas' clocks must agree to well within the TTL.
type Lease struct {
	s      *S3
	key    string
	objKey string
	token  string

	mu      sync.Mutex
	etag    string
	expires time.Time

	stop     chan struct{}
	done     chan struct{}
	lost     chan struct{}
	lostOnce sync.Once
	stopOnce sync.Once
	relOnce  sync.Once
}

func (s *S3) leaseKey(key string) string { return s.key("leases/" + encodeKey(key)) }

// Acquire takes the fill lease on key: a PUT with If-None-Match: *, or, over a
// lease whose holder let it expire, a PUT with If-Match: its ETag. Another
// replica's live lease is ErrLeaseHeld. When the store is slow or down the
// error wraps ErrStoreUnavailable: fail open and fetch without a lease.
func (s *S3) Acquire(ctx context.Context, key string) (held *Lease, err error) {
	if !s.checked.Load() {
		return nil, fmt.Errorf("acquire lease %q: %w: conditional writes not yet checked", key, ErrStoreUnavailable)
	}
	l := &Lease{s: s, key: key, objKey: s.leaseKey(key), token: randomHex(8)}
	for attempt := 0; attempt < 4; attempt++ {
		etag, err := l.put(ctx, "*", "")
		if err == nil {
			return l.start(etag), nil
		}
		if !isPreconditionFailed(err) && !isConflict(err) {
			return nil, fmt.Errorf("acquire lease %q: %w", key, s.classify(ctx, err))
		}
		rec, etag, err := s.readLease(ctx, key)
		if errors.Is(err, ErrNotFound) {
			continue // released meanwhile: try again
		}
		if err != nil {
			return nil, fmt.Errorf("acquire lease %q: %w", key, err)
		}
		if rec.Holder == s.opts.Holder && rec.Token == l.token {
			return l.start(etag), nil // our own PUT, retried by the SDK
		}
		if time.Now().Before(rec.Expires) {
			return nil, fmt.Errorf("%w: %q by %s until %s", ErrLeaseHeld, key, rec.Holder, rec.Expires.Format(time.RFC3339Nano))
		}
		// Expired: its holder crashed or lost the bucket. Take it over.
		etag, err = l.put(ctx, "", etag)
		if err == nil {
			s.log.Info("took over an expired lease", "key", key, "from", rec.Holder, "expired", rec.Expires)
			return l.start(etag), nil
		}
		if isPreconditionFailed(err) || isConflict(err) || isNoSuchKey(err) {
			continue // someone else took it over or released it first: look again
		}
		return nil, fmt.Errorf("acquire lease %q: %w", key, s.classify(ctx, err))
	}
	return nil, fmt.Errorf("%w: %q changes hands too fast", ErrLeaseHeld, key)
}

// put writes the lease record with a new expiry under one condition.
func (l *Lease) put(ctx context.Context, ifNoneMatch, ifMatch string) (string, error) {
	rec := leaseRecord{Key: l.key, Holder: l.s.opts.Holder, Token: l.token, Expires: time.Now().Add(l.s.opts.LeaseTTL)}
	body, _ := json.Marshal(rec)
	in := &s3.PutObjectInput{
		Bucket: &l.s.opts.Bucket, Key: &l.objKey,
		Body: strings.NewReader(string(body)), ContentLength: aws.Int64(int64(len(body))),
		ContentType: aws.String("application/json"),
	}
	if ifNoneMatch != "" {
		in.IfNoneMatch = aws.String(ifNoneMatch)
	}
	if ifMatch != "" {
		in.IfMatch = aws.String(ifMatch)
	}
	if err := l.s.failFast(); err != nil {
		return "", err
	}
	octx, cancel := context.WithTimeout(ctx, l.s.opts.OpTimeout)
	defer cancel()
	out, err := l.s.client.PutObject(octx, in, withPayloadHash(body))
	if err != nil {
		if ctx.Err() == nil && octx.Err() != nil {
			return "", l.s.markDown(fmt.Errorf("no answer in %s: %v", l.s.opts.OpTimeout, err))
		}
		if st := statusOf(err); st != 0 && st < 500 {
			l.s.markUp() // an answer (412 …): the bucket is there
		}
		return "", err
	}
	l.s.classify(ctx, nil)
	l.mu.Lock()
	l.expires = rec.Expires
	l.mu.Unlock()
	return aws.ToString(out.ETag), nil
}

func (l *Lease) start(etag string) *Lease {
	l.etag = etag
	l.stop, l.done, l.lost = make(chan struct{}), make(chan struct{}), make(chan struct{})
	l.s.leases.Store(l, struct{}{})
	go l.renewLoop()
	return l
}

// stopRenewing ends the renewal goroutine; the lease then lapses after its TTL.
func (l *Lease) stopRenewing() {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
	l.s.leases.Delete(l)
}

func (l *Lease) renewLoop() {
	defer close(l.done)
	t := time.NewTicker(l.s.opts.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), l.s.opts.LeaseTTL/3)
			err := l.Renew(ctx)
			cancel()
			if errors.Is(err, ErrLeaseLost) {
				return
			}
			if err != nil {
				l.s.log.Warn("lease renewal failed; retrying", "key", l.key, "err", err)
			}
		}
	}
}

// Renew extends the lease by its TTL (If-Match: the ETag of our last write).
// The renewal goroutine calls it every TTL/3; a lease found taken over is
// ErrLeaseLost and Lost() is closed.
func (l *Lease) Renew(ctx context.Context) error {
	l.mu.Lock()
	etag := l.etag
	l.mu.Unlock()
	newTag, err := l.put(ctx, "", etag)
	if err != nil {
		if isPreconditionFailed(err) || isNoSuchKey(err) {
			l.lostOnce.Do(func() { close(l.lost) })
			return fmt.Errorf("%w: %q", ErrLeaseLost, l.key)
		}
		return fmt.Errorf("renew lease %q: %w", l.key, l.s.classify(ctx, err))
	}
	l.mu.Lock()
	l.etag = newTag
	l.mu.Unlock()
	return nil
}

// Key is the cache key the lease is on.
func (l *Lease) Key() string { return l.key }

// Expires is when the lease lapses unless renewed.
func (l *Lease) Expires() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.expires
}

// Lost is closed when a renewal finds the lease taken over.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Release stops the renewals and deletes the lease with If-Match: its ETag,
// so a lease taken over by another replica is left alone. Call it after the
// entry record is written (or the fill failed). Releasing twice is a no-op.
func (l *Lease) Release(ctx context.Context) error {
	var err error
	l.relOnce.Do(func() {
		l.stopRenewing()
		l.mu.Lock()
		etag := l.etag
		l.mu.Unlock()
		err = l.s.op(ctx, func(ctx context.Context) error {
			_, err := l.s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &l.s.opts.Bucket, Key: &l.objKey, IfMatch: aws.String(etag)})
			return err
		})
		if err != nil && (isPreconditionFailed(err) || errors.Is(err, ErrNotFound)) {
			err = nil // taken over or gone: not ours to delete
		}
		if err != nil {
			err = fmt.Errorf("release lease %q: %w", l.key, err)
		}
	})
	return err
}

// readLease reads the lease on key and its ETag; absent wraps ErrNotFound.
func (s *S3) readLease(ctx context.Context, key string) (*leaseRecord, string, error) {
	var body []byte
	var etag string
	err := s.op(ctx, func(ctx context.Context) error {
		out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.opts.Bucket, Key: aws.String(s.leaseKey(key))})
		if err != nil {
			return err
		}
		defer out.Body.Close()
		etag = aws.ToString(out.ETag)
		body, err = io.ReadAll(io.LimitReader(out.Body, 1<<20))
		return err
	})
	if err != nil {
		return nil, "", err
	}
	rec := new(leaseRecord)
	if err := json.Unmarshal(body, rec); err != nil {
		// Unreadable: treat as expired so it is taken over.
		return &leaseRecord{Key: key}, etag, nil
	}
	return rec, etag, nil
}

// WaitEntry waits, polling with backoff from poll, until the lease on key is
// gone, and returns the entry record its holder wrote. It returns ErrLeaseFree
// when the lease was released or expired with no entry recorded (the holder
// failed or died: acquire the lease and fetch), and wraps ErrStoreUnavailable
// when the store is slow or down (fetch anyway). A caller revalidating a stale
// entry compares the returned entry's FetchedAt with the one it had.
func (s *S3) WaitEntry(ctx context.Context, key string, poll time.Duration) (*Entry, error) {
	if poll <= 0 {
		poll = 50 * time.Millisecond
	}
	delay, maxDelay := poll, 8*poll
	if maxDelay > s.opts.LeaseTTL/3 {
		maxDelay = max(poll, s.opts.LeaseTTL/3)
	}
	for {
		rec, _, err := s.readLease(ctx, key)
		switch {
		case errors.Is(err, ErrNotFound):
			e, err := s.Entry(ctx, key)
			if errors.Is(err, ErrNotFound) {
				return nil, fmt.Errorf("%w: %q", ErrLeaseFree, key)
			}
			return e, err
		case err != nil:
			return nil, fmt.Errorf("wait for %q: %w", key, err)
		case !time.Now().Before(rec.Expires):
			return nil, fmt.Errorf("%w: %q: %s's lease expired at %s", ErrLeaseFree, key, rec.Holder, rec.Expires.Format(time.RFC3339Nano))
		}
		// Jitter spreads the fleet's polls.
		d := delay/2 + rand.N(delay/2+1)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(d):
		}
		delay = min(delay*3/2, maxDelay)
	}
}

// FillOnce runs fill on one replica of the fleet at a time for key, and lets
// the others use what it stored:
//
//   - First, and again once it holds the lease, it reads the entry record
//     (another replica may have stored it since the caller's miss) and returns
//     it when done says it answers the request. Otherwise, holding the lease,
//     it runs fill, which must store the blob and then the entry record, and
//     releases the lease when fill returns.
//   - When another replica holds the lease, it waits for that replica's entry
//     record (WaitEntry, polling from poll) and returns it when done accepts it;
//     when the holder stored nothing usable or died, it tries to take the lease.
//   - When the store is slow or down, it runs fill without a lease (fail open:
//     blobs are content-addressed, a duplicate fetch is harmless).
//
// filled reports whether fill ran here; then err is fill's. Otherwise e is the
// entry another replica stored (or err the context's).
func (s *S3) FillOnce(ctx context.Context, key string, poll time.Duration, done func(*Entry) bool, fill func(context.Context) error) (e *Entry, filled bool, err error) {
	// The caller's copy may be older than the bucket's (another replica
	// revalidated it): then no lease is needed.
	if e, err := s.Entry(ctx, key); err == nil && done(e) {
		s.leaseShared.Add(1)
		return e, false, nil
	}
	for attempt := 0; attempt < 3; attempt++ {
		l, err := s.Acquire(ctx, key)
		switch {
		case err == nil:
			if e, err := s.Entry(ctx, key); err == nil && done(e) {
				l.Release(context.WithoutCancel(ctx))
				s.leaseShared.Add(1)
				return e, false, nil
			}
			err := fill(ctx)
			if rerr := l.Release(context.WithoutCancel(ctx)); rerr != nil {
				s.log.Warn("release lease", "key", key, "err", rerr)
			}
			return nil, true, err
		case errors.Is(err, ErrLeaseHeld):
			e, err := s.WaitEntry(ctx, key, poll)
			switch {
			case err == nil && done(e):
				s.leaseShared.Add(1)
				return e, false, nil
			case err == nil || errors.Is(err, ErrLeaseFree):
				continue // nothing usable stored: take the lease
			case ctx.Err() != nil:
				return nil, false, ctx.Err()
			}
			s.log.Warn("waiting for another replica's fill failed; fetching without a lease", "key", key, "err", err)
		case ctx.Err() != nil:
			return nil, false, ctx.Err()
		default:
			s.log.Warn("no fill lease; fetching without one", "key", key, "err", err)
		}
		break
	}
	s.leaseFailOpen.Add(1)
	return nil, true, fill(ctx)
}
