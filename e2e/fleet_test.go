package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regmirror/regmirror/engine"
	"github.com/regmirror/regmirror/hydrilla/hydrillatest"
	"github.com/regmirror/regmirror/refpack/registrytest"
)

// Replicas sharing a bucket (issue 10, design.md "Scale past one machine"):
// three `regmirror serve` processes, each with its own --data, on one
// versitygw bucket, in front of test upstreams slowed to 300 ms.

const upstreamDelay = 300 * time.Millisecond

// fleet is one bucket, the test upstreams and the replicas sharing them.
type fleet struct {
	t        *testing.T
	gw       *s3gw
	bucket   string
	prefix   string
	bv       *bucketView
	reg      *registrytest.Registry
	rp       *gate
	repo     *hydrillatest.Repo
	hy       *gate
	replicas []*mirror
}

var fleetSeq atomic.Int64

// newFleet starts versitygw with a new bucket and the two test upstreams;
// replicas are started with (*fleet).start.
func newFleet(t *testing.T) *fleet {
	t.Helper()
	gw := startS3GW(t)
	f := &fleet{t: t, gw: gw, bucket: fmt.Sprintf("fleet-%d", fleetSeq.Add(1)), prefix: "mirror/one"}
	gw.createBucket(f.bucket)
	f.bv = gw.view(f.bucket, f.prefix)
	f.reg = registrytest.New()
	f.rp = newGate(t, f.reg)
	t.Cleanup(f.reg.Close)
	f.repo = hydrillatest.New()
	f.hy = newGate(t, f.repo.Handler())
	return f
}

// store is the --blob-store value.
func (f *fleet) store() string { return "s3://" + f.bucket + "/" + f.prefix }

// s3Args are the flags that put a command on the fleet's bucket.
func (f *fleet) s3Args() []string {
	return []string{"--blob-store", f.store(), "--s3-endpoint", f.gw.Endpoint, "--s3-path-style", "--s3-region", gwRegion}
}

// start starts one more replica with its own data directory.
func (f *fleet) start(extra ...string) *mirror {
	f.t.Helper()
	m := startMirror(f.t, f.t.TempDir(), f.rp.URL(), f.hy.URL(), append(f.s3Args(), extra...)...)
	f.replicas = append(f.replicas, m)
	return m
}

// startN starts n replicas.
func (f *fleet) startN(n int, extra ...string) []*mirror {
	f.t.Helper()
	var ms []*mirror
	for range n {
		ms = append(ms, f.start(extra...))
	}
	return ms
}

// slow makes both upstreams answer after upstreamDelay.
func (f *fleet) slow() {
	f.reg.SetDelay(upstreamDelay)
	f.repo.SetDelay(upstreamDelay)
}

// checkBucket fails the test on anything in the bucket a replica could not
// rely on (an entry without its whole blob, a blob that does not hash to its
// name).
func (f *fleet) checkBucket() {
	f.t.Helper()
	for _, p := range f.bv.consistent() {
		f.t.Errorf("bucket: %s", p)
	}
}

// fleetObject is one object asked of the fleet: its mirror path, its true
// body, and how many times the upstream was asked for it.
type fleetObject struct {
	name    string
	path    string
	key     string
	want    []byte
	fetches func() int
}

// registryFetches counts the registry's GETs of an escaped path with a version query.
func registryFetches(reg *registrytest.Registry, path, version string) func() int {
	return func() int {
		n := 0
		for _, r := range reg.Requests() {
			if r.Method == http.MethodGet && r.Path == path && r.Query.Get("version") == version {
				n++
			}
		}
		return n
	}
}

// upstreamBody fetches a body straight from a test upstream (before it is slowed).
func upstreamBody(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d, %v", url, resp.StatusCode, err)
	}
	return b
}

// zipObject publishes owner/name@version with a body of about size bytes.
func (f *fleet) zipObject(owner, name, version string, size int) *fleetObject {
	f.reg.AddPackage(owner, name, version, registrytest.Stored(),
		registrytest.WithAsset("blob.bin", randomBytes(f.t, size)))
	id := owner + "/" + name
	return &fleetObject{
		name: "zip " + id + "@" + version, path: "/packages/" + id + "?version=" + version,
		key: string(engine.RefPackZip(id, version)), want: f.reg.Zip(id, version),
		fetches: registryFetches(f.reg, "/packages/"+owner+"%2F"+name, version),
	}
}

