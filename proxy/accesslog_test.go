package proxy

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestAccessLineText(t *testing.T) {
	var buf bytes.Buffer
	l := NewAccessLog(&buf, false)
	l.write(&accessLine{id: "ab-1", method: "GET", path: "/packages/a b\nlevel=ERROR", status: 200, bytes: 12,
		duration: 1500 * time.Microsecond, cache: "HIT", upstream: ""})
	line := buf.String()
	if strings.Count(line, "\n") != 1 {
		t.Fatalf("a hostile path split the line: %q", line)
	}
	for _, want := range []string{"level=INFO msg=request id=ab-1 method=GET", `path="/packages/a b\nlevel=ERROR"`,
		"status=200 bytes=12 duration=1.5ms cache=HIT upstream=\"\""} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
}

func TestAccessLineJSON(t *testing.T) {
	var buf bytes.Buffer
	l := NewAccessLog(&buf, true)
	l.write(&accessLine{id: "x", method: "GET", path: "/q\"\x00\xff", status: 404, bytes: 3, duration: time.Second,
		cache: "MISS", upstream: "http://u"})
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("not JSON: %q: %v", buf.String(), err)
	}
	if m["msg"] != "request" || m["status"] != float64(404) || m["path"] != "/q\"\x00\ufffd" || m["upstream"] != "http://u" ||
		m["level"] != slog.LevelInfo.String() {
		t.Errorf("fields: %v", m)
	}
}
