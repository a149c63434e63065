package engine

import (
	"context"
	"errors"
	"time"

	"github.com/regmirror/regmirror/upstream"
)

// Failure is the answer to a request the mirror could not obtain: the one
// mapping from errors to HTTP status (design.md, "When things fail"). Every
// message names the cause: the last upstream failure, also while an
// upstream is skipped.
type Failure struct {
	Status  int
	Title   string
	Message string
	// RetryAfter, when set, is sent as Retry-After (offline, skipped).
	RetryAfter time.Duration
	Outcome    Outcome
	// Upstream is the upstream that failed, when one did (for the access line).
	Upstream string
	// Unknown is an error of the mirror's own (the store's), for the caller
	// to log: its message does not go to the client.
	Unknown bool
}

// FailureOf maps err to its answer. Errors the mirror does not know (the
// store's) are 502s whose cause the caller logs rather than sends.
func FailureOf(err error) Failure {
	var ue *upstream.Error
	var se *upstream.SkippedError
	switch {
	case errors.Is(err, upstream.ErrOffline):
		return Failure{Status: 503, Title: "Service Unavailable", RetryAfter: 60 * time.Second,
			Message: "the mirror is offline and does not hold this answer",
			Outcome: FailedOutcome("offline: upstreams are not contacted")}
	case errors.As(err, &se):
		return Failure{Status: 503, Title: "Service Unavailable", RetryAfter: se.For,
			Message: se.Error() + "; the mirror does not hold this answer",
			Outcome: FailedOutcome("upstream skipped"), Upstream: se.Upstream}
	case errors.Is(err, upstream.ErrNoUpstream):
		return Failure{Status: 503, Title: "Service Unavailable", RetryAfter: time.Second,
			Message: "every upstream is skipped and the mirror does not hold this answer",
			Outcome: FailedOutcome("upstream skipped")}
	case errors.Is(err, upstream.ErrBusy) && errors.As(err, &ue):
		// The upstream has every request in flight the mirror lets it have
		// (--upstream-max-conns) and the queue did not move in time.
		return Failure{Status: 503, Title: "Service Unavailable", RetryAfter: max(ue.RetryAfter, time.Second),
			Message: ue.Error() + "; the mirror does not hold this answer",
			Outcome: FailedOutcome("upstream busy"), Upstream: ue.Upstream}
	case IsVerify(err):
		f := Failure{Status: 502, Title: "Bad Gateway", Message: "the upstream's answer failed verification: " + errors.Unwrap(err).Error(),
			Outcome: FailedOutcome("upstream answer failed verification")}
		if errors.As(err, &ue) {
			f.Upstream = ue.Upstream
		}
		return f
	case errors.As(err, &ue) && ue.Timeout, errors.Is(err, context.DeadlineExceeded):
		f := Failure{Status: 504, Title: "Gateway Timeout", Message: "the upstream did not answer in time",
			Outcome: FailedOutcome("upstream timeout")}
		if ue != nil {
			f.Upstream = ue.Upstream
			f.Message = ue.Error() + ": no answer in time"
		}
		return f
	case errors.As(err, &ue):
		// An upstream's own Retry-After (a 503) is passed on.
		return Failure{Status: 502, Title: "Bad Gateway", Message: ue.Error(), Outcome: FailedOutcome("upstream error"),
			Upstream: ue.Upstream, RetryAfter: ue.RetryAfter}
	}
	return Failure{Status: 502, Title: "Bad Gateway", Message: "the mirror could not obtain this answer",
		Outcome: FailedOutcome("error"), Unknown: true}
}
