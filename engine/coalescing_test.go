package engine_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/engine"
)

// gateFill is the layer under Coalescing: each fill counts itself, then waits
// for release (or for its own context to end, as an upstream fetch would).
type gateFill struct {
	mu      sync.Mutex
	calls   int
	release chan struct{}
	ctxErr  error // the fill's context error when it was released
}

func (g *gateFill) Fill(ctx context.Context, t *engine.Target, _ *cache.Hot) (*engine.Answer, error) {
	g.mu.Lock()
	g.calls++
	g.mu.Unlock()
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	g.mu.Lock()
	g.ctxErr = ctx.Err()
	g.mu.Unlock()
	return &engine.Answer{Outcome: engine.MissBecause("fwd=uri-miss; stored"), Upstream: "http://up.test"}, nil
}

func (g *gateFill) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls
}

var coalesceTarget = &engine.Target{API: "refpack", Route: "download", Key: engine.RefPackZip("vendor/a", "1.0.0"), Class: cache.Immutable}

// N concurrent fills of one key make one fill below; every caller gets its
// answer, and all but the one whose fill it was are counted as coalesced.
// synctest.Wait makes "all N are waiting on the fill" a fact, not a hope.
func TestCoalescingMakesConcurrentFillsOfOneKeyOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 8
		inner := &gateFill{release: make(chan struct{})}
		joined := prometheus.NewCounter(prometheus.CounterOpts{Name: "coalesced"})
		c := &engine.Coalescing{Next: inner, Timeout: time.Minute, Coalesced: joined}
		answers := make([]*engine.Answer, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { answers[i], errs[i] = c.Fill(t.Context(), coalesceTarget, nil) })
		}
		synctest.Wait() // every caller is blocked: one in the fill, the others on its result
		if got := inner.count(); got != 1 {
			t.Fatalf("%d callers started %d fills, want 1", n, got)
		}
		close(inner.release)
		wg.Wait()
		collapsed := 0
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("caller %d: %v", i, errs[i])
			}
			if answers[i].Outcome.State != engine.Miss || answers[i].Upstream != "http://up.test" {
				t.Errorf("caller %d: %+v", i, answers[i])
			}
			if strings.HasSuffix(answers[i].Outcome.Params, "; collapsed") {
				collapsed++
			}
		}
		if collapsed != n-1 {
			t.Errorf("%d answers marked collapsed, want %d", collapsed, n-1)
		}
		if got := testutil.ToFloat64(joined); got != n-1 {
			t.Errorf("coalesced counter %v, want %d", got, n-1)
		}
		if got := inner.count(); got != 1 {
			t.Errorf("%d fills in all, want 1", got)
		}
	})
}

// The caller whose request started the fill hangs up: it gets its context's
// error at once, and the fill goes on, on a context of its own, for the
// caller still waiting.
func TestCoalescingFillOutlivesTheCallerWhoStartedIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inner := &gateFill{release: make(chan struct{})}
		c := &engine.Coalescing{Next: inner, Timeout: time.Minute}
		firstCtx, hangUp := context.WithCancel(t.Context())
		var firstErr, secondErr error
		var second *engine.Answer
		firstDone, secondDone := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(firstDone)
			_, firstErr = c.Fill(firstCtx, coalesceTarget, nil)
		}()
		synctest.Wait() // the first caller's fill has started
		go func() {
			defer close(secondDone)
			second, secondErr = c.Fill(t.Context(), coalesceTarget, nil)
		}()
		synctest.Wait() // the second caller waits on that fill
		hangUp()
		<-firstDone
		if !errors.Is(firstErr, context.Canceled) {
			t.Fatalf("the caller who hung up got %v, want context.Canceled", firstErr)
		}
		synctest.Wait()
		close(inner.release)
		<-secondDone
		if secondErr != nil {
			t.Fatalf("the caller still waiting got %v: the fill was aborted with the first caller", secondErr)
		}
		if second.Outcome.State != engine.Miss || inner.ctxErr != nil || inner.count() != 1 {
			t.Errorf("answer %+v, fill context error %v, fills %d", second, inner.ctxErr, inner.count())
		}
	})
}
