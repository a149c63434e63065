package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
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

// bigPackage publishes acme/big 1.0.0 whose zip is about size bytes (a stored
// asset of random bytes) and returns the zip.
func bigPackage(t testing.TB, reg *registrytest.Registry, size int) []byte {
	t.Helper()
	reg.AddPackage("acme", "big", "1.0.0", registrytest.Stored(),
		registrytest.WithAsset("blob.bin", randomBytes(t, size)))
	return reg.Zip("acme/big", "1.0.0")
}

const (
	bigZipPath     = "/packages/acme/big?version=1.0.0" // as clients ask the mirror
	bigZipUpstream = "/packages/acme%2Fbig"             // as the mirror asks the registry
)

var bigZipKey = string(engine.RefPackZip("acme/big", "1.0.0"))

// zipFetches counts the registry's downloads of the acme/big zip.
func zipFetches(reg *registrytest.Registry) int {
	n := 0
	for _, r := range reg.Requests() {
		if r.Method == http.MethodGet && r.Path == bigZipUpstream && r.Query.Get("version") == "1.0.0" {
			n++
		}
	}
	return n
}

// stall makes the registry send half of the acme/big zip, flush, and then wait
// (for the client to go, or for resume) before it sends the rest.
type stall struct {
	slow     atomic.Bool
	halfSent chan struct{}
	resume   chan struct{}
	once     sync.Once
}

func stallZip(reg *registrytest.Registry, zip []byte) *stall {
	s := &stall{halfSent: make(chan struct{}, 1), resume: make(chan struct{})}
	s.slow.Store(true)
	reg.SetHook(func(w http.ResponseWriter, r *http.Request) bool {
		if !s.slow.Load() || r.URL.EscapedPath() != bigZipUpstream || r.URL.Query().Get("version") != "1.0.0" {
			return false
		}
		w.Header().Set("Content-Type", "application/zip")
		w.Header().Set("Content-Length", fmt.Sprint(len(zip)))
		w.WriteHeader(http.StatusOK)
		w.Write(zip[:len(zip)/2])
		w.(http.Flusher).Flush()
		select {
		case s.halfSent <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		case <-s.resume:
			w.Write(zip[len(zip)/2:])
		}
		return true
	})
	return s
}

func (s *stall) release() { s.once.Do(func() { close(s.resume) }) }

// waitStaged waits until a file p stages in dir holds at least n bytes: a
// file in dir, or one without a name (the disk store stages bodies so on
// Linux) that p holds open there.
func waitStaged(t testing.TB, p *proc, dir string, n int64) {
	t.Helper()
	waitFor(t, 10*time.Second, "the mirror to stage half the zip", func() bool {
		for _, size := range dirFiles(t, dir) {
			if size >= n {
				return true
			}
		}
		for _, size := range unnamedFiles(p, dir) {
			if size >= n {
				return true
			}
		}
		return false
	})
}

// unnamedFiles are the sizes of the files without a name (O_TMPFILE) that p
// holds open in dir, as /proc shows them; none where there is no /proc.
func unnamedFiles(p *proc, dir string) []int64 {
	fds := fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid)
	des, _ := os.ReadDir(fds)
	var sizes []int64
	for _, de := range des {
		target, err := os.Readlink(filepath.Join(fds, de.Name()))
		if err != nil || !strings.HasPrefix(target, dir+"/") || !strings.HasSuffix(target, " (deleted)") {
			continue
		}
		if fi, err := os.Stat(filepath.Join(fds, de.Name())); err == nil {
			sizes = append(sizes, fi.Size())
		}
	}
	return sizes
}

