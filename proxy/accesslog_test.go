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

// The path goes with its query, in the form slog would give path+"?"+query.
func TestAccessLineCarriesTheQuery(t *testing.T) {
	for _, tt := range []struct{ path, query string }{
		{"/packages/a/meta", "version=1.2.0"}, {"/p a\"th", "q=\"x\"\n&y=\xff"}, {"/list_all", ""},
	} {
		full := tt.path
		if tt.query != "" {
			full += "?" + tt.query
		}
		var text, js, want bytes.Buffer
		NewAccessLog(&text, false).write(&accessLine{id: "i", method: "GET", path: tt.path, query: tt.query})
		NewAccessLog(&js, true).write(&accessLine{id: "i", method: "GET", path: tt.path, query: tt.query})
		slog.New(slog.NewTextHandler(&want, nil)).Info("request", "path", full)
		wantPath := want.String()[strings.Index(want.String(), "path="):]
		if !strings.Contains(text.String(), strings.TrimSuffix(wantPath, "\n")+" ") {
			t.Errorf("text line %q, want %q", text.String(), wantPath)
		}
		var m map[string]any
		if err := json.Unmarshal(js.Bytes(), &m); err != nil || m["path"] != strings.ToValidUTF8(full, "\ufffd") {
			t.Errorf("JSON line %q: path %q, want %q (%v)", js.String(), m["path"], full, err)
		}
	}
}
