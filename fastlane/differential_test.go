package fastlane

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// The differential suite: every probe goes byte for byte to a net/http server
// alone and to the same server behind the lane, and the two must answer the
// same bytes (Date aside) and close the connection alike. The lane answers
// /fast… targets as the handler would; everything else it hands over. A
// desync (smuggling), a stale or extra answer, or a lost byte shows as a
// difference.

// echo is the handler of both servers: a GET of /fast… answers as mirror does.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	body := echoBody(r.Method, r.RequestURI, b)
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	io.WriteString(w, body)
})

func echoBody(method, target string, body []byte) string {
	return fmt.Sprintf("%s %s body=%q\n", method, target, body)
}

// mirror answers GET /fast… exactly as echo does on net/http.
type mirror struct{}

func (mirror) Answer(w *bufio.Writer, target []byte) bool {
	if !bytes.HasPrefix(target, []byte("/fast")) {
		return false
	}
	body := echoBody("GET", string(target), nil)
	fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\nDate: %s\r\n\r\n%s",
		len(body), AppendDate(nil, time.Now()), body)
	w.Flush()
	return true
}

type pair struct{ plain, lane string }

func startPair(t *testing.T) pair {
	t.Helper()
	server := func() *http.Server {
		return &http.Server{Handler: echo, ReadHeaderTimeout: 300 * time.Millisecond, ReadTimeout: time.Second, IdleTimeout: time.Second,
			MaxHeaderBytes: 8 << 10, ErrorLog: log.New(io.Discard, "", 0)}
	}
	hs := server()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	_, lane := startWith(t, mirror{}, server())
	return pair{plain: ln.Addr().String(), lane: lane}
}

var dateLine = regexp.MustCompile(`(?m)^Date: [^\r\n]*\r\n`)

// exchange sends parts (pausing between them so the server reads them
// apart), then half-closes unless stall, and returns what the server wrote
// until it closed, Date lines removed.
func exchange(addr string, parts []string, stall bool) (string, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(c)
		got <- b
	}()
	for i, p := range parts {
		if i > 0 {
			time.Sleep(2 * time.Millisecond)
		}
		if _, err := io.WriteString(c, p); err != nil {
			break // the server may close first: what it wrote is compared
		}
	}
	if !stall {
		c.(*net.TCPConn).CloseWrite()
	}
	b := <-got
	return dateLine.ReplaceAllString(string(b), ""), nil
}

func (p pair) compare(t *testing.T, name string, parts []string, stall bool) {
	t.Helper()
	var plain, lane string
	var perr, lerr error
	var wg sync.WaitGroup
	wg.Go(func() { plain, perr = exchange(p.plain, parts, stall) })
	wg.Go(func() { lane, lerr = exchange(p.lane, parts, stall) })
	wg.Wait()
	if perr != nil || lerr != nil {
		t.Fatalf("%s: %v / %v", name, perr, lerr)
	}
	if plain != lane {
		t.Errorf("%s %q:\nnet/http answered %q\nthe lane answered  %q", name, parts, plain, lane)
	}
}

const (
	fast  = "GET /fast HTTP/1.1\r\nHost: a\r\n\r\n"
	fast2 = "GET /fast?v=2 HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n\r\n"
	slow  = "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"
)

// probes are whole request streams: pipelined mixes, smuggling forms and
// every form the lane must leave to net/http.
var probes = []string{
	fast, fast + fast2 + fast, fast + slow + fast, slow + fast, fast2 + fast2,
	"POST /fast HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" + fast,
	fast + "POST /fast HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" + fast,
	"HEAD /fast HTTP/1.1\r\nHost: a\r\n\r\n" + fast,
	"GET /fast HTTP/1.0\r\n\r\n" + fast,
	"GET /fast HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive\r\n\r\n" + fast,
	"GET http://a/fast HTTP/1.1\r\nHost: a\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a b\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nX: a\r\n\tfolded\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\nHost: a\n\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nBad Name: y\r\n\r\n" + fast,
	"GET  /fast HTTP/1.1\r\nHost: a\r\n\r\n" + fast,
	"get /fast HTTP/1.1\r\nHost: a\r\n\r\n" + fast,
	"GET /fa st HTTP/1.1\r\nHost: a\r\n\r\n" + fast,
	"GET /fast#frag HTTP/1.1\r\nHost: a\r\n\r\n" + fast,
	"GET /fast%zz HTTP/1.1\r\nHost: a\r\n\r\n" + fast,
	"GET /fast%2F HTTP/1.1\r\nHost: a\r\n\r\n" + fast,
	"GET /fast\x7f HTTP/1.1\r\nHost: a\r\n\r\n" + fast,
	"GET /fast HTTP/1.1 \r\nHost: a\r\n\r\n" + fast,
	"GET /fast HTTP/2.0\r\nHost: a\r\n\r\n" + fast,
	"\r\n" + fast,
	"\r\n\r\n" + fast,
	"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n" + fast,
	"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n" + fast,
	// Bodies and framing: smuggling forms.
	"GET /fast HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nContent-Length: 31\r\n\r\n" + fast + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + fast,
	"POST /fast HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX: t\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"x\"\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nX-Long: " + strings.Repeat("x", 5000) + "\r\n\r\n" + fast,
	"GET /fast HTTP/1.1\r\nHost: a\r\nX-Huge: " + strings.Repeat("x", 20000) + "\r\n\r\n" + fast,
	"GET /fast?" + strings.Repeat("q", 5000) + " HTTP/1.1\r\nHost: a\r\n\r\n" + fast,
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"garbage\r\n\r\n" + fast,
	fast + "garbage\r\n\r\n" + fast,
	fast + "GET /fast HTTP/1.1\r\nHost: a\r\n", // a head cut short at the end
}

func TestDifferentialProbes(t *testing.T) {
	t.Parallel()
	p := startPair(t)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, probe := range probes {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			p.compare(t, fmt.Sprintf("probe %d", i), []string{probe}, false)
		})
	}
	wg.Wait()
}

// A stream cut in two at every offset reaches both servers in two reads.
func TestDifferentialSplitAtEveryOffset(t *testing.T) {
	t.Parallel()
	p := startPair(t)
	streams := []string{
		fast + fast2 + slow + fast,
		"POST /fast HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" + fast,
		"GET /fast HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + fast,
		"GET /fast HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + fast,
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for si, s := range streams {
		for at := 1; at < len(s); at++ {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				p.compare(t, fmt.Sprintf("stream %d cut at %d", si, at), []string{s[:at], s[at:]}, false)
			})
		}
	}
	wg.Wait()
}

// Clients that stall: both servers close alike, after the same answers.
func TestDifferentialStalls(t *testing.T) {
	t.Parallel()
	p := startPair(t)
	var wg sync.WaitGroup
	for i, parts := range [][]string{
		{},                           // nothing at all
		{"GET /fast HTTP/1.1\r\nHo"}, // half a first head
		{fast},                       // an answer, then idle
		{fast, "GET /fast HTTP/1.1\r\nHo"},
		{slow, "GET /fast HTTP/1.1\r\n"},
		{"POST /fast HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhel"}, // a body cut short
	} {
		wg.Go(func() { p.compare(t, fmt.Sprintf("stall %d", i), parts, true) })
	}
	wg.Wait()
}
