// Package status is the mirror's status page (GET /) and its data (GET
// /status.json): what an operator looks at first. It keeps what no other part
// keeps (the last minutes of traffic, recent errors, the last sync results)
// on a Board, and builds one Report from it and from what the server hands it
// (Inputs), so the page and the JSON never disagree.
package status

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/engine"
	"github.com/regmirror/regmirror/redact"
	"github.com/regmirror/regmirror/upstream"
)

//go:embed status.html
var statusHTML string

var statusTmpl = template.Must(template.New("status").Funcs(template.FuncMap{
	"bytes": func(n int64) string { return humanize.IBytes(uint64(max(n, 0))) },
	"when":  fmtWhen,
	"ratio": func(r *float64) string {
		if r == nil {
			return "—"
		}
		return strconv.FormatFloat(*r*100, 'f', 1, 64) + " %"
	},
	"pct": func(n, of int64) string {
		if of <= 0 {
			return ""
		}
		return strconv.FormatFloat(float64(n)*100/float64(of), 'f', 1, 64) + " %"
	},
	"width": func(n, of int64) string { // a bar's CSS width
		if of <= 0 {
			return "0%"
		}
		return strconv.FormatFloat(min(float64(n)*100/float64(of), 100), 'f', 1, 64) + "%"
	},
	"latency": func(ms float64) string {
		if ms <= 0 {
			return "—"
		}
		return strconv.FormatFloat(ms, 'f', 1, 64) + " ms"
	},
	"plural": plural,
	"dur":    func(sec float64) string { return fmtDuration(time.Duration(sec * float64(time.Second))) },
}).Parse(statusHTML))

const (
	statusWindow    = 5 * time.Minute
	statusMaxErrors = 20
	// Distinct failures of one sync shown; the rest are counted.
	statusSyncFailures = 5
	// MaxErrorText is the longest error text kept (paths of hostile requests
	// can be long).
	MaxErrorText = 1000
)

// Board is what the status page needs that no other part of the server
// keeps: the last few minutes of traffic, recent errors, the last sync results.
// Its zero value is ready to use.
type Board struct {
	// Now is the clock when set (tests); else time.Now.
	Now func() time.Time

	mu      sync.Mutex
	buckets [int(statusWindow / time.Second)]trafficBucket
	errors  []recentError // oldest first, at most statusMaxErrors
	syncs   map[string]*SyncRun
}

// SyncRun is what the page shows of one upstream's sync.
type SyncRun struct {
	API, Upstream  string
	Started, Ended time.Time
	Items, Files   int
	Packages, Held int
	Bytes          int64
	Failed         []string
	Err            error
}

// OK reports whether nothing failed.
func (r *SyncRun) OK() bool { return r.Err == nil && len(r.Failed) == 0 }

type trafficBucket struct {
	sec int64 // Unix second this bucket counts
	c   trafficCounts
}

type trafficCounts struct {
	requests, hit, miss, stale, bypass int64
}

func (c *trafficCounts) add(xcache string, n int64) {
	c.requests += n
	switch xcache {
	case string(engine.Hit):
		c.hit += n
	case string(engine.Miss):
		c.miss += n
	case string(engine.Stale):
		c.stale += n
	case "BYPASS":
		c.bypass += n
	}
}

type recentError struct {
	First, Last time.Time
	What        string
	Count       int
}

func (st *Board) clock() time.Time {
	if st.Now != nil {
		return st.Now()
	}
	return time.Now()
}

// NoteRequest counts one answered request by its X-Cache value (HIT, MISS,
// STALE, BYPASS, or NONE for answers that did not go through the cache) for
// the status page's last-5-minutes figures. The access-log middleware calls it.
func (st *Board) NoteRequest(xcache string) {
	sec := st.clock().Unix()
	st.mu.Lock()
	b := &st.buckets[sec%int64(len(st.buckets))]
	if b.sec != sec {
		*b = trafficBucket{sec: sec}
	}
	b.c.add(xcache, 1)
	st.mu.Unlock()
}

