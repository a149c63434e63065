package writeidle

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// serve runs h behind net/http on a listener with the write idle timeout.
// Its connections' send buffers are small: progress shows to a writer only
// when the kernel takes more bytes, and loopback's grow to megabytes.
func serve(t *testing.T, idle time.Duration, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h}
	go hs.Serve(Listener(smallSendBuffers{ln}, idle))
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

func dialSmall(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).SetReadBuffer(16 << 10)
	t.Cleanup(func() { c.Close() })
	return c
}

// A client that reads nothing of an answer is disconnected: the handler's
// write fails once it made no progress for the idle timeout.
func TestNetHTTPWriteFailsWhenTheClientReadsNothing(t *testing.T) {
	t.Parallel()
	const idle = 300 * time.Millisecond
	failed := make(chan time.Duration, 1)
	addr := serve(t, idle, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		chunk := make([]byte, 32<<10)
		for {
			if _, err := w.Write(chunk); err != nil {
				failed <- time.Since(start)
				return
			}
		}
	}))
	c := dialSmall(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	select {
	case d := <-failed:
		t.Logf("the write failed %v after the answer began (idle timeout %v)", d, idle)
	case <-time.After(10 * time.Second):
		t.Fatal("a client reading nothing still holds its answer after 10 s")
	}
}

// A download that keeps moving is never cut, however long it takes in all;
// files still go by sendfile, a chunk at a time.
func TestSlowSteadyDownloadIsNotCut(t *testing.T) {
	t.Parallel()
	const idle = 300 * time.Millisecond
	dir := t.TempDir()
	body := bytes.Repeat([]byte("0123456789abcdef"), 256<<10) // 4 MiB
	if err := os.WriteFile(filepath.Join(dir, "big"), body, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := serve(t, idle, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(dir, "big"))
	}))
	c := dialSmall(t, addr)
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
	start := time.Now()
	var got bytes.Buffer
	buf := make([]byte, 64<<10)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for got.Len() < len(body) { // at most 16 KiB (the receive buffer) per 25 ms: 6 s or more in all
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			t.Logf("read: %v", err)
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if !bytes.HasSuffix(got.Bytes(), body) {
		t.Fatalf("read %d bytes of a %d-byte answer in %v (idle timeout %v): the download was cut", got.Len(), len(body), time.Since(start), idle)
	}
	t.Logf("%d bytes in %v with a write idle timeout of %v", len(body), time.Since(start), idle)
}

// ReadFrom hands the kernel the file under the net/http limit, a chunk at a
// time, and keeps the limit's count.
func TestReadFromKeepsTheLimit(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	c := &Conn{Conn: server, idle: time.Minute, slack: time.Second}
	go func() {
		lr := &io.LimitedReader{R: bytes.NewReader(bytes.Repeat([]byte("a"), 3*sendChunk)), N: sendChunk + 10}
		n, err := c.ReadFrom(lr)
		if n != sendChunk+10 || err != nil || lr.N != 0 {
			t.Errorf("ReadFrom: %d %v, limit left %d", n, err, lr.N)
		}
		server.Close()
	}()
	b, _ := io.ReadAll(client)
	if len(b) != sendChunk+10 {
		t.Errorf("read %d bytes", len(b))
	}
}

type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		c.(*net.TCPConn).SetWriteBuffer(32 << 10)
	}
	return c, err
}
