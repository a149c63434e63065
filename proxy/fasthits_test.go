package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/engine"
)

func withFastLane(on bool) mirrorOpt { return func(c *config.Config) { c.FastLane = on } }

// laneConn is one client connection that reads raw answers.
type laneConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialMirror(t *testing.T, m *mirror) *laneConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(m.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &laneConn{t, c, bufio.NewReader(c)}
}

func (l *laneConn) send(reqs ...string) {
	l.t.Helper()
	if _, err := io.WriteString(l.c, strings.Join(reqs, "")); err != nil {
		l.t.Fatal(err)
	}
}

// next reads one answer: its head as sent and its body.
func (l *laneConn) next() (head string, body []byte) {
	l.t.Helper()
	var h strings.Builder
	for {
		line, err := l.br.ReadString('\n')
		if err != nil {
			l.t.Fatalf("read answer: %v (so far %q)", err, h.String())
		}
		h.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	head = h.String()
	if strings.HasPrefix(head, "HTTP/1.1 304") {
		return head, nil
	}
	m := regexp.MustCompile(`(?i)\r\nContent-Length: (\d+)\r\n`).FindStringSubmatch(head)
	if m == nil {
		l.t.Fatalf("answer without Content-Length: %q", head)
	}
	n, _ := strconv.Atoi(m[1])
	body = make([]byte, n)
	if _, err := io.ReadFull(l.br, body); err != nil {
		l.t.Fatal(err)
	}
	return head, body
}

func getReq(target string, hdr ...string) string {
	return "GET " + target + " HTTP/1.1\r\nHost: mirror.test\r\n" + strings.Join(hdr, "") + "\r\n"
}

var perAnswer = regexp.MustCompile(`(X-Request-Id|Date): [^\r]*`)

// The fast lane gives a remembered hit exactly as net/http gave it: the same
// head byte for byte but for Date and X-Request-Id, the same body, counted in
// the same request metrics.
func TestFastLaneAnswersAsNetHTTPDid(t *testing.T) {
	reg, up := newRegistry(t)
	m := startMirror(t, "", []string{up}, nil)
	for _, target := range []string{
		"/packages/vendor/country-codes/meta?version=1.2.0",
		"/packages/vendor%2Fcountry-codes/versions",
		"/packages/currencies?version=1.0.0",
	} {
		miss, _ := dialMirror(t, m).roundTrip(getReq(target))
		mustContain(t, miss, "X-Cache: MISS")
		warmFast(t, m, target)
		c := dialMirror(t, m)
		c.send(getReq(target, "Range: bytes=0-\r\n")) // net/http's, always: the connection is handed over
		c.next()
		c.send(getReq(target))
		viaNetHTTP, want := c.next()
		mustContain(t, viaNetHTTP, "X-Cache: HIT")
		asked := reg.Count("/packages")
		fast := testutil.ToFloat64(m.metrics.FastLane)
		api, route := "refpack", map[bool]string{true: "meta", false: "versions"}[strings.Contains(target, "meta")]
		if !strings.Contains(target, "meta") && !strings.Contains(target, "versions") {
			route = "download"
		}
		hits := counter(t, m, "requests", api, route, "200", "HIT")
		c2 := dialMirror(t, m)
		for range 3 {
			c2.send(getReq(target, "User-Agent: refpack-cli\r\n"))
			head, body := c2.next()
			if got, want := perAnswer.ReplaceAllString(head, "$1"), perAnswer.ReplaceAllString(viaNetHTTP, "$1"); got != want {
				t.Errorf("%s: the fast lane's head\n%s\nnet/http's\n%s", target, got, want)
			}
			if !bytes.Equal(body, want) {
				t.Errorf("%s: the fast lane's body differs from net/http's", target)
			}
		}
		// The lane counts an answer once its write has returned, which may be
		// just after the client has read it: wait for the count to settle.
		settleCount(func() bool { return testutil.ToFloat64(m.metrics.FastLane)-fast >= 3 })
		settleCount(func() bool { return counter(t, m, "requests", api, route, "200", "HIT")-hits >= 3 })
		if d := testutil.ToFloat64(m.metrics.FastLane) - fast; d != 3 {
			t.Errorf("%s: %v answers on the fast lane, want 3", target, d)
		}
		if d := counter(t, m, "requests", api, route, "200", "HIT") - hits; d != 3 {
			t.Errorf("%s: %v hits counted, want 3", target, d)
		}
		if n := reg.Count("/packages"); n != asked {
			t.Errorf("%s: the upstream was asked %d times more", target, n-asked)
		}
	}
}

// Pipelined requests are answered in order; the first the lane does not take
// (a range, a condition) and everything after it is net/http's.
func TestFastLaneHandsOverInOrder(t *testing.T) {
	_, up := newRegistry(t)
	m := startMirror(t, "", []string{up}, nil)
	target := "/packages/vendor/country-codes/meta?version=1.2.0"
	warmFast(t, m, target)
	etag := get(t, m.URL+target).Header.Get("Etag")
	fast := testutil.ToFloat64(m.metrics.FastLane)
	c := dialMirror(t, m)
	c.send(getReq(target), getReq(target, "Range: bytes=0-3\r\n"), getReq(target), getReq(target, "If-None-Match: "+etag+"\r\n"))
	for i, want := range []string{"HTTP/1.1 200 ", "HTTP/1.1 206 ", "HTTP/1.1 200 ", "HTTP/1.1 304 "} {
		head, _ := c.next()
		if !strings.HasPrefix(head, want) {
			t.Errorf("answer %d: %q, want %s", i, head, want)
		}
	}
	if d := testutil.ToFloat64(m.metrics.FastLane) - fast; d != 1 {
		t.Errorf("%v answers on the fast lane, want 1 (the first)", d)
	}
}

// The lane never gives what the mirror would not: an entry past its max-age
// is revalidated, a deleted one fetched again, and "latest" is never
// remembered (it depends on /versions).
func TestFastLaneNeverServesWhatTheMirrorWouldNot(t *testing.T) {
	reg, up := newRegistry(t)
	m := startMirror(t, "", []string{up}, nil, withMaxAge(300*time.Millisecond))
	versions := "/packages/vendor/country-codes/versions"
	meta := "/packages/vendor/country-codes/meta?version=1.2.0"
	latest := "/packages/vendor/country-codes/meta"
	warmFast(t, m, versions)
	warmFast(t, m, meta)
	get(t, m.URL+latest)

	m.advance(400 * time.Millisecond)
	before := reg.Count("/packages")
	head, _ := dialMirror(t, m).roundTrip(getReq(versions))
	if reg.Count("/packages") != before+1 || !strings.Contains(head, "fwd=stale") {
		t.Errorf("/versions past its max-age was not revalidated: %q", head)
	}

	// A newer answer replaces the remembered one, head and body together.
	reg.AddPackage("vendor", "country-codes", "1.3.0")
	m.advance(400 * time.Millisecond)
	get(t, m.URL+versions)
	warmFast(t, m, versions)
	head, body := dialMirror(t, m).roundTrip(getReq(versions))
	if !bytes.Contains(body, []byte(`"1.3.0"`)) || !json.Valid(body) {
		t.Errorf("after a newer /versions the fast lane answers %q %s", head, body)
	}
	if want := get(t, m.URL+versions); want.Header.Get("Etag") != regexp.MustCompile(`Etag: (.*)\r\n`).FindStringSubmatch(head)[1] {
		t.Errorf("the fast lane's Etag is not the entry's: %q, want %s", head, want.Header.Get("Etag"))
	}

	if err := m.cache.Delete(context.Background(), string(engine.RefPackMeta("vendor/country-codes", "1.2.0"))); err != nil {
		t.Fatal(err)
	}
	before = reg.Count("/packages")
	head, _ = dialMirror(t, m).roundTrip(getReq(meta))
	if reg.Count("/packages") == before || !strings.Contains(head, "X-Cache: MISS") {
		t.Errorf("a deleted entry was answered without a fetch: %q", head)
	}

	fast := testutil.ToFloat64(m.metrics.FastLane)
	for range 3 {
		head, _ = dialMirror(t, m).roundTrip(getReq(latest))
		mustContain(t, head, "HTTP/1.1 200 OK")
	}
	if d := testutil.ToFloat64(m.metrics.FastLane) - fast; d != 0 {
		t.Errorf("latest was answered %v times on the fast lane", d)
	}
}

// warmFast asks for target until the fast lane answers it: the memory tier
// takes entries asynchronously, and the lane answers only what it holds.
// settleCount waits, for a bounded time, until done reports true: a count
// made just after an answer's bytes went out. The caller then asserts exactly.
func settleCount(done func() bool) {
	for deadline := time.Now().Add(5 * time.Second); !done() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
}

func warmFast(t *testing.T, m *mirror, target string) {
	t.Helper()
	for range 100 {
		before := testutil.ToFloat64(m.metrics.FastLane)
		dialMirror(t, m).roundTrip(getReq(target))
		if testutil.ToFloat64(m.metrics.FastLane) > before {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s is never answered on the fast lane", target)
}

func (l *laneConn) roundTrip(req string) (string, []byte) {
	l.t.Helper()
	l.send(req)
	return l.next()
}

func TestFastLaneOff(t *testing.T) {
	_, up := newRegistry(t)
	m := startMirror(t, "", []string{up}, nil, withFastLane(false))
	c := dialMirror(t, m)
	for range 4 {
		c.roundTrip(getReq("/packages/vendor/country-codes/meta?version=1.2.0"))
	}
	if n := testutil.ToFloat64(m.metrics.FastLane); n != 0 {
		t.Errorf("%v answers on the fast lane with fast-lane off", n)
	}
	if resp := get(t, m.URL+"/metrics"); resp.Status != http.StatusOK {
		t.Fatal(resp.Status)
	}
}

// A fast-lane answer has its access line, like any other.
func TestFastLaneAnswersAreLogged(t *testing.T) {
	_, up := newRegistry(t)
	var logs syncBuffer
	m := startLoggedMirror(t, &logs, "", []string{up}, nil)
	target := "/packages/vendor/country-codes/meta?version=1.2.0"
	warmFast(t, m, target)
	fast := testutil.ToFloat64(m.metrics.FastLane)
	head, body := dialMirror(t, m).roundTrip(getReq(target))
	settleCount(func() bool { return testutil.ToFloat64(m.metrics.FastLane) >= fast+1 })
	if testutil.ToFloat64(m.metrics.FastLane) != fast+1 {
		t.Fatal("the last request was not answered on the fast lane")
	}
	id := regexp.MustCompile(`X-Request-Id: (\S+)`).FindStringSubmatch(head)[1]
	var lines []string
	var answered float64
	// The lane logs and counts once its write has returned, which may be
	// after the client read the answer.
	settleCount(func() bool {
		lines = lines[:0]
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "msg=request") && strings.Contains(l, `path="`+target+`"`) {
				lines = append(lines, l)
			}
		}
		answered = counter(t, m, "requests", "refpack", "meta", "200", "HIT") + counter(t, m, "requests", "refpack", "meta", "200", "MISS")
		return float64(len(lines)) == answered && len(lines) > 0 && strings.Contains(lines[len(lines)-1], "id="+id)
	})
	if float64(len(lines)) != answered {
		t.Fatalf("%d access lines for %v requests", len(lines), answered)
	}
	last := lines[len(lines)-1]
	for _, want := range []string{"id=" + id, "method=GET", "status=200", "bytes=" + strconv.Itoa(len(body)), "cache=HIT", "upstream=" + up} {
		mustContain(t, last, want)
	}
}

// Hydrilla's exact answers go on the lane too: a file by its hash and an item
// version in both its forms; the newest version (<id>.json) never does.
func TestFastLaneHydrilla(t *testing.T) {
	repo := hydrillaRepo(t)
	m := startMirror(t, "", nil, []string{repo.BaseURL()})
	sum := sha256.Sum256([]byte("console.log('hello');\n"))
	for _, target := range []string{
		"/file/sha256/" + hex.EncodeToString(sum[:]),
		"/resource/helloapple/2021.11.10",
		"/mapping/helloapple.json?ver=2021.11.10",
	} {
		want := get(t, m.URL+target)
		if want.Status != http.StatusOK {
			t.Fatalf("%s: %d", target, want.Status)
		}
		warmFast(t, m, target)
		before := testutil.ToFloat64(m.metrics.FastLane)
		_, body := dialMirror(t, m).roundTrip(getReq(target))
		settleCount(func() bool { return testutil.ToFloat64(m.metrics.FastLane) > before })
		if !bytes.Equal(body, want.Body) {
			t.Errorf("%s: the fast lane's body differs", target)
		}
	}
	fast := testutil.ToFloat64(m.metrics.FastLane)
	for range 3 {
		head, _ := dialMirror(t, m).roundTrip(getReq("/mapping/helloapple.json"))
		mustContain(t, head, "HTTP/1.1 200 OK")
	}
	if d := testutil.ToFloat64(m.metrics.FastLane) - fast; d != 0 {
		t.Errorf("the newest version was answered %v times on the fast lane", d)
	}
}
