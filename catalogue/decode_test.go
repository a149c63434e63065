package catalogue

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	gojson "github.com/goccy/go-json"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/pattern"
)

// decodeGeneral is what decodeMetas must agree with: every record through
// go-json, as the catalogue read them before it had a scanner of its own.
func decodeGeneral(batch []cache.MetaRecord) ([]string, []heldItem, error) {
	var keys []string
	var items []heldItem
	for _, r := range batch {
		var m liteMeta
		if err := gojson.Unmarshal(r.Meta, &m); err != nil {
			return nil, nil, err
		}
		if m.Identifier == "" {
			continue
		}
		keys = append(keys, string(r.Key))
		items = append(items, heldItem{meta: m, upstream: string(r.Upstream)})
	}
	return keys, items, nil
}

// checkDecode decodes batch both ways and fails on any difference: the items,
// their keys and upstreams, whether it fails, and the parsed patterns of the
// mappings (each that parses, in order, with its mapping).
func checkDecode(t *testing.T, batch []cache.MetaRecord) {
	t.Helper()
	wantKeys, want, wantErr := decodeGeneral(batch)
	lb, err := decodeMetas(batch, true)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("records %q: error %v, go-json's %v", metas(batch), err, wantErr)
	}
	if err != nil {
		return
	}
	if !slices.Equal(lb.keys, wantKeys) {
		t.Fatalf("keys %q, want %q", lb.keys, wantKeys)
	}
	if len(lb.items) != len(want) {
		t.Fatalf("records %q: %d items, want %d", metas(batch), len(lb.items), len(want))
	}
	var wantPatterns []string
	mappings := 0
	for i := range want {
		got, w := lb.items[i], want[i]
		// An empty list and none are one to the catalogue.
		if len(got.meta.Patterns) == 0 && len(w.meta.Patterns) == 0 {
			got.meta.Patterns, w.meta.Patterns = nil, nil
		}
		if !reflect.DeepEqual(got, w) {
			t.Fatalf("record %q:\n got %#v\nwant %#v", metas(batch), got, w)
		}
		if w.meta.Type == hydrilla.TypeMapping {
			for _, s := range w.meta.Patterns {
				if p, err := pattern.Parse(s); err == nil {
					wantPatterns = append(wantPatterns, fmt.Sprint(mappings, p))
				}
			}
			mappings++
		}
	}
	var gotPatterns []string
	for _, bp := range lb.parsed.list {
		gotPatterns = append(gotPatterns, fmt.Sprint(bp.mapping, bp.p))
	}
	if !slices.Equal(gotPatterns, wantPatterns) || len(lb.mappings) != mappings {
		t.Fatalf("parsed patterns %q of %d mappings, want %q of %d", gotPatterns, len(lb.mappings), wantPatterns, mappings)
	}
	lb.parsed.left.Store(1)
	lb.parsed.done()
}

func metas(batch []cache.MetaRecord) []string {
	var out []string
	for _, r := range batch {
		out = append(out, string(r.Meta))
	}
	return out
}

// tricky are strings the scanner must leave to go-json or read as it does:
// escapes, HTML characters (which encoding/json escapes), non-ASCII, invalid
// UTF-8, control characters.
var tricky = []string{"plain", "", "with \"quotes\"", `back\slash`, "<b>&amp;</b>", "żółw 🐢", "bad \xff utf8",
	"tab\there", "line\nbreak", "https://a.example/***", "http*://*.b.example.org/x/*", "not a pattern", "ftp://C.example:21/pub/"}

