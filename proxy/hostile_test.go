package proxy_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/hydrilla/hydrillatest"
)

// hostileServer is the mirror behind a real http.Server configured like
// cmd/regmirror/serve.go, with the timeouts shortened so tests can outwait them.
type hostileServer struct {
	m    *mirror
	addr string
	dir  string // the data directory
	root string // the folder that holds it, and nothing else
}

const (
	hostileHeaderTimeout = 400 * time.Millisecond
	hostileReadTimeout   = 1500 * time.Millisecond
	hostileIdleTimeout   = 400 * time.Millisecond
	hostileUploadLimit   = 64 << 10
)

func startHostile(t *testing.T, refpackUps, hydrillaUps []string) *hostileServer {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	m := startMirror(t, dir, refpackUps, hydrillaUps, withUploadLimit(hostileUploadLimit))
	h := &hostileServer{m: m, dir: dir, root: root}
	// The timeouts of cmd/regmirror/serve.go.
	h.addr = h.listen(t, 10*time.Second, 5*time.Minute, 2*time.Minute)
	return h
}

// listen serves the mirror on a new http.Server configured like
// cmd/regmirror/serve.go but with the given timeouts, and returns its address.
func (h *hostileServer) listen(t *testing.T, readHeader, read, idle time.Duration) string {
	t.Helper()
	hs := &http.Server{
		Handler:           h.m.srv.Handler(),
		ReadHeaderTimeout: readHeader,
		ReadTimeout:       read,
		IdleTimeout:       idle,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go h.m.srv.Serve(hs, ln)
	t.Cleanup(func() { hs.Close() }) // runs before the mirror's cleanup closes the store
	return ln.Addr().String()
}

// raw sends req byte for byte (no client-side cleaning or escaping) and reads
// one response; a hang is an error after 10 s.
func (h *hostileServer) raw(t *testing.T, req string) (*http.Response, []byte, error) {
	t.Helper()
	return rawAt(t, h.addr, req)
}

func rawAt(t *testing.T, addr, req string) (*http.Response, []byte, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(c, req) // the server may answer before it has read everything
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func (h *hostileServer) rawGet(t *testing.T, target string) (int, []byte) {
	t.Helper()
	resp, body, err := h.raw(t, "GET "+target+" HTTP/1.1\r\nHost: mirror.test\r\nConnection: close\r\n\r\n")
	if err != nil {
		t.Fatalf("GET %.120s: %v", target, err)
	}
	return resp.StatusCode, body
}

func hydrillaRepo(t *testing.T) *hydrillatest.Repo {
	r := hydrillatest.New()
	js := r.AddScript("hello.js", []byte("console.log('hello');\n"))
	r.AddResource(hydrillatest.Resource{Identifier: "helloapple", Version: hydrilla.Version{2021, 11, 10}, Scripts: []hydrilla.FileRef{js}, SourceName: "hello"})
	r.AddMapping(hydrillatest.Mapping{Identifier: "helloapple", Version: hydrilla.Version{2021, 11, 10},
		Payloads: map[string]string{"https://example.org/***": "helloapple"}, SourceName: "hello"})
	r.Start(t)
	return r
}

// hostileReads are requests every route must refuse with a 4xx of its own,
// without asking an upstream.
func hostileReads() []string {
	hex64 := strings.Repeat("ab", 32)
	long := strings.Repeat("a", 600)
	var out []string
	// RefPack: the id, each sub-resource, the version.
	for _, id := range []string{
		"..", "..%2F..%2Fetc%2Fpasswd", "%2e%2e", "%2E%2E%2F%2E%2E", "..%2f..", "vendor/..", "vendor/..%2F..%2Fx", "vendor%2F..%2F..",
		"../../etc/passwd", `..\..\x`, "..%5C..%5Cx", "vendor%5Cx", "vendor/x%00", "x%00", "%00", "vendor/%2e%2e",
		"a/b/c", "a%2Fb%2Fc", "-bad-", "bad_", "vendor/-x", "ven dor", "ven%20dor", "%E2%80%8Bx", "x%zz", long, "vendor/" + long,
		".", "vendor/.", "%2e",
	} {
		for _, sub := range []string{"", "/meta", "/data", "/schema", "/changelog", "/readme", "/versions"} {
			out = append(out, "/packages/"+id+sub, "//packages/"+id+sub+"?version=1.0.0")
		}
	}
	out = append(out, "/packages/advanced-search/meta", "/packages/advanced-search/versions")
	for _, v := range []string{"1", "1.0", "01.0.0", "1.0.0-", "v1.0.0", "..%2F..%2Fx", "%2e%2e", "1.0.0%00", "1.0.0%5C", "1.0.0+", "1.0.0%20", strings.Repeat("9", 3000), "1.0.0-" + strings.Repeat("a.", 1500) + "a"} {
		for _, sub := range []string{"", "/meta", "/data", "/readme"} {
			out = append(out, "/packages/vendor/country-codes"+sub+"?version="+v)
		}
	}
	// Hydrilla items, files, sources and the legacy content route.
	for _, typ := range []string{"resource", "mapping"} {
		for _, rest := range []string{
			"...json", "..%2F..%2Fetc%2Fpasswd.json", "%2e%2e.json", "..%5Cx.json", "x%00.json", "x%5C..%5Cy.json", "X.json", "x y.json", "x%20y.json",
			"../../etc/passwd", "../1.0", "..%2F..%2F/1.0", "%2e%2e/1.0", "helloapple/..", "helloapple/%2e%2e", "helloapple/..%2F..%2Fx",
			"helloapple/1.0/..", "helloapple/1..0", "helloapple/-1", "helloapple/1.0%00", "helloapple/1.0%5C", "helloapple/x", "helloapple",
			"helloapple/", "/1.0", strings.Repeat("a", 300) + ".json", "helloapple.json?ver=..%2F..", "helloapple.json?ver=1.0%00", "helloapple.json?ver=x",
		} {
			out = append(out, "/"+typ+"/"+rest)
		}
	}
	for _, h := range []string{
		"", "../../../etc/passwd", "..%2F..%2F..%2Fetc%2Fpasswd", "%2e%2e", hex64[:63], hex64 + "a", strings.ToUpper(hex64),
		strings.Repeat("g", 64), hex64[:62] + "%00", hex64 + "%00", hex64 + "/x", hex64[:60] + "..%5C", strings.Repeat("a", 5000),
	} {
		out = append(out, "/file/sha256/"+h)
	}
	for _, s := range []string{"..%2F..%2Fx.json", "...json", "...zip", "%2e%2e.zip", "x%00.json", "x%5C.zip", "x", "x.tar", "a/b.json", "../x.zip"} {
		out = append(out, "/source/"+s)
	}
	for _, c := range []string{"", "..%2F..%2Fetc%2Fpasswd", "%2e%2e/x", "a/../../b", "../x", "x%5Cy", `x\..\y`, "x%00", "%zz", "a/./b", "a/%2e/b"} {
		out = append(out, "/content/"+c)
	}
	// /query: a url that cannot be parsed, and one that is huge.
	for _, u := range []string{
		"", "%zz", "not-a-url", "http://", "https://exa%20mple.org/", "https://example.org/%00", "http://[::1", "javascript:alert(1)",
		"https://example.org/" + strings.Repeat("a", 5000), "https%3A%2F%2F" + strings.Repeat("x.", 3000) + "org%2F",
	} {
		out = append(out, "/query?url="+u)
	}
	out = append(out, "/query", "/query?URL=https://example.org/")
	return out
}

func TestHostileInputIsRefusedWith4xx(t *testing.T) {
	reg, up := newRegistry(t)
	reg.SetAPIKey(testKey)
	repo := hydrillaRepo(t)
	h := startHostile(t, []string{up}, []string{repo.BaseURL()})

	t.Run("path parameters", func(t *testing.T) {
		for _, target := range hostileReads() {
			status, body := h.rawGet(t, target)
			if status < 400 || status >= 500 {
				t.Errorf("GET %.150s: %d %.200s, want a 4xx", target, status, body)
			}
		}
		if n := len(reg.Requests()); n != 0 {
			t.Errorf("hostile reads reached the RefPack upstream %d times: %+v", n, reg.Requests()[0])
		}
		if n := len(repo.Requests()); n != 0 {
			t.Errorf("hostile reads reached the Hydrilla upstream %d times: %q", n, repo.Requests())
		}
	})

	t.Run("hostile writes", func(t *testing.T) {
		key := "X-API-Key: " + testKey + "\r\n"
		for _, target := range []string{
			"/packages/..%2F..%2Fx/archive", "/packages/%2e%2e/archive", "/packages/vendor%5Cx/archive", "/packages/x%00/archive",
			"/packages/a/b/c/archive", "/packages/vendor/country-codes/archive?version=..%2F..%2Fx", "/packages/vendor/country-codes/archive?version=1.0.0%00",
			"/packages/vendor/country-codes/archive?version=%zz", "/packages/advanced-search/archive",
		} {
			resp, body, err := h.raw(t, "POST "+target+" HTTP/1.1\r\nHost: m\r\n"+key+"Content-Length: 0\r\nConnection: close\r\n\r\n")
			if err != nil || resp.StatusCode < 400 || resp.StatusCode >= 500 {
				t.Errorf("POST %s: %v %v %s", target, status(resp), err, body)
			}
		}
		for _, method := range []string{"PUT", "DELETE", "PATCH"} {
			for _, target := range []string{"/packages", "/packages/vendor/country-codes", "/resource/helloapple.json", "/file/sha256/" + strings.Repeat("ab", 32)} {
				resp, _, err := h.raw(t, method+" "+target+" HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
				if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
					t.Errorf("%s %s: %v %v", method, target, status(resp), err)
				}
			}
		}
		if n := len(posts(reg)); n != 0 {
			t.Errorf("hostile writes reached the registry %d times", n)
		}
	})

	t.Run("odd request forms", func(t *testing.T) {
		for _, req := range []string{
			"GET http://evil.example/packages/vendor/country-codes/versions HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
			"GET http://evil.example/../../etc/passwd HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
			"GET packages HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
			"OPTIONS * HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
			"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nConnection: close\r\n\r\n",
			"GET /packages/vendor/country-codes/versions HTTP/1.1\r\nConnection: close\r\n\r\n",
			"GET /packages\x00 HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
			"GET /packages/..\\..\\x HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
			"POST /packages HTTP/1.1\r\nHost: m\r\nX-API-Key: k\r\nContent-Length: -1\r\nConnection: close\r\n\r\n",
			"POST /packages HTTP/1.1\r\nHost: m\r\nX-API-Key: k\r\nContent-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello",
			"POST /packages HTTP/1.1\r\nHost: m\r\nX-API-Key: k\r\nContent-Type: application/zip\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
			"POST /packages HTTP/1.1\r\nHost: m\r\nX-API-Key: k\r\nContent-Type: application/zip\r\nExpect: 100-continue\r\nContent-Length: 999999999\r\nConnection: close\r\n\r\n",
			"POST /packages HTTP/1.1\r\nHost: m\r\nX-API-Key: k\r\nContent-Type: application/zip\r\nExpect: something-else\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
			"POST /packages HTTP/1.1\r\nHost: m\r\nX-API-Key: k\r\nContent-Type: multipart/form-data; boundary=\"" + strings.Repeat("b", 200) + "\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
			"POST /packages HTTP/1.1\r\nHost: m\r\nX-API-Key: k\r\nContent-Type: ;;;\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
			"GET /packages HTTP/1.0\r\n\r\n",
		} {
			resp, _, err := h.raw(t, req)
			if err != nil || resp.StatusCode < 400 || resp.StatusCode >= 500 {
				if resp != nil && resp.StatusCode < 400 {
					t.Logf("%.60q: %v (accepted)", req, status(resp))
					continue
				}
				t.Errorf("%.60q: %v %v", req, status(resp), err)
			}
		}
		// net/http answers these itself, before any handler runs, with the 5xx
		// RFC 9112 asks for; the mirror cannot change them (and need not: they
		// are protocol errors, not a failure of the mirror).
		for req, want := range map[string]int{
			"GET /packages HTTP/9.9\r\nHost: m\r\n\r\n":                                             http.StatusHTTPVersionNotSupported,
			"POST /packages HTTP/1.1\r\nHost: m\r\nX-API-Key: k\r\nTransfer-Encoding: gzip\r\n\r\n": http.StatusNotImplemented,
		} {
			if resp, _, err := h.raw(t, req); err != nil || resp.StatusCode != want {
				t.Errorf("%.60q: %v %v, want net/http's own %d", req, status(resp), err, want)
			}
		}
	})

	t.Run("over-long URL is 414", func(t *testing.T) {
		for _, target := range []string{
			"/packages/vendor/country-codes?version=" + strings.Repeat("1", 9<<10),
			"/query?url=https://example.org/" + strings.Repeat("a", 9<<10),
			"/file/sha256/" + strings.Repeat("a", 9<<10),
		} {
			if status, body := h.rawGet(t, target); status != http.StatusRequestURITooLong {
				t.Errorf("%d-byte URL: %d %s", len(target), status, body)
			}
		}
	})

	t.Run("over-long header is 431", func(t *testing.T) {
		for _, req := range []string{
			"GET /packages HTTP/1.1\r\nHost: m\r\nX-Big: " + strings.Repeat("a", 100<<10) + "\r\n\r\n",
			"GET /packages HTTP/1.1\r\nHost: m\r\n" + strings.Repeat("X-Many: a\r\n", 10000) + "\r\n",
			"GET /" + strings.Repeat("a", 100<<10) + " HTTP/1.1\r\nHost: m\r\n\r\n",
		} {
			resp, _, err := h.raw(t, req)
			if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("%d-byte header: %v %v", len(req), status(resp), err)
			}
		}
	})

	t.Run("multipart body over the limit", func(t *testing.T) {
		z := make([]byte, hostileUploadLimit+1)
		ct, body := form(t, part{name: "file", filename: "big.refpack.zip", body: z}, part{name: "ownerId", body: []byte("vendor")})
		head := "POST /packages HTTP/1.1\r\nHost: m\r\nX-API-Key: " + testKey + "\r\nContent-Type: " + ct + "\r\nConnection: close\r\n"
		// With its length declared, and chunked (length unknown until read).
		reqs := []string{head + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + string(body)}
		var chunked strings.Builder
		chunked.WriteString(head + "Transfer-Encoding: chunked\r\n\r\n")
		for b := body; len(b) > 0; {
			n := min(len(b), 8<<10)
			fmt.Fprintf(&chunked, "%x\r\n%s\r\n", n, b[:n])
			b = b[n:]
		}
		chunked.WriteString("0\r\n\r\n")
		reqs = append(reqs, chunked.String())
		for i, req := range reqs {
			resp, rb, err := h.raw(t, req)
			if err != nil || (resp.StatusCode != 413 && resp.StatusCode != 400) || !bytes.Contains(rb, []byte(`"message"`)) {
				t.Errorf("oversized upload %d: %v %v %s", i, status(resp), err, rb)
			}
		}
		if n := len(posts(reg)); n != 0 {
			t.Errorf("oversized uploads reached the registry %d times", n)
		}
	})

	// The slow-client cases get a server of their own with short timeouts.
	slow := h.listen(t, hostileHeaderTimeout, hostileReadTimeout, hostileIdleTimeout)

	t.Run("slow headers are cut off", func(t *testing.T) {
		c, err := net.Dial("tcp", slow)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		io.WriteString(c, "GET /packages HTTP/1.1\r\nHost: m\r\n")
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if _, err := fmt.Fprintf(c, "X-Slow-%d: y\r\n", i); err != nil {
					return
				}
			}
		}()
		wantClosed(t, c, start, hostileHeaderTimeout)
	})

	t.Run("slow upload body is cut off", func(t *testing.T) {
		c, err := net.Dial("tcp", slow)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		io.WriteString(c, "POST /packages HTTP/1.1\r\nHost: m\r\nX-API-Key: "+testKey+"\r\nContent-Type: application/zip\r\nContent-Length: 60000\r\n\r\n")
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if _, err := c.Write([]byte("PK")); err != nil {
					return
				}
			}
		}()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			// The handler saw the read fail; whatever it answers is not a 5xx.
			if resp.StatusCode >= 500 || resp.StatusCode < 400 {
				t.Errorf("slow upload: %d", resp.StatusCode)
			}
			resp.Body.Close()
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a slow upload held the connection for %v", time.Since(start))
		}
		if d := time.Since(start); d > hostileReadTimeout+2*time.Second {
			t.Errorf("slow upload answered after %v", d)
		}
		if n := len(posts(reg)); n != 0 {
			t.Errorf("a cut-off upload reached the registry")
		}
	})

	t.Run("idle connections are closed", func(t *testing.T) {
		c, err := net.Dial("tcp", slow)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: m\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := br.ReadByte(); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("an idle connection stayed open for %v", time.Since(start))
		}
		if d := time.Since(start); d > hostileIdleTimeout+2*time.Second {
			t.Errorf("idle connection closed after %v", d)
		}
	})

	// Nothing was written outside the data directory, and nothing odd inside it.
	des, err := os.ReadDir(h.root)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if de.Name() != "data" {
			t.Errorf("unexpected %s beside the data directory", de.Name())
		}
	}
	checkDataDir(t, h.dir)
}

