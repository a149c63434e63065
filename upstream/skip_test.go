package upstream

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A skipped upstream's error names it, its failures and its last error; each
// failure is one WARN line, becoming skipped one more, coming back one more.
func TestSkippedUpstreamNamesItsLastFailure(t *testing.T) {
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	p, err := NewPool("refpack", []string{"http://127.0.0.1:1"}, Options{MaxFails: 2, FailTimeout: time.Minute, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if _, err := p.Get(ctx, "/packages/a?version=1", nil); err == nil || errors.Is(err, ErrNoUpstream) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	_, err = p.Get(ctx, "/packages/a?version=1", nil)
	var se *SkippedError
	if !errors.As(err, &se) || !errors.Is(err, ErrNoUpstream) {
		t.Fatalf("third request: %v; want a SkippedError that is ErrNoUpstream", err)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "upstream http://127.0.0.1:1 skipped for 60 s after 2 failures: ") ||
		!strings.Contains(msg, "connection refused") || strings.Count(msg, "http://127.0.0.1:1") > 2 {
		t.Errorf("message %q", msg)
	}
	if l := logs.String(); strings.Count(l, `level=WARN msg="upstream request failed"`) != 2 ||
		strings.Count(l, `level=WARN msg="upstream skipped"`) != 1 || !strings.Contains(l, "route=/packages/a ") {
		t.Errorf("log:\n%s", l)
	}

	// Back: a fail-timeout that is already over, and an upstream that answers.
	var fail atomic.Bool
	fail.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if fail.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	logs = lockedBuffer{}
	p, err = NewPool("hydrilla", []string{srv.URL}, Options{MaxFails: 2, FailTimeout: time.Nanosecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	p.Get(ctx, "/list_all", nil)
	p.Get(ctx, "/list_all", nil)
	fail.Store(false)
	if resp, err := p.Get(ctx, "/list_all", nil); err != nil {
		t.Fatalf("after the fail-timeout: %v", err)
	} else {
		resp.Body.Close()
	}
	if l := logs.String(); !strings.Contains(l, `msg="upstream is answering again"`) || !strings.Contains(l, "answered 500") {
		t.Errorf("log:\n%s", l)
	}
}
