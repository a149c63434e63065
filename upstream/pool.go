// Package upstream talks to the registries the mirror fronts: an ordered pool of
// base URLs per API, with timeouts and health (max fails, fail timeout).
package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/regmirror/regmirror/redact"
)

// ErrOffline is returned by every request of a pool in offline mode.
var ErrOffline = errors.New("offline mode: upstreams are not contacted")

// ErrNoUpstream means every upstream is skipped after repeated failures.
var ErrNoUpstream = errors.New("every upstream is marked down")

// ErrBusy means an upstream had Options.MaxConns requests in flight for all of
// Options.QueueTimeout; it comes wrapped in an *Error whose RetryAfter says
// when to try again.
var ErrBusy = errors.New("too many requests in flight to this upstream")

// busyRetryAfter is the Retry-After of ErrBusy: a queue that stayed full for
// the whole queue timeout drains in seconds, not minutes.
const busyRetryAfter = 5 * time.Second

// Options configure a pool.
type Options struct {
	ConnectTimeout time.Duration // TCP (and TLS) connect
	HeaderTimeout  time.Duration // from request sent to response headers
	MaxFails       int           // consecutive failures before an upstream is skipped
	FailTimeout    time.Duration // how long a failing upstream is skipped
	UserAgent      string
	RootCAs        *x509.CertPool // nil: the system roots
	Offline        bool
	// MaxConns caps the requests in flight per upstream (0: no cap); a body
	// being read counts until it is closed. More wait for a slot up to
	// QueueTimeout (0: HeaderTimeout), then fail with ErrBusy: a client
	// asking distinct misses must not multiply onto the upstream.
	MaxConns     int
	QueueTimeout time.Duration
	// Observe, when set, is told of every upstream request and its result:
	// "ok", "not_found", "error", "timeout".
	Observe func(u *Upstream, result string, d time.Duration)
	// ObserveError, when set, is told of every upstream failure and its
	// reason: "timeout", "connect" (no answer: refused, reset, DNS, TLS),
	// "status" (a 5xx), "body" (an answer cut short or failing verification),
	// "busy" (refused at MaxConns, never sent).
	ObserveError func(u *Upstream, reason string)
	// Logger gets one WARN line per failed upstream request, and one line
	// when an upstream becomes skipped or comes back (nil: slog.Default()).
	Logger *slog.Logger
}

// Upstream is one base URL and its health.
type Upstream struct {
	API string
	// Base is the base URL without a trailing slash, as shown and as keys
	// name it: credentials are masked (redact.URL). Requests go to base.
	Base string

	base string        // Base with no user information: where requests go
	user *url.Userinfo // the credentials given in the URL, sent as basic auth

	mu        sync.Mutex
	fails     int
	skipUntil time.Time
	lastErr   string
	lastCause string // lastErr without the upstream's name: what a skip reports
	lastErrAt time.Time
	latency   time.Duration

	slots   chan struct{} // one per request in flight; nil: no cap
	queued  atomic.Int64  // requests waiting for a slot
	refused atomic.Uint64 // requests that waited the whole queue timeout
}

// Health is a snapshot of an upstream's state for the status page.
type Health struct {
	API, URL  string
	Up        bool
	Fails     int
	SkipUntil time.Time
	LastError string
	LastErrAt time.Time
	Latency   time.Duration
	// InFlight and Queued are requests holding and waiting for one of
	// MaxConns slots; Refused counts those that waited in vain.
	InFlight, Queued, MaxConns int
	Refused                    uint64
}

// Health returns a snapshot of u's state.
func (u *Upstream) Health() Health {
	u.mu.Lock()
	defer u.mu.Unlock()
	return Health{API: u.API, URL: u.Base, Up: u.fails == 0, Fails: u.fails, SkipUntil: u.skipUntil,
		LastError: u.lastErr, LastErrAt: u.lastErrAt, Latency: u.latency,
		InFlight: len(u.slots), Queued: int(u.queued.Load()), MaxConns: cap(u.slots), Refused: u.refused.Load()}
}

// Queued is how many requests wait for a slot of u (Options.MaxConns).
func (u *Upstream) Queued() int { return int(u.queued.Load()) }

// Refused is how many requests gave up waiting for a slot of u.
func (u *Upstream) Refused() uint64 { return u.refused.Load() }

// acquire takes one of u's slots, waiting up to wait; release gives it back.
func (u *Upstream) acquire(ctx context.Context, wait time.Duration) error {
	if u.slots == nil {
		return nil
	}
	select {
	case u.slots <- struct{}{}:
		return nil
	default:
	}
	u.queued.Add(1)
	defer u.queued.Add(-1)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case u.slots <- struct{}{}:
		return nil
	case <-t.C:
		u.refused.Add(1)
		return &Error{Upstream: u.Base, RetryAfter: busyRetryAfter, Err: ErrBusy}
	case <-ctx.Done():
		return &Error{Upstream: u.Base, Timeout: ctx.Err() == context.DeadlineExceeded, Err: ctx.Err()}
	}
}