// metaObject returns the /meta document of owner/name@version, publishing
// it unless it is already.
func (f *fleet) metaObject(owner, name, version string) *fleetObject {
	id := owner + "/" + name
	if f.reg.Zip(id, version) == nil {
		f.reg.AddPackage(owner, name, version, registrytest.WithDescription("meta of "+name))
	}
	up := "/packages/" + owner + "%2F" + name + "/meta"
	count := registryFetches(f.reg, up, version)
	before := count()
	want := upstreamBody(f.t, f.rp.URL()+up+"?version="+version)
	o := &fleetObject{
		name: "meta " + id + "@" + version, path: "/packages/" + id + "/meta?version=" + version,
		key: string(engine.RefPackMeta(id, version)), want: want,
	}
	o.fetches = func() int { return count() - before - 1 }
	return o
}

// fileObject adds a Hydrilla file of size random bytes.
func (f *fleet) fileObject(size int) *fleetObject {
	body := randomBytes(f.t, size)
	sha := f.repo.AddFile(body)
	return &fleetObject{
		name: "hydrilla file " + sha[:12], path: "/file/sha256/" + sha, key: string(engine.HydrillaFile(sha)), want: body,
		fetches: func() int { return f.repo.Count("/file/sha256/" + sha) },
	}
}

// result is one client's answer.
type result struct {
	replica int
	a       *answer
	err     error
	took    time.Duration
}

// concurrently asks path n times at once, spread round-robin over the
// replicas, and returns every answer.
func concurrently(replicas []*mirror, path string, n int) []result {
	results := make([]result, n)
	var wg sync.WaitGroup
	startGun := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := replicas[i%len(replicas)]
			<-startGun
			t0 := time.Now()
			a, err := m.do(http.MethodGet, path)
			results[i] = result{replica: i % len(replicas), a: a, err: err, took: time.Since(t0)}
		}()
	}
	close(startGun)
	wg.Wait()
	return results
}

// checkAnswers fails the test unless every answer is a 200 with want, and
// returns how many answers had each X-Cache value.
func checkAnswers(t *testing.T, what string, results []result, want []byte) map[string]int {
	t.Helper()
	states := map[string]int{}
	bad := 0
	for _, r := range results {
		switch {
		case r.err != nil:
			bad++
			if bad <= 5 {
				t.Errorf("%s via replica %d: %v", what, r.replica, r.err)
			}
		case r.a.Status != http.StatusOK || string(r.a.Body) != string(want):
			bad++
			if bad <= 5 {
				t.Errorf("%s via replica %d: %d, %d bytes with sha256 %s (X-Cache %q, Cache-Status %q); want 200, %d bytes with sha256 %s",
					what, r.replica, r.a.Status, len(r.a.Body), sum(r.a.Body), r.a.cache(), r.a.Header.Get("Cache-Status"), len(want), sum(want))
			}
		default:
			states[r.a.cache()]++
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d of %d answers wrong", what, bad, len(results))
	}
	return states
}

// 1. A hundred concurrent first requests for each of three objects (a package
// zip, a /meta document, a Hydrilla file), spread over three replicas, cost
// the upstreams one request per object, and every client gets the same,
// correct body.
func TestFleetCoalescesFirstRequests(t *testing.T) {
	f := newFleet(t)
	objs := []*fleetObject{
		f.zipObject("acme", "big", "1.0.0", 2<<20), // above --memory-max-item: served from the local tier's file
		f.metaObject("acme", "big", "1.0.0"),
		f.fileObject(64 << 10),
	}
	f.slow()
	replicas := f.startN(3)

	const clients = 100
	type outcome struct {
		results []result
		took    time.Duration
	}
	outcomes := make([]outcome, len(objs))
	var wg sync.WaitGroup
	for i, o := range objs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			outcomes[i] = outcome{concurrently(replicas, o.path, clients), time.Since(t0)}
		}()
	}
	wg.Wait()

	for i, o := range objs {
		states := checkAnswers(t, o.name, outcomes[i].results, o.want)
		if n := o.fetches(); n != 1 {
			t.Errorf("%s: %d concurrent first requests over %d replicas made %d upstream requests; want 1",
				o.name, clients, len(replicas), n)
		}
		var slowest time.Duration
		for _, r := range outcomes[i].results {
			slowest = max(slowest, r.took)
		}
		t.Logf("%s: %d clients answered in %s (slowest client %s), X-Cache %v, upstream requests %d",
			o.name, clients, outcomes[i].took.Round(time.Millisecond), slowest.Round(time.Millisecond), states, o.fetches())
		e, ok := f.bv.entry(o.key)
		if !ok {
			t.Errorf("%s: no entry record %q in the bucket", o.name, o.key)
		} else if e.Digest != sum(o.want) || e.Size != int64(len(o.want)) {
			t.Errorf("%s: the bucket's entry names %s (%d bytes); want %s (%d bytes)", o.name, e.Digest, e.Size, sum(o.want), len(o.want))
		}
	}
	for i, m := range replicas {
		t.Logf("replica %d: shared fills %v, fail-open fills %v, coalesced %v", i,
			m.metric("regmirror_blob_store_shared_fills_total"), m.metric("regmirror_blob_store_fail_open_total"),
			m.metric("regmirror_coalesced_requests_total"))
		if n := m.metric("regmirror_blob_store_fail_open_total"); n != 0 {
			t.Errorf("replica %d fetched %v objects without a lease with the bucket up", i, n)
		}
	}
	// And again: every replica answers every object from the fleet's copy.
	for _, o := range objs {
		for i, m := range replicas {
			if a := m.mustGet(o.path, o.want); a.cache() != "HIT" {
				t.Errorf("%s again via replica %d: X-Cache %q (%s); want HIT", o.name, i, a.cache(), a.Header.Get("Cache-Status"))
			}
		}
		if n := o.fetches(); n != 1 {
			t.Errorf("%s: %d upstream requests after the warm round; want 1", o.name, n)
		}
	}
	f.checkBucket()
}

