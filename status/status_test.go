package status

import (
	"testing"
	"time"

	"github.com/regmirror/regmirror/upstream"
)

func TestUpstreamStates(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	errAt := now.Add(-time.Minute)
	for _, c := range []struct {
		h                   upstream.Health
		offline             bool
		state, text, detail string
	}{
		{upstream.Health{}, false, "untried", "no request yet", ""},
		{upstream.Health{}, true, "offline", "offline", "offline mode: never contacted"},
		{upstream.Health{Up: true, Latency: 20 * time.Millisecond}, false, "up", "up", ""},
		{upstream.Health{Up: true, Latency: time.Millisecond, LastError: "old", LastErrAt: errAt}, false, "up", "up", ""},
		{upstream.Health{Fails: 2, LastError: "answered 503", LastErrAt: errAt}, false, "failing", "failing", "2 failures in a row"},
		{upstream.Health{Fails: 3, SkipUntil: now.Add(25 * time.Second), LastErrAt: errAt}, false, "skipped", "skipped until 12:00:25 UTC", "3 failures in a row; retried in 25s"},
		{upstream.Health{Fails: 3, SkipUntil: now.Add(-time.Second), LastErrAt: errAt}, false, "failing", "failing", "3 failures in a row"},
	} {
		c.h.API, c.h.URL = "hydrilla", "https://hydrilla.example/api_v2"
		got := upstreamStatusOf(c.h, c.offline, now)
		if got.State != c.state || got.StateText != c.text || got.StateDetail != c.detail {
			t.Errorf("%+v: state %q %q %q, want %q %q %q", c.h, got.State, got.StateText, got.StateDetail, c.state, c.text, c.detail)
		}
	}
}

func TestFmtDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		250 * time.Millisecond:                "250ms",
		12 * time.Second:                      "12s",
		4*time.Minute + 10*time.Second:        "4m 10s",
		2*time.Hour + 5*time.Minute:           "2h 5m",
		3*24*time.Hour + 4*time.Hour + 59e9:   "3d 4h",
		59*time.Second + 600*time.Millisecond: "1m 0s",
	} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