func (u *Upstream) release() {
	if u.slots != nil {
		<-u.slots
	}
}

// releasingBody gives the request's places back (its upstream's slot, and
// its place under a FetchLimit) once the body is read to its end or closed,
// whichever comes first: a body read to its end is no longer a request in
// flight (its connection is already free for the next one), however long the
// caller then spends on what it read.
type releasingBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *releasingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(b.release)
	}
	return n, err
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}

// A FetchLimit caps the upstream requests in flight of everything done with a
// context that carries it (WithFetchLimit), whichever upstream they go to: a
// sync's --jobs. A request holds its place from before it is sent until its
// body is read to its end or closed, so what the caller does with a body once
// read (storing, verifying, recording it) does not hold one: a sync keeps
// --jobs downloads in flight while its own work on the ones before overlaps
// them (design.md, "Sync at the speed of the network").
type FetchLimit struct{ places chan struct{} }

// NewFetchLimit returns a limit of n requests in flight (n < 1: 1).
func NewFetchLimit(n int) *FetchLimit {
	return &FetchLimit{places: make(chan struct{}, max(n, 1))}
}

type fetchLimitKey struct{}

// WithFetchLimit returns a context whose upstream requests count under l.
func WithFetchLimit(ctx context.Context, l *FetchLimit) context.Context {
	return context.WithValue(ctx, fetchLimitKey{}, l)
}

// takeFetchPlace waits for a place under the context's limit, if it carries one; the
// function it returns gives the place back.
func takeFetchPlace(ctx context.Context, base string) (func(), error) {
	l, _ := ctx.Value(fetchLimitKey{}).(*FetchLimit)
	if l == nil {
		return func() {}, nil
	}
	select {
	case l.places <- struct{}{}:
		return func() { <-l.places }, nil
	case <-ctx.Done():
		return nil, &Error{Upstream: base, Timeout: ctx.Err() == context.DeadlineExceeded, Err: ctx.Err()}
	}
}

// record notes a request's result; it returns whether u just became skipped
// or just came back from failing, for the log.
func (u *Upstream) record(err error, d time.Duration, opts *Options) (nowSkipped, back bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.latency = d
	if err == nil {
		back = u.fails >= opts.MaxFails && opts.MaxFails > 0
		u.fails = 0
		u.skipUntil = time.Time{}
		return false, back
	}
	u.fails++
	u.lastErr = err.Error()
	u.lastCause = causeOf(err)
	u.lastErrAt = time.Now()
	if opts.MaxFails > 0 && u.fails >= opts.MaxFails {
		nowSkipped = !u.skipUntil.After(u.lastErrAt)
		u.skipUntil = time.Now().Add(opts.FailTimeout)
	}
	return nowSkipped, false
}

// skipError is the error of a request that found u skipped, or nil when it
// is not.
func (u *Upstream) skipError(now time.Time) *SkippedError {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !now.Before(u.skipUntil) {
		return nil
	}
	return &SkippedError{Upstream: u.Base, For: u.skipUntil.Sub(now), Fails: u.fails, Last: u.lastCause}
}

// causeOf is an upstream error without the upstream's name (the skip message
// names it once).
func causeOf(err error) string {
	var ue *Error
	if errors.As(err, &ue) {
		if ue.Status != 0 {
			return fmt.Sprintf("answered %d", ue.Status)
		}
		if ue.Err != nil {
			return ue.Err.Error()
		}
	}
	return err.Error()
}

// SkippedError is a request that found every upstream it could ask skipped
// after repeated failures. It names the last failure, and Is ErrNoUpstream.
type SkippedError struct {
	Upstream string        // the upstream back soonest
	For      time.Duration // until it is tried again
	Fails    int           // failures in a row
	Last     string        // its last failure
}

func (e *SkippedError) Error() string {
	secs := int64((e.For + time.Second - 1) / time.Second)
	return fmt.Sprintf("upstream %s skipped for %d s after %d failures: %s", e.Upstream, secs, e.Fails, e.Last)
}

// Is makes a SkippedError an ErrNoUpstream.
func (e *SkippedError) Is(target error) bool { return target == ErrNoUpstream }

// Pool is the ordered list of upstreams of one API.
type Pool struct {
	API    string
	ups    []*Upstream
	opts   Options
	client *http.Client
}

