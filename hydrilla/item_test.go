package hydrilla

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

const (
	shaA = "04d9c4e50c1ce40f9b7b7699a9202f23eaee31069e288502284dbbea7a38e468"
	shaB = "92ae552d06ef22b48cef926861b6adec522ea08906e3dc5ae2705c1175b8fc48"
	shaC = "e4dbe4dba40e8bd159fb987b0f0cf2c243d7e6b9b9dc792e58dedf1fae38b0a1"
	shaD = "1111111111111111111111111111111111111111111111111111111111111111"
)

// resourceV1 is shaped like the real builder's output (hydrilla builder
// tests), with an unknown field added.
const resourceV1 = `{
    "$schema": "https://hydrilla.koszko.org/schemas/api_resource_description-1.schema.json",
    "source_name": "hello",
    "source_copyright": [{"file": "report.spdx", "sha256": "` + shaC + `"},
                         {"file": "LICENSES/CC0-1.0.txt", "sha256": "` + shaD + `"}],
    "type": "resource",
    "identifier": "helloapple",
    "long_name": "Hello Apple",
    "uuid": "a6754dcb-58d8-4b7a-a245-24fd7ad4cd68",
    "version": [2021, 11, 10],
    "revision": 1,
    "description": "greets an apple",
    "dependencies": [{"identifier": "hello-message"}],
    "scripts": [{"file": "hello.js", "sha256": "` + shaA + `"},
                {"file": "bye.js", "sha256": "` + shaB + `"}],
    "spurious_property": "some_value",
    "generated_by": {"name": "hydrilla.builder", "version": "3.0"}
}`

const mappingV2 = `{"$schema": "https://hydrilla.koszko.org/schemas/api_mapping_description-2.schema.json",
 "type": "mapping", "identifier": "helloapple", "long_name": "Hello Apple",
 "version": [2, 0], "description": "...",
 "source_copyright": [{"file": "LICENSES/CC0-1.0.txt", "sha256": "` + shaD + `"}],
 "payloads": {"https://hydrillabugs.koszko.org/***": {"identifier": "helloapple"},
              "http*://*.example.com/a/**": {"identifier": "helloapple"}},
 "permissions": {"cors_bypass": true},
 "required_mappings": [{"identifier": "other"}],
 "min_haketilo_version": [1], "max_haketilo_version": [2, 1]}`

func TestParseItem(t *testing.T) {
	it, err := ParseItem([]byte(resourceV1))
	if err != nil {
		t.Fatal(err)
	}
	if it.Type != TypeResource || it.Identifier != "helloapple" || it.LongName != "Hello Apple" ||
		it.Version.String() != "2021.11.10" || it.Revision != 1 || it.SchemaMajor != 1 {
		t.Errorf("got %+v", it)
	}
	wantFiles := []FileRef{{"hello.js", shaA}, {"bye.js", shaB}, {"report.spdx", shaC}, {"LICENSES/CC0-1.0.txt", shaD}}
	if !slices.Equal(it.Files, wantFiles) {
		t.Errorf("Files = %v, want %v", it.Files, wantFiles)
	}
	if it.Patterns != nil {
		t.Errorf("resource has patterns %v", it.Patterns)
	}

	it, err = ParseItem([]byte(mappingV2))
	if err != nil {
		t.Fatal(err)
	}
	if it.Type != TypeMapping || it.SchemaMajor != 2 || it.Version.String() != "2" || len(it.Version) != 1 {
		t.Errorf("got %+v", it)
	}
	if want := []string{"http*://*.example.com/a/**", "https://hydrillabugs.koszko.org/***"}; !slices.Equal(it.Patterns, want) {
		t.Errorf("Patterns = %v, want %v", it.Patterns, want)
	}
	if want := []FileRef{{"LICENSES/CC0-1.0.txt", shaD}}; !slices.Equal(it.Files, want) {
		t.Errorf("Files = %v, want %v", it.Files, want)
	}
	if got := it.Ref().String(); got != "mapping/helloapple/2" {
		t.Errorf("Ref = %q", got)
	}
}

