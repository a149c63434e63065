package cache

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestEntryRecordIsEncodingJSON: the index records entries in the bytes
// encoding/json makes of them, whatever the strings hold (HTML characters,
// control characters, line separators, invalid UTF-8), the time zone, and
// the layout of a Meta (compacted).
func TestEntryRecordIsEncodingJSON(t *testing.T) {
	var odd strings.Builder
	for r := rune(0); r < 0x2100; r += 7 {
		odd.WriteRune(r)
	}
	odd.WriteString("\u2028\u2029<>&\\\"\xff\xfe\xc3")
	s := odd.String()
	es := []*Entry{
		{},
		{Key: "hydrilla/file/ab", Digest: strings.Repeat("ab", 32), Size: 1 << 40, Status: 200, Class: Immutable,
			Header:    http.Header{"Content-Type": {"text/plain; charset=utf-8"}, "Content-Disposition": {s, "second"}, s: {s}},
			FetchedAt: time.Date(2026, 12, 3, 14, 5, 6, 789, time.FixedZone("X", -5*3600-1800)),
			ETag:      `W/"` + s + `"`, LastModified: s, Upstream: "http://127.0.0.1:1/a?b&c", Pinned: true, Hosted: true,
			Meta: json.RawMessage("{ \"type\" : \"mapping\",\n\t\"patterns\": [\"https://a.example/***\" , \"<&>\"], \"n\": 1.50e3 }")},
		{Key: s, Status: 404, Class: Negative, Header: http.Header{}, FetchedAt: time.Now(), Meta: json.RawMessage(`null`)},
	}
	for i, e := range es {
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := marshalEntry(e)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("entry %d recorded as\n%s\nwant\n%s", i, got, want)
		}
	}
}
