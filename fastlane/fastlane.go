// Package fastlane answers repeated cached hits on plain HTTP/1.1 connections
// ahead of net/http, and hands every other connection to net/http unchanged.
//
// Why: on a small machine, net/http's per-request work (a goroutine and a
// background read per request, the request and header maps, the response
// state) costs more than writing a cached 1 KiB answer. The lane reads a
// request head itself and, when it is a plain GET that the Answerer holds an
// answer for, writes that answer from bytes prepared earlier. At the first
// request it does not fully understand or cannot answer, it stops reading and
// gives the connection, with every byte it has read, to net/http, which then
// serves it for the rest of its life exactly as if the lane were not there.
// The lane never answers an error, never parses a body and never guesses: any
// doubt is net/http's to settle.
package fastlane

import (
	"bufio"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Answerer holds the answers the lane may give.
type Answerer interface {
	// Answer writes the whole response to "GET target HTTP/1.1" (status line,
	// headers and body) to w, flushes w, and reports true; or writes nothing
	// and reports false, and the request goes to net/http. An answer counts
	// (logs, metrics) only once Flush succeeded: a failed write ends the
	// connection, and the answers it held were never given. target is the
	// request target as sent, valid only during the call.
	Answer(w *bufio.Writer, target []byte) bool
}

// bufSize bounds the request head the lane reads; a longer one is net/http's.
const bufSize = 4 << 10

// minHead is the shortest head around a target: "GET ", " HTTP/1.1\r\n",
// "Host: a\r\n" and the blank line.
const minHead = len("GET  HTTP/1.1\r\nHost: a\r\n\r\n")

// Answerable reports whether the lane could ever be asked target: an
// origin-form target whose head fits its buffer. Anything else is always
// net/http's, so remembering an answer for it would only hold memory.
func Answerable(target string) bool {
	return len(target) > 0 && target[0] == '/' && len(target)+minHead <= bufSize
}

// Serve accepts connections on ln for hs: requests a answers are answered on
// the lane, and every connection the lane gives up on is served by hs. It
// returns what hs.Serve returns, once the lane's own connections have closed
// too: hs.Shutdown and hs.Close stop the lane, whose connections close as
// soon as they are between requests (an answer being written gets
// writeGrace).
//
// The lane keeps hs's timeouts as net/http does: ReadHeaderTimeout (else
// ReadTimeout) for the first request of a connection, IdleTimeout (else
// ReadTimeout) between requests, WriteTimeout per answer. A head longer than
// the lane's buffer goes to net/http, whose limit (MaxHeaderBytes + 4 KiB)
// is never below it. ln must be a plain TCP listener: TLS connections are for
// hs.ServeTLS.
func Serve(hs *http.Server, ln net.Listener, a Answerer) error {
	l := &lane{
		ln: ln, a: a, hs: hs,
		handoff:   make(chan net.Conn),
		done:      make(chan struct{}),
		acceptErr: make(chan error, 1),
		conns:     map[net.Conn]struct{}{},
	}
	go l.acceptLoop()
	err := hs.Serve(&handoffListener{l})
	l.stop()
	l.wg.Wait()
	return err
}

type lane struct {
	ln        net.Listener
	a         Answerer
	hs        *http.Server
	handoff   chan net.Conn // connections for net/http
	acceptErr chan error    // the listener's fatal error, for hs.Serve
	done      chan struct{} // closed when the lane stops

	stopping atomic.Bool // set (under mu) when the lane stops
	mu       sync.Mutex
	conns    map[net.Conn]struct{} // connections the lane serves
	wg       sync.WaitGroup        // one per connection in conns
}

func (l *lane) acceptLoop() {
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.stopping.Load() {
				return
			}
			// Like net/http: out of file descriptors and the like pass.
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			l.acceptErr <- err
			return
		}
		delay = 0
		if !l.track(c) {
			c.Close()
			return
		}
		go l.serveConn(c)
	}
}

// setDeadline moves c's read deadline unless the lane is stopping: stop wakes
// the connections by moving theirs to now, which must not be undone.
func (l *lane) setDeadline(c net.Conn, t time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopping.Load() {
		return false
	}
	c.SetReadDeadline(t)
	return true
}

// track adds c to the lane's connections, or reports false when the lane is
// stopping.
func (l *lane) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopping.Load() {
		return false
	}
	l.conns[c] = struct{}{}
	l.wg.Add(1)
	return true
}

func (l *lane) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	l.wg.Done()
}

// writeGrace is how long an answer being written when the lane stops may
// still take (a client that does not read would otherwise hold it for ever).
const writeGrace = 5 * time.Second

// stop closes the listener and wakes every connection the lane serves, which
// then closes once it is between requests.
func (l *lane) stop() error {
	l.mu.Lock()
	if l.stopping.Load() {
		l.mu.Unlock()
		return nil
	}
	l.stopping.Store(true)
	now := time.Now()
	for c := range l.conns {
		c.SetReadDeadline(now)
		c.SetWriteDeadline(now.Add(writeGrace))
	}
	l.mu.Unlock()
	close(l.done)
	return l.ln.Close()
}

// idleSlack is how stale the idle deadline may get before it is moved: moving
// it costs a timer update, and the idle timeout is minutes.
const idleSlack = time.Second

