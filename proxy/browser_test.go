package proxy

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/regmirror/regmirror/config"
	"github.com/regmirror/regmirror/refpack/registrytest"
	"github.com/regmirror/regmirror/status"
)

// chromiumPath finds Debian's chromium. Without it the browser test skips,
// except in CI (CI set), where .ci/run installs it and its absence is a failure.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "chromium"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed: CI must install Debian's chromium package (apt-get install -y chromium)")
	}
	t.Skip("chromium is not installed (apt-get install -y chromium); the status page's browser test is skipped")
	return ""
}

// TestStatusPageInBrowser loads the status page in headless Chromium with
// JavaScript off, one upstream up and one down, and checks what a person
// sees. It saves a screenshot in its temp dir, and copies it to
// $REGMIRROR_SCREENSHOT_DIR when that is set.
func TestStatusPageInBrowser(t *testing.T) {
	chrome := chromiumPath(t)

	reg := registrytest.New()
	reg.AddPackage("vendor", "country-codes", "1.2.0")
	up := reg.Start(t).URL
	down := closedURL(t)
	s := newStatusServer(t, []string{up}, []string{down + "/api_v2"}, func(c *config.Config) {
		c.MaxFails = 1
		c.FailTimeout = 10 * time.Minute
	})
	// Real traffic: a miss then a hit from the RefPack upstream; the Hydrilla
	// upstream refuses the connection and is skipped.
	for range 2 {
		if resp, body := fetch(t, http.MethodGet, s.URL+"/packages/vendor/country-codes/meta?version=1.2.0"); resp.StatusCode != http.StatusOK {
			t.Fatalf("meta: %d %s", resp.StatusCode, body)
		}
	}
	if resp, _ := fetch(t, http.MethodGet, s.URL+"/resource/helloapple.json"); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("an item from a closed upstream: %d", resp.StatusCode)
	}
	s.RecordSync(&status.SyncRun{API: "refpack", Upstream: up, Started: time.Now().Add(-90 * time.Second),
		Ended: time.Now().Add(-80 * time.Second), Packages: 1, Items: 1, Files: 5, Bytes: 18 << 10})
	s.RecordSync(&status.SyncRun{API: "hydrilla", Upstream: down + "/api_v2", Started: time.Now().Add(-30 * time.Second),
		Ended: time.Now().Add(-30 * time.Second), Err: errors.New("read /list_all: connection refused")})

	chromeOut := &lockedWriter{w: &bytes.Buffer{}}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chrome),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(chromeOut),
	)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	defer func() {
		if t.Failed() {
			t.Logf("chromium's output:\n%s", chromeOut.String())
		}
	}()
	if err := chromedp.Do(ctx); err != nil { // starts the browser, with no timeout
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancelT := context.WithTimeout(ctx, time.Minute)
	defer cancelT()

	var mu sync.Mutex
	var requested []string
	if err := chromedp.Listen(ctx, func(ev any) {
		if ev, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			requested = append(requested, ev.Request.URL)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatalf("turn JavaScript off: %v", err)
	}
	resp, err := chromedp.RunResponse(ctx, chromedp.Navigate(s.URL+"/"))
	if err != nil {
		t.Fatalf("load the status page: %v", err)
	}
	if resp.Status != http.StatusOK {
		t.Fatalf("status page: %d", resp.Status)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#upstreams table"))); err != nil {
		t.Fatal(err)
	}

	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.Join(strings.Fields(s), " ")
	}
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil || title != "regmirror status" {
		t.Errorf("title %q, %v", title, err)
	}
	if h := text("header"); !strings.Contains(h, "version v1.2.3-test") || !strings.Contains(h, "up for") {
		t.Errorf("header reads %q", h)
	}

	// Each upstream's row, as rendered: API, URL, state and latency.
	upRow := text(`tr.upstream[data-api="refpack"]`)
	for _, want := range []string{"refpack", up, "up", " ms", "none"} {
		if !strings.Contains(upRow, want) {
			t.Errorf("the up upstream's row reads %q: no %q", upRow, want)
		}
	}
	downRow := text(`tr.upstream[data-api="hydrilla"]`)
	for _, want := range []string{"hydrilla", down + "/api_v2", "skipped until ", "1 failure in a row; retried in ", "connection refused", "UTC"} {
		if !strings.Contains(downRow, want) {
			t.Errorf("the down upstream's row reads %q: no %q", downRow, want)
		}
	}
	if state := text(`tr.upstream[data-api="refpack"] .state`); state != "up" {
		t.Errorf("the up upstream's state reads %q", state)
	}
	if state := text(`tr.upstream[data-api="hydrilla"] .state`); !strings.HasPrefix(state, "skipped until ") {
		t.Errorf("the down upstream's state reads %q", state)
	}
	// The two states do not look alike.
	if a, b := background(t, ctx, `tr.upstream[data-api="refpack"] .state`), background(t, ctx, `tr.upstream[data-api="hydrilla"] .state`); a == b || a == "" {
		t.Errorf("up and skipped badges have the same background %q", a)
	}

	if r := text("#requests-since-start"); !strings.HasPrefix(r, "since start") || !strings.Contains(r, "%") {
		t.Errorf("requests since start read %q", r)
	}
	if r := text("#requests-last-5m"); !strings.HasPrefix(r, "last 5 minutes") {
		t.Errorf("requests of the last 5 minutes read %q", r)
	}
	if c := text(`tr.tier[data-tier="disk"]`); !strings.Contains(c, "disk") || !strings.Contains(c, "1.0 GiB") {
		t.Errorf("disk tier reads %q", c)
	}
	if sy := text(`tr.sync[data-api="refpack"]`); !strings.Contains(sy, "ok") || !strings.Contains(sy, "1 package, 1 version, 5 documents") {
		t.Errorf("refpack sync reads %q", sy)
	}
	if sy := text(`tr.sync[data-api="hydrilla"]`); !strings.Contains(sy, "failed") {
		t.Errorf("hydrilla sync reads %q", sy)
	}
	if e := text("#errors"); !strings.Contains(e, "connection refused") {
		t.Errorf("recent errors read %q", e)
	}

	// The page needs nothing but itself.
	mu.Lock()
	for _, u := range requested {
		if u != s.URL+"/" {
			t.Errorf("the page made the browser fetch %s", u)
		}
	}
	mu.Unlock()

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := filepath.Join(t.TempDir(), "status.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))
	if dir := os.Getenv("REGMIRROR_SCREENSHOT_DIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "status.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot copied to %s", filepath.Join(dir, "status.png"))
	}
}

// background is the computed background colour of the first element sel finds.
func background(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	props, err := chromedp.Run(ctx, chromedp.ComputedStyle(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("style of %s: %v", sel, err)
	}
	for _, p := range props {
		if p.Name == "background-color" {
			return p.Value
		}
	}
	return ""
}

// lockedWriter lets chromium's output be read while the browser still writes.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
