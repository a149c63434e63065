package refpack

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
)

func validate(tb testing.TB, b []byte, lim Limits) (*Manifest, error) {
	tb.Helper()
	return ValidateZip(bytes.NewReader(b), int64(len(b)), lim)
}

func TestValidateZipAccepts(t *testing.T) {
	tests := []struct {
		name string
		ents []zent
	}{
		{"minimal", validEntries()},
		{"manifest first", append([]zent{deflated("data.meta.json", goodManifest)}, without("data.meta.json")...)},
		{"stored entries", []zent{{name: "data.json", body: []byte(goodData)}, {name: "data.meta.json", body: []byte(goodManifest)}, {name: "data.meta.json.jws", body: []byte(goodJWS)}}},
		{"empty data array", with(deflated("data.json", " [ ] \n"))},
		{"data with BOM", with(deflated("data.json", "\ufeff"+goodData))},
		{"empty jws is opaque", with(deflated("data.meta.json.jws", ""))},
		{"jws garbage is opaque", with(deflated("data.meta.json.jws", "not a jws"))},
		{"schema", with(deflated("data.schema.json", `{"type":"array","items":{"type":"object"}}`))},
		{"changelog", with(deflated("data.changelog.json", `[{"version":"1.0.0","date":"2024-01-01","description":"x"}]`))},
		{"empty changelog", with(deflated("data.changelog.json", `[]`))},
		{"readme", with(deflated("data.readme.md", "# hi"))},
		{"all optional", with(deflated("data.schema.json", `{"type":"array"}`), deflated("data.changelog.json", `[]`), deflated("data.readme.md", ""), deflated("assets/logo.png", "png"))},
		{"assets without dir entry", with(deflated("assets/a.txt", "a"), deflated("assets/b.csv", "b"))},
		{"assets with dir entry", with(zent{name: "assets/"}, deflated("assets/a.txt", "a"))},
		{"assets dir entry alone", with(zent{name: "assets/"})},
		{"dotdot inside a name", with(deflated("assets/notes..txt", "x"))},
		{"dots name", with(deflated("assets/...", "x"))},
		{"unicode asset", with(deflated("assets/café.txt", "x"))},
		{"manifest minimal", with(deflated("data.meta.json", `{"id":"","version":""}`))},
		{"manifest odd types elsewhere", with(deflated("data.meta.json", `{"id":"x","version":"not-semver","tags":"geo","title":5,"createdUtc":null}`))},
		{"regular unix mode", with(zent{name: "assets/x", body: []byte("x"), method: zip.Deflate, mode: 0o100644})},
		{"small entry beyond ratio", with(deflated("assets/zeros", strings.Repeat("\x00", 1<<20)))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := validate(t, buildZip(t, tt.ents...), DefaultLimits())
			if err != nil {
				t.Fatalf("ValidateZip: %v", err)
			}
			if m == nil || m.Raw == nil {
				t.Fatalf("no manifest")
			}
		})
	}
}

