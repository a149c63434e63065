package proxy

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/engine"
	"github.com/regmirror/regmirror/fastlane"
	"github.com/regmirror/regmirror/writeidle"
)

// Serve serves the mirror (hs.Handler is set to s.Handler(): the fast lane
// answers as that handler would) through hs on the plain-TCP listener ln:
// with the fast lane (package fastlane) when the configuration enables it,
// else with hs.Serve alone. Clients that stop reading are disconnected after
// --write-idle-timeout. TLS listeners are for hs.ServeTLS.
func (s *Server) Serve(hs *http.Server, ln net.Listener) error {
	hs.Handler = s.Handler()
	// Both paths, the lane's and net/http's, write through these connections.
	ln = writeidle.Listener(ln, s.cfg.WriteIdleTimeout)
	if s.fast == nil {
		return hs.Serve(ln)
	}
	s.fast.serving.Store(true)
	return fastlane.Serve(hs, ln, s.fast)
}

func newFastHits(s *Server) *fastHits {
	f := &fastHits{s: s, memos: map[string]*hitMemo{},
		budget: max(s.cfg.MemoryCacheSize/memoShare, minMemoBytes)}
	f.ring.prev, f.ring.next = &f.ring, &f.ring
	return f
}

// The memos may hold 1/memoShare of --memory-cache-size (8 MiB of the default
// 256 MiB: some 10,000 targets), at least minMemoBytes. They are bounded in
// bytes, not in count: a client picks the length of the targets it asks.
const (
	memoShare    = 32
	minMemoBytes = 256 << 10
	// memoOverhead is what a memo costs beyond its strings: the struct, the
	// map entry, the weak pointer, the metric handles.
	memoOverhead = 320
)

// fastHits is what the fast lane answers: for an exact request target, the
// cached hit net/http answered it with, remembered with its response head
// rendered as net/http wrote it. A remembered hit is given again only while
// the memory tier still holds that same entry and it is fresh; anything else
// (a newer entry, an evicted one, a stale one) goes back to net/http, which
// answers it and remembers the new hit.
//
// Only requests whose answer is a function of their target alone are
// remembered: routes say so with fastHint (a RefPack zip or /meta at an
// explicit version, /versions, a Hydrilla file or item version). "Latest"
// answers, merged answers and anything built per request never are.
type fastHits struct {
	s     *Server
	mu    sync.RWMutex
	memos map[string]*hitMemo // by request target
	// ring holds the memos oldest first (a sentinel; under mu). Eviction is
	// least recently used by second chance: a memo answered since it was last
	// looked at is moved to the young end instead of evicted, so a client
	// cycling through new targets evicts only what nobody asks for.
	ring   hitMemo
	bytes  int64 // what the memos hold (memoCost)
	budget int64
	// serving is set once a fast lane serves: before, nothing is remembered.
	serving atomic.Bool
}

type hitMemo struct {
	target, key string
	prev, next  *hitMemo    // in fastHits.ring
	used        atomic.Bool // answered since eviction last looked at it
	size        int64
	// hot is the entry the answer was made from, held weakly: a memo keeps no
	// body alive once the memory tier has let it go.
	hot  weak.Pointer[cache.Hot]
	head [3][]byte // the head up to X-Request-Id's value, to Date's value, and its end
	// For the request's metrics and access line, as the middleware gives them.
	path, query, upstream string
	requests              prometheus.Counter
	duration              prometheus.Observer
}

// fastHint says that the answer to this request is the entry under key and
// nothing else: a hit on it may be answered again on the fast lane.
func (s *Server) fastHint(w http.ResponseWriter, key string) {
	if s.fast == nil {
		return
	}
	if rec := recorderOf(w); rec != nil {
		rec.fastKey = key
	}
}

// Answer writes a remembered hit for target (fastlane.Answerer).
func (f *fastHits) Answer(w *bufio.Writer, target []byte) bool {
	f.mu.RLock()
	m := f.memos[string(target)]
	f.mu.RUnlock()
	if m == nil {
		return false
	}
	if !m.used.Load() { // a load first: most hits find it set, and skip the write
		m.used.Store(true)
	}
	hot, ok := f.s.cache.Memory(m.key)
	if !ok || hot != m.hot.Value() {
		f.forget(string(target), m)
		return false
	}
	start := time.Now()
	if !f.s.eng.Policy().Fresh(hot.Entry) {
		return false
	}
	b := w.AvailableBuffer()
	b = append(b, m.head[0]...)
	idAt := len(b)
	b = appendRequestID(b)
	idEnd := len(b)
	b = append(b, m.head[1]...)
	b = fastlane.AppendDate(b, start)
	b = append(b, m.head[2]...)
	var id string
	if f.s.logsRequests(context.Background()) {
		id = string(b[idAt:idEnd])
	}
	w.Write(b)
	w.Write(hot.Body)
	if w.Flush() != nil {
		return true // not given: the lane closes the connection, nothing is counted
	}
	d := time.Since(start)
	m.requests.Inc()
	m.duration.Observe(d.Seconds())
	f.s.metrics.FastLane.Inc()
	f.s.noteRequest(string(engine.Hit))
	if id != "" {
		f.s.logRequest(context.Background(), &accessLine{id: id, method: http.MethodGet, path: m.path, query: m.query, status: http.StatusOK,
			bytes: int64(len(hot.Body)), duration: d, cache: string(engine.Hit), upstream: m.upstream})
	}
	return true
}

