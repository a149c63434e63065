package engine_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/engine"
	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/upstream"
)

// clock is a fake time source the tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// memFill is a Filler that answers from memory and commits through the real
// cache, counting its calls; err makes it fail as an upstream would.
type memFill struct {
	c      *cache.Cache
	p      *engine.Policy
	mu     sync.Mutex
	calls  int
	err    error
	body   string
	oldArg []*cache.Hot
}

func (f *memFill) Fill(ctx context.Context, t *engine.Target, old *cache.Hot) (*engine.Answer, error) {
	f.mu.Lock()
	f.calls++
	f.oldArg = append(f.oldArg, old)
	err, body := f.err, f.body
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	hot, err := f.c.PutBody(ctx, &cache.Entry{Key: string(t.Key), Status: http.StatusOK, Class: t.Class, FetchedAt: f.p.Now()}, []byte(body))
	if err != nil {
		return nil, err
	}
	return &engine.Answer{Hot: hot, Outcome: engine.MissBecause("fwd=uri-miss; stored")}, nil
}

func (f *memFill) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func newEngine(t *testing.T, staleIfError time.Duration) (*engine.Engine, *clock, *memFill) {
	t.Helper()
	d, err := cache.OpenDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.New(context.Background(), d, d.TempDir(), cache.Options{MemoryBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	clk := &clock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	p := &engine.Policy{MetadataMaxAge: time.Minute, NegativeMaxAge: 30 * time.Second, StaleIfError: staleIfError, Clock: clk.now}
	f := &memFill{c: c, p: p, body: `{"versions":[]}`}
	e := engine.New(engine.Options{Cache: c, Policy: p, UpstreamTimeout: 10 * time.Second, Fill: f})
	return e, clk, f
}

func TestPolicyDecidesEveryClass(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	p := &engine.Policy{MetadataMaxAge: time.Minute, NegativeMaxAge: 30 * time.Second, StaleIfError: time.Hour,
		Clock: func() time.Time { return now }}
	forever := &engine.Policy{MetadataMaxAge: time.Minute, NegativeMaxAge: 30 * time.Second, Clock: p.Clock}
	at := func(age time.Duration) time.Time { return now.Add(-age) }
	tests := []struct {
		name   string
		p      *engine.Policy
		class  cache.Class
		age    time.Duration
		want   engine.Verdict
		ttl    int64
		hasTTL bool
	}{
		{"immutable, ten years old", p, cache.Immutable, 10 * 365 * 24 * time.Hour, engine.Fresh, 0, false},
		{"mutable within max-age", p, cache.Mutable, 59 * time.Second, engine.Fresh, 1, true},
		{"mutable past max-age", p, cache.Mutable, 61 * time.Second, engine.Revalidate, -1, true},
		{"mutable past stale-if-error", p, cache.Mutable, time.Minute + time.Hour, engine.Expired, -3600, true},
		{"not-found within negative-max-age", p, cache.Negative, 29 * time.Second, engine.Fresh, 1, true},
		// The limit and the ttl of a not-found answer both count from
		// negative-max-age (they once disagreed).
		{"not-found past negative-max-age", p, cache.Negative, 40 * time.Second, engine.Revalidate, -10, true},
		{"not-found past its stale-if-error", p, cache.Negative, 30*time.Second + time.Hour + time.Second, engine.Expired, -3601, true},
		{"stale-if-error 0 is forever", forever, cache.Mutable, 1000 * time.Hour, engine.Revalidate, 60 - 3600000, true},
	}
	for _, tt := range tests {
		e := &cache.Entry{Class: tt.class, FetchedAt: at(tt.age)}
		if got := tt.p.Decide(e); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
		if ttl, ok := tt.p.TTL(e); ttl != tt.ttl || ok != tt.hasTTL {
			t.Errorf("%s: ttl %d (%v), want %d (%v)", tt.name, ttl, ok, tt.ttl, tt.hasTTL)
		}
	}
}

func TestResolveHitsUntilMaxAgeThenRevalidates(t *testing.T) {
	e, clk, f := newEngine(t, 0)
	tg := &engine.Target{Key: engine.RefPackVersions("vendor/x"), Class: cache.Mutable}
	ctx := context.Background()
	a, err := e.Resolve(ctx, tg)
	if err != nil || a.Outcome.State != engine.Miss || f.count() != 1 {
		t.Fatalf("first: %+v %v, %d fills; want a MISS after one fill", a, err, f.count())
	}
	clk.advance(59 * time.Second)
	if a, err = e.Resolve(ctx, tg); err != nil || a.Outcome != engine.HitOutcome || f.count() != 1 {
		t.Fatalf("within max-age: %+v %v, %d fills; want a plain HIT and no fill", a, err, f.count())
	}
	clk.advance(2 * time.Second)
	if a, err = e.Resolve(ctx, tg); err != nil || a.Outcome.State != engine.Miss || f.count() != 2 {
		t.Fatalf("past max-age: %+v %v, %d fills; want a fill", a, err, f.count())
	}
	if f.oldArg[1] == nil {
		t.Error("the revalidating fill was not given the stored entry (its validators)")
	}
}

func TestResolveServesStaleWithinStaleIfErrorOnly(t *testing.T) {
	e, clk, f := newEngine(t, time.Hour)
	tg := &engine.Target{Key: engine.RefPackList(false, url.Values{"q": {"x"}}), Class: cache.Mutable}
	ctx := context.Background()
	if _, err := e.Resolve(ctx, tg); err != nil {
		t.Fatal(err)
	}
	down := &upstream.Error{Upstream: "http://up.example", Err: errors.New("connection refused")}
	f.mu.Lock()
	f.err = down
	f.mu.Unlock()
	clk.advance(2 * time.Minute)
	a, err := e.Resolve(ctx, tg)
	if err != nil || a.Outcome.State != engine.Stale {
		t.Fatalf("upstream down within stale-if-error: %+v %v; want STALE", a, err)
	}
	if !strings.Contains(a.Outcome.Params, "ttl=-60") {
		t.Errorf("Cache-Status %q: the ttl is not the policy's (-60)", a.Outcome.Params)
	}
	clk.advance(time.Hour)
	if a, err = e.Resolve(ctx, tg); !errors.Is(err, down) {
		t.Fatalf("past stale-if-error: %+v %v; want the upstream's error", a, err)
	}
}

func TestResolveNeverStoresWhatFailedVerificationOverAHeldCopy(t *testing.T) {
	e, clk, f := newEngine(t, time.Nanosecond)
	tg := &engine.Target{Key: engine.RefPackVersions("vendor/y"), Class: cache.Mutable}
	ctx := context.Background()
	if _, err := e.Resolve(ctx, tg); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.err = &engine.VerifyError{Err: errors.New("bad bytes")}
	f.mu.Unlock()
	clk.advance(24 * time.Hour) // far past stale-if-error: a refused body still never wins
	a, err := e.Resolve(ctx, tg)
	if err != nil || a.Outcome.State != engine.Stale {
		t.Fatalf("%+v %v; want the held copy, STALE", a, err)
	}
}

func TestOutcomeHeadersAgree(t *testing.T) {
	outcomes := []engine.Outcome{
		engine.HitOutcome, engine.HitBecause("pattern index"), engine.StaleBecause("upstream error", -3, true),
		engine.MissBecause("fwd=uri-miss; stored"), engine.FailedOutcome("upstream error"), engine.WriteOutcome,
		engine.HitOutcome.AtLeast(engine.MissBecause("fwd=stale; fwd-status=200; stored")),
		engine.HitOutcome.AtLeast(engine.StaleBecause("latest from a stale list", 0, false)),
		engine.MissBecause("fwd=uri-miss").Collapsed(),
	}
	for _, o := range outcomes {
		h := http.Header{}
		o.SetHeaders(h)
		xc, cs := h.Get("X-Cache"), h.Get("Cache-Status")
		hit := strings.Contains(cs, "; hit")
		if (xc == "HIT" || xc == "STALE") != hit {
			t.Errorf("X-Cache %q with Cache-Status %q: HIT/STALE exactly when it says hit", xc, cs)
		}
		if (xc == "MISS" || xc == "BYPASS") && !strings.Contains(cs, "fwd=") {
			t.Errorf("X-Cache %q with Cache-Status %q: a MISS carries fwd=", xc, cs)
		}
		if !strings.HasPrefix(cs, "regmirror; ") {
			t.Errorf("Cache-Status %q does not name the mirror", cs)
		}
	}
}

func TestKeysRoundTrip(t *testing.T) {
	ref := hydrilla.ItemRef{Type: "mapping", Identifier: "hello.apple", Version: hydrilla.Version{2021, 11, 10}}
	tests := []struct {
		key  engine.Key
		want engine.Parsed
	}{
		{engine.RefPackList(false, url.Values{"q": {"a b"}}), engine.Parsed{Kind: engine.KindRefPackList, Rest: "q=a+b"}},
		{engine.RefPackList(true, url.Values{"tags": {"x"}}), engine.Parsed{Kind: engine.KindRefPackSearch, Rest: "tags=x"}},
		{engine.RefPackVersions("currencies"), engine.Parsed{Kind: engine.KindRefPackVersions, ID: "currencies"}},
		{engine.RefPackZip("vendor/x", "1.2.0-rc.1"), engine.Parsed{Kind: engine.KindRefPackZip, ID: "vendor/x", Version: "1.2.0-rc.1"}},
		{engine.RefPackMeta("vendor/x", "1.0.0"), engine.Parsed{Kind: engine.KindRefPackMeta, ID: "vendor/x", Version: "1.0.0"}},
		{engine.RefPackDoc("readme", "vendor/x", "1.0.0"), engine.Parsed{Kind: engine.KindRefPackDoc, Sub: "readme", ID: "vendor/x", Version: "1.0.0"}},
		{engine.RefPackSync("https://up.example"), engine.Parsed{Kind: engine.KindRefPackSync, Upstream: "https://up.example"}},
		{engine.HydrillaItem(ref), engine.Parsed{Kind: engine.KindHydrillaItem, Sub: "mapping", ID: "hello.apple", Version: "2021.11.10"}},
		{engine.HydrillaLatest("resource", "a"), engine.Parsed{Kind: engine.KindHydrillaLatest, Sub: "resource", ID: "a"}},
		{engine.HydrillaFile("ab12"), engine.Parsed{Kind: engine.KindHydrillaFile, Rest: "ab12"}},
		{engine.HydrillaSource("hello"), engine.Parsed{Kind: engine.KindHydrillaSource, ID: "hello"}},
		{engine.HydrillaSourceZip("hello", "ab12"), engine.Parsed{Kind: engine.KindHydrillaSourceZip, ID: "hello", Rest: "ab12"}},
		{engine.HydrillaLegacy("/script?n=x"), engine.Parsed{Kind: engine.KindHydrillaLegacy, Rest: "/script?n=x"}},
		{engine.HydrillaQuery("https://up.example/api_v2", "https://a.example/b?c"), engine.Parsed{Kind: engine.KindHydrillaQuery, Upstream: "https://up.example/api_v2", Rest: "https://a.example/b?c"}},
		{engine.HydrillaListAll("https://up.example"), engine.Parsed{Kind: engine.KindHydrillaListAll, Upstream: "https://up.example"}},
		{engine.HydrillaSync("https://up.example"), engine.Parsed{Kind: engine.KindHydrillaSync, Upstream: "https://up.example"}},
	}
	for _, tt := range tests {
		got, ok := engine.Parse(string(tt.key))
		if !ok || got != tt.want {
			t.Errorf("Parse(%q) = %+v %v, want %+v", tt.key, got, ok, tt.want)
		}
	}
	for _, bad := range []string{"", "rp/zip/no-version", "rp/doc/readme", "hy/item/mapping", "xx/yy"} {
		if p, ok := engine.Parse(bad); ok {
			t.Errorf("Parse(%q) = %+v, want not ok", bad, p)
		}
	}
}

func TestFailureNamesTheCause(t *testing.T) {
	refused := &upstream.Error{Upstream: "http://127.0.0.1:1", Err: errors.New("dial tcp 127.0.0.1:1: connect: connection refused")}
	skipped := &upstream.SkippedError{Upstream: "http://127.0.0.1:1", For: 26500 * time.Millisecond, Fails: 3,
		Last: "dial tcp 127.0.0.1:1: connect: connection refused"}
	tests := []struct {
		err        error
		status     int
		message    string
		retryAfter bool
	}{
		{refused, 502, "connection refused", false},
		{&upstream.Error{Upstream: "http://u", Timeout: true, Err: context.DeadlineExceeded}, 504, "http://u", false},
		{skipped, 503, "upstream http://127.0.0.1:1 skipped for 27 s after 3 failures: dial tcp 127.0.0.1:1: connect: connection refused", true},
		{upstream.ErrOffline, 503, "offline", true},
	}
	for _, tt := range tests {
		f := engine.FailureOf(tt.err)
		if f.Status != tt.status || !strings.Contains(f.Message, tt.message) || (f.RetryAfter > 0) != tt.retryAfter {
			t.Errorf("%v: %d %q Retry-After %v; want %d naming %q", tt.err, f.Status, f.Message, f.RetryAfter, tt.status, tt.message)
		}
		h := http.Header{}
		f.Outcome.SetHeaders(h)
		if h.Get("X-Cache") != "MISS" || !strings.Contains(h.Get("Cache-Status"), "fwd=") {
			t.Errorf("%v: X-Cache %q, Cache-Status %q", tt.err, h.Get("X-Cache"), h.Get("Cache-Status"))
		}
	}
}
