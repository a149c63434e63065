package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func server(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestGetKeepsThePathPrefixAndFallsThroughOn404(t *testing.T) {
	var seen string
	missing, _ := server(t, func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	has, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		seen = r.URL.EscapedPath() + "?" + r.URL.RawQuery + " " + r.Header.Get("User-Agent")
		w.Write([]byte("ok"))
	})
	p, err := NewPool("hydrilla", []string{missing.URL + "/api_v2", has.URL + "/api_v2/"}, Options{UserAgent: "regmirror/test", MaxFails: 3})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.Get(context.Background(), "/packages/vendor%2Fcodes?version=1.0.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Upstream.Base != has.URL+"/api_v2" || seen != "/api_v2/packages/vendor%2Fcodes?version=1.0.0 regmirror/test" {
		t.Errorf("answered by %s, request seen as %q", resp.Upstream.Base, seen)
	}
	// Every upstream says 404: a NotFoundError with the last body.
	p2, _ := NewPool("hydrilla", []string{missing.URL}, Options{MaxFails: 3})
	var nf *NotFoundError
	if _, err := p2.Get(context.Background(), "/x", nil); !errors.As(err, &nf) || len(nf.Body) == 0 {
		t.Errorf("all 404: %v", err)
	}
}

func TestFailingUpstreamIsSkippedForFailTimeout(t *testing.T) {
	bad, badN := server(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	good, _ := server(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	var results []string
	p, _ := NewPool("refpack", []string{bad.URL, good.URL}, Options{MaxFails: 2, FailTimeout: 200 * time.Millisecond,
		Observe: func(u *Upstream, result string, _ time.Duration) { results = append(results, result) }})
	for i := 0; i < 4; i++ {
		resp, err := p.Get(context.Background(), "/", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if badN.Load() != 2 || p.Upstreams()[0].Health().Up {
		t.Errorf("failing upstream asked %d times (want 2, then skipped); health %+v", badN.Load(), p.Upstreams()[0].Health())
	}
	time.Sleep(250 * time.Millisecond)
	if resp, err := p.Get(context.Background(), "/", nil); err == nil {
		resp.Body.Close()
	}
	if badN.Load() != 3 {
		t.Errorf("after fail-timeout the upstream was asked %d times in all, want 3", badN.Load())
	}
	if len(results) == 0 {
		t.Error("Observe was never called")
	}
}

func TestErrorsSayWhatHappened(t *testing.T) {
	slow, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	})
	p, _ := NewPool("refpack", []string{slow.URL}, Options{HeaderTimeout: 100 * time.Millisecond, MaxFails: 5})
	if _, err := p.Get(context.Background(), "/", nil); !IsTimeout(err) {
		t.Errorf("slow upstream: %v, want a timeout", err)
	}
	refused, _ := NewPool("refpack", []string{"http://127.0.0.1:1"}, Options{ConnectTimeout: time.Second, MaxFails: 5})
	start := time.Now()
	var ue *Error
	if _, err := refused.Get(context.Background(), "/", nil); !errors.As(err, &ue) || IsTimeout(err) || time.Since(start) > time.Second {
		t.Errorf("refused connection: %v after %v", err, time.Since(start))
	}
	off, _ := NewPool("refpack", []string{"http://127.0.0.1:1"}, Options{Offline: true})
	if _, err := off.Get(context.Background(), "/", nil); !errors.Is(err, ErrOffline) {
		t.Errorf("offline: %v", err)
	}
	if _, err := NewPool("refpack", []string{"ftp://x"}, Options{}); err == nil {
		t.Error("an ftp base URL was accepted")
	}
}

func TestParseRetryAfter(t *testing.T) {
	if d := ParseRetryAfter("7"); d != 7*time.Second {
		t.Errorf("seconds: %v", d)
	}
	if d := ParseRetryAfter(time.Now().Add(time.Minute).UTC().Format(http.TimeFormat)); d < 50*time.Second || d > time.Minute {
		t.Errorf("date: %v", d)
	}
	for _, v := range []string{"", "soon", "-3"} {
		if d := ParseRetryAfter(v); d != 0 {
			t.Errorf("%q: %v", v, d)
		}
	}
}

// With MaxConns, the upstream never has more requests in flight (a body being
// read counts); the rest wait, and those that wait the whole QueueTimeout fail
// with ErrBusy and a Retry-After, counted as refused and never as a failure
// of the upstream.
func TestMaxConnsCapsRequestsInFlight(t *testing.T) {
	const maxConns, clients = 4, 40
	var inFlight, most atomic.Int64
	release := make(chan struct{})
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-release // the body is still being read
		w.Write([]byte("ok"))
	})
	p, err := NewPool("refpack", []string{srv.URL}, Options{MaxFails: 1, FailTimeout: time.Minute,
		MaxConns: maxConns, QueueTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	u := p.Upstreams()[0]
	type result struct {
		err  error
		body string
	}
	results := make(chan result, clients)
	for i := range clients {
		go func() {
			resp, err := p.Get(context.Background(), "/v/"+strconv.Itoa(i), nil)
			if err != nil {
				results <- result{err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			// Closed before the result is sent: the test then checks that
			// every slot came back, which happens at Close.
			resp.Body.Close()
			results <- result{err: err, body: string(b)}
		}()
	}
	// Those beyond the cap are refused while the first ones hold their slots.
	var busy, ok int
	for busy < clients-maxConns {
		r := <-results
		var ue *Error
		if !errors.Is(r.err, ErrBusy) || !errors.As(r.err, &ue) || ue.RetryAfter <= 0 {
			t.Fatalf("a request beyond the cap: %v, want ErrBusy with a Retry-After", r.err)
		}
		busy++
	}
	if h := u.Health(); h.InFlight != maxConns || h.Refused != uint64(busy) || !h.Up {
		t.Errorf("health %+v, want %d in flight, %d refused, up", h, maxConns, busy)
	}
	close(release)
	for range maxConns {
		if r := <-results; r.err != nil || r.body != "ok" {
			t.Errorf("a request holding a slot: %v %q", r.err, r.body)
		}
		ok++
	}
	if most.Load() > maxConns {
		t.Errorf("%d requests were in flight at once, the cap is %d", most.Load(), maxConns)
	}
	if h := u.Health(); h.InFlight != 0 || h.Queued != 0 {
		t.Errorf("after every body is closed: %+v", h)
	}
	// The slots came back: the next request goes through.
	resp, err := p.Get(context.Background(), "/again", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// A FetchLimit caps the requests in flight of everything done with its context,
// across upstreams, and a request gives its place back once its body is read
// to its end, before it is closed: what the caller then does with the body is
// not a request in flight (a sync's own work overlaps its next downloads).
func TestFetchLimitCountsOnlyRequestsInFlight(t *testing.T) {
	const limit, clients = 2, 12
	var inFlight, most atomic.Int64
	handler := func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(2 * time.Millisecond) // long enough for the others to pile up
		inFlight.Add(-1)
		w.Write([]byte("ok"))
	}
	a, _ := server(t, handler)
	b, _ := server(t, handler)
	p, err := NewPool("hydrilla", []string{a.URL, b.URL}, Options{MaxFails: 1, FailTimeout: time.Minute, MaxConns: 32})
	if err != nil {
		t.Fatal(err)
	}
	ctx := WithFetchLimit(context.Background(), NewFetchLimit(limit))
	// Every body is read to its end and then held open until all are: were
	// the places given back only at Close, the later requests would wait
	// forever.
	bodies := make(chan io.Closer, clients)
	errs := make(chan error, clients)
	for i := range clients {
		go func() {
			resp, err := p.GetFrom(ctx, p.Upstreams()[i%2], "/v/"+strconv.Itoa(i), nil)
			if err == nil {
				var body []byte
				if body, err = io.ReadAll(resp.Body); err == nil && string(body) != "ok" {
					err = fmt.Errorf("body %q", body)
				}
				bodies <- resp.Body
			}
			errs <- err
		}()
	}
	for range clients {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("requests waited for places that bodies read to their end still held")
		}
	}
	if m := most.Load(); m > limit {
		t.Errorf("%d requests in flight at once, want at most %d", m, limit)
	}
	for range clients {
		(<-bodies).Close()
	}
	for _, u := range p.Upstreams() {
		if h := u.Health(); h.InFlight != 0 {
			t.Errorf("%s: %d in flight after every body was read and closed", u.Base, h.InFlight)
		}
	}
}
