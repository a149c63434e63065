package e2e

import (
	"strings"
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
