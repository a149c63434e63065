package engine

import (
	"net/http"
	"strconv"
	"strings"
)

// State is how an answer was obtained, sent as X-Cache.
type State string

// X-Cache values (design.md).
const (
	Hit    State = "HIT"
	Miss   State = "MISS"
	Stale  State = "STALE"
	Bypass State = "BYPASS"
)

// Outcome is an answer's cache result: its X-Cache state and its Cache-Status
// (RFC 9211) parameters. It is the one value behind both headers, the
// requests metric's cache label and the access line's cache field, so they
// always agree: HIT and STALE carry "hit", MISS and BYPASS "fwd=…".
type Outcome struct {
	State State
	// Params are the Cache-Status parameters after the cache's name.
	Params string
}

// Outcomes used in several places.
var (
	// HitOutcome is a fresh stored answer: the cached-hit path.
	HitOutcome = Outcome{Hit, "hit"}
	// WriteOutcome is a write passed to the upstream.
	WriteOutcome = Outcome{Bypass, "fwd=bypass"}
)

// HitBecause is a hit with a detail saying where it came from.
func HitBecause(detail string) Outcome { return Outcome{Hit, "hit; detail=" + strconv.Quote(detail)} }

// StaleBecause is a stored (or derived) answer given because the upstreams
// failed; ttl, when ok, is the policy's.
func StaleBecause(why string, ttl int64, ok bool) Outcome {
	p := "hit"
	if ok {
		p += "; ttl=" + strconv.FormatInt(ttl, 10)
	}
	return Outcome{Stale, p + "; detail=" + strconv.Quote("stale-if-error: "+why)}
}

// MissBecause is an answer fetched (or attempted) from an upstream.
func MissBecause(params string) Outcome { return Outcome{Miss, params} }

// FailedOutcome is an error answer the mirror makes after the upstreams
// failed (or were not asked): a miss that forwarded, or would have.
func FailedOutcome(detail string) Outcome {
	return Outcome{Miss, "fwd=uri-miss; detail=" + strconv.Quote(detail)}
}

// rank orders states for AtLeast.
func (s State) rank() int {
	switch s {
	case Miss:
		return 1
	case Stale:
		return 2
	}
	return 0
}

// AtLeast is o, or floor when floor is worse: an answer found through a
// stale (or just fetched) "latest" is reported as that, even when the
// version itself is held. The whole outcome is taken, so the two headers
// still agree.
func (o Outcome) AtLeast(floor Outcome) Outcome {
	if floor.State.rank() > o.State.rank() {
		return floor
	}
	return o
}

// Collapsed marks an outcome shared with a concurrent request's fill.
func (o Outcome) Collapsed() Outcome {
	if strings.Contains(o.Params, "fwd=") {
		o.Params += "; collapsed"
	}
	return o
}

// xCacheValues and plainHit are shared, read-only header values: the hot
// path assigns them instead of allocating.
var (
	xCacheValues = map[State][]string{Hit: {"HIT"}, Miss: {"MISS"}, Stale: {"STALE"}, Bypass: {"BYPASS"}}
	plainHit     = []string{"regmirror; hit"}
)

// CacheName names the mirror in Cache-Status.
const CacheName = "regmirror"

// SetHeaders writes X-Cache and Cache-Status: the one place that does.
func (o Outcome) SetHeaders(h http.Header) {
	if v, ok := xCacheValues[o.State]; ok {
		h["X-Cache"] = v
	} else {
		h["X-Cache"] = []string{string(o.State)}
	}
	if o.Params == "hit" {
		h["Cache-Status"] = plainHit
	} else {
		h["Cache-Status"] = []string{CacheName + "; " + o.Params}
	}
}
