package hydrilla

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// listReal is the real 3.x server's output shape: Python json.dumps
// separators, make_ref key order, revision on resources only.
const listReal = `{"$schema": "https://hydrilla.koszko.org/schemas/api_package_list-2.schema.json", "resources": [{"version": [2021, 11, 10], "identifier": "helloapple", "long_name": "Hello Apple", "revision": 1}, {"version": [1], "identifier": "hello-message", "long_name": "Hello Message", "revision": 2, "extra": {"kept": true}}], "mappings": [{"version": [2021, 11, 10], "identifier": "helloapple", "long_name": "Hello Apple"}], "generated_by": {"name": "hydrilla.server", "version": "3.0"}}`

func TestParseList(t *testing.T) {
	l, err := ParseList([]byte(listReal))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Resources) != 2 || len(l.Mappings) != 1 || len(l.Skipped) != 0 {
		t.Fatalf("got %+v", l)
	}
	r := l.Resources[0]
	if r.Identifier != "helloapple" || r.LongName != "Hello Apple" || r.Version.String() != "2021.11.10" ||
		r.Revision == nil || *r.Revision != 1 {
		t.Errorf("resource 0: %+v", r)
	}
	if l.Mappings[0].Revision != nil {
		t.Errorf("mapping has revision")
	}
	if l.GeneratedBy == nil || *l.GeneratedBy != (GeneratedBy{"hydrilla.server", "3.0"}) {
		t.Errorf("generated_by %+v", l.GeneratedBy)
	}
	refs := l.Refs()
	want := []string{"resource/helloapple/2021.11.10", "resource/hello-message/1", "mapping/helloapple/2021.11.10"}
	if len(refs) != len(want) {
		t.Fatalf("refs %v", refs)
	}
	for i := range want {
		if refs[i].String() != want[i] {
			t.Errorf("ref %d = %s, want %s", i, refs[i], want[i])
		}
	}
}

func TestParseListVariants(t *testing.T) {
	tests := []struct {
		name               string
		body               string
		res, maps, skipped int
		wantErr            bool
	}{
		{"empty object", `{}`, 0, 0, 0, false},
		{"no schema", `{"resources": [{"identifier": "a", "version": [1]}]}`, 1, 0, 0, false},
		{"null lists", `{"resources": null, "mappings": null}`, 0, 0, 0, false},
		{"bad entries skipped", `{"resources": [{"identifier": "../a", "version": [1]}, {"identifier": "b", "version": [0]}, {"identifier": "c"}, 7, {"identifier": "d", "version": [1, 0]}]}`, 1, 0, 4, false},
		{"schema list-1", `{"$schema": "https://hydrilla.koszko.org/schemas/api_package_list-1.schema.json", "mappings": [{"identifier": "a", "version": [1]}]}`, 0, 1, 0, false},
		{"wrong schema", `{"$schema": "https://hydrilla.koszko.org/schemas/api_query_result-1.schema.json"}`, 0, 0, 0, true},
		{"schema not a string", `{"$schema": 2}`, 0, 0, 0, true},
		{"resources not array", `{"resources": {}}`, 0, 0, 0, true},
		{"array", `[]`, 0, 0, 0, true},
		{"not JSON", `<html>`, 0, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ParseList([]byte(tt.body))
			if tt.wantErr {
				if !errors.Is(err, ErrBadList) {
					t.Fatalf("got %v, want ErrBadList", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(l.Resources) != tt.res || len(l.Mappings) != tt.maps || len(l.Skipped) != tt.skipped {
				t.Errorf("got %d resources, %d mappings, skipped %v", len(l.Resources), len(l.Mappings), l.Skipped)
			}
		})
	}
}

func mustList(t *testing.T, body string) *List {
	t.Helper()
	l, err := ParseList([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestMergeLists(t *testing.T) {
	a := mustList(t, listReal)
	b := mustList(t, `{"resources": [
		{"version": [1, 0], "identifier": "hello-message", "long_name": "From B", "revision": 9},
		{"version": [0, 5], "identifier": "aaa", "long_name": "A", "revision": 1},
		{"version": [2021, 11, 10], "identifier": "zzz", "long_name": "Z", "revision": 1}],
		"mappings": [{"version": [3], "identifier": "helloapple", "long_name": "Newer"}]}`)

	got := MergeListsBy(GeneratedBy{"test", "1"}, a, nil, b)
	want := `{"$schema":"https://hydrilla.koszko.org/schemas/api_package_list-2.schema.json",` +
		`"resources":[{"version":[0,5],"identifier":"aaa","long_name":"A","revision":1},` +
		`{"version":[1],"identifier":"hello-message","long_name":"Hello Message","revision":2,"extra":{"kept":true}},` +
		`{"version":[2021,11,10],"identifier":"helloapple","long_name":"Hello Apple","revision":1},` +
		`{"version":[2021,11,10],"identifier":"zzz","long_name":"Z","revision":1}],` +
		`"mappings":[{"version":[3],"identifier":"helloapple","long_name":"Newer"},` +
		`{"version":[2021,11,10],"identifier":"helloapple","long_name":"Hello Apple"}],` +
		`"generated_by":{"name":"test","version":"1"}}`
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// Order of upstream answers does not change the output except for who wins.
	if again := MergeListsBy(GeneratedBy{"test", "1"}, a, b); string(again) != want {
		t.Errorf("not deterministic:\n%s", again)
	}
	// The merged document is itself a valid list.
	m, err := ParseList(got)
	if err != nil || len(m.Resources) != 4 || len(m.Mappings) != 2 {
		t.Errorf("reparse: %v %+v", err, m)
	}
	// Nothing merged is still a well-formed list with empty arrays.
	empty := MergeLists()
	var doc map[string]any
	if err := json.Unmarshal(empty, &doc); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(doc["resources"], []any{}) || !reflect.DeepEqual(doc["mappings"], []any{}) {
		t.Errorf("empty merge: %s", empty)
	}
	if g := doc["generated_by"].(map[string]any); g["name"] != Mirror.Name {
		t.Errorf("generated_by %v", g)
	}
}

func TestListEntryMarshalWithoutRaw(t *testing.T) {
	rev := 3
	b, err := json.Marshal(ListEntry{Identifier: "x", LongName: "X", Version: Version{1, 2}, Revision: &rev})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"identifier":"x","long_name":"X","version":[1,2],"revision":3}`; string(b) != want {
		t.Errorf("got %s", b)
	}
}

func TestQueryAnswer(t *testing.T) {
	got := QueryAnswerBy(GeneratedBy{"hydrilla.server", "3.0"}, []QueryMapping{
		{Identifier: "b", LongName: "B", Version: Version{2}},
		{Identifier: "a", LongName: "A \"quoted\"", Version: Version{2021, 11, 10}},
	})
	want := `{"$schema":"https://hydrilla.koszko.org/schemas/api_query_result-1.schema.json",` +
		`"mappings":[{"identifier":"b","long_name":"B","version":[2]},{"identifier":"a","long_name":"A \"quoted\"","version":[2021,11,10]}],` +
		`"generated_by":{"name":"hydrilla.server","version":"3.0"}}`
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if empty := QueryAnswer(nil); !json.Valid(empty) || !bytes.Contains(empty, []byte(`"mappings":[]`)) {
		t.Errorf("empty answer %s", empty)
	}
}