// 2. What one replica filled is a HIT on the others, which make no upstream
// request for it, including a replica started afterwards.
func TestFleetHitAcrossReplicas(t *testing.T) {
	f := newFleet(t)
	objs := []*fleetObject{
		f.zipObject("acme", "shared", "2.1.0", 2<<20),
		f.metaObject("acme", "shared", "2.1.0"),
		f.fileObject(32 << 10),
	}
	f.slow()
	ms := f.startN(2)
	a, b := ms[0], ms[1]
	for _, o := range objs {
		if got := a.mustGet(o.path, o.want); got.cache() != "MISS" {
			t.Errorf("%s via replica A: X-Cache %q (%s); want MISS", o.name, got.cache(), got.Header.Get("Cache-Status"))
		}
		t0 := time.Now()
		got := b.mustGet(o.path, o.want)
		if got.cache() != "HIT" {
			t.Errorf("%s via replica B after A filled it: X-Cache %q (%s); want HIT", o.name, got.cache(), got.Header.Get("Cache-Status"))
		}
		if n := o.fetches(); n != 1 {
			t.Errorf("%s: %d upstream requests after replicas A and B; want 1", o.name, n)
		}
		t.Logf("%s: B answered %s in %s (%s)", o.name, got.cache(), time.Since(t0).Round(time.Microsecond), got.Header.Get("Cache-Status"))
	}
	c := f.start()
	for _, o := range objs {
		if got := c.mustGet(o.path, o.want); got.cache() != "HIT" {
			t.Errorf("%s via replica C started afterwards: X-Cache %q (%s); want HIT", o.name, got.cache(), got.Header.Get("Cache-Status"))
		}
		if n := o.fetches(); n != 1 {
			t.Errorf("%s: %d upstream requests after replicas A, B and C; want 1", o.name, n)
		}
	}
	f.checkBucket()
}