// wantClosed waits for the server to close c, which it must do about after
// timeout (started at start), answering at most an error status.
func wantClosed(t *testing.T, c net.Conn, start time.Time, timeout time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(timeout + 3*time.Second))
	b, err := io.ReadAll(c)
	d := time.Since(start)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %v (timeout %v)", d, timeout)
	}
	if d < timeout/2 || d > timeout+2*time.Second {
		t.Errorf("connection closed after %v, timeout %v", d, timeout)
	}
	if len(b) > 0 && !bytes.HasPrefix(b, []byte("HTTP/1.1 4")) {
		t.Errorf("before closing, the server said %.100q", b)
	}
}

func status(r *http.Response) any {
	if r == nil {
		return "no response"
	}
	return r.StatusCode
}

var (
	blobName   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	blobFolder = regexp.MustCompile(`^[0-9a-f]{2}$`)
)

// checkDataDir asserts the data directory holds only index.db, blobs/sha256/
// <2 hex>/<64 hex> and an empty tmp/ (staged files are removed right after
// the answer, so it waits a little for the last ones).
func checkDataDir(t *testing.T, dir string) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		des, err := os.ReadDir(filepath.Join(dir, "tmp"))
		if err != nil {
			t.Fatalf("tmp: %v", err)
		}
		if len(des) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("tmp/ still holds %d files, e.g. %s", len(des), des[0].Name())
			break
		}
	}
	err := filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		ok := false
		switch {
		case rel == ".":
			ok = true
		case len(parts) == 1:
			ok = (parts[0] == "index.db" && de.Type().IsRegular()) || ((parts[0] == "blobs" || parts[0] == "tmp") && de.IsDir())
		case parts[0] == "blobs" && len(parts) == 2:
			ok = parts[1] == "sha256" && de.IsDir()
		case parts[0] == "blobs" && len(parts) == 3:
			ok = parts[1] == "sha256" && blobFolder.MatchString(parts[2]) && de.IsDir()
		case parts[0] == "blobs" && len(parts) == 4:
			ok = blobName.MatchString(parts[3]) && strings.HasPrefix(parts[3], parts[2]) && de.Type().IsRegular()
		}
		if !ok {
			t.Errorf("unexpected %s in the data directory", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
