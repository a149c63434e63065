package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/config"
)

// askOnOneConnection sends GET target for each target on one keep-alive
// connection, pipelining a few at a time, and checks each answer is a 200.
func askOnOneConnection(t *testing.T, base string, targets []string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	br := bufio.NewReader(c)
	bw := bufio.NewWriter(c)
	const window = 16
	for i := 0; i < len(targets); i += window {
		batch := targets[i:min(i+window, len(targets))]
		for _, target := range batch {
			fmt.Fprintf(bw, "GET %s HTTP/1.1\r\nHost: mirror.test\r\n\r\n", target)
		}
		if err := bw.Flush(); err != nil {
			t.Fatal(err)
		}
		for _, target := range batch {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("GET %.80s…: %v", target, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %.80s…: %d", target, resp.StatusCode)
			}
		}
	}
}

// padded is the cached /meta asked with an extra query parameter making the
// target n bytes long: a distinct target with the same answer.
func padded(i, n int) string {
	t := "/packages/vendor/country-codes/meta?version=1.2.0&pad=" + strconv.Itoa(i) + "-"
	return t + strings.Repeat("x", max(0, n-len(t)))
}

// The fast lane remembers only targets it can answer (within its 4 KiB
// buffer), and its memos stay within their byte budget however many distinct
// targets a client asks; what is asked all along survives the churn.
func TestFastLaneMemosAreBounded(t *testing.T) {
	_, up := newRegistry(t)
	m := startMirror(t, "", []string{up}, nil, func(c *config.Config) { c.MemoryCacheSize = 1 << 20 })
	hot := "/packages/vendor/country-codes/meta?version=1.2.0"
	// The fill's answer reaches the memory tier in its own time; the first
	// hit net/http answers from there is remembered.
	n, has := 0, false
	for i := 0; i < 50 && !has; i++ {
		askOnOneConnection(t, m.URL, []string{hot})
		n, _, _, has = m.srv.FastMemos(hot)
	}
	if n != 1 || !has {
		t.Fatalf("after hits the lane remembers %d targets (the hit: %v)", n, has)
	}
	var long []string
	for i := range 300 {
		long = append(long, padded(i, 8<<10))
	}
	askOnOneConnection(t, m.URL, long)
	if n, _, _, _ := m.srv.FastMemos(hot); n != 1 {
		t.Errorf("after 300 targets longer than the lane's buffer it remembers %d targets, want only the hit", n)
	}
	var churn []string
	for i := range 600 {
		churn = append(churn, padded(i, 2<<10), hot)
	}
	askOnOneConnection(t, m.URL, churn)
	n, bytes, budget, has := m.srv.FastMemos(hot)
	if bytes > budget || n >= 600 {
		t.Errorf("after 600 distinct 2 KiB targets: %d memos of %d bytes, budget %d", n, bytes, budget)
	}
	if !has {
		t.Error("the target asked between each of the churn's was evicted")
	}
	t.Logf("%d memos, %d bytes of a %d budget", n, bytes, budget)
}

// The 16,000-target run of issue 15: distinct 8 KiB targets on one connection,
// each the same cached /meta. Run with REGMIRROR_RSS=1; it reports the growth
// of the process's resident memory.
func TestRSSAfterDistinctTargets(t *testing.T) {
	if os.Getenv("REGMIRROR_RSS") == "" {
		t.Skip("a measurement: REGMIRROR_RSS=1 go test -run RSSAfterDistinctTargets -v ./proxy")
	}
	_, up := newRegistry(t)
	m := startMirror(t, "", []string{up}, nil, func(c *config.Config) { c.MemoryCacheSize = 256 << 20 })
	hot := "/packages/vendor/country-codes/meta?version=1.2.0"
	askOnOneConnection(t, m.URL, []string{hot, hot})
	debug.FreeOSMemory()
	before := vmRSS(t)
	for i := 0; i < 16000; i += 1000 { // the client's own targets, a batch at a time
		var targets []string
		for j := i; j < i+1000; j++ {
			targets = append(targets, padded(j, 8<<10))
		}
		askOnOneConnection(t, m.URL, targets)
	}
	debug.FreeOSMemory() // what is garbage goes back; what the server holds stays
	after := vmRSS(t)
	t.Logf("RSS %d MiB before, %d MiB after 16,000 distinct 8 KiB targets: +%d MiB", before>>20, after>>20, (after-before)>>20)
}

func vmRSS(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Skip("no VmRSS")
	return 0
}
