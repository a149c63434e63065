package fastlane

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// table answers the targets it holds with a fixed response.
type table struct {
	answers map[string]string
	n       atomic.Int64
}

func (t *table) Answer(w *bufio.Writer, target []byte) bool {
	body, ok := t.answers[string(target)]
	if !ok {
		return false
	}
	t.n.Add(1)
	fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Lane: fast\r\n\r\n%s", len(body), body)
	return true
}

// start serves a net/http handler behind the lane on 127.0.0.1.
func start(t *testing.T, a Answerer, h http.Handler) (*http.Server, string) {
	t.Helper()
	return startWith(t, a, &http.Server{Handler: h, ReadHeaderTimeout: 2 * time.Second, IdleTimeout: 5 * time.Second})
}

func startWith(t *testing.T, a Answerer, hs *http.Server) (*http.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Serve(hs, ln, a) }()
	t.Cleanup(func() {
		hs.Close()
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("Serve returned %v", err)
		}
	})
	return hs, ln.Addr().String()
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func read(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// The lane answers what it holds, hands the connection to net/http at the
// first request it does not, with every byte it had read (a pipelined body
// included), and net/http keeps it from then on.
func TestHandOffKeepsEveryByte(t *testing.T) {
	dir := t.TempDir()
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: net/http sends it with sendfile
	if err := os.WriteFile(filepath.Join(dir, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	tb := &table{answers: map[string]string{"/fast": "quick"}}
	_, addr := start(t, tb, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			http.ServeFile(w, r, filepath.Join(dir, "big"))
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Lane", "net/http")
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), b)
	}))
	c, br := dial(t, addr)
	io.WriteString(c, "GET /fast HTTP/1.1\r\nHost: a\r\n\r\n"+
		"GET /fast HTTP/1.1\r\nHost: a\r\nUser-Agent: x\r\n\r\n"+
		"POST /fast HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"+
		"GET /fast HTTP/1.1\r\nHost: a\r\n\r\n"+
		"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
	want := []struct{ lane, body string }{
		{"fast", "quick"}, {"fast", "quick"}, {"net/http", "POST /fast hello"}, {"net/http", "GET /fast "}, {"", string(big)},
	}
	for i, w := range want {
		resp, body := read(t, br, "GET")
		if resp.StatusCode != 200 || resp.Header.Get("X-Lane") != w.lane || body != w.body {
			t.Fatalf("answer %d: %d %q, %d bytes; want %q, %d bytes", i, resp.StatusCode, resp.Header.Get("X-Lane"), len(body), w.lane, len(w.body))
		}
	}
	if n := tb.n.Load(); n != 2 {
		t.Errorf("the lane answered %d requests, want 2", n)
	}
}

// Whatever the lane does not take is net/http's, answered as net/http
// answers it: errors, HTTP/1.0, a missing Host, conditions, Connection: close.
func TestOtherRequestsAreNetHTTPs(t *testing.T) {
	tb := &table{answers: map[string]string{"/fast": "quick"}}
	_, addr := start(t, tb, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Lane", "net/http")
		io.WriteString(w, "slow")
	}))
	for _, tc := range []struct {
		req    string
		status int
	}{
		{"GET /fast HTTP/1.0\r\n\r\n", 200},
		{"GET /fast HTTP/1.1\r\n\r\n", 400},
		{"GET /fast HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"GET /fast HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1\r\n\r\n", 200},
		{"GET /fast HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"x\"\r\n\r\n", 200},
		{"GET /fast HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 200},
		{"GET /fast HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400},
		{"GET /fast HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400},
		{"GET /other HTTP/1.1\r\nHost: a\r\n\r\n", 200},
	} {
		c, br := dial(t, addr)
		io.WriteString(c, tc.req)
		resp, _ := read(t, br, "GET")
		if resp.StatusCode != tc.status || resp.StatusCode == 200 && resp.Header.Get("X-Lane") != "net/http" {
			t.Errorf("%q: %d from %q, want %d from net/http", tc.req, resp.StatusCode, resp.Header.Get("X-Lane"), tc.status)
		}
	}
	if n := tb.n.Load(); n != 0 {
		t.Errorf("the lane answered %d requests, want 0", n)
	}
}

// Shutdown closes the lane's idle connections and returns at once.
func TestShutdownClosesIdleConnections(t *testing.T) {
	tb := &table{answers: map[string]string{"/fast": "quick"}}
	hs, addr := start(t, tb, http.NotFoundHandler())
	c, br := dial(t, addr)
	io.WriteString(c, "GET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
	read(t, br, "GET")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := hs.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after Shutdown the connection reads %v, want EOF", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown and close took %v", d)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("the listener still accepts after Shutdown")
	}
}

func TestParseHead(t *testing.T) {
	for _, tc := range []struct {
		head, target string
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "/"},
		{"GET /p?version=1.0.0 HTTP/1.1\r\nhost: 127.0.0.1:80\r\nAccept: */*\r\nConnection: Keep-Alive\r\n\r\n", "/p?version=1.0.0"},
		{"GET /a%2Fb HTTP/1.1\r\nHost: [::1]:8080\r\nUser-Agent:\t x \r\n\r\n", "/a%2Fb"},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n", "/"},
		{"GET / HTTP/1.1\r\nHost: a\r\n", ""},
		{"GET / HTTP/1.1\nHost: a\n\n", ""},
		{"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", ""},
		{"GET / HTTP/1.0\r\nHost: a\r\n\r\n", ""},
		{"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", ""},
		{"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", ""},
		{"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", ""},
		{"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", ""},
		{"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", ""},
		{"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", ""},
		{"GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n", ""},
		{"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", ""},
		{"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", ""},
		{"GET / HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: x\r\n\r\n", ""},
		{"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n", ""},
		{"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n", ""},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", ""},
	} {
		n, target := parseHead([]byte(tc.head))
		if string(target) != tc.target || (n == 0) != (tc.target == "") {
			t.Errorf("%q: %d %q, want %q", tc.head, n, target, tc.target)
		}
	}
}

// Every head the lane takes is one a net/http server accepts as the same
// plain GET, with no body, keep-alive, and nothing that conditions the answer.
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /packages/x/meta?version=1.0.0 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n",
		"GET /a%2Fb HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: keep-alive\r\n\r\n",
		"GET //x HTTP/1.1\r\nHost: a\r\nX-Y:\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, target := parseHead(b)
		if n == 0 {
			return
		}
		req, status := serveOne(t, b[:n])
		if status != http.StatusOK {
			t.Fatalf("the lane takes %q; a net/http server answers %d", b[:n], status)
		}
		if req.Method != "GET" || req.RequestURI != string(target) || req.ProtoMinor != 1 || req.Close ||
			req.ContentLength != 0 || len(req.TransferEncoding) > 0 || req.Host == "" {
			t.Fatalf("the lane takes %q as GET %q; net/http reads %s %q close=%v length=%d te=%v host=%q",
				b[:n], target, req.Method, req.RequestURI, req.Close, req.ContentLength, req.TransferEncoding, req.Host)
		}
		for k := range req.Header {
			if strings.HasPrefix(k, "If-") || k == "Range" || k == "Expect" || k == "Upgrade" {
				t.Fatalf("the lane takes %q with %s", b[:n], k)
			}
		}
	})
}