// NoteError records a problem for the status page's recent errors. A repeat
// of the newest one is counted instead of pushing older ones out, so one
// failing upstream does not hide everything else. what must hold no secret;
// credentials in URLs are masked anyway.
func (st *Board) NoteError(what string) {
	what = redact.URL(what) // before cutting, which could split a URL
	if len(what) > MaxErrorText {
		what = strings.ToValidUTF8(what[:MaxErrorText], "") + "…"
	}
	now := st.clock()
	st.mu.Lock()
	defer st.mu.Unlock()
	if n := len(st.errors); n > 0 && st.errors[n-1].What == what {
		st.errors[n-1].Last = now
		st.errors[n-1].Count++
		return
	}
	if len(st.errors) == statusMaxErrors {
		copy(st.errors, st.errors[1:])
		st.errors = st.errors[:statusMaxErrors-1]
	}
	st.errors = append(st.errors, recentError{First: now, Last: now, What: what, Count: 1})
}

// RecordSync keeps r as the latest sync of its upstream for the status page;
// a sync that did not succeed is also a recent error.
func (st *Board) RecordSync(r *SyncRun) {
	if r == nil {
		return
	}
	c := *r
	c.Failed = append([]string(nil), r.Failed...)
	st.mu.Lock()
	if st.syncs == nil {
		st.syncs = map[string]*SyncRun{}
	}
	st.syncs[r.API+" "+r.Upstream] = &c
	st.mu.Unlock()
	switch {
	case r.Err != nil:
		st.NoteError(fmt.Sprintf("sync of %s upstream %s failed: %v", r.API, redact.URL(r.Upstream), r.Err))
	case len(r.Failed) > 0:
		st.NoteError(fmt.Sprintf("sync of %s upstream %s: %d object(s) failed, first: %s", r.API, redact.URL(r.Upstream), len(r.Failed), r.Failed[0]))
	}
}

// Report is the content of the status page and of /status.json.
type Report struct {
	Version       string     `json:"version"`
	Started       time.Time  `json:"started"`
	Now           time.Time  `json:"now"`
	UptimeSeconds float64    `json:"uptime_seconds"`
	Ready         bool       `json:"ready"`
	Offline       bool       `json:"offline"`
	Upstreams     []Upstream `json:"upstreams"`
	Requests      Requests   `json:"requests"`
	Cache         Cache      `json:"cache"`
	PatternIndex  Index      `json:"pattern_index"`
	Syncs         []Sync     `json:"syncs"`
	RecentErrors  []Error    `json:"recent_errors"`
	BlobStore     BlobStore  `json:"blob_store"`
	Hosted        Hosted     `json:"hosted"`
}

// BlobStore is the store under the cache: the local disk, or the bucket
// replicas share (design.md, "Scale past one machine").
type BlobStore struct {
	Kind string `json:"kind"` // "disk" or "s3"
	URL  string `json:"url,omitempty"`
	Up   bool   `json:"up"`
	// Errors counts requests to the bucket that failed (unreachable, slow, 5xx).
	Errors int64 `json:"errors"`
	// FailOpen counts misses fetched from the upstream without a lease (the
	// bucket down or slow); SharedFills those answered by another replica's fill.
	FailOpen    int64 `json:"fail_open"`
	SharedFills int64 `json:"shared_fills"`
	LocalBytes  int64 `json:"local_bytes"` // the replica's local tier of the bucket
	LocalFiles  int64 `json:"local_files"`
}