func (f *fastHits) forget(target string, m *hitMemo) {
	f.mu.Lock()
	if f.memos[target] == m {
		f.drop(m)
	}
	f.mu.Unlock()
}

// drop removes m (under mu).
func (f *fastHits) drop(m *hitMemo) {
	delete(f.memos, m.target)
	f.unlink(m)
	f.bytes -= m.size
}

func (f *fastHits) unlink(m *hitMemo) {
	m.prev.next, m.next.prev = m.next, m.prev
	m.prev, m.next = nil, nil
}

// pushYoung puts m at the young end of the ring (under mu).
func (f *fastHits) pushYoung(m *hitMemo) {
	m.prev, m.next = f.ring.prev, &f.ring
	f.ring.prev.next = m
	f.ring.prev = m
}

// add remembers m, evicting what was least recently answered until the memos
// fit their budget (under mu).
func (f *fastHits) add(m *hitMemo) {
	if old := f.memos[m.target]; old != nil {
		f.drop(old)
	}
	f.memos[m.target] = m
	f.pushYoung(m)
	f.bytes += m.size
	// Each memo gets one second chance per pass; the bound keeps hits that
	// set the flags again meanwhile from making this loop long.
	for chances := len(f.memos); f.bytes > f.budget; {
		old := f.ring.next
		if chances > 0 && old.used.Load() {
			chances--
			old.used.Store(false)
			f.unlink(old)
			f.pushYoung(old)
			continue
		}
		f.drop(old)
	}
}

// memoCost is what remembering m holds, in bytes.
func memoCost(m *hitMemo) int64 {
	n := len(m.target) + len(m.key) + len(m.path) + len(m.query) + len(m.upstream) + memoOverhead
	for _, h := range m.head {
		n += len(h)
	}
	return int64(n)
}

// remember keeps the hit net/http is about to write (status 200, headers h,
// the body of hot) for the fast lane, when the route said it may.
func (f *fastHits) remember(w http.ResponseWriter, r *http.Request, hot *cache.Hot, h http.Header) {
	rec := recorderOf(w)
	if !f.serving.Load() || rec == nil || rec.fastKey == "" || rec.fastKey != hot.Entry.Key || r.Method != http.MethodGet ||
		r.ProtoMajor != 1 || r.ProtoMinor != 1 || r.TLS != nil || !fastlane.Answerable(r.RequestURI) {
		return
	}
	f.mu.RLock()
	old := f.memos[r.RequestURI]
	f.mu.RUnlock()
	if old != nil && old.hot.Value() == hot {
		return
	}
	if held, ok := f.s.cache.Memory(hot.Entry.Key); !ok || held != hot {
		// The memory tier does not hold this answer (yet, or it refused it):
		// the lane could not give it.
		return
	}
	head, ok := renderHead(h)
	if !ok {
		return
	}
	api, route := classify(r.URL.Path)
	m := &hitMemo{target: r.RequestURI, key: hot.Entry.Key, hot: weak.Make(hot), head: head, path: r.URL.Path, query: r.URL.RawQuery,
		upstream: rec.upstream,
		requests: f.s.metrics.Requests.WithLabelValues(api, route, "200", string(engine.Hit)),
		duration: f.s.metrics.RequestDuration.WithLabelValues(api, string(engine.Hit))}
	if m.size = memoCost(m); m.size > f.budget {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.add(m)
}

// renderHead writes the response head net/http writes for a 200 with headers
// h and no Date: the status line, h sorted by key (each value trimmed as
// net/http trims it), then Date. It is cut at X-Request-Id's value and Date's
// value, which change on every answer. It refuses headers net/http would
// rewrite.
func renderHead(h http.Header) (head [3][]byte, ok bool) {
	if _, ok := h["X-Request-Id"]; !ok {
		return head, false
	}
	if _, ok := h["Date"]; ok {
		return head, false // net/http would send this one and add none
	}
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b := []byte("HTTP/1.1 200 OK\r\n")
	for _, k := range keys {
		if k == "X-Request-Id" {
			head[0] = append(b, "X-Request-Id: "...)
			b = []byte("\r\n")
			continue
		}
		if strings.ContainsAny(k, "\r\n: \t") {
			return head, false
		}
		for _, v := range h[k] {
			if strings.ContainsAny(v, "\r\n") {
				return head, false
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, textproto.TrimString(v)...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "Date: "...)
	head[1] = b
	head[2] = []byte("\r\n\r\n")
	return head, true
}