// TestKillDuringSlowFill kills the mirror (SIGKILL) while it is receiving a
// 2 MiB package zip that the registry sends half of and then stalls. After a
// restart on the same data directory the index is consistent, the staging
// area is empty, the zip is fetched afresh and served whole and correct, and
// no client ever saw a partial body.
func TestKillDuringSlowFill(t *testing.T) {
	reg := registrytest.New()
	zip := bigPackage(t, reg, 2<<20)
	stall := stallZip(reg, zip)
	halfSent := stall.halfSent
	up := newGate(t, reg)
	t.Cleanup(reg.Close)
	t.Cleanup(stall.release)
	data := t.TempDir()
	hy := deadURL(t)

	m := startMirror(t, data, up.URL(), hy)
	type result struct {
		a   *answer
		err error
	}
	got := make(chan result, 1)
	go func() {
		a, err := m.do(http.MethodGet, bigZipPath)
		got <- result{a, err}
	}()
	select {
	case <-halfSent:
	case r := <-got:
		t.Fatalf("the mirror answered before the upstream sent the whole body: %v %v", r.a, r.err)
	case <-time.After(20 * time.Second):
		t.Fatal("the registry never received the mirror's request for the zip")
	}
	// Kill it once the half it received is in its staging file.
	tmp := filepath.Join(data, "tmp")
	waitStaged(t, m.proc, tmp, int64(len(zip)/2))
	m.kill()
	select {
	case r := <-got:
		if r.err == nil {
			t.Fatalf("the client got an answer from a mirror killed in the middle of the fill: %s", r.a)
		}
		t.Logf("client request ended with: %v (as it should: nothing was answered)", r.err)
	case <-time.After(10 * time.Second):
		t.Fatal("the client request did not end after the mirror died")
	}
	if n := zipFetches(reg); n != 1 {
		t.Fatalf("upstream saw %d downloads of the zip before the crash; want 1", n)
	}

	// The crash state: a partial staging file (none where bodies are staged
	// without a name: the kernel freed it), no entry, nothing verify minds.
	t.Logf("DATA/tmp after SIGKILL: %v", dirFiles(t, tmp))
	for name := range dirFiles(t, filepath.Join(data, "blobs")) {
		t.Errorf("a blob was committed before the body was complete: %s", name)
	}
	snapshot := copyDir(t, data)
	if e, ok := readIndex(t, snapshot)[bigZipKey]; ok {
		t.Fatalf("the index holds the zip after a crash in the middle of its body: %+v", e)
	}
	if code, out := verify(t, snapshot); code != 0 {
		t.Errorf("verify of the crash state exited %d; want 0 (index consistent, nothing committed):\n%s", code, out)
	} else {
		t.Logf("verify of the crash state: %s", strings.TrimSpace(out))
	}

	// Restart on the same data: the staging area is swept, the zip is fetched
	// afresh and served whole.
	stall.slow.Store(false)
	m = startMirror(t, data, up.URL(), hy)
	if left := dirFiles(t, tmp); len(left) != 0 {
		t.Errorf("DATA/tmp after a restart: %v; want it empty", left)
	}
	before := zipFetches(reg)
	m.mustGet(bigZipPath, zip, "MISS")
	if n := zipFetches(reg) - before; n != 1 {
		t.Errorf("the interrupted zip was downloaded %d times after the restart; want 1 (fetched afresh)", n)
	}
	m.mustGet(bigZipPath, zip, "HIT")
	m.stop()
	mustVerify(t, data)
	if e := readIndex(t, data)[bigZipKey]; e.Digest != sum(zip) || e.Size != int64(len(zip)) {
		t.Errorf("index entry of the zip: %+v; want digest %s and size %d", e, sum(zip), len(zip))
	}
}