func TestParseItemVariants(t *testing.T) {
	const schemaRes = `"$schema": "https://hydrilla.koszko.org/schemas/api_resource_description-1.schema.json"`
	const schemaMap = `"$schema": "https://hydrilla.koszko.org/schemas/api_mapping_description-1.schema.json"`
	tests := []struct {
		name    string
		body    string
		check   func(*testing.T, *Item)
		wantErr bool
	}{
		{name: "no type field: from $schema", body: `{` + schemaMap + `, "identifier": "m", "version": [1]}`,
			check: func(t *testing.T, it *Item) {
				if it.Type != TypeMapping {
					t.Errorf("type %q", it.Type)
				}
			}},
		{name: "bare schema name", body: `{"$schema": "api_resource_description-2.schema.json", "identifier": "r", "version": [1]}`,
			check: func(t *testing.T, it *Item) {
				if it.SchemaMajor != 2 || it.Type != TypeResource {
					t.Errorf("%+v", it)
				}
			}},
		{name: "schema minor", body: `{"$schema": "https://hydrilla.koszko.org/schemas/api_resource_description-1.0.1.schema.json", "identifier": "r", "version": [1]}`},
		{name: "unknown file list found", body: `{` + schemaRes + `, "identifier": "r", "version": [1], "future": {"x": [{"file": "f", "sha256": "` + shaA + `"}]}, "z": {"file": 1, "sha256": null}}`,
			check: func(t *testing.T, it *Item) {
				if !slices.Equal(it.Files, []FileRef{{"f", shaA}}) {
					t.Errorf("Files %v", it.Files)
				}
			}},
		{name: "duplicate sha once", body: `{` + schemaRes + `, "identifier": "r", "version": [1], "scripts": [{"file": "a", "sha256": "` + shaA + `"}], "source_copyright": [{"file": "b", "sha256": "` + shaA + `"}]}`,
			check: func(t *testing.T, it *Item) {
				if !slices.Equal(it.Files, []FileRef{{"a", shaA}}) {
					t.Errorf("Files %v", it.Files)
				}
			}},
		{name: "null lists", body: `{` + schemaRes + `, "identifier": "r", "version": [1], "scripts": null, "long_name": null}`},
		{name: "not an object", body: `[1]`, wantErr: true},
		{name: "not JSON", body: `{`, wantErr: true},
		{name: "null", body: `null`, wantErr: true},
		{name: "no schema", body: `{"type": "resource", "identifier": "r", "version": [1]}`, wantErr: true},
		{name: "schema major 3", body: `{"$schema": "https://hydrilla.koszko.org/schemas/api_resource_description-3.schema.json", "identifier": "r", "version": [1]}`, wantErr: true},
		{name: "schema of a list", body: `{"$schema": "https://hydrilla.koszko.org/schemas/api_package_list-2.schema.json", "identifier": "r", "version": [1]}`, wantErr: true},
		{name: "type disagrees with schema", body: `{` + schemaRes + `, "type": "mapping", "identifier": "r", "version": [1]}`, wantErr: true},
		{name: "type not a string", body: `{` + schemaRes + `, "type": 1, "identifier": "r", "version": [1]}`, wantErr: true},
		{name: "bad identifier", body: `{` + schemaRes + `, "identifier": "../r", "version": [1]}`, wantErr: true},
		{name: "missing identifier", body: `{` + schemaRes + `, "version": [1]}`, wantErr: true},
		{name: "missing version", body: `{` + schemaRes + `, "identifier": "r"}`, wantErr: true},
		{name: "string version", body: `{` + schemaRes + `, "identifier": "r", "version": "1.2"}`, wantErr: true},
		{name: "zero version", body: `{` + schemaRes + `, "identifier": "r", "version": [0, 0]}`, wantErr: true},
		{name: "negative revision", body: `{` + schemaRes + `, "identifier": "r", "version": [1], "revision": -1}`, wantErr: true},
		{name: "bad script sha", body: `{` + schemaRes + `, "identifier": "r", "version": [1], "scripts": [{"file": "a", "sha256": "../x"}]}`, wantErr: true},
		{name: "uppercase sha", body: `{` + schemaRes + `, "identifier": "r", "version": [1], "scripts": [{"file": "a", "sha256": "` + strings.ToUpper(shaA) + `"}]}`, wantErr: true},
		{name: "missing sha", body: `{` + schemaRes + `, "identifier": "r", "version": [1], "source_copyright": [{"file": "a"}]}`, wantErr: true},
		{name: "bad sha in unknown field", body: `{` + schemaRes + `, "identifier": "r", "version": [1], "future": [{"file": "a", "sha256": "zz"}]}`, wantErr: true},
		{name: "payloads not an object", body: `{` + schemaMap + `, "identifier": "m", "version": [1], "payloads": [{"pattern": "*"}]}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it, err := ParseItem([]byte(tt.body))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got %+v, want error", it)
				}
				if !errors.Is(err, ErrBadItem) {
					t.Errorf("error %v does not wrap ErrBadItem", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, it)
			}
		})
	}
}

func TestCheckItem(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		want     ItemRef
		mismatch bool // else: ok
	}{
		{"match", resourceV1, ItemRef{TypeResource, "helloapple", Version{2021, 11, 10}}, false},
		{"match with trailing zero asked", resourceV1, ItemRef{TypeResource, "helloapple", Version{2021, 11, 10, 0}}, false},
		{"match with trailing zero sent", mappingV2, ItemRef{TypeMapping, "helloapple", Version{2}}, false},
		{"wrong type", resourceV1, ItemRef{TypeMapping, "helloapple", Version{2021, 11, 10}}, true},
		{"wrong identifier", resourceV1, ItemRef{TypeResource, "hello-message", Version{2021, 11, 10}}, true},
		{"wrong version", resourceV1, ItemRef{TypeResource, "helloapple", Version{2021, 11, 9}}, true},
		{"longer version", resourceV1, ItemRef{TypeResource, "helloapple", Version{2021, 11, 10, 1}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it, err := CheckItem([]byte(tt.body), tt.want)
			if tt.mismatch {
				if !errors.Is(err, ErrItemMismatch) {
					t.Fatalf("got %v, want ErrItemMismatch", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if it.Ref().String() != tt.want.String() {
				t.Errorf("ref %s, want %s", it.Ref(), tt.want)
			}
		})
	}
	if _, err := CheckItem([]byte(`{}`), ItemRef{TypeResource, "r", Version{1}}); !errors.Is(err, ErrBadItem) {
		t.Errorf("malformed item: %v", err)
	}
}

// FuzzParseItem checks that ParseItem never panics and that whatever it
// accepts is safe to build paths from.
func FuzzParseItem(f *testing.F) {
	f.Add([]byte(resourceV1))
	f.Add([]byte(mappingV2))
	f.Add([]byte(`{"$schema": "api_resource_description-1.schema.json", "identifier": "r", "version": [1], "x": [[{"file": "f", "sha256": "` + shaA + `"}]]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		it, err := ParseItem(body)
		if err != nil {
			if !errors.Is(err, ErrBadItem) {
				t.Fatalf("error %v does not wrap ErrBadItem", err)
			}
			return
		}
		if !ValidID(it.Identifier) || len(it.Version) == 0 || it.Version[len(it.Version)-1] == 0 {
			t.Fatalf("accepted unsafe item %+v", it)
		}
		if it.Type != TypeResource && it.Type != TypeMapping {
			t.Fatalf("type %q", it.Type)
		}
		for _, f := range it.Files {
			if !ValidHex(f.SHA256) {
				t.Fatalf("file %+v", f)
			}
		}
		if _, err := CheckItem(body, it.Ref()); err != nil {
			t.Fatalf("CheckItem against its own ref: %v", err)
		}
	})
}
