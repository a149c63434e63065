package fastlane

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regmirror/regmirror/writeidle"
)

// The connection's first head must be complete ReadHeaderTimeout after it was
// accepted, also when its first bytes reach the lane late and it goes to
// net/http: the hand-off does not restart the clock.
func TestHeadDeadlineSurvivesHandOff(t *testing.T) {
	t.Parallel()
	const header = 2 * time.Second
	tb := &table{answers: map[string]string{"/fast": "quick"}}
	_, addr := startWith(t, tb, &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: header, IdleTimeout: time.Minute})
	c, br := dial(t, addr)
	start := time.Now()
	time.Sleep(header * 3 / 4)
	io.WriteString(c, "GET /fast HTTP/1.1\r\nHo") // half a head, then a stall
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(br)
	d := time.Since(start)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the connection is still open %v after it was made", d)
	}
	// A fresh clock at the hand-off would close it at 3.5 s.
	if d > header*3/2 {
		t.Errorf("half a head sent %v after connecting was closed %v after connecting (%q), want about ReadHeaderTimeout (%v)", header*3/4, d, b, header)
	}
	t.Logf("closed %v after connecting", d)
}

// flushing answers a 64 KiB body and counts it only once its flush succeeded.
type flushing struct {
	written, afterFailure atomic.Int64
	failed                atomic.Bool
	failedAt              atomic.Int64 // unix nanoseconds of the first failed flush
}

var bigBody = strings.Repeat("x", 64<<10)

func (f *flushing) Answer(w *bufio.Writer, target []byte) bool {
	if f.failed.Load() {
		f.afterFailure.Add(1)
	}
	io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 65536\r\n\r\n")
	io.WriteString(w, bigBody)
	if w.Flush() != nil {
		if !f.failed.Swap(true) {
			f.failedAt.Store(time.Now().UnixNano())
		}
		return true
	}
	f.written.Add(1)
	return true
}

// pipelineAndStall sends n pipelined requests for the lane on a connection
// that reads nothing (a small receive buffer fills at once) and returns it.
func pipelineAndStall(t *testing.T, addr string, n int) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tc := c.(*net.TCPConn)
	tc.SetReadBuffer(4 << 10)
	t.Cleanup(func() { c.Close() })
	go io.WriteString(c, strings.Repeat("GET /big HTTP/1.1\r\nHost: a\r\n\r\n", n))
	return tc
}

// At its first failed write the lane stops: no answer is made after it, and
// only answers written are counted.
func TestLaneStopsAtTheFirstFailedWrite(t *testing.T) {
	t.Parallel()
	f := &flushing{}
	_, addr := startWith(t, f, &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute})
	c := pipelineAndStall(t, addr, 400)
	for deadline := time.Now().Add(5 * time.Second); f.written.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	c.SetLinger(0)
	c.Close() // a reset: the lane's next write fails
	for deadline := time.Now().Add(10 * time.Second); !f.failed.Load() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !f.failed.Load() {
		t.Fatal("no write failed after the client reset its connection")
	}
	time.Sleep(100 * time.Millisecond) // room for a lane that would go on
	if n := f.afterFailure.Load(); n > 0 {
		t.Errorf("the lane made %d answers after a write failed", n)
	}
	if n := f.written.Load(); n >= 400 {
		t.Errorf("%d answers counted as written to a client that read none", n)
	}
}

// A client that pipelines requests and reads nothing is disconnected once a
// write makes no progress for the write idle timeout.
func TestLaneDisconnectsAClientThatNeverReads(t *testing.T) {
	t.Parallel()
	const idle = 300 * time.Millisecond
	f := &flushing{}
	hs := &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: time.Minute, IdleTimeout: time.Minute}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Serve(hs, writeidle.Listener(ln, idle), f) }()
	t.Cleanup(func() { hs.Close(); <-done })
	start := time.Now()
	pipelineAndStall(t, ln.Addr().String(), 400)
	for deadline := time.Now().Add(10 * time.Second); !f.failed.Load() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !f.failed.Load() {
		t.Fatalf("a client that reads nothing still holds its connection after 10 s (write idle timeout %v)", idle)
	}
	t.Logf("disconnected %v after connecting (write idle timeout %v); %d answers written first",
		time.Unix(0, f.failedAt.Load()).Sub(start), idle, f.written.Load())
}
