package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestFleetBench measures replicas sharing a bucket (BENCHMARKS.md, "Replicas
// sharing a bucket"). It is skipped unless FLEET_BENCH=1:
//
//	FLEET_BENCH=1 go test -run TestFleetBench -v -count=1 -timeout 20m ./e2e/
//
// Knobs: FLEET_BENCH_ROUNDS [5] fresh replicas / cold objects per figure,
// FLEET_BENCH_DURATION [5s] each throughput run, FLEET_BENCH_CONNS [16],
// FLEET_BENCH_CLIENTS [30] concurrent clients of a cold object,
// FLEET_BENCH_LOOP [200] requests of the "short loop".
// Throughput uses `wrk -t2 -c$CONNS -d$DURATION` when wrk is on PATH, else a Go
// loop with as many connections.
func TestFleetBench(t *testing.T) {
	if os.Getenv("FLEET_BENCH") == "" {
		t.Skip("set FLEET_BENCH=1 to run the fleet benchmarks")
	}
	rounds := envInt("FLEET_BENCH_ROUNDS", 5)
	dur := envDuration("FLEET_BENCH_DURATION", 5*time.Second)
	conns := envInt("FLEET_BENCH_CONNS", 16)
	clients := envInt("FLEET_BENCH_CLIENTS", 30)
	loop := envInt("FLEET_BENCH_LOOP", 200)
	quiet := []string{"--log-level", "warn"}

	f := newFleet(t)
	sizes := []struct {
		name string
		size int
	}{{"1 KiB", 1 << 10}, {"2 MiB", 2 << 20}}

	// Hits: an object filled by replica A, asked of fresh replicas (only in
	// the bucket), then of a replica that holds it (local tier).
	filler := f.start(quiet...)
	for _, sz := range sizes {
		o := f.fileObject(sz.size)
		filler.mustGet(o.path, o.want, "MISS")
		url := func(m *mirror) string { return m.URL + o.path }

		var firsts []time.Duration
		var loopRates []float64
		for range rounds {
			m := f.start(quiet...)
			t0 := time.Now()
			m.mustGet(o.path, o.want, "HIT")
			firsts = append(firsts, time.Since(t0))
			m.kill()
			m2 := f.start(quiet...) // fresh again for the loop
			t0 = time.Now()
			for range loop {
				m2.mustGet(o.path, o.want, "HIT")
			}
			loopRates = append(loopRates, float64(loop)/time.Since(t0).Seconds())
			m2.kill()
		}
		t.Logf("RESULT hit %s, only in the bucket, first request after a fresh start: %s", sz.name, durStats(firsts))
		t.Logf("RESULT hit %s, only in the bucket, loop of %d sequential requests from a fresh start: %s req/s", sz.name, loop, rateStats(loopRates))

		local := f.start(quiet...)
		local.mustGet(o.path, o.want, "HIT")
		rate, lat := throughput(t, url(local), conns, dur)
		t.Logf("RESULT hit %s, local tier (warm replica): %.0f req/s, latency %s (%d connections, %s)", sz.name, rate, lat, conns, dur)
		seqRates := []float64{}
		for range rounds {
			t0 := time.Now()
			for range loop {
				local.mustGet(o.path, o.want, "HIT")
			}
			seqRates = append(seqRates, float64(loop)/time.Since(t0).Seconds())
		}
		t.Logf("RESULT hit %s, local tier, loop of %d sequential requests: %s req/s", sz.name, loop, rateStats(seqRates))
		local.kill()

		// Memory tier off: every hit reads the entry record from the bucket
		// (the blob stays in the local disk tier).
		nomem := f.start(append(quiet, "--memory-cache-size", "0")...)
		nomem.mustGet(o.path, o.want, "HIT")
		rate, lat = throughput(t, url(nomem), conns, dur)
		t.Logf("RESULT hit %s, memory tier off (entry record read from the bucket every request): %.0f req/s, latency %s", sz.name, rate, lat)
		nomem.kill()
	}
	filler.kill()

	// Cold objects: 3 replicas, clients spread over them, a new object each
	// round; the time from the start to each client's whole body.
	for _, delay := range []time.Duration{upstreamDelay, 0} {
		f.reg.SetDelay(delay)
		f.repo.SetDelay(delay)
		for _, setup := range []struct {
			name string
			n    int
			s3   bool
		}{{"3 replicas on the bucket", 3, true}, {"1 replica on the bucket", 1, true}, {"1 mirror on its local disk (no --blob-store)", 1, false}} {
			var ms []*mirror
			for range setup.n {
				if setup.s3 {
					ms = append(ms, f.start(quiet...))
				} else {
					ms = append(ms, startMirror(t, t.TempDir(), f.rp.URL(), f.hy.URL(), quiet...))
				}
			}
			for _, sz := range sizes {
				var firsts, meds, lasts []time.Duration
				fetches := 0
				for range rounds {
					o := f.fileObject(sz.size)
					rs := concurrently(ms, o.path, clients)
					checkAnswers(t, "cold "+o.name, rs, o.want)
					var ds []time.Duration
					for _, r := range rs {
						ds = append(ds, r.took)
					}
					slices.Sort(ds)
					firsts, meds, lasts = append(firsts, ds[0]), append(meds, ds[len(ds)/2]), append(lasts, ds[len(ds)-1])
					fetches += o.fetches()
				}
				t.Logf("RESULT cold %s, upstream delay %s, %s, %d clients: first body %s; median client %s; last client %s; upstream requests %d for %d objects",
					sz.name, delay, setup.name, clients, durStats(firsts), durStats(meds), durStats(lasts), fetches, rounds)
			}
			for _, m := range ms {
				m.kill()
			}
		}
	}
}

func envInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(k string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(k)); err == nil && v > 0 {
		return v
	}
	return def
}

