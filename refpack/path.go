package refpack

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrBadID is wrapped by every error about a package path or id the mirror must
// refuse (400) before anything else happens.
var ErrBadID = errors.New("invalid package id")

// ErrAdvancedSearch is returned by ParsePackagePath for /packages/advanced-search:
// that path is one segment that is never an id, so a router that did not route it
// first can still tell it apart from a bad id. It does not wrap ErrBadID.
var ErrAdvancedSearch = errors.New("refpack: /packages/advanced-search is a search, not a package")

// Sub-resources of /packages/{id}; the empty Sub is the zip download.
const (
	SubMeta      = "meta"
	SubData      = "data"
	SubSchema    = "schema"
	SubChangelog = "changelog"
	SubReadme    = "readme"
	SubVersions  = "versions"
	SubArchive   = "archive"
)

// advancedSearch is the one segment under /packages/ that is a route, not an id.
const advancedSearch = "advanced-search"

// Route is a parsed /packages/{id}[/{sub}] request path.
type Route struct {
	// ID is the unescaped registry id: "owner/name" or a one-segment "name".
	ID string
	// Sub is "" (the zip) or one of the Sub* constants.
	Sub string
}

// ValidSegment reports whether s is one segment of an id (an owner or a name)
// by the packer's own id pattern,
// ^[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?$, written as a loop because it runs
// on every request (a regexp costs a tenth of a cached hit).
func ValidSegment(s string) bool {
	if s == "" || len(s) > maxIDLen || s[0] == '-' || s[0] == '_' || s[len(s)-1] == '-' || s[len(s)-1] == '_' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// maxIDLen bounds the work done on hostile paths; real ids are far shorter.
const maxIDLen = 512

// ValidID reports whether id is a one-segment ("currencies") or two-segment
// ("owner/name") RefPack id whose segments match the packer's pattern.
func ValidID(id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	owner, name, two := strings.Cut(id, "/")
	if !two {
		return ValidSegment(id)
	}
	return ValidSegment(owner) && ValidSegment(name)
}

// ParsePackagePath parses r.URL.EscapedPath() of a request under /packages/.
//
// A leading "//packages/" is accepted like "/packages/" because the RefPack CLI
// produces it from an API URL ending in "/". The trailing /meta, /data, /schema,
// /changelog, /readme, /versions or /archive is split off the escaped path before
// unescaping, so "vendor%2Fmeta" is the id "vendor/meta" while "vendor/meta" is the
// meta of "vendor". The rest is unescaped, which is why raw (vendor/country-codes)
// and encoded (vendor%2Fcountry-codes) ids both work, and only then checked, so
// encoded traversal (%2e%2e, %2F..) is refused like the raw form.
//
// "/packages/advanced-search" returns ErrAdvancedSearch (callers should route it
// first). "advanced-search" is never an id, so with a sub-resource it is ErrBadID.
// Every other failure wraps ErrBadID.
func ParsePackagePath(escapedPath string) (Route, error) {
	rest, ok := strings.CutPrefix(escapedPath, "/packages/")
	if !ok {
		rest, ok = strings.CutPrefix(escapedPath, "//packages/")
	}
	if !ok {
		return Route{}, fmt.Errorf("%w: path %q is not under /packages/", ErrBadID, escapedPath)
	}
	if len(rest) > 3*maxIDLen+32 {
		return Route{}, fmt.Errorf("%w: path too long", ErrBadID)
	}
	var sub string
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		switch s := rest[i+1:]; s {
		case SubMeta, SubData, SubSchema, SubChangelog, SubReadme, SubVersions, SubArchive:
			sub, rest = s, rest[:i]
		}
	}
	if rest == advancedSearch {
		if sub == "" {
			return Route{}, ErrAdvancedSearch
		}
		return Route{}, fmt.Errorf("%w: %q is not a package id", ErrBadID, advancedSearch)
	}
	id, err := url.PathUnescape(rest)
	if err != nil {
		return Route{}, fmt.Errorf("%w: bad escape in %q", ErrBadID, rest)
	}
	if !ValidID(id) {
		return Route{}, fmt.Errorf("%w: %q is not owner/name or name of [A-Za-z0-9_-] (starting and ending alphanumeric)", ErrBadID, id)
	}
	return Route{ID: id, Sub: sub}, nil
}