// TestKillDuringSync kills `regmirror sync` (SIGKILL) half-way through a slow
// Hydrilla repository of 200 mappings, then syncs again: the second run
// completes, fetches exactly what the first did not store (each object once),
// verify finds nothing wrong, and every item and file is then served by the
// mirror with the upstream stopped.
func TestKillDuringSync(t *testing.T) {
	repo := hydrillatest.Generate(200, 4)
	repo.SetDelay(50 * time.Millisecond)
	up := newGate(t, repo.Handler())
	data := t.TempDir()
	syncArgs := []string{"sync", "--data", data, "--hydrilla-upstream", up.URL(), "--jobs", "8",
		"--upstream-timeout", "30s", "--upstream-header-timeout", "10s", "--log-level", "info"}

	refs := repo.Refs()
	files := repo.Files()
	all := map[string]bool{} // every object's upstream path
	for _, ref := range refs {
		all["/"+ref.String()] = true
	}
	for _, f := range files {
		all["/file/sha256/"+f] = true
	}
	objects := func(reqs []string) []string {
		var out []string
		for _, r := range reqs {
			if r != "/list_all" {
				out = append(out, r)
			}
		}
		return out
	}

	// Run 1, killed once about half the objects were asked for: the items are
	// all in and the files are half-way.
	start := time.Now()
	p := startProc(t, "sync#1", syncArgs...)
	killAt := len(refs) + (len(files) / 3)
	waitFor(t, 90*time.Second, fmt.Sprintf("%d upstream requests of sync #1", killAt), func() bool {
		if p.exited() {
			t.Fatalf("sync #1 ended (%v) before it could be killed", p.state)
		}
		return len(repo.Requests()) >= killAt
	})
	p.kill()
	// Requests the dead process had sent may still be read by the server for a
	// moment; let the log settle before splitting it between the runs.
	settle(repo)
	run1 := repo.Requests()
	repo.Reset()
	t.Logf("sync #1 killed after %s and %d upstream requests (%d items, %d files in the repository)",
		time.Since(start).Round(time.Millisecond), len(run1), len(refs), len(files))

	// The crash state.
	snapshot := copyDir(t, data)
	stored := map[string]bool{}
	for k, e := range readIndex(t, snapshot) {
		switch p, _ := engine.Parse(k); p.Kind {
		case engine.KindHydrillaItem:
			stored["/"+p.Sub+"/"+p.ID+"/"+p.Version] = true
		case engine.KindHydrillaFile:
			stored["/file/sha256/"+p.Rest] = true
		case engine.KindHydrillaSync:
			t.Errorf("a killed sync recorded a complete sync: %q %+v", k, e)
		}
	}
	inFlight := 0
	for _, r := range objects(run1) {
		if !stored[r] {
			inFlight++
		}
	}
	t.Logf("crash state: %d objects stored, %d asked for but not stored, staging files %v",
		len(stored), inFlight, dirFiles(t, filepath.Join(snapshot, "tmp")))
	checkCrashVerify(t, snapshot)

	// Run 2 completes and fetches only what is missing.
	start = time.Now()
	code, stdout, _ := runCmd(t, 3*time.Minute, syncArgs...)
	if code != 0 {
		t.Fatalf("sync #2 exited %d; want 0:\n%s", code, stdout)
	}
	t.Logf("sync #2 in %s: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(stdout))
	run2 := repo.Requests()
	if n := len(run2) - len(objects(run2)); n != 1 {
		t.Errorf("sync #2 read /list_all %d times; want 1", n)
	}
	seen := map[string]int{}
	var refetched, dup []string
	for _, r := range objects(run2) {
		seen[r]++
		if stored[r] {
			refetched = append(refetched, r)
		}
		if seen[r] == 2 {
			dup = append(dup, r)
		}
	}
	var missed []string
	for r := range all {
		if !stored[r] && seen[r] == 0 {
			missed = append(missed, r)
		}
	}
	sort.Strings(missed)
	if len(refetched) > 0 {
		t.Errorf("sync #2 fetched %d objects sync #1 had stored, e.g. %q", len(refetched), refetched[:min(5, len(refetched))])
	}
	if len(dup) > 0 {
		t.Errorf("sync #2 fetched %d objects more than once, e.g. %q", len(dup), dup[:min(5, len(dup))])
	}
	if len(missed) > 0 {
		t.Errorf("sync #2 never fetched %d objects sync #1 had not stored, e.g. %q", len(missed), missed[:min(5, len(missed))])
	}
	t.Logf("sync #2: %d object requests for %d objects missing after the crash (of %d)",
		len(objects(run2)), len(all)-len(stored), len(all))

	mustVerify(t, data)
	idx := readIndex(t, data)
	for r := range all {
		key := engine.Prefix(engine.KindHydrillaItem) + strings.TrimPrefix(r, "/")
		if strings.HasPrefix(r, "/file/sha256/") {
			key = string(engine.HydrillaFile(strings.TrimPrefix(r, "/file/sha256/")))
		}
		if e, ok := idx[key]; !ok || !e.Pinned {
			t.Errorf("after sync #2 the index has %q = %+v (present %v); want a pinned entry", key, e, ok)
			break
		}
	}

	// Everything answers from the mirror with the upstream stopped.
	up.srv.Close()
	m := startMirror(t, data, deadURL(t), up.URL())
	type job struct {
		path string
		want []byte
	}
	jobs := make(chan job)
	errs := make(chan string, len(all))
	done := make(chan struct{})
	for range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for j := range jobs {
				a, err := m.do(http.MethodGet, j.path)
				switch {
				case err != nil:
					errs <- fmt.Sprintf("GET %s: %v", j.path, err)
				case a.Status != http.StatusOK || string(a.Body) != string(j.want):
					errs <- fmt.Sprintf("GET %s: %s", j.path, a)
				case a.cache() != "HIT":
					errs <- fmt.Sprintf("GET %s: X-Cache %q; want HIT", j.path, a.cache())
				}
			}
		}()
	}
	start = time.Now()
	for _, ref := range refs {
		want, _ := repo.Item(ref)
		jobs <- job{"/" + ref.String(), want}
	}
	for _, f := range files {
		want, _ := repo.File(f)
		jobs <- job{"/file/sha256/" + f, want}
	}
	close(jobs)
	for range 8 {
		<-done
	}
	close(errs)
	n := 0
	for e := range errs {
		if n++; n <= 5 {
			t.Error(e)
		}
	}
	if n > 5 {
		t.Errorf("… and %d more", n-5)
	}
	t.Logf("served %d items and %d files with the upstream stopped in %s",
		len(refs), len(files), time.Since(start).Round(time.Millisecond))
	m.stop()
}

