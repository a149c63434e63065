package refpack

import (
	"archive/zip"
	"bytes"
	"errors"
	"net/url"
	"strings"
	"testing"
)

// FuzzParsePackagePath checks that whatever is accepted is a valid id that
// round-trips through the encoded form, and that everything else is ErrBadID.
func FuzzParsePackagePath(f *testing.F) {
	for _, s := range []string{"/packages/vendor/country-codes/meta", "/packages/vendor%2Fcountry-codes", "//packages/currencies",
		"/packages/advanced-search", "/packages/%2e%2e/x", "/packages/a/b/c", "/packages/a%00", `/packages/a\b`, "/packages/vendor%2Fmeta"} {
		f.Add(s)
	}
	subs := map[string]bool{"": true, "meta": true, "data": true, "schema": true, "changelog": true, "readme": true, "versions": true, "archive": true}
	f.Fuzz(func(t *testing.T, path string) {
		rt, err := ParsePackagePath(path)
		if err != nil {
			if !errors.Is(err, ErrBadID) && !errors.Is(err, ErrAdvancedSearch) {
				t.Fatalf("ParsePackagePath(%q): error %v is neither ErrBadID nor ErrAdvancedSearch", path, err)
			}
			return
		}
		if !ValidID(rt.ID) || !subs[rt.Sub] {
			t.Fatalf("ParsePackagePath(%q) = %+v: invalid result", path, rt)
		}
		if strings.Contains(rt.ID, "..") || strings.ContainsAny(rt.ID, "\\\x00%. ") || strings.Count(rt.ID, "/") > 1 {
			t.Fatalf("ParsePackagePath(%q) = %+v: unsafe id", path, rt)
		}
		enc := "/packages/" + url.PathEscape(rt.ID)
		if rt.Sub != "" {
			enc += "/" + rt.Sub
		}
		again, err := ParsePackagePath(enc)
		if err != nil || again != rt {
			t.Fatalf("round trip of %+v via %q = %+v, %v", rt, enc, again, err)
		}
	})
}

// FuzzParseVersion checks that an accepted version prints back exactly as given
// (so nothing was coerced) and that errors are ErrBadVersion.
func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"1.2.0", "1.0.0-rc.1+build.5", "v1.2.0", "1.2", " 1.2.0", "01.0.0", "1.0.0-01", "99999999999999999999.0.0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		if err != nil {
			if !errors.Is(err, ErrBadVersion) {
				t.Fatalf("ParseVersion(%q): %v is not ErrBadVersion", s, err)
			}
			return
		}
		if v.String() != s || v.Original() != s {
			t.Fatalf("ParseVersion(%q) = %q", s, v.String())
		}
		if v.Compare(v) != 0 {
			t.Fatalf("%q does not equal itself", s)
		}
		if _, ok := Latest([]VersionInfo{{Version: s}}); !ok {
			t.Fatalf("Latest ignores valid %q", s)
		}
	})
}

// fuzzLimits are small so the fuzzer reaches the limits quickly.
var fuzzLimits = Limits{MaxEntries: 64, MaxTotalUncompressed: 1 << 20, MaxRatio: 200, MaxUploadBytes: 1 << 20}

// FuzzValidateZip checks that no input panics, that refusals are
// ErrInvalidPackage, that the entry pre-count never undercounts archive/zip, and
// that an accepted zip really satisfies the layout rules, checked again here
// independently of the implementation.
func FuzzValidateZip(f *testing.F) {
	f.Add(buildZip(f, validEntries()...))
	f.Add(buildZip(f, with(deflated("data.schema.json", `{"type":"array"}`), deflated("data.changelog.json", `[{"version":"1.0.0","date":"d","description":"x"}]`), deflated("data.readme.md", "# r"), zent{name: "assets/"}, deflated("assets/a", "a"))...))
	f.Add(buildZip(f, with(deflated("assets/../x", "a"))...))
	f.Add(buildZip(f, append(validEntries(), deflated("data.json", "[]"))...))
	f.Add([]byte("PK\x05\x06\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		m, err := ValidateZip(r, int64(len(b)), fuzzLimits)
		zr, zerr := zip.NewReader(r, int64(len(b)))
		if zerr == nil {
			if n := countDirectory(r, int64(len(b)), 1<<30); n < len(zr.File) {
				t.Fatalf("countDirectory = %d < archive/zip's %d", n, len(zr.File))
			}
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidPackage) {
				t.Fatalf("error %v is not ErrInvalidPackage", err)
			}
			return
		}
		if m == nil || m.Raw == nil {
			t.Fatal("accepted without a manifest")
		}
		if zerr != nil {
			t.Fatalf("accepted what archive/zip cannot open: %v", zerr)
		}
		if len(zr.File) > fuzzLimits.MaxEntries {
			t.Fatalf("accepted %d entries", len(zr.File))
		}
		seen := map[string]bool{}
		var total uint64
		for _, f := range zr.File {
			n := f.Name
			if seen[n] {
				t.Fatalf("accepted duplicate %q", n)
			}
			seen[n] = true
			total += f.UncompressedSize64
			switch {
			case n == "data.meta.json", n == "data.meta.json.jws", n == "data.json", n == "data.schema.json",
				n == "data.changelog.json", n == "data.readme.md", n == "assets/":
			case strings.HasPrefix(n, "assets/") && !strings.Contains(n[len("assets/"):], "/") &&
				n != "assets/.." && !strings.ContainsAny(n, "\\\x00"):
			default:
				t.Fatalf("accepted entry %q", n)
			}
		}
		if !seen["data.meta.json"] || !seen["data.meta.json.jws"] || !seen["data.json"] {
			t.Fatal("accepted without a required entry")
		}
		if total > uint64(fuzzLimits.MaxTotalUncompressed) {
			t.Fatalf("accepted %d uncompressed bytes", total)
		}
		if got, err := ReadZipFile(r, int64(len(b)), "data.meta.json"); err != nil {
			t.Fatalf("ReadZipFile of an accepted zip: %v", err)
		} else if _, err := ParseManifest(got); err != nil {
			t.Fatalf("manifest of an accepted zip: %v", err)
		}
	})
}
