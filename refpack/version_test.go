package refpack

import (
	"errors"
	"regexp"
	"testing"
)

func TestParseVersion(t *testing.T) {
	good := []string{"0.0.0", "1.2.0", "10.20.30", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-0.3.7",
		"1.0.0-x.7.z.92", "1.0.0+20130313144700", "1.0.0-beta+exp.sha.5114f85", "1.0.0-rc.1+build.1",
		"1.0.0--", "1.0.0-a-b", "18446744073709551615.0.0"}
	for _, s := range good {
		v, err := ParseVersion(s)
		if err != nil {
			t.Errorf("ParseVersion(%q): %v", s, err)
			continue
		}
		if v.String() != s {
			t.Errorf("ParseVersion(%q).String() = %q", s, v.String())
		}
	}
	bad := []string{"", "v1.2.0", "V1.2.0", "1.2", "1", " 1.2.0", "1.2.0 ", "1.2.0\n", "01.2.0", "1.02.0",
		"1.2.00", "1.2.0-", "1.2.0+", "1.2.0-01", "1.2.0-a..b", "1.2.0+a..b", "1.2.0-a_b", "1.2.0 build",
		"1.2.0.0", "1.2.x", "latest", "18446744073709551616.0.0", "-1.0.0", "1.2.0-é", "１.2.0"}
	for _, s := range bad {
		if v, err := ParseVersion(s); !errors.Is(err, ErrBadVersion) {
			t.Errorf("ParseVersion(%q) = %v, %v; want ErrBadVersion", s, v, err)
		}
	}
}

func TestLatest(t *testing.T) {
	vi := func(v string, archived bool) VersionInfo { return VersionInfo{Version: v, IsArchived: archived} }
	tests := []struct {
		name string
		in   []VersionInfo
		want string // "" = none
	}{
		{"empty", nil, ""},
		{"one", []VersionInfo{vi("1.0.0", false)}, "1.0.0"},
		{"semver not string order", []VersionInfo{vi("1.9.0", false), vi("1.10.0", false), vi("1.2.0", false)}, "1.10.0"},
		{"pre-release excluded", []VersionInfo{vi("1.0.0", false), vi("2.0.0-rc.1", false)}, "1.0.0"},
		{"all pre-releases", []VersionInfo{vi("2.0.0-alpha", false), vi("2.0.0-rc.1", false), vi("2.0.0-beta.11", false)}, "2.0.0-rc.1"},
		{"pre-release numeric ids", []VersionInfo{vi("1.0.0-beta.2", false), vi("1.0.0-beta.11", false)}, "1.0.0-beta.11"},
		{"archived skipped", []VersionInfo{vi("1.0.0", false), vi("1.1.0", true)}, "1.0.0"},
		{"all archived", []VersionInfo{vi("1.0.0", true), vi("1.1.0", true)}, ""},
		{"archived release leaves pre-releases", []VersionInfo{vi("1.0.0", true), vi("1.1.0-rc.1", false)}, "1.1.0-rc.1"},
		{"invalid ignored", []VersionInfo{vi("v9.0.0", false), vi("1.0.0", false)}, "1.0.0"},
		{"build metadata tie is order-independent", []VersionInfo{vi("1.0.0+b", false), vi("1.0.0+a", false)}, "1.0.0+b"},
		{"build metadata tie reversed", []VersionInfo{vi("1.0.0+a", false), vi("1.0.0+b", false)}, "1.0.0+b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Latest(tt.in)
			if got != tt.want || ok != (tt.want != "") {
				t.Fatalf("Latest = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
}

// semverRE is the regular expression published with SemVer 2.0.0, the oracle
// ValidVersion is held to.
var semverRE = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

func TestValidVersionEqualsTheSemVerRegexp(t *testing.T) {
	for _, s := range []string{
		"1.2.0", "0.0.0", "10.20.30", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-0.3.7", "1.0.0-x.7.z.92", "1.0.0-x-y-z.--",
		"1.0.0+20130313144700", "1.0.0-beta+exp.sha.5114f85", "1.0.0+21AF26D3----117B344092BD", "1.0.0-0A.is.legal",
		"1.2", "1", "1.2.3.4", "01.1.1", "1.01.1", "1.1.01", "1.2.3-0123", "1.2.3-0123.0123", "1.2.3-", "1.2.3+", "1.2.3-+",
		"1.2.3-.1", "1.2.3-a..b", "1.2.3+a..b", "1.2.3-a.", "+1.2.3", "v1.2.3", " 1.2.3", "1.2.3 ", "1.2.3-é", "1.2.3+0123",
		"1.2.3----RC-SNAPSHOT.12.9.1--.12+788", "1.2.3-00", "1.2.3-0", "1.2.3-01a", "", ".", "..", "1..2", "1.2.3\n",
	} {
		if got, want := ValidVersion(s), semverRE.MatchString(s); got != want {
			t.Errorf("ValidVersion(%q) = %v, the SemVer regexp says %v", s, got, want)
		}
	}
}

func FuzzValidVersion(f *testing.F) {
	for _, s := range []string{"1.2.0", "1.0.0-rc.1+build.5", "1.2.3-0123", "1.2.3+0123", "1.2.3-a..b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 256 {
			return
		}
		if got, want := ValidVersion(s), semverRE.MatchString(s); got != want {
			t.Fatalf("ValidVersion(%q) = %v, the SemVer regexp says %v", s, got, want)
		}
	})
}
