package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bin is the regmirror binary built by TestMain.
var bin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	dir, err := os.MkdirTemp("", "regmirror-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "regmirror")
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/regmirror")
	cmd.Dir = filepath.Dir(wd) // the module root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building regmirror:", err)
		return 1
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "e2e: built %s in %s\n", bin, time.Since(start).Round(time.Millisecond))
	}
	return m.Run()
}

// ---------------------------------------------------------------------------
// Processes

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a child
// process's stdout and stderr copiers and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is one run of the binary.
type proc struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	stdout syncBuffer // stdout only
	out    syncBuffer // stdout and stderr interleaved
	done   chan struct{}
	state  *os.ProcessState
}

// childEnv is the test's environment without REGMIRROR_* settings and proxies,
// so nothing outside the test changes what the binary does.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		uk := strings.ToUpper(k)
		if strings.HasPrefix(uk, "REGMIRROR_") || strings.HasSuffix(uk, "_PROXY") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// startProc starts the binary with args. The test's cleanup kills it if it is
// still running and, when the test failed, logs what it printed.
func startProc(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = childEnv()
	p.cmd.Stdout = io.MultiWriter(&p.stdout, &p.out)
	p.cmd.Stderr = &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Kill()
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Errorf("%s (pid %d) did not die after SIGKILL", name, p.cmd.Process.Pid)
			}
		}
		if t.Failed() {
			t.Logf("--- output of %s (%s):\n%s", name, strings.Join(args, " "), tail(p.out.String(), 8000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to end and returns its exit code (-1 when a
// signal ended it); it fails the test after timeout.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("%s (pid %d) still running after %s", p.name, p.cmd.Process.Pid, timeout)
	}
	return p.state.ExitCode()
}

func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !p.exited() {
		p.t.Fatalf("signal %v to %s: %v", sig, p.name, err)
	}
}

// kill sends SIGKILL and waits for the process to go.
func (p *proc) kill() {
	p.t.Helper()
	p.signal(syscall.SIGKILL)
	if code := p.wait(10 * time.Second); code != -1 {
		p.t.Logf("%s exited %d before SIGKILL landed", p.name, code)
	}
}

// runCmd runs the binary to completion (bounded by timeout) and returns its
// exit code, its stdout and everything it printed.
func runCmd(t testing.TB, timeout time.Duration, args ...string) (code int, stdout, all string) {
	t.Helper()
	p := startProc(t, args[0], args...)
	code = p.wait(timeout)
	return code, p.stdout.String(), p.out.String()
}

// verify runs `regmirror verify --data dir [extra...]`.
func verify(t testing.TB, dir string, extra ...string) (code int, out string) {
	t.Helper()
	args := append([]string{"verify", "--data", dir, "--log-level", "warn"}, extra...)
	code, _, out = runCmd(t, 2*time.Minute, args...)
	return code, out
}

// mustVerify fails the test unless verify finds nothing wrong.
func mustVerify(t testing.TB, dir string) {
	t.Helper()
	if code, out := verify(t, dir); code != 0 {
		t.Fatalf("regmirror verify --data %s exited %d; want 0:\n%s", dir, code, out)
	}
}

// ---------------------------------------------------------------------------
// The mirror

// mirror is a running `regmirror serve`.
type mirror struct {
	*proc
	t      testing.TB
	URL    string
	Data   string
	client *http.Client
}

// freeAddr returns a 127.0.0.1 address nothing listens on at the moment.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// deadURL is an upstream URL that refuses connections.
func deadURL(t testing.TB) string { return "http://" + freeAddr(t) }

// serveArgs bound every upstream wait, so no test can hang on the mirror.
var serveArgs = []string{
	"--upstream-connect-timeout", "2s",
	"--upstream-header-timeout", "10s",
	"--upstream-timeout", "30s",
	"--fail-timeout", "1s",
	"--log-level", "debug",
}

// startMirror runs `regmirror serve --data data` with the given upstreams and
// extra flags, and waits until /readyz answers 200.
func startMirror(t testing.TB, data, refpackURL, hydrillaURL string, extra ...string) *mirror {
	t.Helper()
	for attempt := 0; ; attempt++ {
		addr := freeAddr(t)
		args := append([]string{"serve", "--listen", addr, "--data", data,
			"--refpack-upstream", refpackURL, "--hydrilla-upstream", hydrillaURL}, serveArgs...)
		args = append(args, extra...)
		p := startProc(t, "serve", args...)
		m := &mirror{proc: p, t: t, URL: "http://" + addr, Data: data, client: &http.Client{
			Timeout:   60 * time.Second,
			Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16},
		}}
		t.Cleanup(m.client.CloseIdleConnections)
		err := m.waitReady(20 * time.Second)
		if err == nil {
			return m
		}
		if p.exited() && strings.Contains(p.out.String(), "address already in use") && attempt < 3 {
			continue // another process took the port between freeAddr and listen
		}
		t.Fatalf("mirror did not become ready: %v\n%s", err, tail(p.out.String(), 4000))
	}
}

func (m *mirror) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		if m.exited() {
			return fmt.Errorf("serve exited with %v", m.state)
		}
		resp, err := c.Get(m.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("/readyz not 200 after %s", timeout)
}

// stop sends SIGTERM and checks that the mirror drains and exits 0.
func (m *mirror) stop() {
	m.t.Helper()
	m.client.CloseIdleConnections()
	m.signal(syscall.SIGTERM)
	if code := m.wait(40 * time.Second); code != 0 {
		m.t.Fatalf("serve exited %d after SIGTERM; want 0", code)
	}
	if !strings.Contains(m.out.String(), "draining") {
		m.t.Errorf("serve did not log that it drains in-flight requests on SIGTERM")
	}
}