// 3. A replica killed (SIGKILL) in the middle of a fill leaves its lease to
// lapse; a replica waiting on it then takes the lease over and completes the
// fill. Nothing partial ever appears in the bucket: the entry record shows up
// only together with the whole, verified blob.
func TestFleetReplicaKilledMidFill(t *testing.T) {
	const ttl = 2 * time.Second
	f := newFleet(t)
	zip := bigPackage(t, f.reg, 2<<20)
	stall := stallZip(f.reg, zip)
	t.Cleanup(stall.release)
	f.slow()
	ms := f.startN(3, "--s3-lease-ttl", ttl.String())
	a, b, c := ms[0], ms[1], ms[2]
	digest := sum(zip)

	// Watch the bucket the whole time: the entry must never appear without its
	// whole blob, and no blob may ever be partial.
	watchStop := make(chan struct{})
	watchDone := make(chan []string, 1)
	var stopWatch sync.Once
	t.Cleanup(func() { stopWatch.Do(func() { close(watchStop) }) })
	var entrySeen atomic.Int64 // unix nanos of the first sight of the entry
	go func() {
		var problems []string
		for {
			select {
			case <-watchStop:
				watchDone <- problems
				return
			case <-time.After(20 * time.Millisecond):
			}
			if e, ok, err := f.bv.get("entries/" + encodeEntryKey(bigZipKey)); err == nil && ok {
				entrySeen.CompareAndSwap(0, time.Now().UnixNano())
				blob, ok, err := f.bv.get("blobs/sha256/" + digest)
				switch {
				case err != nil:
				case !ok:
					problems = append(problems, "the entry record is in the bucket without its blob: "+string(e))
				case sum(blob) != digest:
					problems = append(problems, fmt.Sprintf("the entry record is in the bucket with a partial blob (%d of %d bytes)", len(blob), len(zip)))
				}
			}
			if blob, ok, err := f.bv.get("blobs/sha256/" + digest); err == nil && ok && sum(blob) != digest {
				problems = append(problems, fmt.Sprintf("a partial blob is visible: %d of %d bytes", len(blob), len(zip)))
			}
		}
	}()

	// A starts the fill and receives half the zip.
	aGot := make(chan result, 1)
	go func() {
		ans, err := a.do(http.MethodGet, bigZipPath)
		aGot <- result{a: ans, err: err}
	}()
	select {
	case <-stall.halfSent:
	case <-time.After(20 * time.Second):
		t.Fatal("the registry never received replica A's request for the zip")
	}
	waitStaged(t, a.proc, a.Data+"/s3-local/tmp", int64(len(zip)/2))
	if _, ok, _ := f.bv.get("leases/" + encodeEntryKey(bigZipKey)); !ok {
		t.Errorf("no lease object in the bucket while replica A fills the zip")
	}
	// B and C ask too: they wait for A's fill instead of fetching.
	waiters := make(chan result, 2)
	for i, m := range []*mirror{b, c} {
		go func() {
			t0 := time.Now()
			ans, err := m.do(http.MethodGet, bigZipPath)
			waiters <- result{replica: i + 1, a: ans, err: err, took: time.Since(t0)}
		}()
	}
	time.Sleep(ttl) // longer than a TTL: A renews its lease, so they keep waiting
	if n := zipFetches(f.reg); n != 1 {
		t.Fatalf("while replica A holds the lease: %d upstream requests for the zip; want 1", n)
	}
	// Kill A mid-fill; the rest of the zip is then sent at once to whoever asks.
	stall.slow.Store(false)
	killed := time.Now()
	a.kill()
	if r := <-aGot; r.err == nil && r.a.Status == http.StatusOK {
		t.Errorf("the client of the killed replica got a 200 with %d bytes", len(r.a.Body))
	}
	if _, ok := f.bv.entry(bigZipKey); ok {
		t.Fatal("the zip's entry record is in the bucket right after replica A died mid-fill")
	}
	for range 2 {
		select {
		case r := <-waiters:
			if r.err != nil || r.a.Status != http.StatusOK || string(r.a.Body) != string(zip) {
				t.Errorf("waiter on replica %d: %v %v", r.replica, r.a, r.err)
				continue
			}
			after := time.Since(killed)
			t.Logf("waiter on replica %d answered %s %.1f s after replica A was killed (%s)",
				r.replica, r.a.cache(), after.Seconds(), r.a.Header.Get("Cache-Status"))
			if after > ttl+5*time.Second {
				t.Errorf("waiter on replica %d answered %s after the holder died; want within the lease TTL (%s) and a few polls", r.replica, after, ttl)
			}
		case <-time.After(ttl + 20*time.Second):
			t.Fatalf("the waiters did not answer %s after the lease holder died", ttl+20*time.Second)
		}
	}
	if n := zipFetches(f.reg); n != 2 {
		t.Errorf("%d upstream requests for the zip; want 2 (the killed fill, and one takeover)", n)
	}
	if seen := entrySeen.Load(); seen != 0 {
		lapse := time.Unix(0, seen).Sub(killed)
		t.Logf("entry record first seen in the bucket %.2f s after the kill", lapse.Seconds())
	}
	stopWatch.Do(func() { close(watchStop) })
	for _, p := range <-watchDone {
		t.Errorf("bucket watch: %s", p)
	}
	e, ok := f.bv.entry(bigZipKey)
	if !ok || e.Digest != digest || e.Size != int64(len(zip)) {
		t.Fatalf("entry after the takeover: %+v, %v; want digest %s", e, ok, digest)
	}
	if _, ok, _ := f.bv.get("leases/" + encodeEntryKey(bigZipKey)); ok {
		t.Errorf("the lease object is still in the bucket after the fill completed")
	}
	// The dead replica's data directory restarts cleanly on the fleet and
	// serves the fleet's copy.
	a2 := startMirror(t, a.Data, f.rp.URL(), f.hy.URL(), append(f.s3Args(), "--s3-lease-ttl", ttl.String())...)
	a2.mustGet(bigZipPath, zip, "HIT")
	if n := zipFetches(f.reg); n != 2 {
		t.Errorf("%d upstream requests for the zip after the restart; want 2", n)
	}
	f.checkBucket()
}