func TestValidateZipManifest(t *testing.T) {
	m, err := validate(t, buildZip(t, validEntries()...), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "country-codes" || m.Version != "1.2.0" || m.Title != "Country Codes" || m.CreatedUtc != "20/05/2024 10:00" ||
		len(m.Tags) != 1 || m.Tags[0] != "geo" || m.Raw["license"] != "" {
		t.Fatalf("manifest = %+v", m)
	}
	if err := m.Matches("vendor/country-codes", "1.2.0"); err != nil {
		t.Errorf("Matches: %v", err)
	}
	if err := m.Matches("country-codes", "1.2.0"); err != nil {
		t.Errorf("Matches one-segment: %v", err)
	}
	for _, c := range [][2]string{{"vendor/other", "1.2.0"}, {"vendor/country-codes", "1.2.1"}, {"country-codes/x", "1.2.0"}} {
		if err := m.Matches(c[0], c[1]); !errors.Is(err, ErrInvalidPackage) {
			t.Errorf("Matches(%q, %q) = %v", c[0], c[1], err)
		}
	}
}

func TestValidateZipRefuses(t *testing.T) {
	bigZeros := strings.Repeat("\x00", 4<<20) // compresses about 1000×
	tests := []struct {
		name string
		zip  []byte
		lim  Limits
		want string // in the message
	}{
		{"not a zip", []byte("hello"), Limits{}, "not a readable zip"},
		{"empty", nil, Limits{}, "not a readable zip"},
		{"truncated", func() []byte { b := buildZip(t, validEntries()...); return b[:len(b)-10] }(), Limits{}, "not a readable zip"},
		{"missing manifest", buildZip(t, without("data.meta.json")...), Limits{}, `"data.meta.json" is missing`},
		{"missing jws", buildZip(t, without("data.meta.json.jws")...), Limits{}, `"data.meta.json.jws" is missing`},
		{"missing data", buildZip(t, without("data.json")...), Limits{}, `"data.json" is missing`},
		{"other root file", buildZip(t, with(deflated("evil.sh", "x"))...), Limits{}, "not allowed at the root"},
		{"other root dir", buildZip(t, with(zent{name: "docs/"})...), Limits{}, "not allowed"},
		{"file in other dir", buildZip(t, with(deflated("docs/a", "x"))...), Limits{}, "not allowed at the root"},
		{"assets as a file", buildZip(t, with(deflated("assets", "x"))...), Limits{}, "not allowed at the root"},
		{"assets sub-folder file", buildZip(t, with(deflated("assets/sub/a.txt", "x"))...), Limits{}, "sub-folder"},
		{"assets sub-folder dir", buildZip(t, with(zent{name: "assets/sub/"})...), Limits{}, "not allowed"},
		{"assets empty segment", buildZip(t, with(deflated("assets//a", "x"))...), Limits{}, "sub-folder"},
		{"dotdot segment", buildZip(t, with(deflated("assets/../data.json", "x"))...), Limits{}, ".. segment"},
		{"dotdot root", buildZip(t, with(deflated("../evil", "x"))...), Limits{}, ".. segment"},
		{"dotdot alone", buildZip(t, with(deflated("..", "x"))...), Limits{}, ".. segment"},
		{"leading slash", buildZip(t, with(deflated("/data.json2", "x"))...), Limits{}, "absolute"},
		{"drive letter", buildZip(t, with(deflated("C:evil", "x"))...), Limits{}, "drive letter"},
		{"drive letter path", buildZip(t, with(deflated("c:/evil", "x"))...), Limits{}, "drive letter"},
		{"backslash", buildZip(t, with(deflated(`assets\evil`, "x"))...), Limits{}, "backslash"},
		{"NUL", buildZip(t, with(deflated("assets/a\x00b", "x"))...), Limits{}, "NUL"},
		{"empty name", buildZip(t, with(deflated("", "x"))...), Limits{}, "empty name"},
		{"duplicate", buildZip(t, append(validEntries(), deflated("data.json", "[]"))...), Limits{}, "appears twice"},
		{"duplicate asset", buildZip(t, with(deflated("assets/a", "1"), zent{raw: &zip.FileHeader{Name: "assets/a", Method: zip.Store}})...), Limits{}, "appears twice"},
		{"symlink", buildZip(t, with(zent{name: "assets/link", body: []byte("/etc/passwd"), mode: 0o120777})...), Limits{}, "not a regular file"},
		{"unknown method", buildZip(t, with(zent{raw: &zip.FileHeader{Name: "assets/x", Method: 99}, body: []byte("x")})...), Limits{}, "compression method 99"},
		{"encrypted", buildZip(t, with(zent{raw: &zip.FileHeader{Name: "assets/x", Method: zip.Store, Flags: 1, CompressedSize64: 1, UncompressedSize64: 1}, body: []byte("x")})...), Limits{}, "encrypted"},
		{"data not JSON", buildZip(t, with(deflated("data.json", "nope"))...), Limits{}, "data.json: not a JSON array"},
		{"data bad syntax", buildZip(t, with(deflated("data.json", `[{"a":01}]`))...), Limits{}, "invalid JSON"},
		{"data trailing comma", buildZip(t, with(deflated("data.json", `[{},]`))...), Limits{}, "trailing comma"},
		{"data object", buildZip(t, with(deflated("data.json", `{"a":1}`))...), Limits{}, "not a JSON array"},
		{"data array of numbers", buildZip(t, with(deflated("data.json", `[{"a":1},2]`))...), Limits{}, "element 1 is not an object"},
		{"data array of arrays", buildZip(t, with(deflated("data.json", `[[]]`))...), Limits{}, "element 0 is not an object"},
		{"data null element", buildZip(t, with(deflated("data.json", `[null]`))...), Limits{}, "element 0 is not an object"},
		{"data unterminated", buildZip(t, with(deflated("data.json", `[{"a":1}`))...), Limits{}, "data.json"},
		{"data trailing", buildZip(t, with(deflated("data.json", `[] []`))...), Limits{}, "data after"},
		{"data empty", buildZip(t, with(deflated("data.json", ``))...), Limits{}, "unexpected end"},
		{"manifest not JSON", buildZip(t, with(deflated("data.meta.json", `{`))...), Limits{}, "not a JSON object"},
		{"manifest array", buildZip(t, with(deflated("data.meta.json", `[]`))...), Limits{}, "not a JSON object"},
		{"manifest null", buildZip(t, with(deflated("data.meta.json", `null`))...), Limits{}, "not a JSON object"},
		{"manifest trailing", buildZip(t, with(deflated("data.meta.json", `{"id":"a","version":"1.0.0"} x`))...), Limits{}, "not a JSON object"},
		{"manifest no id", buildZip(t, with(deflated("data.meta.json", `{"version":"1.0.0"}`))...), Limits{}, `"id"`},
		{"manifest id number", buildZip(t, with(deflated("data.meta.json", `{"id":1,"version":"1.0.0"}`))...), Limits{}, `"id"`},
		{"manifest no version", buildZip(t, with(deflated("data.meta.json", `{"id":"a"}`))...), Limits{}, `"version"`},
		{"manifest version number", buildZip(t, with(deflated("data.meta.json", `{"id":"a","version":1}`))...), Limits{}, `"version"`},
		{"schema not JSON", buildZip(t, with(deflated("data.schema.json", `{`))...), Limits{}, "data.schema.json is not a JSON object"},
		{"schema type object", buildZip(t, with(deflated("data.schema.json", `{"type":"object"}`))...), Limits{}, `"type" is not "array"`},
		{"schema no type", buildZip(t, with(deflated("data.schema.json", `{}`))...), Limits{}, `"type" is not "array"`},
		{"schema array", buildZip(t, with(deflated("data.schema.json", `[]`))...), Limits{}, "not a JSON object"},
		{"changelog object", buildZip(t, with(deflated("data.changelog.json", `{}`))...), Limits{}, "not a JSON array"},
		{"changelog empty field", buildZip(t, with(deflated("data.changelog.json", `[{"version":"1.0.0","date":"","description":"x"}]`))...), Limits{}, `"date"`},
		{"changelog missing field", buildZip(t, with(deflated("data.changelog.json", `[{"version":"1.0.0","date":"d"}]`))...), Limits{}, `"description"`},
		{"changelog number field", buildZip(t, with(deflated("data.changelog.json", `[{"version":1,"date":"d","description":"x"}]`))...), Limits{}, `"version"`},
		{"changelog not objects", buildZip(t, with(deflated("data.changelog.json", `[1]`))...), Limits{}, "not a JSON array of objects"},
		{"corrupt data CRC", corruptCRC(t), Limits{}, "data.json"},
		{"too many entries", buildZip(t, with(deflated("assets/1", ""), deflated("assets/2", ""), deflated("assets/3", ""))...), Limits{MaxEntries: 5}, "more than 5 entries"},
		{"zip too large", buildZip(t, validEntries()...), Limits{MaxUploadBytes: 100}, "over the limit of 100"},
		{"bomb by ratio", buildZip(t, with(deflated("assets/bomb", bigZeros))...), Limits{}, "compression ratio"},
		{"bomb by total size", buildZip(t, with(deflated("assets/a", strings.Repeat("ab", 1000)), deflated("assets/b", strings.Repeat("cd", 1000)))...), Limits{MaxTotalUncompressed: 3000}, "uncompressed size over the limit"},
		{"bomb by single size", buildZip(t, with(deflated("assets/a", strings.Repeat("ab", 5000)))...), Limits{MaxTotalUncompressed: 3000}, "uncompressed size over the limit"},
		{"header lies about size", buildZip(t, with(rawStored("assets/liar", bytes.Repeat([]byte("x"), 5000), 10))...), Limits{}, `entry "assets/liar"`},
		{"zero compressed size, big uncompressed", buildZip(t, with(rawStored("assets/z", nil, 2<<20))...), Limits{}, "compression ratio"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := validate(t, tt.zip, tt.lim)
			if !errors.Is(err, ErrInvalidPackage) {
				t.Fatalf("ValidateZip = %+v, %v; want ErrInvalidPackage", m, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

// corruptCRC flips a byte of data.json's stored content.
func corruptCRC(t *testing.T) []byte {
	b := buildZip(t, zent{name: "data.json", body: []byte(goodData)}, deflated("data.meta.json", goodManifest), deflated("data.meta.json.jws", goodJWS))
	i := bytes.Index(b, []byte("France"))
	b[i] = 'X'
	return b
}

// TestValidateZipBombWhileReading makes the headers declare less than the
// limit while the content is bigger: the check while reading must stop it.
func TestValidateZipBombWhileReading(t *testing.T) {
	body := bytes.Repeat([]byte("y"), 10000)
	b := buildZip(t, with(rawStored("assets/a", body, uint64(len(body))))...)
	lim := Limits{MaxTotalUncompressed: 20000}
	if _, err := validate(t, b, lim); err != nil {
		t.Fatalf("honest headers: %v", err)
	}
	// Two entries of 10000 declared as 10000 each exceed 15000 only as a sum,
	// which the header check sees; make one declare 1 byte so only reading sees it.
	b = buildZip(t, with(rawStored("assets/a", body, 1), rawStored("assets/b", body, uint64(len(body))))...)
	_, err := validate(t, b, Limits{MaxTotalUncompressed: 15000})
	if !errors.Is(err, ErrInvalidPackage) {
		t.Fatalf("lying header: %v", err)
	}
}

// TestCountDirectoryAgrees checks the pre-count against archive/zip.
func TestCountDirectoryAgrees(t *testing.T) {
	for _, n := range []int{0, 1, 3, 50} {
		var ents []zent
		for i := range n {
			ents = append(ents, deflated(fmt.Sprintf("assets/%d", i), "x"))
		}
		b := buildZip(t, ents...)
		// A prefix shifts every offset, which archive/zip corrects with its base
		// offset; the count must follow it.
		for _, prefix := range [][]byte{nil, []byte("#!/bin/sh\nexit 0\n")} {
			z := append(bytes.Clone(prefix), b...)
			zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
			if err != nil {
				t.Fatal(err)
			}
			if got := countDirectory(bytes.NewReader(z), int64(len(z)), 1000); got != len(zr.File) {
				t.Errorf("n=%d prefix=%d: countDirectory = %d, archive/zip %d", n, len(prefix), got, len(zr.File))
			}
		}
	}
	// The pre-count stops early, past the limit.
	var ents []zent
	for i := range 30 {
		ents = append(ents, deflated(fmt.Sprintf("assets/%d", i), ""))
	}
	b := buildZip(t, ents...)
	if got := countDirectory(bytes.NewReader(b), int64(len(b)), 10); got != 11 {
		t.Errorf("countDirectory with limit 10 = %d, want 11", got)
	}
}

// TestEntryCountIgnoresEndRecord builds a zip whose end record claims one
// entry while its directory holds 65537: archive/zip accepts that (it compares
// only the low 16 bits), so the limit must come from the directory itself.
func TestEntryCountIgnoresEndRecord(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 65537-entry zip")
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := range 65537 {
		if _, err := zw.CreateHeader(&zip.FileHeader{Name: fmt.Sprintf("assets/%d", i), Method: zip.Store}); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if got := countDirectory(bytes.NewReader(b), int64(len(b)), 70000); got != 65537 {
		t.Fatalf("countDirectory = %d", got)
	}
	_, err := validate(t, b, Limits{MaxEntries: 10000})
	if !errors.Is(err, ErrInvalidPackage) || !strings.Contains(err.Error(), "more than 10000 entries") {
		t.Fatalf("ValidateZip = %v", err)
	}
}

func TestReadZipFile(t *testing.T) {
	b := buildZip(t, with(deflated("data.readme.md", "# readme"))...)
	r := bytes.NewReader(b)
	got, err := ReadZipFile(r, int64(len(b)), "data.readme.md")
	if err != nil || string(got) != "# readme" {
		t.Fatalf("ReadZipFile = %q, %v", got, err)
	}
	got, err = ReadZipFile(r, int64(len(b)), "data.json")
	if err != nil || string(got) != goodData {
		t.Fatalf("ReadZipFile data = %q, %v", got, err)
	}
	if _, err := ReadZipFile(r, int64(len(b)), "data.schema.json"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := ReadZipFile(bytes.NewReader([]byte("junk")), 4, "data.json"); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("junk zip: %v", err)
	}
}

func TestFileNameAndContentType(t *testing.T) {
	tests := []struct{ sub, file, ct string }{
		{"data", "data.json", ContentTypeJSON},
		{"schema", "data.schema.json", ContentTypeJSON},
		{"changelog", "data.changelog.json", ContentTypeJSON},
		{"readme", "data.readme.md", "text/markdown; charset=utf-8"},
		{"meta", "data.meta.json", "application/json; charset=utf-8"},
		{"versions", "", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		if got := FileName(tt.sub); got != tt.file {
			t.Errorf("FileName(%q) = %q", tt.sub, got)
		}
		if got := DocContentType(tt.sub); got != tt.ct {
			t.Errorf("DocContentType(%q) = %q", tt.sub, got)
		}
	}
}

func TestErrorBody(t *testing.T) {
	got := string(ErrorBody(ErrTitlePackageNotFound, PackageNotFoundMessage("unknown/package", "")))
	want := `{"error":"Package not found","message":"Package 'unknown/package' version 'latest' was not found"}`
	if got != want {
		t.Fatalf("ErrorBody = %s", got)
	}
	if got := string(ErrorBody("a\"b", "<x>")); got != `{"error":"a\"b","message":"\u003cx\u003e"}` {
		t.Fatalf("escaping: %s", got)
	}
	if got := FileNotFoundMessage("v/n", "1.0.0", "data.schema.json"); got != "Package 'v/n' version '1.0.0' does not contain data.schema.json" {
		t.Fatal(got)
	}
}