// answer is one response of the mirror, body read whole.
type answer struct {
	Status int
	Header http.Header
	Body   []byte
}

func (a *answer) cache() string { return a.Header.Get("X-Cache") }

func (a *answer) String() string {
	b := a.Body
	if len(b) > 300 {
		b = append(b[:300:300], "…"...)
	}
	return fmt.Sprintf("%d X-Cache=%q Cache-Status=%q body=%q", a.Status, a.cache(), a.Header.Get("Cache-Status"), b)
}

// do makes one request to the mirror; hdr is name, value pairs.
func (m *mirror) do(method, path string, hdr ...string) (*answer, error) {
	req, err := http.NewRequest(method, m.URL+path, nil)
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading body after %d bytes: %w", method, path, len(body), err)
	}
	return &answer{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// get is do("GET") that fails the test on a transport error.
func (m *mirror) get(path string, hdr ...string) *answer {
	m.t.Helper()
	a, err := m.do(http.MethodGet, path, hdr...)
	if err != nil {
		m.t.Fatalf("GET %s: %v", path, err)
	}
	return a
}

// mustGet checks a 200 answer holding exactly want, with the given X-Cache
// values allowed ("" allows any).
func (m *mirror) mustGet(path string, want []byte, cacheStates ...string) *answer {
	m.t.Helper()
	a := m.get(path)
	if a.Status != http.StatusOK {
		m.t.Fatalf("GET %s: %s; want 200", path, a)
	}
	if !bytes.Equal(a.Body, want) {
		m.t.Fatalf("GET %s: %d bytes with sha256 %s; want %d bytes with sha256 %s (X-Cache %q)",
			path, len(a.Body), sum(a.Body), len(want), sum(want), a.cache())
	}
	if cl := a.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(want)) {
		m.t.Errorf("GET %s: Content-Length %s; want %d", path, cl, len(want))
	}
	if len(cacheStates) > 0 && !contains(cacheStates, a.cache()) {
		m.t.Errorf("GET %s: X-Cache %q; want one of %q", path, a.cache(), cacheStates)
	}
	return a
}

// metric returns the sum of the samples of a Prometheus counter or gauge
// whose line starts with prefix (a name, optionally with labels).
func (m *mirror) metric(prefix string) float64 {
	m.t.Helper()
	a := m.get("/metrics")
	total := 0.0
	for line := range strings.SplitSeq(string(a.Body), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			total += v
		}
	}
	return total
}

// ---------------------------------------------------------------------------
// Upstreams

// gate fronts a test upstream's handler on its own 127.0.0.1 server and can
// make it drop every connection (an upstream that died) without changing its
// URL.
type gate struct {
	h    http.Handler
	down atomic.Bool
	srv  *httptest.Server
}

func newGate(t testing.TB, h http.Handler) *gate {
	g := &gate{h: h}
	g.srv = httptest.NewServer(g)
	t.Cleanup(g.srv.Close)
	return g
}

func (g *gate) URL() string { return g.srv.URL }

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.down.Load() {
		panic(http.ErrAbortHandler) // close the connection without a word
	}
	g.h.ServeHTTP(w, r)
}

// ---------------------------------------------------------------------------
// The data directory

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func blobPath(data, digest string) string {
	return filepath.Join(data, "blobs", "sha256", digest[:2], digest)
}

// flipBytes changes a few bytes in the middle of a file, keeping its size: a
// disk that rotted, or a hand that slipped, while the mirror was stopped.
func flipBytes(t testing.TB, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("tamper: %v", err)
	}
	if len(b) == 0 {
		t.Fatalf("tamper: %s is empty", path)
	}
	for _, i := range []int{len(b) / 2, len(b) / 3, len(b) - 1} {
		b[i] ^= 0x5a
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatalf("tamper: %v", err)
	}
}

// dirFiles lists the regular files under dir with their sizes.
func dirFiles(t testing.TB, dir string) map[string]int64 {
	t.Helper()
	files := map[string]int64{}
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.Type().IsRegular() {
			fi, err := de.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			files[rel] = fi.Size()
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return files
}

// copyDir copies a (stopped or killed) mirror's data directory, so a crash
// state can be examined by verify without disturbing the original.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	out, err := exec.Command("cp", "-a", src+"/.", dst).CombinedOutput()
	if err != nil {
		t.Fatalf("cp -a %s %s: %v\n%s", src, dst, err, out)
	}
	return dst
}

// indexEntry is what the tests read of an index entry.
type indexEntry struct {
	Key    string `json:"key"`
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	Status int    `json:"status"`
	Pinned bool   `json:"pinned"`
}

// readIndex reads DATA/index.db (read-only; the mirror must be stopped).
func readIndex(t testing.TB, data string) map[string]indexEntry {
	t.Helper()
	db, err := bolt.Open(filepath.Join(data, "index.db"), 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open index: %v", err)
	}
	defer db.Close()
	entries := map[string]indexEntry{}
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("entries"))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var e indexEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("entry %q: %w", k, err)
			}
			entries[string(k)] = e
			return nil
		})
	})
	if err != nil {
		t.Fatalf("read index: %v", err)
	}
	return entries
}

// waitFor polls cond every 10ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// verifyProblems splits verify's output into the lines that report problems.
func verifyProblems(out string) []string {
	var lines []string
	for l := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(l, "entry ") || strings.HasPrefix(l, "blob ") {
			lines = append(lines, l)
		}
	}
	return lines
}