// checkCrashVerify runs verify on a copy of a crash state. What may be found
// there is a blob whose entry the crash prevented (a crash between the blob's
// rename and the index commit); anything else is a failure. Such orphans are
// logged as findings: TestOrphanBlobAfterCrash pins down what should happen
// to them.
func checkCrashVerify(t *testing.T, snapshot string) {
	t.Helper()
	code, out := verify(t, snapshot)
	if code == 0 {
		t.Logf("verify of the crash state: exit 0")
		return
	}
	var other []string
	orphans := 0
	for _, l := range verifyProblems(out) {
		if strings.HasPrefix(l, "blob ") && strings.HasSuffix(l, "no entry names it") {
			orphans++
			continue
		}
		other = append(other, l)
	}
	if len(other) > 0 || orphans == 0 {
		t.Errorf("verify of the crash state exited %d:\n%s", code, out)
		return
	}
	t.Logf("FINDING: verify of the crash state exited %d, reporting %d blob(s) no entry names "+
		"(the crash fell between a blob's rename and its index commit):\n%s", code, orphans, out)
}

// TestOrphanBlobAfterCrash builds, deterministically, the state a crash leaves
// between Commit (the blob renamed into DATA/blobs) and PutEntry (the index
// commit): a complete, correct blob that no entry names, plus a staging file.
// A restart must clean both up, so that verify afterwards exits 0: the blob
// is unreachable garbage that no cache accounting knows of.
func TestOrphanBlobAfterCrash(t *testing.T) {
	repo := hydrillatest.New()
	content := []byte("console.log('an orphan');\n")
	sha := repo.AddFile(content)
	other := repo.AddFile([]byte("console.log('stored properly');\n"))
	up := newGate(t, repo.Handler())
	data := t.TempDir()

	m := startMirror(t, data, deadURL(t), up.URL())
	m.mustGet("/file/sha256/"+other, mustFile(t, repo, other), "MISS")
	m.stop()
	mustVerify(t, data)

	// What the crash left.
	p := blobPath(data, sha)
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "tmp", "stage-123456"), content[:5], 0o600); err != nil {
		t.Fatal(err)
	}

	m = startMirror(t, data, deadURL(t), up.URL())
	if left := dirFiles(t, filepath.Join(data, "tmp")); len(left) != 0 {
		t.Errorf("DATA/tmp after a restart: %v; want it empty", left)
	}
	m.stop()
	code, out := verify(t, data)
	if code != 0 {
		t.Errorf("after a crash between a blob's commit and its entry's, and a restart, verify exits %d; want 0:\n%s"+
			"\n(the restart should remove blobs no entry names, as it removes staging files)", code, out)
	}
	if _, err := os.Stat(p); err == nil {
		t.Errorf("the orphan blob %s is still on disk after a restart", sha)
	}

	// Whatever became of the orphan, the file is served correctly.
	m = startMirror(t, data, deadURL(t), up.URL())
	m.mustGet("/file/sha256/"+sha, content, "MISS")
	m.stop()
	mustVerify(t, data)
}

func mustFile(t testing.TB, repo *hydrillatest.Repo, sha string) []byte {
	t.Helper()
	b, ok := repo.File(sha)
	if !ok {
		t.Fatalf("no file %s", sha)
	}
	return b
}

// settle waits until the repository's request log has not grown for 300ms.
func settle(repo *hydrillatest.Repo) {
	n, since := len(repo.Requests()), time.Now()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := len(repo.Requests()); m != n {
			n, since = m, time.Now()
		} else if time.Since(since) > 300*time.Millisecond {
			return
		}
	}
}