// NewPool builds a pool over the base URLs, in order.
func NewPool(api string, bases []string, opts Options) (*Pool, error) {
	if opts.QueueTimeout <= 0 {
		opts.QueueTimeout = opts.HeaderTimeout
	}
	p := &Pool{API: api, opts: opts}
	for _, b := range bases {
		u, err := url.Parse(b)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%s upstream %q: not an http(s) URL", api, redact.URL(b))
		}
		user := u.User
		u.User = nil
		up := &Upstream{API: api, Base: redact.URL(strings.TrimRight(b, "/")),
			base: strings.TrimRight(u.String(), "/"), user: user}
		if opts.MaxConns > 0 {
			up.slots = make(chan struct{}, opts.MaxConns)
		}
		p.ups = append(p.ups, up)
	}
	dialer := &net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   opts.ConnectTimeout,
		ResponseHeaderTimeout: opts.HeaderTimeout,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
		TLSClientConfig:       &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12},
	}
	p.client = &http.Client{
		Transport: tr,
		// Redirects are the upstream's answer to relay, not to follow blindly.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return p, nil
}

// Upstreams returns the pool's upstreams in order.
func (p *Pool) Upstreams() []*Upstream { return p.ups }

// Offline reports whether the pool never contacts its upstreams.
func (p *Pool) Offline() bool { return p.opts.Offline }

// NotFoundError is every upstream answering 404; it carries the last answer.
type NotFoundError struct {
	Header   http.Header
	Body     []byte
	Upstream string // the base URL of the last upstream asked
}

func (e *NotFoundError) Error() string { return "not found upstream" }

// Error is an upstream failure: a transport error, a timeout or a 5xx.
type Error struct {
	Upstream   string
	Status     int // 0 for transport errors
	Timeout    bool
	RetryAfter time.Duration // from a 503's Retry-After, when given
	Err        error
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("upstream %s answered %d", e.Upstream, e.Status)
	}
	return fmt.Sprintf("upstream %s: %v", e.Upstream, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// IsTimeout reports whether err is an upstream timeout.
func IsTimeout(err error) bool {
	var ue *Error
	return errors.As(err, &ue) && ue.Timeout
}

// Response is an upstream answer and the upstream that gave it.
type Response struct {
	*http.Response
	Upstream *Upstream
}

const maxNotFoundBody = 64 << 10

// Get asks each upstream in order for pathQuery (an escaped path with its query,
// joined to the base URL). A 404 falls through to the next upstream; a transport
// error, timeout or 5xx is a failure and also falls through. The first other
// answer is returned with its body open. When no upstream answered otherwise the
// error is a *NotFoundError if every upstream said 404, else the last failure.
func (p *Pool) Get(ctx context.Context, pathQuery string, hdr http.Header) (*Response, error) {
	if p.opts.Offline {
		return nil, ErrOffline
	}
	var lastErr error
	var nf *NotFoundError
	now := time.Now()
	tried := 0
	var skipped *SkippedError
	for _, u := range p.ups {
		if se := u.skipError(now); se != nil {
			if skipped == nil || se.For < skipped.For {
				skipped = se
			}
			continue
		}
		tried++
		resp, err := p.do(ctx, u, http.MethodGet, pathQuery, hdr, nil)
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if resp.StatusCode == http.StatusNotFound {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, maxNotFoundBody))
			resp.Body.Close()
			nf = &NotFoundError{Header: resp.Header, Body: body, Upstream: u.Base}
			continue
		}
		return resp, nil
	}
	if tried == 0 {
		if skipped != nil {
			return nil, skipped
		}
		return nil, ErrNoUpstream
	}
	if lastErr != nil {
		return nil, lastErr
	}
	return nil, nf
}

// GetFrom asks one upstream of the pool (for answers merged across upstreams,
// such as Hydrilla's /list_all and /query). A skipped upstream fails at once.
func (p *Pool) GetFrom(ctx context.Context, u *Upstream, pathQuery string, hdr http.Header) (*Response, error) {
	if p.opts.Offline {
		return nil, ErrOffline
	}
	if se := u.skipError(time.Now()); se != nil {
		return nil, se
	}
	resp, err := p.do(ctx, u, http.MethodGet, pathQuery, hdr, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusNotFound {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxNotFoundBody))
		resp.Body.Close()
		return nil, &NotFoundError{Header: resp.Header, Body: body, Upstream: u.Base}
	}
	return resp, nil
}

// Send makes one request (a write) to the first upstream not marked down; it
// does not fall through, since the body is consumed.
func (p *Pool) Send(ctx context.Context, method, pathQuery string, hdr http.Header, body io.Reader) (*Response, error) {
	if p.opts.Offline {
		return nil, ErrOffline
	}
	now := time.Now()
	var skipped *SkippedError
	for _, u := range p.ups {
		se := u.skipError(now)
		if se == nil {
			return p.do(ctx, u, method, pathQuery, hdr, body)
		}
		if skipped == nil || se.For < skipped.For {
			skipped = se
		}
	}
	if skipped != nil {
		return nil, skipped
	}
	return nil, ErrNoUpstream
}