// serveOne sends head to a real net/http server over a pipe and returns the
// request its handler saw (nil when none) and the status it answered.
func serveOne(t *testing.T, head []byte) (*http.Request, int) {
	client, server := net.Pipe()
	defer client.Close()
	seen := make(chan *http.Request, 1)
	hs := &http.Server{
		Handler:  http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen <- r }),
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go hs.Serve(&oneConn{c: server, closed: make(chan struct{})})
	defer hs.Close()
	client.SetDeadline(time.Now().Add(5 * time.Second))
	go client.Write(head)
	resp, err := http.ReadResponse(bufio.NewReader(client), nil)
	if err != nil {
		t.Fatalf("%q: no answer from net/http: %v", head, err)
	}
	resp.Body.Close()
	select {
	case r := <-seen:
		return r, resp.StatusCode
	default:
		return nil, resp.StatusCode
	}
}

// oneConn is a listener of one connection.
type oneConn struct {
	c      net.Conn
	done   bool
	once   sync.Once
	closed chan struct{}
}

func (l *oneConn) Accept() (net.Conn, error) {
	if !l.done {
		l.done = true
		return l.c, nil
	}
	<-l.closed
	return nil, net.ErrClosed
}
func (l *oneConn) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}
func (l *oneConn) Addr() net.Addr { return l.c.LocalAddr() }

// The lane keeps net/http's timeouts: a connection that sends nothing is
// closed after ReadHeaderTimeout, one idle after an answer after IdleTimeout,
// and one in use is never cut between requests.
func TestTimeouts(t *testing.T) {
	tb := &table{answers: map[string]string{"/fast": "quick"}}
	_, addr := startWith(t, tb, &http.Server{Handler: http.NotFoundHandler(),
		ReadHeaderTimeout: 200 * time.Millisecond, IdleTimeout: 600 * time.Millisecond})
	closedAfter := func(br *bufio.Reader) time.Duration {
		start := time.Now()
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("read %v, want EOF", err)
		}
		return time.Since(start)
	}

	_, br := dial(t, addr)
	if d := closedAfter(br); d < 150*time.Millisecond || d > 450*time.Millisecond {
		t.Errorf("a silent connection was closed after %v, want about ReadHeaderTimeout (200ms, not IdleTimeout)", d)
	}

	c, br := dial(t, addr)
	for range 8 { // 1.2 s of requests 150 ms apart: longer than IdleTimeout, never idle so long
		io.WriteString(c, "GET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
		read(t, br, "GET")
		time.Sleep(150 * time.Millisecond)
	}
	if d := closedAfter(br); d < 300*time.Millisecond || d > 2*time.Second {
		t.Errorf("an idle connection was closed %v after its last answer, want about IdleTimeout (600ms)", d)
	}
}

type panics struct{}

func (panics) Answer(*bufio.Writer, []byte) bool { panic("boom") }

// A panic while answering closes that connection only, as in net/http.
func TestPanicClosesTheConnectionOnly(t *testing.T) {
	var logs lockedBuffer
	_, addr := startWith(t, panics{}, &http.Server{Handler: http.NotFoundHandler(), ErrorLog: log.New(&logs, "", 0)})
	for range 2 {
		c, br := dial(t, addr)
		io.WriteString(c, "GET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("after a panic the connection reads %v, want EOF", err)
		}
	}
	if !strings.Contains(logs.String(), "boom") {
		t.Errorf("the panic is not logged: %q", logs.String())
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
