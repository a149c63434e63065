package engine

import (
	"time"

	"github.com/regmirror/regmirror/cache"
)

// Verdict is what the policy says of a stored entry.
type Verdict uint8

const (
	// Fresh: serve it without asking the upstream.
	Fresh Verdict = iota
	// Revalidate: ask the upstream; if that fails, the entry may still be
	// served STALE (within stale-if-error).
	Revalidate
	// Expired: ask the upstream; past stale-if-error, the entry is not served
	// when that fails.
	Expired
)

// Policy is the one place that decides freshness (design.md, "Freshness: two
// classes of content"): for each class of entry, how long it is fresh, how
// long after that it may still answer as STALE when the upstreams fail, and
// the ttl reported in Cache-Status. Handlers never compare times themselves.
type Policy struct {
	// MetadataMaxAge is how long a mutable entry is fresh.
	MetadataMaxAge time.Duration
	// NegativeMaxAge is how long a not-found answer is fresh.
	NegativeMaxAge time.Duration
	// StaleIfError is how long past its max-age an entry may be served STALE
	// after an upstream failure; 0 is forever.
	StaleIfError time.Duration
	// Clock is the time source; nil is time.Now. Tests move it instead of
	// sleeping.
	Clock func() time.Time
}

// Now is the policy's clock.
func (p *Policy) Now() time.Time {
	if p.Clock != nil {
		return p.Clock()
	}
	return time.Now()
}

// maxAge is how long an entry of class c is fresh; forever for immutable ones.
func (p *Policy) maxAge(c cache.Class) (d time.Duration, forever bool) {
	switch c {
	case cache.Immutable:
		return 0, true
	case cache.Negative:
		return p.NegativeMaxAge, false
	default:
		return p.MetadataMaxAge, false
	}
}

// Decide says what to do with a stored entry now.
func (p *Policy) Decide(e *cache.Entry) Verdict { return p.DecideAt(e, p.Now()) }

// DecideAt is Decide at a given time.
func (p *Policy) DecideAt(e *cache.Entry, now time.Time) Verdict {
	d, forever := p.maxAge(e.Class)
	age := now.Sub(e.FetchedAt)
	switch {
	case forever || age < d:
		return Fresh
	case p.StaleIfError == 0 || age < d+p.StaleIfError:
		return Revalidate
	}
	return Expired
}

// Fresh reports whether e may be served without asking the upstream: the
// cached-hit path's one question.
func (p *Policy) Fresh(e *cache.Entry) bool {
	if e.Class == cache.Immutable { // no clock read on the cached-hit path
		return true
	}
	return p.DecideAt(e, p.Now()) == Fresh
}

// FreshAt is Fresh at a given time (the fast lane's request time).
func (p *Policy) FreshAt(e *cache.Entry, now time.Time) bool { return p.DecideAt(e, now) == Fresh }

// UsableStale reports whether e may answer as STALE after the upstreams failed.
func (p *Policy) UsableStale(e *cache.Entry) bool { return p.Decide(e) != Expired }

// TTL is the entry's remaining freshness in whole seconds (negative once it
// is stale), as Cache-Status reports it; ok is false for immutable entries.
func (p *Policy) TTL(e *cache.Entry) (ttl int64, ok bool) {
	d, forever := p.maxAge(e.Class)
	if forever {
		return 0, false
	}
	return int64(d.Seconds()) - int64(p.Now().Sub(e.FetchedAt).Seconds()), true
}

// AlreadyStale is a fetch time that makes a mutable entry due for
// revalidation now (but still usable as STALE): what a fill that raced a
// write stores.
func (p *Policy) AlreadyStale() time.Time {
	return p.Now().Add(-p.MetadataMaxAge - time.Second)
}

// MakeStale makes e due for revalidation now, keeping it usable as STALE:
// what a write does to the entries it made out of date. It reports whether e
// changed.
func (p *Policy) MakeStale(e *cache.Entry) bool {
	stale := p.AlreadyStale()
	if !e.FetchedAt.After(stale) {
		return false
	}
	e.FetchedAt = stale
	return true
}

// FilledSince reports whether e, an entry another replica stored while this
// one waited for the fleet's lease, answers a fill that began at start: for a
// refresh (sync), one fetched since; else one newer than old (the entry being
// revalidated, if any) and fresh.
func (p *Policy) FilledSince(e *cache.Entry, old *cache.Entry, start time.Time, refresh bool) bool {
	if refresh {
		return !e.FetchedAt.Before(start)
	}
	if old != nil && !e.FetchedAt.After(old.FetchedAt) {
		return false
	}
	return p.Fresh(e)
}

// SyncCurrent reports whether a sync completed at `at` still lets the mirror
// answer from what it synced alone (Hydrilla /query from the pattern index):
// for two sync intervals, and never less than metadata-max-age.
func (p *Policy) SyncCurrent(at time.Time, syncInterval time.Duration) bool {
	fresh := max(2*syncInterval, p.MetadataMaxAge)
	return p.Now().Sub(at) <= fresh
}
