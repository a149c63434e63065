package refpack

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePackagePath(t *testing.T) {
	tests := []struct {
		path    string
		id, sub string
		err     error // nil: ok
	}{
		// raw and encoded two-segment ids, with and without a sub-resource
		{"/packages/vendor/country-codes", "vendor/country-codes", "", nil},
		{"/packages/vendor%2Fcountry-codes", "vendor/country-codes", "", nil},
		{"/packages/vendor%2fcountry-codes", "vendor/country-codes", "", nil},
		{"/packages/vendor/country-codes/meta", "vendor/country-codes", "meta", nil},
		{"/packages/vendor%2Fcountry-codes/meta", "vendor/country-codes", "meta", nil},
		{"/packages/vendor/country-codes/data", "vendor/country-codes", "data", nil},
		{"/packages/vendor/country-codes/schema", "vendor/country-codes", "schema", nil},
		{"/packages/vendor/country-codes/changelog", "vendor/country-codes", "changelog", nil},
		{"/packages/vendor/country-codes/readme", "vendor/country-codes", "readme", nil},
		{"/packages/vendor/country-codes/versions", "vendor/country-codes", "versions", nil},
		{"/packages/vendor/country-codes/archive", "vendor/country-codes", "archive", nil},
		// the RefPack CLI with an API URL ending in "/"
		{"//packages/vendor/country-codes/meta", "vendor/country-codes", "meta", nil},
		// one-segment ids
		{"/packages/currencies", "currencies", "", nil},
		{"/packages/currencies/data", "currencies", "data", nil},
		{"/packages/a", "a", "", nil},
		{"/packages/A_b-9", "A_b-9", "", nil},
		// the sub is split before unescaping: encoded "/meta" is part of the id
		{"/packages/vendor%2Fmeta", "vendor/meta", "", nil},
		{"/packages/vendor/meta", "vendor", "meta", nil},
		{"/packages/meta", "meta", "", nil},
		{"/packages/meta/meta", "meta", "meta", nil},
		{"/packages/vendor/data/meta", "vendor/data", "meta", nil},
		// an unknown sub is a second segment
		{"/packages/vendor/unknown", "vendor/unknown", "", nil},
		// advanced-search alone is a route, never an id
		{"/packages/advanced-search", "", "", ErrAdvancedSearch},
		{"//packages/advanced-search", "", "", ErrAdvancedSearch},
		{"/packages/advanced-search/meta", "", "", ErrBadID},
		{"/packages/vendor/advanced-search", "vendor/advanced-search", "", nil},
		// refused
		{"/packages/", "", "", ErrBadID},
		{"/packages", "", "", ErrBadID},
		{"/other/x", "", "", ErrBadID},
		{"///packages/x", "", "", ErrBadID},
		{"/packages/a/b/c", "", "", ErrBadID},
		{"/packages/a%2Fb%2Fc", "", "", ErrBadID},
		{"/packages/a/b/c/meta", "", "", ErrBadID},
		{"/packages/../etc/passwd", "", "", ErrBadID},
		{"/packages/vendor/..", "", "", ErrBadID},
		{"/packages/%2e%2e/x", "", "", ErrBadID},
		{"/packages/vendor%2F%2e%2e", "", "", ErrBadID},
		{"/packages/%2E%2E%2Fx", "", "", ErrBadID},
		{"/packages/.", "", "", ErrBadID},
		{"/packages/vendor//name", "", "", ErrBadID},
		{"/packages//name", "", "", ErrBadID},
		{"/packages/vendor/", "", "", ErrBadID},
		{"/packages/vendor%2F", "", "", ErrBadID},
		{"/packages/%2Fname", "", "", ErrBadID},
		{"/packages/vendor%5Cname", "", "", ErrBadID},
		{`/packages/vendor\name`, "", "", ErrBadID},
		{"/packages/vendor%00", "", "", ErrBadID},
		{"/packages/ven%20dor", "", "", ErrBadID},
		{"/packages/vendor%252Fname", "", "", ErrBadID},
		{"/packages/%zz", "", "", ErrBadID},
		{"/packages/-vendor", "", "", ErrBadID},
		{"/packages/vendor-", "", "", ErrBadID},
		{"/packages/_x", "", "", ErrBadID},
		{"/packages/vendor/n%C3%A9", "", "", ErrBadID},
		{"/packages/vendor.name", "", "", ErrBadID},
		{"/packages/" + strings.Repeat("a", 2000), "", "", ErrBadID},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			rt, err := ParsePackagePath(tt.path)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("ParsePackagePath(%q) = %+v, %v; want error %v", tt.path, rt, err, tt.err)
				}
				if tt.err == ErrAdvancedSearch && errors.Is(err, ErrBadID) {
					t.Fatalf("advanced-search must not be ErrBadID")
				}
				return
			}
			if err != nil || rt.ID != tt.id || rt.Sub != tt.sub {
				t.Fatalf("ParsePackagePath(%q) = %+v, %v; want {%s %s}", tt.path, rt, err, tt.id, tt.sub)
			}
		})
	}
}

func TestValidID(t *testing.T) {
	for _, id := range []string{"a", "1", "currencies", "vendor/country-codes", "A_b/c-D", "a1_-z/b"} {
		if !ValidID(id) {
			t.Errorf("ValidID(%q) = false", id)
		}
	}
	for _, id := range []string{"", "/", "a/", "/a", "a/b/c", "..", "a/..", "-a", "a-", "_a", "a_", "a b", "a.b", "é", `a\b`, "a\x00", strings.Repeat("a", 600)} {
		if ValidID(id) {
			t.Errorf("ValidID(%q) = true", id)
		}
	}
}