// 4. versitygw killed and started again while the replicas are under load:
// they keep answering what their local tiers hold, fetch misses from the
// upstream directly (fail open), report regmirror_blob_store_up 0, then 1
// when it is back, and new fills go to the bucket again.
func TestFleetBucketDownUnderLoad(t *testing.T) {
	f := newFleet(t)
	held := []*fleetObject{
		f.zipObject("acme", "held", "1.0.0", 2<<20),
		f.metaObject("acme", "held", "1.0.0"),
		f.fileObject(16 << 10),
		f.fileObject(200 << 10),
	}
	var misses []*fleetObject
	for range 400 {
		misses = append(misses, f.fileObject(4<<10))
	}
	f.slow()
	replicas := f.startN(3)
	// Every replica holds the held objects in its own tiers.
	for _, o := range held {
		for _, m := range replicas {
			m.mustGet(o.path, o.want)
		}
	}
	for i, m := range replicas {
		if up := m.metric("regmirror_blob_store_up"); up != 1 {
			t.Fatalf("replica %d: regmirror_blob_store_up %v before the outage; want 1", i, up)
		}
	}

	// The load: each replica has clients asking for the held objects, and
	// one client per replica asks for a new object at a time.
	var (
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		mu        sync.Mutex
		failures  []string
		heldOK    atomic.Int64
		missOK    atomic.Int64
		phase     atomic.Value // "before", "down", "back"
		nextMiss  atomic.Int64
		missState = map[string]map[string]int{} // phase → X-Cache → count
	)
	phase.Store("before")
	fail := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, fmt.Sprintf("[%s] ", phase.Load())+fmt.Sprintf(format, a...))
	}
	for ri, m := range replicas {
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					o := held[i%len(held)]
					a, err := m.do(http.MethodGet, o.path)
					switch {
					case err != nil:
						fail("held %s via replica %d: %v", o.name, ri, err)
					case a.Status != http.StatusOK || string(a.Body) != string(o.want):
						fail("held %s via replica %d: %s", o.name, ri, a)
					default:
						heldOK.Add(1)
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := int(nextMiss.Add(1)) - 1
				if n >= len(misses) {
					return
				}
				o := misses[n]
				ph := phase.Load().(string)
				a, err := m.do(http.MethodGet, o.path)
				switch {
				case err != nil:
					fail("miss %s via replica %d: %v", o.name, ri, err)
				case a.Status != http.StatusOK || string(a.Body) != string(o.want):
					fail("miss %s via replica %d: %s", o.name, ri, a)
				default:
					missOK.Add(1)
					mu.Lock()
					if missState[ph] == nil {
						missState[ph] = map[string]int{}
					}
					missState[ph][a.cache()]++
					mu.Unlock()
				}
			}
		}()
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	time.Sleep(time.Second)
	missesBefore := int(nextMiss.Load())
	heldFetches := func() int {
		n := 0
		for _, o := range held {
			n += o.fetches()
		}
		return n
	}
	heldBefore := heldFetches()
	phase.Store("down")
	downAt := time.Now()
	f.gw.stop()
	for i, m := range replicas {
		waitFor(t, 15*time.Second, fmt.Sprintf("replica %d to report regmirror_blob_store_up 0", i), func() bool {
			return m.metric("regmirror_blob_store_up") == 0
		})
	}
	t.Logf("every replica reported the bucket down %.2f s after it was killed", time.Since(downAt).Seconds())
	time.Sleep(3 * time.Second)
	heldDown, missDown := heldOK.Load(), missOK.Load()
	if n := heldFetches() - heldBefore; n != 0 {
		t.Errorf("during the outage the replicas asked the upstream %d times for objects their local tiers hold", n)
	}
	missesDown := int(nextMiss.Load())
	var failOpen float64
	for _, m := range replicas {
		failOpen += m.metric("regmirror_blob_store_fail_open_total")
	}

	phase.Store("back")
	backAt := time.Now()
	f.gw.start()
	for i, m := range replicas {
		waitFor(t, 20*time.Second, fmt.Sprintf("replica %d to report regmirror_blob_store_up 1", i), func() bool {
			return m.metric("regmirror_blob_store_up") == 1
		})
	}
	t.Logf("every replica reported the bucket up %.2f s after it was started again", time.Since(backAt).Seconds())
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	mu.Lock()
	for i, fl := range failures {
		if i == 10 {
			t.Errorf("… and %d more failures", len(failures)-10)
			break
		}
		t.Error(fl)
	}
	t.Logf("under load: %d held answers, %d miss answers (%d misses asked before the outage, %d by its end); miss X-Cache by phase %v; fail-open fills %v",
		heldOK.Load(), missOK.Load(), missesBefore, missesDown, missState, failOpen)
	mu.Unlock()
	if heldDown == 0 || missDown == 0 {
		t.Errorf("no answers counted during the outage (held %d, misses %d)", heldDown, missDown)
	}
	if failOpen == 0 {
		t.Errorf("regmirror_blob_store_fail_open_total stayed 0 through the outage")
	}
	// Every miss, asked once, cost the upstream one request, outage or not.
	for _, o := range misses[:min(len(misses), int(nextMiss.Load()))] {
		if n := o.fetches(); n > 1 {
			t.Errorf("%s: %d upstream requests; want 1", o.name, n)
		}
	}

	// New fills go to the bucket again and are shared.
	fresh := f.fileObject(8 << 10)
	if a := replicas[0].mustGet(fresh.path, fresh.want); a.cache() != "MISS" {
		t.Errorf("new object after the bucket came back: X-Cache %q (%s); want MISS", a.cache(), a.Header.Get("Cache-Status"))
	}
	if _, ok := f.bv.entry(fresh.key); !ok {
		t.Errorf("an object filled after the bucket came back has no entry record in the bucket")
	}
	for i, m := range replicas[1:] {
		if a := m.mustGet(fresh.path, fresh.want); a.cache() != "HIT" {
			t.Errorf("new object via replica %d: X-Cache %q (%s); want HIT", i+1, a.cache(), a.Header.Get("Cache-Status"))
		}
	}
	if n := fresh.fetches(); n != 1 {
		t.Errorf("new object after the bucket came back: %d upstream requests; want 1", n)
	}
	// What was fetched during the outage is stored on the next ask.
	for _, o := range misses[missesBefore:min(missesDown, missesBefore+5)] {
		replicas[0].mustGet(o.path, o.want)
		if _, ok := f.bv.entry(o.key); !ok {
			t.Errorf("%s fetched during the outage is not in the bucket after it was asked again", o.name)
		}
	}
	f.checkBucket()
}