func (l *lane) serveConn(c net.Conn) {
	handed := false
	defer func() {
		// net/http survives a handler's panic; so does the lane.
		if err := recover(); err != nil {
			l.logf("fastlane: panic serving %v: %v\n%s", c.RemoteAddr(), err, debug.Stack())
		}
		if !handed {
			l.untrack(c)
			c.Close()
		}
	}()
	br := bufio.NewReaderSize(c, bufSize)
	bw := bufio.NewWriterSize(c, bufSize)
	hs := l.hs
	header, idle := hs.ReadHeaderTimeout, hs.IdleTimeout
	if header == 0 {
		header = hs.ReadTimeout
	}
	if idle == 0 {
		idle = hs.ReadTimeout
	}
	slack := min(idleSlack, idle/4)
	// The first request is bounded as net/http bounds it; headDeadline goes
	// with the connection if it is handed over before that head is read.
	var deadline, headDeadline time.Time
	if header > 0 {
		deadline = time.Now().Add(header)
		headDeadline = deadline
		if !l.setDeadline(c, deadline) {
			return
		}
	}
	for first := true; ; first = false {
		if br.Buffered() == 0 {
			if bw.Buffered() > 0 && bw.Flush() != nil {
				return
			}
			if !first {
				// Later heads: net/http starts their clock once their first
				// bytes arrive, and so does a connection handed over then.
				headDeadline = time.Time{}
				now := time.Now()
				switch {
				case idle > 0 && deadline.Sub(now) < idle-slack:
					deadline = now.Add(idle)
				case idle == 0 && !deadline.IsZero():
					deadline = time.Time{}
				default:
					now = time.Time{}
				}
				if !now.IsZero() && !l.setDeadline(c, deadline) {
					return
				}
			}
			if _, err := br.Peek(1); err != nil {
				return // closed, idle too long, or the lane is stopping
			}
			if l.stopping.Load() {
				return
			}
		}
		buf, _ := br.Peek(br.Buffered())
		n, target := parseHead(buf)
		if n > 0 && hs.WriteTimeout > 0 {
			c.SetWriteDeadline(time.Now().Add(hs.WriteTimeout))
		}
		if n == 0 || !l.a.Answer(bw, target) {
			handed = true
			l.handOff(c, br, bw, headDeadline)
			return
		}
		if bw.Flush() != nil {
			return // the client is gone or reads nothing: stop at once
		}
		br.Discard(n)
	}
}

func (l *lane) logf(format string, args ...any) {
	if l.hs.ErrorLog != nil {
		l.hs.ErrorLog.Printf(format, args...)
	} else {
		log.Printf(format, args...)
	}
}

// handOff gives c to net/http with what the lane has read but not answered.
// headDeadline, when set, is when the head being read must be complete: the
// connection's first, whose clock started when it was accepted.
func (l *lane) handOff(c net.Conn, br *bufio.Reader, bw *bufio.Writer, headDeadline time.Time) {
	l.untrack(c)
	if bw.Flush() != nil || c.SetDeadline(time.Time{}) != nil || l.stopping.Load() {
		c.Close()
		return
	}
	hc := &handedConn{Conn: c, headDeadline: headDeadline}
	if br.Buffered() > 0 {
		hc.br = br
	}
	select {
	case l.handoff <- hc:
	case <-l.done:
		c.Close()
	}
}

// handedConn is a connection given to net/http: its reads first return what
// the lane had read, and the head the lane began keeps its deadline.
type handedConn struct {
	net.Conn
	br *bufio.Reader // nil once drained
	// headDeadline bounds net/http's first read deadline, the one it sets for
	// the head when it starts serving the connection: ReadHeaderTimeout
	// counts from the connection's start, not from the hand-off (else a
	// client that stalls just before it could hold the connection twice as
	// long). Zero once applied, or when the lane read no part of a first head.
	headDeadline time.Time
	clamped      atomic.Bool
}

// SetReadDeadline keeps the head's deadline on net/http's first call.
func (c *handedConn) SetReadDeadline(t time.Time) error {
	if !c.clamped.Swap(true) {
		if d := c.headDeadline; !d.IsZero() && (t.IsZero() || d.Before(t)) {
			t = d
		}
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *handedConn) Read(p []byte) (int, error) {
	if c.br != nil {
		n, err := c.br.Read(p)
		if c.br.Buffered() == 0 {
			c.br = nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
	return c.Conn.Read(p)
}

// ReadFrom keeps sendfile: net/http sends files through its connection's
// ReadFrom when it has one.
func (c *handedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite lets net/http half-close after an error answer, as it does on a
// TCP connection.
func (c *handedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// handoffListener is what hs.Serve accepts from: the connections the lane
// gave up on. Closing it stops the lane.
type handoffListener struct{ l *lane }

func (h *handoffListener) Accept() (net.Conn, error) {
	if h.l.stopping.Load() {
		return nil, net.ErrClosed
	}
	select {
	case c := <-h.l.handoff:
		return c, nil
	case err := <-h.l.acceptErr:
		return nil, err
	case <-h.l.done:
		return nil, net.ErrClosed
	}
}

func (h *handoffListener) Close() error   { return h.l.stop() }
func (h *handoffListener) Addr() net.Addr { return h.l.ln.Addr() }