// TestDecodeMetasAsGoJSON decodes records as MetaOf writes them, of every
// sort of item, and hand-made records in shapes it does not write, both
// ways, batch by batch.
func TestDecodeMetasAsGoJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 9))
	pick := func(xs []string) string { return xs[r.IntN(len(xs))] }
	for range 300 {
		var batch []cache.MetaRecord
		for i := range 1 + r.IntN(40) {
			it := &hydrilla.Item{Type: []string{hydrilla.TypeMapping, hydrilla.TypeResource}[r.IntN(2)],
				Identifier: pick(tricky), LongName: pick(tricky), Revision: r.IntN(3)}
			for range r.IntN(4) {
				it.Version = append(it.Version, []int{0, 1, 7, 2023, hydrilla.MaxVersionNumber}[r.IntN(5)])
			}
			for range r.IntN(4) {
				it.Patterns = append(it.Patterns, pick(tricky))
			}
			for range r.IntN(3) {
				it.Files = append(it.Files, hydrilla.FileRef{SHA256: fmt.Sprintf("%064x", r.Uint64())})
			}
			batch = append(batch, cache.MetaRecord{Key: fmt.Appendf(nil, "hy/item/%s/%d", it.Type, i),
				Upstream: []byte(pick([]string{"https://u1.example", "https://u2.example"})), Meta: MetaOf(it)})
		}
		checkDecode(t, batch)
	}
	records := []string{
		`{"type":"mapping","identifier":"a","version":[1]}`,
		`{"identifier":"a","type":"mapping","patterns":["https://a.example/"],"version":[1,0,0],"long_name":"A"}`,
		`{ "type": "mapping", "identifier": "a", "version": [1] }`,
		`{"type":"mapping","identifier":"a","version":[1],"extra":1}`,
		`{"type":"mapping","identifier":"a","identifier":"b","version":[1]}`,
		`{"Type":"mapping","identifier":"a","version":[1]}`,
		`{"type":"mapping","identifier":"a","version":[0]}`,
		`{"type":"mapping","identifier":"a","version":[01]}`,
		`{"type":"mapping","identifier":"a","version":[]}`,
		`{"type":"mapping","identifier":"a","version":[1.5]}`,
		`{"type":"mapping","identifier":"a","version":[9007199254740992]}`,
		`{"type":"mapping","identifier":"a","version":[1],"revision":-2}`,
		`{"type":"mapping","identifier":"a","version":[1],"revision":1e2}`,
		`{"type":"mapping","identifier":"a","version":[1],"patterns":null}`,
		`{"type":"mapping","identifier":"a","version":[1],"patterns":[]}`,
		`{"type":"mapping","identifier":"a","version":[1],"files":["x",1]}`,
		`{"type":"mapping","identifier":"a\u0062","version":[1]}`,
		`{"type":"mapping","identifier":"","version":[1]}`,
		`{"type":"resource","identifier":"r","version":[2,1],"revision":3,"files":["ab","cd"]}`,
		`{}`, `{"type":"mapping"`, `[]`, ``, `{"type":"mapping","identifier":"a","version":[1]}x`,
	}
	// An escape in the last bytes of a record, whatever its length.
	for n := range 9 {
		records = append(records, fmt.Sprintf(`{"version":[1],"type":"mapping","identifier":"%s\\"}`, strings.Repeat("a", n)))
	}
	for _, meta := range records {
		checkDecode(t, []cache.MetaRecord{
			{Key: []byte("k0"), Upstream: []byte("u"), Meta: []byte(`{"type":"mapping","identifier":"before","version":[1],"patterns":["https://x.example/"]}`)},
			{Key: []byte("k1"), Upstream: []byte("u"), Meta: []byte(meta)},
			{Key: []byte("k2"), Upstream: []byte("v"), Meta: []byte(`{"type":"mapping","identifier":"after","version":[2],"patterns":["https://y.example/*"]}`)},
		})
	}
}

// FuzzDecodeMeta checks that a record, whatever it holds, decodes as go-json
// decodes it, between two ordinary records of the same batch.
func FuzzDecodeMeta(f *testing.F) {
	for _, s := range []string{
		`{"type":"mapping","identifier":"a","long_name":"A","version":[1,2],"revision":1,"patterns":["https://a.example/***"],"files":["00"]}`,
		`{"type":"resource","identifier":"r","version":[2,1],"revision":3}`,
		`{"identifier":"a\"b","version":[1]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, meta []byte) {
		checkDecode(t, []cache.MetaRecord{
			{Key: []byte("k0"), Upstream: []byte("u"), Meta: []byte(`{"type":"mapping","identifier":"before","version":[1],"patterns":["https://x.example/"]}`)},
			{Key: []byte("k1"), Upstream: []byte("u"), Meta: meta},
			{Key: []byte("k2"), Upstream: []byte("u"), Meta: []byte(`{"type":"mapping","identifier":"after","version":[2],"patterns":["https://y.example/*"]}`)},
		})
	})
}
