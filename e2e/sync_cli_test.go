package e2e

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regmirror/regmirror/hydrilla/hydrillatest"
	"github.com/regmirror/regmirror/refpack/registrytest"
)

// The sync command as an operator sees it: plain progress lines when not on a
// terminal, a summary, and a non-zero exit listing what failed.
func TestSyncCommandSummaryAndFailures(t *testing.T) {
	repo := hydrillatest.Generate(10, 21)
	repo.SetPrefix("/api_v2")
	repo.Start(t)
	bad := repo.Files()[0]
	repo.CorruptFile(bad)
	data := t.TempDir()
	code, stdout, all := runCmd(t, 2*time.Minute, "sync", "--data", data, "--hydrilla-upstream", repo.BaseURL(), "--jobs", "2")
	if code == 0 {
		t.Fatalf("sync with a corrupt file exited 0:\n%s", all)
	}
	for _, want := range []string{"hydrilla " + repo.BaseURL(), "items and", "files fetched", "1 failed", "failed:", bad} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(all, "sync progress") {
		t.Errorf("no plain progress lines off a terminal:\n%s", tail(all, 20))
	}
	// A sync of Hydrilla alone never contacts a RefPack upstream (the default one
	// would be unreachable here and fail the run).
	if strings.Contains(stdout, "refpack") {
		t.Errorf("a Hydrilla sync touched RefPack:\n%s", stdout)
	}
	repo.CorruptFile(bad, false)
	repo.Reset()
	code, stdout, all = runCmd(t, 2*time.Minute, "sync", "--data", data, "--hydrilla-upstream", repo.BaseURL())
	if code != 0 {
		t.Fatalf("second sync exited %d:\n%s", code, all)
	}
	mustContain := func(s, sub string) {
		if !strings.Contains(s, sub) {
			t.Errorf("%q lacks %q", s, sub)
		}
	}
	mustContain(stdout, "0 items and 1 files fetched")
	if n := repo.Count("/file/"); n != 1 {
		t.Errorf("second sync fetched %d files, want only the one that failed", n)
	}
}

func TestSyncRefPackOnlyNeverContactsHydrilla(t *testing.T) {
	reg := registrytest.New()
	reg.AddPackage("vendor", "country-codes", "1.0.0")
	srv := reg.Start(t)
	data := t.TempDir()
	code, stdout, all := runCmd(t, time.Minute, "sync", "--data", data, "--refpack-upstream", srv.URL)
	if code != 0 {
		t.Fatalf("sync exited %d:\n%s", code, all)
	}
	if !strings.Contains(stdout, "refpack "+srv.URL+": 1 packages, 1 versions") || strings.Contains(stdout, "hydrilla") {
		t.Errorf("summary:\n%s", stdout)
	}
}

// --jobs outside 1..256 is refused before anything is opened or fetched: 0
// and negative values used to mean 4, and a huge one a goroutine, a fill and
// a staged file for every object at once (out of memory on a large
// repository).
func TestSyncRefusesJobsOutOfRange(t *testing.T) {
	repo := hydrillatest.Generate(3, 2)
	repo.SetPrefix("/api_v2")
	repo.Start(t)
	for _, jobs := range []string{"0", "-3", "257", "100000"} {
		data := t.TempDir()
		code, _, all := runCmd(t, time.Minute, "sync", "--data", data, "--hydrilla-upstream", repo.BaseURL(), "--jobs", jobs)
		if code == 0 || !strings.Contains(all, "--jobs") || !strings.Contains(all, jobs) {
			t.Errorf("sync --jobs %s exited %d; want 1 naming --jobs and the value:\n%s", jobs, code, tail(all, 5))
		}
	}
	if n := len(repo.Requests()); n != 0 {
		t.Errorf("refused syncs made %d upstream requests: %v", n, repo.Requests())
	}
}

// --jobs is the number of downloads in flight at the upstream, also above
// serve's --upstream-max-conns (32 by default), which sync does not take: the
// upstream's cap used to hold a sync at 32 whatever --jobs said.
func TestSyncJobsAboveTheUpstreamCap(t *testing.T) {
	repo := hydrillatest.Generate(40, 3)
	const jobs = 40
	var inFlight, most atomic.Int64
	reached := make(chan struct{})
	var once sync.Once
	h := repo.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		if n >= jobs {
			once.Do(func() { close(reached) })
		}
		if r.URL.Path != "/list_all" {
			// Held until --jobs requests are here at once (or a while has
			// passed: then the test fails, but ends).
			select {
			case <-reached:
			case <-time.After(500 * time.Millisecond):
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	code, _, all := runCmd(t, 5*time.Minute, "sync", "--data", t.TempDir(), "--hydrilla-upstream", srv.URL, "--jobs", strconv.Itoa(jobs))
	if code != 0 {
		t.Fatalf("sync exited %d:\n%s", code, tail(all, 10))
	}
	if n := most.Load(); n < jobs {
		t.Errorf("at most %d requests at the upstream at once with --jobs %d", n, jobs)
	}
}