// TestKillGroupedSyncAtRandomPoints kills `regmirror sync` (SIGKILL) several
// times on one data directory, each time after a random number of upstream
// answers, so kills land while blobs are placed but their round is not yet
// committed, and while a round commits. After every kill the index names only
// whole blobs (verify may find blobs no entry names: the round in flight);
// a last sync then exits 0 and verify exits 0.
func TestKillGroupedSyncAtRandomPoints(t *testing.T) {
	repo := hydrillatest.Generate(40, 7)
	repo.SetDelay(2 * time.Millisecond)
	up := newGate(t, repo.Handler())
	data := t.TempDir()
	syncArgs := []string{"sync", "--data", data, "--hydrilla-upstream", up.URL(), "--jobs", "4", "--log-level", "warn"}
	total := 1 + len(repo.Refs()) + len(repo.Files())
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("%d objects; kill points from seed %d", total, seed)
	for run := 1; run <= 3; run++ {
		repo.Reset()
		killAt := 1 + rng.IntN(total)
		p := startProc(t, fmt.Sprintf("sync#%d", run), syncArgs...)
		waitFor(t, 60*time.Second, fmt.Sprintf("%d upstream requests of sync #%d", killAt, run), func() bool {
			return p.exited() || len(repo.Requests()) >= killAt
		})
		if p.exited() {
			t.Logf("sync #%d ended (%v) before %d requests: nothing left to fetch", run, p.state, killAt)
			continue
		}
		p.kill()
		settle(repo)
		t.Logf("sync #%d killed after %d upstream requests", run, len(repo.Requests()))
		checkCrashVerify(t, copyDir(t, data))
	}
	code, stdout, _ := runCmd(t, 2*time.Minute, syncArgs...)
	if code != 0 {
		t.Fatalf("the sync after the kills exited %d; want 0:\n%s", code, stdout)
	}
	mustVerify(t, data)
	idx := readIndex(t, data)
	for _, f := range repo.Files() {
		if e, ok := idx["hy/file/"+f]; !ok || !e.Pinned {
			t.Errorf("after the last sync the index has file %s = %+v (present %v); want a pinned entry", f, e, ok)
			break
		}
	}
}

// TestKillServeDuringMissBurst kills `regmirror serve` (SIGKILL) while 16
// clients ask it at once for files it does not hold, so that kills land while
// fills share their commit rounds (blobs placed, a round's fsyncs or index
// transaction under way). After every kill, verify finds no entry without its
// whole blob, and every file the mirror had answered is in the index: a fill
// answers only once its entry is durable. A last serve answers every file and
// verify exits 0.
func TestKillServeDuringMissBurst(t *testing.T) {
	repo := hydrillatest.Generate(60, 11)
	repo.SetDelay(time.Millisecond)
	up := newGate(t, repo.Handler())
	data := t.TempDir()
	files := repo.Files()
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("%d files; kill points from seed %d", len(files), seed)
	for run := 1; run <= 3; run++ {
		repo.Reset()
		killAt := 1 + rng.IntN(len(files))
		m := startMirror(t, data, deadURL(t), up.URL())
		order := slices.Clone(files)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		work := make(chan string)
		var (
			mu       sync.Mutex
			answered []string
			wg       sync.WaitGroup
		)
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for sha := range work {
					a, err := m.do(http.MethodGet, "/file/sha256/"+sha)
					if err != nil || a.Status != http.StatusOK {
						continue // the kill
					}
					if !bytes.Equal(a.Body, mustFile(t, repo, sha)) {
						t.Errorf("file %s: the mirror answered other bytes", sha)
						continue
					}
					mu.Lock()
					answered = append(answered, sha)
					mu.Unlock()
				}
			}()
		}
		go func() {
			defer close(work)
			for _, sha := range order {
				if m.exited() {
					return
				}
				work <- sha
			}
		}()
		finished := make(chan struct{})
		go func() { wg.Wait(); close(finished) }()
		// Files held since an earlier run are hits, so the burst may end
		// before the kill point.
		waitFor(t, 60*time.Second, fmt.Sprintf("%d upstream requests of serve #%d", killAt, run), func() bool {
			select {
			case <-finished:
				return true
			default:
				return len(repo.Requests()) >= killAt
			}
		})
		m.kill()
		<-finished
		t.Logf("serve #%d killed after %d upstream requests, %d files answered", run, len(repo.Requests()), len(answered))
		checkCrashVerify(t, copyDir(t, data))
		idx := readIndex(t, data)
		for _, sha := range answered {
			e, ok := idx["hy/file/"+sha]
			if !ok {
				t.Errorf("serve #%d answered file %s, but after the kill the index does not hold it", run, sha)
				continue
			}
			if fi, err := os.Stat(blobPath(data, e.Digest)); err != nil || fi.Size() != e.Size {
				t.Errorf("serve #%d: the entry of file %s names blob %s, which is not whole: %v", run, sha, e.Digest, err)
			}
		}
	}
	m := startMirror(t, data, deadURL(t), up.URL())
	for _, sha := range files {
		m.mustGet("/file/sha256/"+sha, mustFile(t, repo, sha))
	}
	m.stop()
	mustVerify(t, data)
}