// Upstream is one upstream's health.
type Upstream struct {
	API string `json:"api"`
	URL string `json:"url"`
	// State is up, failing, skipped, untried (no request yet) or offline.
	State       string     `json:"state"`
	StateText   string     `json:"state_text"`             // "up", "skipped until 15:04:05 UTC", …
	StateDetail string     `json:"state_detail,omitempty"` // "3 failures in a row; retried in 25s"
	Fails       int        `json:"consecutive_failures"`
	SkipUntil   *time.Time `json:"skipped_until,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	LatencyMS   float64    `json:"latency_ms"` // the last request's time to response headers
	// The request queue of --upstream-max-conns: requests holding a slot
	// (of max_conns; 0: no cap), waiting for one, and refused after waiting.
	InFlight int    `json:"in_flight"`
	MaxConns int    `json:"max_conns"`
	Queued   int    `json:"queued"`
	Refused  uint64 `json:"refused"`
}

// Requests are the traffic figures.
type Requests struct {
	SinceStart Traffic `json:"since_start"`
	Last5Min   Traffic `json:"last_5m"`
}

// Traffic counts answers by cache result.
type Traffic struct {
	Requests int64 `json:"requests"`
	Hit      int64 `json:"hit"`
	Miss     int64 `json:"miss"`
	Stale    int64 `json:"stale"`
	Bypass   int64 `json:"bypass"`
	// HitRatio is (HIT+STALE)/(HIT+STALE+MISS): answers from the store among
	// answers that went through the cache. Null when there were none.
	HitRatio *float64 `json:"hit_ratio"`
}

// Cache is the store's tiers.
type Cache struct {
	Tiers     []Tier `json:"tiers"`
	Evictions int64  `json:"evictions"`
}

// Tier is one tier of the store.
type Tier struct {
	Tier       string `json:"tier"`
	Bytes      int64  `json:"bytes"`
	Entries    int64  `json:"entries"`
	LimitBytes int64  `json:"limit_bytes"` // 0: see LimitNote
	LimitNote  string `json:"limit_note,omitempty"`
}

// Hosted is what the mirror hosts itself (design.md, Hosted namespaces).
type Hosted struct {
	Owners         []string `json:"refpack_owners"`
	Packages       int      `json:"refpack_packages"`
	Versions       int      `json:"refpack_versions"`
	Keys           int      `json:"api_keys"` // how many; never which
	LocalDirs      []string `json:"hydrilla_local_dirs"`
	LocalResources int      `json:"hydrilla_local_resources"`
	LocalMappings  int      `json:"hydrilla_local_mappings"`
	LocalFiles     int      `json:"hydrilla_local_files"`
}

// Index is the Hydrilla pattern index.
type Index struct {
	Patterns     int `json:"patterns"`
	ItemVersions int `json:"item_versions"` // Hydrilla item versions held
}

// Sync is one upstream's last sync.
type Sync struct {
	API      string `json:"api"`
	Upstream string `json:"upstream"`
	// Result is ok, failed, or never (no sync since start); LastSuccess may
	// still come from the store, written by an earlier run.
	Result          string     `json:"result"`
	Started         *time.Time `json:"started,omitempty"`
	Ended           *time.Time `json:"ended,omitempty"`
	DurationSeconds float64    `json:"duration_seconds,omitempty"`
	Items           int        `json:"items"`
	Files           int        `json:"files"`
	Packages        int        `json:"packages"`
	Held            int        `json:"held"`
	Bytes           int64      `json:"bytes"`
	FailedCount     int        `json:"failed_count"`
	Failed          []string   `json:"failed,omitempty"` // the first few
	Error           string     `json:"error,omitempty"`
	LastSuccess     *time.Time `json:"last_success,omitempty"`
}

// Error is one recent error (a run of repeats counted).
type Error struct {
	At    time.Time `json:"at"`    // the latest occurrence
	First time.Time `json:"first"` // the first of a run of repeats
	Count int       `json:"count"`
	What  string    `json:"what"`
}

// Inputs are what the server hands the board to build a report.
type Inputs struct {
	Version string
	Started time.Time
	Ready   bool
	Offline bool
	Pools   []*upstream.Pool
	// Requests is regmirror_requests_total: the since-start figures are the
	// very counters /metrics serves.
	Requests *prometheus.CounterVec
	Cache    *cache.Cache // nil: no cache figures
	// MemoryLimit and DiskLimit are the configured sizes (0: disabled, no limit).
	MemoryLimit, DiskLimit int64
	Fleet                  *cache.S3 // the shared bucket, or nil
	BlobStore, S3Endpoint  string
	Patterns, ItemVersions int
	// HydrillaSyncs is when each Hydrilla upstream's last complete sync
	// ended, as the store records it.
	HydrillaSyncs map[string]time.Time
	// Hosted is what the mirror hosts itself.
	Hosted Hosted
}

// Report builds the status report.
func (st *Board) Report(in Inputs) *Report {
	now := st.clock()
	r := &Report{
		Version: in.Version, Started: in.Started.UTC(), Now: now.UTC(),
		UptimeSeconds: now.Sub(in.Started).Round(time.Second).Seconds(),
		Ready:         in.Ready, Offline: in.Offline,
		// Empty lists are [] in JSON, not null.
		Upstreams: []Upstream{}, Syncs: []Sync{}, RecentErrors: []Error{},
	}
	var pools []*upstream.Pool
	for _, p := range in.Pools {
		if p != nil {
			pools = append(pools, p)
		}
	}
	for _, p := range pools {
		for _, u := range p.Upstreams() {
			r.Upstreams = append(r.Upstreams, upstreamStatusOf(u.Health(), p.Offline(), now))
		}
	}

	r.Requests.SinceStart = trafficOf(requestTotals(in.Requests))
	st.mu.Lock()
	var last trafficCounts
	for _, b := range st.buckets {
		if age := now.Unix() - b.sec; age >= 0 && age < int64(len(st.buckets)) {
			last.requests += b.c.requests
			last.hit += b.c.hit
			last.miss += b.c.miss
			last.stale += b.c.stale
			last.bypass += b.c.bypass
		}
	}
	for i := len(st.errors) - 1; i >= 0; i-- {
		e := st.errors[i]
		r.RecentErrors = append(r.RecentErrors, Error{At: e.Last.UTC(), First: e.First.UTC(), Count: e.Count, What: e.What})
	}
	syncs := make(map[string]*SyncRun, len(st.syncs))
	for k, v := range st.syncs {
		syncs[k] = v
	}
	st.mu.Unlock()
	r.Requests.Last5Min = trafficOf(last)

	if in.Cache != nil {
		cs := in.Cache.Stats()
		mem := Tier{Tier: "memory", Bytes: cs.MemoryBytes, Entries: cs.MemoryEntries, LimitBytes: in.MemoryLimit}
		if mem.LimitBytes == 0 {
			mem.LimitNote = "disabled"
		}
		disk := Tier{Tier: "disk", Bytes: cs.DiskBytes, Entries: cs.DiskEntries, LimitBytes: in.DiskLimit}
		if disk.LimitBytes == 0 {
			disk.LimitNote = "no limit"
		}
		r.Cache = Cache{Tiers: []Tier{mem, disk}, Evictions: cs.Evictions}
	}
	r.BlobStore = BlobStore{Kind: "disk", Up: true}
	if in.Fleet != nil {
		fs := in.Fleet.Stats()
		r.BlobStore = BlobStore{Kind: "s3", URL: in.BlobStore, Up: fs.Up, Errors: fs.Errors,
			FailOpen: fs.FillFailOpen, SharedFills: fs.FillShared, LocalBytes: fs.LocalBytes, LocalFiles: fs.LocalFiles}
		if in.S3Endpoint != "" {
			r.BlobStore.URL += " at " + redact.URL(in.S3Endpoint)
		}
	}
	r.PatternIndex = Index{Patterns: in.Patterns, ItemVersions: in.ItemVersions}
	r.Hosted = in.Hosted
	if r.Hosted.Owners == nil {
		r.Hosted.Owners = []string{}
	}
	if r.Hosted.LocalDirs == nil {
		r.Hosted.LocalDirs = []string{}
	}

	lastOK := make(map[string]time.Time, len(in.HydrillaSyncs))
	for k, v := range in.HydrillaSyncs {
		lastOK["hydrilla "+k] = v
	}
	seen := map[string]bool{}
	for _, p := range pools {
		for _, u := range p.Upstreams() {
			k := p.API + " " + u.Base
			seen[k] = true
			r.Syncs = append(r.Syncs, syncStatusOf(p.API, u.Base, syncs[k], lastOK[k]))
		}
	}
	var extra []string // synced upstreams no longer configured
	for k := range syncs {
		if !seen[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	for _, k := range extra {
		r.Syncs = append(r.Syncs, syncStatusOf(syncs[k].API, syncs[k].Upstream, syncs[k], lastOK[k]))
	}
	return r
}

func upstreamStatusOf(h upstream.Health, offline bool, now time.Time) Upstream {
	us := Upstream{API: h.API, URL: redact.URL(h.URL), Fails: h.Fails, LastError: redact.URL(h.LastError),
		LatencyMS: float64(h.Latency.Microseconds()) / 1000,
		InFlight:  h.InFlight, MaxConns: h.MaxConns, Queued: h.Queued, Refused: h.Refused}
	if !h.LastErrAt.IsZero() {
		t := h.LastErrAt.UTC()
		us.LastErrorAt = &t
	}
	switch {
	case offline:
		us.State, us.StateText = "offline", "offline"
		us.StateDetail = "offline mode: never contacted"
	case now.Before(h.SkipUntil):
		t := h.SkipUntil.UTC()
		us.SkipUntil = &t
		us.State = "skipped"
		us.StateText = "skipped until " + t.Format("15:04:05 MST")
		us.StateDetail = fmt.Sprintf("%s in a row; retried in %s", plural(h.Fails, "failure"), fmtDuration(h.SkipUntil.Sub(now).Round(time.Second)))
	case h.Fails > 0:
		us.State, us.StateText = "failing", "failing"
		us.StateDetail = plural(h.Fails, "failure") + " in a row"
	case h.Latency == 0 && h.LastErrAt.IsZero():
		us.State, us.StateText = "untried", "no request yet"
	default:
		us.State, us.StateText = "up", "up"
	}
	return us
}

func trafficOf(c trafficCounts) Traffic {
	t := Traffic{Requests: c.requests, Hit: c.hit, Miss: c.miss, Stale: c.stale, Bypass: c.bypass}
	if n := c.hit + c.stale + c.miss; n > 0 {
		r := float64(c.hit+c.stale) / float64(n)
		t.HitRatio = &r
	}
	return t
}

// requestTotals sums regmirror_requests_total by cache result: the since-start
// figures are the very counters /metrics serves.
func requestTotals(requests *prometheus.CounterVec) trafficCounts {
	var c trafficCounts
	if requests == nil {
		return c
	}
	ch := make(chan prometheus.Metric, 64)
	go func() {
		requests.Collect(ch)
		close(ch)
	}()
	for m := range ch {
		var pb dto.Metric
		if m.Write(&pb) != nil || pb.Counter == nil {
			continue
		}
		xc := ""
		for _, l := range pb.Label {
			if l.GetName() == "cache" {
				xc = l.GetValue()
			}
		}
		c.add(xc, int64(pb.Counter.GetValue()))
	}
	return c
}

func syncStatusOf(api, base string, r *SyncRun, lastOK time.Time) Sync {
	ss := Sync{API: api, Upstream: redact.URL(base), Result: "never"}
	if r != nil {
		started, ended := r.Started.UTC(), r.Ended.UTC()
		ss.Started, ss.Ended = &started, &ended
		if !r.Ended.IsZero() && !r.Started.IsZero() {
			ss.DurationSeconds = r.Ended.Sub(r.Started).Round(time.Millisecond).Seconds()
		}
		ss.Items, ss.Files, ss.Packages, ss.Held, ss.Bytes = r.Items, r.Files, r.Packages, r.Held, r.Bytes
		ss.FailedCount = len(r.Failed)
		for i, f := range r.Failed {
			if i == statusSyncFailures {
				break
			}
			ss.Failed = append(ss.Failed, redact.URL(f))
		}
		ss.Result = "ok"
		if !r.OK() {
			ss.Result = "failed"
		}
		if r.Err != nil {
			ss.Error = redact.URL(r.Err.Error())
		}
		if r.OK() && r.Ended.After(lastOK) {
			lastOK = r.Ended
		}
	}
	if !lastOK.IsZero() {
		t := lastOK.UTC()
		ss.LastSuccess = &t
	}
	return ss
}

// Serve writes the report as the page (path "/") or as JSON ("/status.json").
func Serve(w http.ResponseWriter, r *http.Request, path string, rep *Report, log *slog.Logger) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	var buf bytes.Buffer
	if path == "/status.json" {
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			log.Error("status.json", "err", err)
			http.Error(w, "the status could not be encoded", http.StatusInternalServerError)
			return
		}
		h.Set("Content-Type", "application/json")
	} else {
		if err := statusTmpl.Execute(&buf, rep); err != nil {
			log.Error("status page", "err", err)
			http.Error(w, "the status page could not be rendered", http.StatusInternalServerError)
			return
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		// Everything the page needs is in it: no script, no asset from elsewhere.
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
	}
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}

// fmtWhen shows a time (a time.Time or *time.Time) in UTC with how long ago,
// or how soon, it is from now.
func fmtWhen(v any, now time.Time) string {
	var t time.Time
	switch v := v.(type) {
	case time.Time:
		t = v
	case *time.Time:
		if v != nil {
			t = *v
		}
	}
	if t.IsZero() {
		return "—"
	}
	d := now.Sub(t).Round(time.Second)
	rel := fmtDuration(d) + " ago"
	if d < 0 {
		rel = "in " + fmtDuration(-d)
	} else if d == 0 {
		rel = "just now"
	}
	return t.UTC().Format("2006-01-02 15:04:05 MST") + " (" + rel + ")"
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// fmtDuration is a duration for people: 3d 4h, 2h 5m, 4m 10s, 12s.
func fmtDuration(d time.Duration) string {
	if d < time.Second {
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	}
	d = d.Round(time.Second)
	days, d := d/(24*time.Hour), d%(24*time.Hour)
	h, d := d/time.Hour, d%time.Hour
	m, sec := d/time.Minute, (d%time.Minute)/time.Second
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh", days, h)
	case h > 0:
		return fmt.Sprintf("%dh %dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm %ds", m, sec)
	}
	return fmt.Sprintf("%ds", sec)
}
