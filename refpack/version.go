package refpack

import (
	"errors"
	"fmt"

	"github.com/Masterminds/semver/v3"
)

// ErrBadVersion is wrapped by every error about a version string that is not
// strict SemVer.
var ErrBadVersion = errors.New("invalid version")

// ParseVersion parses a strict SemVer MAJOR.MINOR.PATCH[-pre][+build] string.
// Errors wrap ErrBadVersion.
func ParseVersion(s string) (*semver.Version, error) {
	if !ValidVersion(s) {
		return nil, fmt.Errorf("%w: %q is not a SemVer MAJOR.MINOR.PATCH[-pre][+build] string", ErrBadVersion, truncate(s, 80))
	}
	v, err := semver.StrictNewVersion(s)
	if err != nil {
		// Numeric parts too large for uint64 land here.
		return nil, fmt.Errorf("%w: %q: %v", ErrBadVersion, truncate(s, 80), err)
	}
	return v, nil
}

// ValidVersion reports whether s matches the grammar of SemVer 2.0.0 (the
// regular expression published with it; a test holds them equal). It is
// checked before the library so that "v1.2.0", "1.2" and padded strings, which
// the library's lenient parser would coerce, are refused whatever the library
// does, and it is written out by hand because it runs on every request.
func ValidVersion(s string) bool {
	if len(s) > semver.MaxVersionLen {
		return false
	}
	rest, ok := numericDots(s, 3)
	if !ok {
		return false
	}
	if len(rest) > 0 && rest[0] == '-' {
		if rest, ok = identifiers(rest[1:], true); !ok {
			return false
		}
	}
	if len(rest) > 0 && rest[0] == '+' {
		if rest, ok = identifiers(rest[1:], false); !ok {
			return false
		}
	}
	return rest == ""
}

// numericDots consumes n dot-separated numbers without leading zeros.
func numericDots(s string, n int) (string, bool) {
	for i := 0; i < n; i++ {
		if i > 0 {
			if s == "" || s[0] != '.' {
				return s, false
			}
			s = s[1:]
		}
		j := 0
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		if j == 0 || (j > 1 && s[0] == '0') {
			return s, false
		}
		s = s[j:]
	}
	return s, true
}

// identifiers consumes dot-separated non-empty [0-9A-Za-z-] identifiers; for a
// pre-release, a purely numeric one may not have a leading zero.
func identifiers(s string, pre bool) (string, bool) {
	for {
		j, digits := 0, true
		for j < len(s) && (isDigit(s[j]) || isASCIILetter(s[j]) || s[j] == '-') {
			digits = digits && isDigit(s[j])
			j++
		}
		if j == 0 || (pre && digits && j > 1 && s[0] == '0') {
			return s, false
		}
		s = s[j:]
		if s == "" || s[0] != '.' {
			return s, true
		}
		s = s[1:]
	}
}

// truncate keeps error messages about hostile input short.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// VersionInfo is one entry of the registry's /versions answer.
type VersionInfo struct {
	Version    string `json:"version"`
	CreatedAt  string `json:"createdAt"`
	IsArchived bool   `json:"isArchived"`
}

// Latest returns the version "latest" means: the highest SemVer precedence among
// the non-archived versions, pre-releases excluded unless every non-archived
// version is a pre-release. Versions that are not SemVer are ignored. It reports
// false when there is no such version (the registry's 404 for 'latest').
func Latest(versions []VersionInfo) (string, bool) {
	var best, bestPre *semver.Version
	var bestS, bestPreS string
	for _, vi := range versions {
		if vi.IsArchived {
			continue
		}
		v, err := ParseVersion(vi.Version)
		if err != nil {
			continue
		}
		if v.Prerelease() != "" {
			if higher(v, vi.Version, bestPre, bestPreS) {
				bestPre, bestPreS = v, vi.Version
			}
			continue
		}
		if higher(v, vi.Version, best, bestS) {
			best, bestS = v, vi.Version
		}
	}
	switch {
	case best != nil:
		return bestS, true
	case bestPre != nil:
		return bestPreS, true
	}
	return "", false
}

// higher orders by SemVer precedence; versions differing only in build metadata
// have equal precedence, so their strings break the tie to keep Latest independent
// of input order.
func higher(v *semver.Version, s string, than *semver.Version, thanS string) bool {
	if than == nil {
		return true
	}
	if c := v.Compare(than); c != 0 {
		return c > 0
	}
	return s > thanS
}