// durStats is "median (min–max)" in ms.
func durStats(ds []time.Duration) string {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) }
	return fmt.Sprintf("median %s ms (min %s, max %s, n=%d)", ms(ds[len(ds)/2]), ms(ds[0]), ms(ds[len(ds)-1]), len(ds))
}

func rateStats(rs []float64) string {
	rs = slices.Clone(rs)
	slices.Sort(rs)
	return fmt.Sprintf("median %.0f (min %.0f, max %.0f, n=%d)", rs[len(rs)/2], rs[0], rs[len(rs)-1], len(rs))
}

var (
	wrkRate    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkLatency = regexp.MustCompile(`(?m)^\s+Latency\s+(\S+)`)
)

// throughput runs wrk -t2 -c conns -d dur on url (or a Go loop without wrk)
// and returns requests per second and the mean latency.
func throughput(t *testing.T, url string, conns int, dur time.Duration) (float64, string) {
	t.Helper()
	if _, err := exec.LookPath("wrk"); err == nil {
		out, err := exec.Command("wrk", "-t2", fmt.Sprintf("-c%d", conns), "-d"+dur.String(), url).CombinedOutput()
		if err != nil {
			t.Fatalf("wrk: %v\n%s", err, out)
		}
		if strings.Contains(string(out), "Non-2xx") || strings.Contains(string(out), "Socket errors") {
			t.Errorf("wrk saw errors:\n%s", out)
		}
		m := wrkRate.FindSubmatch(out)
		l := wrkLatency.FindSubmatch(out)
		if m == nil || l == nil {
			t.Fatalf("wrk output not understood:\n%s", out)
		}
		rate, _ := strconv.ParseFloat(string(m[1]), 64)
		return rate, "mean " + string(l[1]) + " (wrk)"
	}
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, DisableCompression: true}}
	defer c.CloseIdleConnections()
	var n, errs atomic.Int64
	var total atomic.Int64
	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				t0 := time.Now()
				resp, err := c.Get(url)
				if err != nil {
					errs.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs.Add(1)
				}
				n.Add(1)
				total.Add(int64(time.Since(t0)))
			}
		}()
	}
	wg.Wait()
	if errs.Load() > 0 {
		t.Errorf("%d errors in the throughput loop", errs.Load())
	}
	return float64(n.Load()) / dur.Seconds(), fmt.Sprintf("mean %s (Go loop)", time.Duration(total.Load()/max(n.Load(), 1)).Round(time.Microsecond))
}
