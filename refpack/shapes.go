package refpack

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// The registry's own answer shapes and rules, shared by every part that
// answers as the registry does: the hosted packages of the mirror and the test
// registry. Keeping one copy keeps the two from drifting apart.

// ManifestKeys is the key order of the seed's manifest (and of /meta).
var ManifestKeys = []string{"id", "version", "title", "idField", "nameField", "description", "authors", "createdUtc", "tags", "license"}

// ListItemKeys is the key order of the seed's list items.
var ListItemKeys = []string{"id", "name", "description", "version", "isArchived", "updatedAt"}

// OrderedJSON encodes m with the keys of order first, then the rest sorted, so
// answers are stable and look like the seed's. It panics on a value JSON cannot
// encode, which only a programming mistake produces (values come from decoded
// JSON).
func OrderedJSON(m map[string]any, order []string) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	n := 0
	write := func(k string) {
		v, ok := m[k]
		if !ok {
			return
		}
		if n > 0 {
			b.WriteByte(',')
		}
		n++
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(v)
		if err != nil {
			panic(fmt.Sprintf("refpack: encode %q: %v", k, err))
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	for _, k := range order {
		write(k)
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(order, k) {
			write(k)
		}
	}
	b.WriteByte('}')
	return b.Bytes()
}

// MarshalListPage encodes a list answer with its items' keys in the seed's
// order (ListItemKeys first), as the registry writes it.
func MarshalListPage(p ListPage) []byte {
	var b bytes.Buffer
	b.WriteString(`{"items":[`)
	for i, it := range p.Items {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(OrderedJSON(it, ListItemKeys))
	}
	fmt.Fprintf(&b, `],"totalCount":%d,"pageNumber":%d,"pageSize":%d,"totalPages":%d}`, p.TotalCount, p.PageNumber, p.PageSize, p.TotalPages)
	return b.Bytes()
}

// VersionsAnswer is the registry's /versions answer.
type VersionsAnswer struct {
	PackageID string        `json:"packageId"`
	Versions  []VersionInfo `json:"versions"`
}

// SortNewestFirst orders versions as /versions lists them: highest SemVer
// precedence first, versions of equal precedence (differing only in build
// metadata) by their strings, descending. Versions that are not SemVer go last.
func SortNewestFirst(vs []VersionInfo) {
	parsed := make(map[string]*semver.Version, len(vs))
	for _, v := range vs {
		if sv, err := ParseVersion(v.Version); err == nil {
			parsed[v.Version] = sv
		}
	}
	slices.SortStableFunc(vs, func(a, b VersionInfo) int {
		sa, sb := parsed[a.Version], parsed[b.Version]
		switch {
		case sa == nil && sb == nil:
			return strings.Compare(b.Version, a.Version)
		case sa == nil:
			return 1
		case sb == nil:
			return -1
		}
		if c := sb.Compare(sa); c != 0 {
			return c
		}
		return strings.Compare(b.Version, a.Version)
	})
}

// ListedVersion is the version a list shows for a package: its latest (see
// Latest), or when every version is archived the one that would be latest were
// none archived (the item is then marked archived and shown only with
// includeArchived). It reports false when no version is SemVer.
func ListedVersion(versions []VersionInfo) (string, bool) {
	if l, ok := Latest(versions); ok {
		return l, true
	}
	all := slices.Clone(versions)
	for i := range all {
		all[i].IsArchived = false
	}
	return Latest(all)
}

// DownloadName is the file name of a download's Content-Disposition:
// "<owner>-<name>-<version>.refpack.zip" ("<name>-<version>…" for a
// one-segment id).
func DownloadName(id, version string) string {
	return strings.ReplaceAll(id, "/", "-") + "-" + version + ".refpack.zip"
}

// ContentDisposition is the Content-Disposition of a download, quoted always
// as the API document shows it (mime.FormatMediaType would leave a token-only
// name unquoted).
func ContentDisposition(id, version string) string {
	return `attachment; filename="` + DownloadName(id, version) + `"`
}
