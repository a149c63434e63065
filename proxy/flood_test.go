package proxy_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regmirror/regmirror/config"
)

// A flood of distinct never-seen versions (what negative caching cannot
// stop) reaches the upstream at most --upstream-max-conns at a time; the
// rest wait in the bounded queue and get 503 with Retry-After; cached hits
// never wait behind the cap.
//
// Nothing here depends on how fast the machine is. The upstream sends its
// 404's head at once and holds the body until the test opens the gate, so
// the first requests hold every slot (a body being read counts) and no
// request is abandoned at the header timeout: an abandoned request frees its
// slot when the mirror closes its connection, while the upstream's handler
// may still run for a moment, and a counter of running handlers would then
// see one request too many (what made an earlier, delay-based version of
// this test fail under load).
func TestUpstreamFloodIsCapped(t *testing.T) {
	const maxConns, flood, wave = 8, 120, 40
	reg, _ := newRegistry(t)
	var inFlight, most atomic.Int64
	over := make(chan struct{}) // closed when the upstream sees more than the cap
	var overOnce sync.Once
	var hold atomic.Bool // hold answers' bodies until gate is closed
	var gateOnce sync.Once
	gate := make(chan struct{})
	openGate := func() { gateOnce.Do(func() { close(gate) }) }
	defer openGate() // before the servers close: they wait for held answers
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		// Before the server's last flush: the mirror cannot have read the
		// whole answer (and freed the slot) before this runs.
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		if n > maxConns {
			overOnce.Do(func() { close(over) })
		}
		if hold.Load() {
			w = &gatedWriter{ResponseWriter: w, gate: gate}
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	m := startMirror(t, "", []string{up.URL}, nil, func(c *config.Config) {
		c.UpstreamMaxConns = maxConns
		// The queue's bound too: those beyond the cap wait this long. The
		// held requests have their heads long before it.
		c.UpstreamHeaderTimeout = 2 * time.Second
		c.UpstreamTimeout = time.Minute
	})
	hit := m.URL + "/packages/vendor/country-codes/meta?version=1.2.0"
	if r := get(t, hit); r.Status != http.StatusOK {
		t.Fatalf("warm the hit: %d", r.Status)
	}
	hold.Store(true)

	type answer struct {
		status     int
		retryAfter string
	}
	miss := func(i int) answer {
		r := get(t, fmt.Sprintf("%s/packages/vendor/country-codes/meta?version=9.%d.0", m.URL, i))
		return answer{r.Status, r.Header.Get("Retry-After")}
	}
	answers := make(chan answer, flood)
	for i := range flood {
		go func() { answers <- miss(i) }()
	}
	// The gate is shut: the first maxConns hold their slots, every other one
	// waits out the queue and is refused.
	for range flood - maxConns {
		var a answer
		select {
		case a = <-answers:
		case <-over:
			t.Fatalf("the upstream had more than %d requests in flight at once", maxConns)
		}
		if a.status != http.StatusServiceUnavailable || a.retryAfter == "" {
			t.Fatalf("a request beyond the cap: %d Retry-After %q, want 503 with Retry-After", a.status, a.retryAfter)
		}
	}
	// Every slot is still taken; a hit that waited for one would be refused.
	for range 20 {
		if r := get(t, hit); r.Status != http.StatusOK || r.Header.Get("X-Cache") != "HIT" {
			t.Fatalf("a cached hit while every slot is taken: %d %s", r.Status, r.Header.Get("X-Cache"))
		}
	}
	if n := most.Load(); n != maxConns {
		t.Errorf("%d requests reached the upstream at once, want the cap, %d", n, maxConns)
	}
	openGate()
	for range maxConns {
		if a := <-answers; a.status != http.StatusNotFound {
			t.Errorf("a request holding a slot: %d, want the upstream's 404", a.status)
		}
	}

	// Slots turning over: a second wave against an upstream that answers at
	// once still never has more than the cap in flight.
	var wg sync.WaitGroup
	for i := range wave {
		wg.Go(func() {
			switch a := miss(flood + i); {
			case a.status == http.StatusNotFound:
			case a.status == http.StatusServiceUnavailable && a.retryAfter != "":
			default:
				t.Errorf("a second-wave answer: %d Retry-After %q", a.status, a.retryAfter)
			}
		})
	}
	wg.Wait()
	if n := most.Load(); n > maxConns {
		t.Errorf("the upstream had %d requests in flight at once; the cap is %d", n, maxConns)
	}
}

// gatedWriter sends the head of an answer at once and holds its body until
// gate is closed: the request holds its upstream slot without ever running
// into the header timeout.
type gatedWriter struct {
	http.ResponseWriter
	gate <-chan struct{}
}

func (g *gatedWriter) WriteHeader(code int) {
	g.ResponseWriter.WriteHeader(code)
	g.ResponseWriter.(http.Flusher).Flush()
	<-g.gate
}
