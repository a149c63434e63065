package proxy_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regmirror/regmirror/config"
)

// A flood of distinct never-seen versions (what negative caching cannot
// stop) reaches the upstream at most --upstream-max-conns at a time; every
// flood answer is the upstream's 404 or a 503 with Retry-After, and cached
// hits on other connections never wait behind the queue. The hits' latency is
// logged as a figure, not asserted.
func TestUpstreamFloodIsCapped(t *testing.T) {
	const maxConns, flood = 8, 120
	reg, _ := newRegistry(t)
	reg.SetDelay(200 * time.Millisecond)
	var inFlight, most atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	m := startMirror(t, "", []string{up.URL}, nil, func(c *config.Config) {
		c.UpstreamMaxConns = maxConns
		c.UpstreamHeaderTimeout = 500 * time.Millisecond // the queue's bound too
	})
	hit := m.URL + "/packages/vendor/country-codes/meta?version=1.2.0"
	if r := get(t, hit); r.Status != http.StatusOK {
		t.Fatalf("warm the hit: %d", r.Status)
	}

	ctx, stop := context.WithCancel(context.Background())
	var hits []time.Duration
	hitsDone := make(chan struct{})
	go func() { // cached hits on their own connection while the flood goes on
		defer close(hitsDone)
		for ctx.Err() == nil {
			start := time.Now()
			if r := get(t, hit); r.Status != http.StatusOK || r.Header.Get("X-Cache") != "HIT" {
				t.Errorf("a cached hit during the flood: %d %s", r.Status, r.Header.Get("X-Cache"))
				return
			}
			hits = append(hits, time.Since(start))
		}
	}()
	var wg sync.WaitGroup
	statuses := map[int]int{}
	var mu sync.Mutex
	for i := range flood {
		wg.Go(func() {
			r := get(t, fmt.Sprintf("%s/packages/vendor/country-codes/meta?version=9.%d.0", m.URL, i))
			mu.Lock()
			defer mu.Unlock()
			statuses[r.Status]++
			switch {
			case r.Status == http.StatusNotFound:
			case r.Status == http.StatusServiceUnavailable && r.Header.Get("Retry-After") != "":
			default:
				t.Errorf("a flood answer: %d Retry-After %q %s", r.Status, r.Header.Get("Retry-After"), r.Body)
			}
		})
	}
	wg.Wait()
	stop()
	<-hitsDone
	if n := most.Load(); n > maxConns {
		t.Errorf("the upstream had %d requests in flight at once; the cap is %d", n, maxConns)
	}
	slices.Sort(hits)
	if len(hits) > 0 {
		t.Logf("flood answers %v; most in flight upstream %d (cap %d); %d cached hits meanwhile, p50 %v p99 %v max %v",
			statuses, most.Load(), maxConns, len(hits), hits[len(hits)/2], hits[len(hits)*99/100], hits[len(hits)-1])
	}
}