// 5. `regmirror sync --blob-store …` run once serves the whole fleet: a
// replica started afterwards answers every synced Hydrilla item and file (and
// a query) with the upstream stopped, as does a replica that was running
// during the sync; `regmirror verify --blob-store …` exits 0.
func TestFleetSyncServesFleet(t *testing.T) {
	f := newFleet(t)
	f.repo = hydrillatest.Generate(12, 7)
	f.hy = newGate(t, f.repo.Handler())
	f.slow()
	running := f.start()
	refs, files := f.repo.Refs(), f.repo.Files()
	// A query and its answer from the upstream, for the pattern index.
	var queryURL string
	var wantIDs []string
	for _, u := range f.repo.SampleURLs() {
		ms, err := f.repo.Query(u)
		if err == nil && len(ms) > 0 {
			queryURL = u
			for _, m := range ms {
				wantIDs = append(wantIDs, m.Identifier)
			}
			break
		}
	}

	code, stdout, all := runCmd(t, 3*time.Minute, append([]string{"sync", "--data", t.TempDir(),
		"--hydrilla-upstream", f.hy.URL(), "--jobs", "8", "--log-level", "info",
		"--upstream-timeout", "30s", "--upstream-header-timeout", "10s"}, f.s3Args()...)...)
	if code != 0 {
		t.Fatalf("sync --blob-store exited %d:\n%s", code, tail(all, 4000))
	}
	t.Logf("sync: %s", strings.TrimSpace(stdout))
	synced := len(f.repo.Requests())

	f.hy.down.Store(true) // the upstream is gone
	late := f.start()
	query := func(m *mirror) (*answer, []string) {
		a := m.get("/query?url=" + url.QueryEscape(queryURL))
		var qa struct {
			Mappings []struct {
				Identifier string `json:"identifier"`
			} `json:"mappings"`
		}
		json.Unmarshal(a.Body, &qa)
		var got []string
		for _, m := range qa.Mappings {
			got = append(got, m.Identifier)
		}
		sort.Strings(got)
		return a, got
	}
	sort.Strings(wantIDs)
	check := func(name string, m *mirror, queryWait time.Duration) {
		t.Helper()
		for _, ref := range refs {
			want, _ := f.repo.Item(ref)
			if a := m.mustGet("/"+ref.String(), want); a.cache() != "HIT" {
				t.Errorf("%s: /%s: X-Cache %q (%s); want HIT", name, ref, a.cache(), a.Header.Get("Cache-Status"))
			}
		}
		for _, sha := range files {
			want, _ := f.repo.File(sha)
			if a := m.mustGet("/file/sha256/"+sha, want); a.cache() != "HIT" {
				t.Errorf("%s: file %s: X-Cache %q (%s); want HIT", name, sha, a.cache(), a.Header.Get("Cache-Status"))
			}
		}
		la := m.get("/list_all")
		var list struct {
			Resources []json.RawMessage `json:"resources"`
			Mappings  []json.RawMessage `json:"mappings"`
		}
		if err := json.Unmarshal(la.Body, &list); la.Status != http.StatusOK || err != nil || len(list.Resources)+len(list.Mappings) != len(refs) {
			t.Errorf("%s: /list_all with the upstream stopped: %d, %d resources and %d mappings (X-Cache %q, %v); want %d item versions",
				name, la.Status, len(list.Resources), len(list.Mappings), la.cache(), err, len(refs))
		}
		if queryURL == "" {
			return
		}
		// The pattern index may lag what other processes stored by a moment.
		t0 := time.Now()
		for {
			a, got := query(m)
			if a.Status == http.StatusOK && strings.Join(got, ",") == strings.Join(wantIDs, ",") {
				t.Logf("%s: /query answered from the index %s after the check began (X-Cache %q)", name, time.Since(t0).Round(time.Millisecond), a.cache())
				break
			}
			if time.Since(t0) > queryWait {
				t.Errorf("%s: /query?url=%s with the upstream stopped: %d, mappings %q (X-Cache %q, %s) for %s; want %q",
					name, queryURL, a.Status, got, a.cache(), a.Header.Get("Cache-Status"), queryWait, wantIDs)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	check("replica started after the sync", late, 0)
	check("replica running during the sync", running, 20*time.Second)
	if n := len(f.repo.Requests()); n != synced {
		t.Errorf("the replicas asked the stopped upstream %d times", n-synced)
	}

	code, out, all := runCmd(t, 2*time.Minute, append([]string{"verify", "--data", t.TempDir(), "--log-level", "warn"}, f.s3Args()...)...)
	if code != 0 {
		t.Errorf("verify --blob-store exited %d; want 0:\n%s", code, tail(all, 4000))
	}
	t.Logf("verify: %s", strings.TrimSpace(out))
	f.checkBucket()
}

// 4b. With the bucket down, a replica answers what its local disk tier holds
// even when the entry is not in its memory tier (here: memory tier off, as for
// any object that fell out of it): no upstream request, no BYPASS.
func TestFleetBucketDownLocalDiskTier(t *testing.T) {
	f := newFleet(t)
	objs := []*fleetObject{
		f.zipObject("acme", "disk", "1.0.0", 2<<20),
		f.fileObject(4 << 10),
	}
	f.slow()
	filler := f.start()
	m := f.start("--memory-cache-size", "0")
	for _, o := range objs {
		filler.mustGet(o.path, o.want, "MISS")
		m.mustGet(o.path, o.want, "HIT") // downloaded into m's local disk tier
		m.mustGet(o.path, o.want, "HIT")
	}
	f.gw.stop()
	for _, o := range objs {
		before := o.fetches()
		a := m.mustGet(o.path, o.want)
		if n := o.fetches() - before; n != 0 || (a.cache() != "HIT" && a.cache() != "STALE") {
			t.Errorf("%s with the bucket down, held in the replica's local disk tier: X-Cache %q (%s) after %d upstream requests; want HIT or STALE from the local tier and none",
				o.name, a.cache(), a.Header.Get("Cache-Status"), n)
		}
	}
}

// 5b. `regmirror verify --blob-store …` on a bucket the fleet is filling:
// fills that land while it walks are not problems, and --repair never deletes
// what the replicas just stored.
func TestFleetVerifyWhileFilling(t *testing.T) {
	f := newFleet(t)
	var objs []*fleetObject
	for range 2000 {
		objs = append(objs, f.fileObject(32<<10))
	}
	f.slow()
	replicas := f.startN(3)
	var (
		next     atomic.Int64
		answered = make([]atomic.Bool, len(objs))
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for w := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := replicas[w%len(replicas)]
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := int(next.Add(1)) - 1
				if n >= len(objs) {
					return
				}
				if a, err := m.do(http.MethodGet, objs[n].path); err == nil && a.Status == http.StatusOK && a.cache() == "MISS" {
					answered[n].Store(true)
				}
			}
		}()
	}
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	defer stopLoad()
	time.Sleep(2 * time.Second)
	verifyArgs := append([]string{"verify", "--data", t.TempDir(), "--log-level", "warn"}, f.s3Args()...)
	for i := range 2 {
		code, out, all := runCmd(t, 2*time.Minute, verifyArgs...)
		if code != 0 {
			probs := verifyProblems(out)
			t.Errorf("verify #%d on a bucket being filled exited %d with %d problems, e.g. %q", i+1, code, len(probs), probs[:min(3, len(probs))])
			if len(probs) == 0 {
				t.Logf("%s", tail(all, 2000))
			}
		}
	}
	code, out, _ := runCmd(t, 2*time.Minute, append(verifyArgs, "--repair")...)
	t.Logf("verify --repair on a bucket being filled exited %d: %d problems", code, len(verifyProblems(out)))
	stopLoad()
	lost := []string{}
	filled := 0
	for i, o := range objs {
		if !answered[i].Load() {
			continue
		}
		filled++
		if _, ok := f.bv.entry(o.key); !ok {
			lost = append(lost, o.name)
		}
	}
	if len(lost) > 0 {
		t.Errorf("verify --repair deleted the entries of %d of the %d objects the fleet filled meanwhile, e.g. %q", len(lost), filled, lost[:min(3, len(lost))])
	}
	f.checkBucket()
	if code, out, _ := runCmd(t, 2*time.Minute, verifyArgs...); code != 0 {
		t.Errorf("verify once the fills stopped exited %d:\n%s", code, tail(out, 2000))
	}
}

// 4c. The status page shows the shared bucket's health and the misses fetched
// without it (issue 10: "counted, shown on /metrics and the status page"):
// /status.json has "blob_store": {"up": …, "fail_open": …}.
func TestFleetStatusShowsBlobStore(t *testing.T) {
	f := newFleet(t)
	o := f.fileObject(4 << 10)
	m := f.start()
	type status struct {
		BlobStore *struct {
			Up       bool  `json:"up"`
			FailOpen int64 `json:"fail_open"`
		} `json:"blob_store"`
	}
	read := func() status {
		t.Helper()
		a := m.get("/status.json")
		var st status
		if err := json.Unmarshal(a.Body, &st); a.Status != http.StatusOK || err != nil {
			t.Fatalf("/status.json: %d, %v", a.Status, err)
		}
		return st
	}
	f.gw.stop()
	m.mustGet(o.path, o.want) // fetched from the upstream without the bucket
	st := read()
	if st.BlobStore == nil {
		t.Fatalf("/status.json has no blob_store section; the bucket is down and %v misses were fetched without it (regmirror_blob_store_fail_open_total)",
			m.metric("regmirror_blob_store_fail_open_total"))
	}
	if st.BlobStore.Up || st.BlobStore.FailOpen < 1 {
		t.Errorf("/status.json with the bucket down: blob_store %+v; want up false, fail_open ≥ 1", *st.BlobStore)
	}
	f.gw.start()
	waitFor(t, 15*time.Second, "the status page to show the bucket up again", func() bool {
		m.get(o.path) // a request that reaches the bucket
		st := read()
		return st.BlobStore != nil && st.BlobStore.Up
	})
}