func (p *Pool) do(ctx context.Context, u *Upstream, method, pathQuery string, hdr http.Header, body io.Reader) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u.base+pathQuery, body)
	if err != nil {
		return nil, &Error{Upstream: u.Base, Err: err}
	}
	// A spooled upload (*io.SectionReader) goes with its length, not chunked.
	if sz, ok := body.(interface{ Size() int64 }); ok && req.ContentLength == 0 {
		if req.ContentLength = sz.Size(); req.ContentLength == 0 {
			req.Body = http.NoBody
		}
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	req.Header.Set("User-Agent", p.opts.UserAgent)
	leave, err := takeFetchPlace(ctx, u.Base)
	if err != nil {
		return nil, err
	}
	if err := u.acquire(ctx, p.opts.QueueTimeout); err != nil {
		leave()
		if errors.Is(err, ErrBusy) {
			p.observeError(u, "busy")
		}
		return nil, err
	}
	release := func() { u.release(); leave() }
	// As net/http does with a URL's user information, which is kept out of
	// the request URL so that no error can quote it.
	if u.user != nil && req.Header.Get("Authorization") == "" {
		pw, _ := u.user.Password()
		req.SetBasicAuth(u.user.Username(), pw)
	}
	start := time.Now()
	resp, err := p.client.Do(req)
	d := time.Since(start)
	if err != nil {
		release()
		timeout := errors.Is(err, context.DeadlineExceeded)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			timeout = true
		}
		if ctx.Err() == context.Canceled {
			// The caller gave up; that says nothing about the upstream.
			return nil, &Error{Upstream: u.Base, Err: err}
		}
		ue := &Error{Upstream: u.Base, Timeout: timeout, Err: err}
		p.failed(u, method, pathQuery, ue, d)
		p.observe(u, map[bool]string{true: "timeout", false: "error"}[timeout], d)
		p.observeError(u, map[bool]string{true: "timeout", false: "connect"}[timeout])
		return nil, ue
	}
	resp.Body = &releasingBody{ReadCloser: resp.Body, release: release}
	if resp.StatusCode >= 500 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		ue := &Error{Upstream: u.Base, Status: resp.StatusCode, RetryAfter: ParseRetryAfter(resp.Header.Get("Retry-After"))}
		p.failed(u, method, pathQuery, ue, d)
		p.observe(u, "error", d)
		p.observeError(u, "status")
		return nil, ue
	}
	if _, back := u.record(nil, d, &p.opts); back {
		p.logger().Info("upstream is answering again", "api", p.API, "upstream", u.Base)
	}
	if resp.StatusCode == http.StatusNotFound {
		p.observe(u, "not_found", d)
	} else {
		p.observe(u, "ok", d)
	}
	return &Response{Response: resp, Upstream: u}, nil
}

// Fail records a failure that showed only after the answer began (a body cut
// short, bytes that failed verification) against u.
func (p *Pool) Fail(u *Upstream, err error) {
	p.failed(u, "", "", err, 0)
	p.observe(u, "error", 0)
	p.observeError(u, "body")
}

// failed records a failed request against u and logs it: one WARN line per
// failure, and one more when u becomes skipped.
func (p *Pool) failed(u *Upstream, method, pathQuery string, err error, d time.Duration) {
	nowSkipped, _ := u.record(err, d, &p.opts)
	log := p.logger()
	route, _, _ := strings.Cut(pathQuery, "?")
	log.Warn("upstream request failed", "api", p.API, "upstream", u.Base, "method", method, "route", route, "err", causeOf(err))
	if nowSkipped {
		h := u.Health()
		log.Warn("upstream skipped", "api", p.API, "upstream", u.Base, "fails", h.Fails,
			"for", p.opts.FailTimeout.String(), "err", causeOf(err))
	}
}

func (p *Pool) logger() *slog.Logger {
	if p.opts.Logger != nil {
		return p.opts.Logger
	}
	return slog.Default()
}

func (p *Pool) observeError(u *Upstream, reason string) {
	if p.opts.ObserveError != nil {
		p.opts.ObserveError(u, reason)
	}
}

func (p *Pool) observe(u *Upstream, result string, d time.Duration) {
	if p.opts.Observe != nil {
		p.opts.Observe(u, result, d)
	}
}

// ParseRetryAfter reads a Retry-After header (seconds or an HTTP date); 0 when
// absent or unreadable.
func ParseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
