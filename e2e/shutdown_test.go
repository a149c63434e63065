package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regmirror/regmirror/hydrilla/hydrillatest"
	"github.com/regmirror/regmirror/refpack/registrytest"
)

// slowDownload starts a GET of path and reads the answer's header; read then
// takes the body slowly.
type slowDownload struct {
	conn net.Conn
	br   *bufio.Reader
	resp *http.Response
}

func startSlowDownload(t *testing.T, addr, path string) *slowDownload {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, addr)
	s := &slowDownload{conn: conn, br: bufio.NewReaderSize(conn, 4<<10)}
	if s.resp, err = http.ReadResponse(s.br, nil); err != nil {
		t.Fatalf("slow download: %v", err)
	}
	return s
}

// read reads the rest of the body 8 KiB at a time, pausing between reads.
func (s *slowDownload) read(pause time.Duration) ([]byte, error) {
	defer s.resp.Body.Close()
	var body []byte
	buf := make([]byte, 8<<10)
	for {
		n, err := s.resp.Body.Read(buf)
		body = append(body, buf[:n]...)
		if err == io.EOF {
			return body, nil
		}
		if err != nil {
			return body, err
		}
		time.Sleep(pause)
	}
}

// TestGracefulShutdown sends SIGTERM while a request waits on a slow upstream
// fill and another is downloading slowly: the mirror stops accepting
// connections, finishes both answers whole and correct, and exits 0.
func TestGracefulShutdown(t *testing.T) {
	reg := registrytest.New()
	zip := bigPackage(t, reg, 2<<20)
	rp := newGate(t, reg)
	t.Cleanup(reg.Close)
	repo := hydrillatest.New()
	large := randomBytes(t, 3<<19)
	largePath := "/file/sha256/" + repo.AddFile(large)
	hy := newGate(t, repo.Handler())
	data := t.TempDir()

	m := startMirror(t, data, rp.URL(), hy.URL())
	m.mustGet(largePath, large, "MISS")
	addr := strings.TrimPrefix(m.URL, "http://")

	// A slow download of a held file, started before the signal.
	dl := startSlowDownload(t, addr, largePath)
	if dl.resp.StatusCode != http.StatusOK {
		t.Fatalf("slow download: %d", dl.resp.StatusCode)
	}
	// A miss whose upstream answer is held back.
	release := reg.Hold()
	defer release()
	type result struct {
		a   *answer
		err error
	}
	got := make(chan result, 1)
	go func() {
		a, err := m.do(http.MethodGet, bigZipPath)
		got <- result{a, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := reg.WaitCount(ctx, bigZipUpstream, 1); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	m.signal(syscall.SIGTERM)
	// The listener closes at once; the process stays to finish the requests.
	waitFor(t, 5*time.Second, "the mirror to stop accepting connections", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return false
		}
		return true
	})
	type dlResult struct {
		body []byte
		err  error
	}
	dlDone := make(chan dlResult, 1)
	go func() {
		body, err := dl.read(time.Millisecond)
		dlDone <- dlResult{body, err}
	}()
	time.Sleep(500 * time.Millisecond)
	if m.exited() {
		t.Fatalf("the mirror exited (%v) with requests in flight", m.state)
	}
	select {
	case r := <-got:
		t.Fatalf("the held request ended before its upstream answered: %v %v", r.a, r.err)
	default:
	}

	release()
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatalf("the in-flight request failed across SIGTERM: %v", r.err)
		}
		if r.a.Status != http.StatusOK || string(r.a.Body) != string(zip) {
			t.Fatalf("the in-flight request across SIGTERM: %s; want the whole zip", r.a)
		}
		if r.a.cache() != "MISS" {
			t.Errorf("the in-flight request: X-Cache %q; want MISS", r.a.cache())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the in-flight request did not finish after its upstream answered")
	}
	select {
	case r := <-dlDone:
		if r.err != nil || string(r.body) != string(large) {
			t.Errorf("slow download across SIGTERM: %d of %d bytes, err %v", len(r.body), len(large), r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the slow download did not finish")
	}
	if code := m.wait(30 * time.Second); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM; want 0", code)
	}
	t.Logf("exited 0, %s after SIGTERM, both requests answered whole", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(m.out.String(), "draining") {
		t.Errorf("serve did not log that it drains")
	}
	// What the drained fill stored is complete and in the index.
	mustVerify(t, data)
	if e := readIndex(t, data)[bigZipKey]; e.Digest != sum(zip) {
		t.Errorf("the zip filled during the shutdown is not stored: %+v", e)
	}
}
