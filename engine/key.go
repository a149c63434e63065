package engine

import (
	"net/url"
	"strings"

	"github.com/regmirror/regmirror/hydrilla"
)

// Key names one stored answer. Every key is built here and parsed back here
// (Parse); no other file spells a key or cuts one apart. The layout:
//
//	rp/list?<query>                 RefPack GET /packages?<query>
//	rp/search?<query>               GET /packages/advanced-search?<query>
//	rp/versions/<id>                GET /packages/<id>/versions
//	rp/zip/<id>@<version>           the package zip at an explicit version
//	rp/meta/<id>@<version>          GET /packages/<id>/meta?version=
//	rp/doc/<sub>/<id>@<version>     /data, /schema, /changelog, /readme
//	rp/sync/<upstream base>         when a sync of that upstream last completed
//	hy/item/<type>/<id>/<version>   a Hydrilla item version (Meta: its identity)
//	hy/latest/<type>/<id>           GET /<type>/<id>.json (the newest version)
//	hy/file/<sha256 hex>            GET /file/sha256/<hex>
//	hy/source/<name>.json           a source description
//	hy/source-zip/<name>/<sha256>   its zip
//	hy/legacy<path>[?<query>]       a pre-1.0 route
//	hy/query/<upstream base>?<url>  one upstream's /query?url=
//	hy/list_all/<upstream base>     one upstream's /list_all
//	hy/sync/<upstream base>         when a sync of that upstream last completed
//
// A RefPack id holds at most one '/', never '@'; a version never holds '@',
// so the last '@' splits id and version.
type Key string

// Kind is what a key names.
type Kind uint8

// The kinds of keys, one per row of Key's layout.
const (
	KindUnknown Kind = iota
	KindRefPackList
	KindRefPackSearch
	KindRefPackVersions
	KindRefPackZip
	KindRefPackMeta
	KindRefPackDoc
	KindRefPackSync
	KindHydrillaItem
	KindHydrillaLatest
	KindHydrillaFile
	KindHydrillaSource
	KindHydrillaSourceZip
	KindHydrillaLegacy
	KindHydrillaQuery
	KindHydrillaListAll
	KindHydrillaSync
)

// prefixes of each kind, in Kind order; the query kinds end in '?'.
var prefixes = [...]string{
	KindRefPackList:       "rp/list?",
	KindRefPackSearch:     "rp/search?",
	KindRefPackVersions:   "rp/versions/",
	KindRefPackZip:        "rp/zip/",
	KindRefPackMeta:       "rp/meta/",
	KindRefPackDoc:        "rp/doc/",
	KindRefPackSync:       "rp/sync/",
	KindHydrillaItem:      "hy/item/",
	KindHydrillaLatest:    "hy/latest/",
	KindHydrillaFile:      "hy/file/",
	KindHydrillaSource:    "hy/source/",
	KindHydrillaSourceZip: "hy/source-zip/",
	KindHydrillaLegacy:    "hy/legacy",
	KindHydrillaQuery:     "hy/query/",
	KindHydrillaListAll:   "hy/list_all/",
	KindHydrillaSync:      "hy/sync/",
}

// Prefix is what every key of kind k starts with: for walks of the store.
func Prefix(k Kind) string { return prefixes[k] }

// RefPackList is the key of a list (/packages) or, advanced, a search.
func RefPackList(advanced bool, q url.Values) Key {
	if advanced {
		return Key(prefixes[KindRefPackSearch] + q.Encode())
	}
	return Key(prefixes[KindRefPackList] + q.Encode())
}

// RefPackVersions is the key of a package's /versions.
func RefPackVersions(id string) Key { return Key(prefixes[KindRefPackVersions] + id) }

// RefPackZip is the key of a package zip at an explicit version.
func RefPackZip(id, version string) Key {
	return Key(prefixes[KindRefPackZip] + id + "@" + version)
}

// RefPackMeta is the key of a package's /meta at an explicit version.
func RefPackMeta(id, version string) Key {
	return Key(prefixes[KindRefPackMeta] + id + "@" + version)
}

// RefPackDoc is the key of one document (sub: data, schema, changelog,
// readme) of a package at an explicit version.
func RefPackDoc(sub, id, version string) Key {
	return Key(prefixes[KindRefPackDoc] + sub + "/" + id + "@" + version)
}

// RefPackSync is the key of the record of a completed sync of an upstream.
func RefPackSync(base string) Key { return Key(prefixes[KindRefPackSync] + base) }

// HydrillaItem is the key of one item version.
func HydrillaItem(ref hydrilla.ItemRef) Key { return Key(prefixes[KindHydrillaItem] + ref.String()) }

// HydrillaLatest is the key of /<type>/<id>.json.
func HydrillaLatest(typ, id string) Key {
	return Key(prefixes[KindHydrillaLatest] + typ + "/" + id)
}

// HydrillaFile is the key of /file/sha256/<hex>.
func HydrillaFile(hex string) Key { return Key(prefixes[KindHydrillaFile] + hex) }

// HydrillaSource is the key of /source/<name>.json.
func HydrillaSource(name string) Key { return Key(prefixes[KindHydrillaSource] + name + ".json") }

// HydrillaSourceZip is the key of /source/<name>.zip with the given sha256.
func HydrillaSourceZip(name, sha string) Key {
	return Key(prefixes[KindHydrillaSourceZip] + name + "/" + sha)
}

// HydrillaLegacy is the key of a pre-1.0 route (its path and query).
func HydrillaLegacy(pathQuery string) Key { return Key(prefixes[KindHydrillaLegacy] + pathQuery) }

// HydrillaQuery is the key of one upstream's /query?url=<raw>.
func HydrillaQuery(base, raw string) Key {
	return Key(prefixes[KindHydrillaQuery] + base + "?" + raw)
}

// HydrillaListAll is the key of one upstream's /list_all.
func HydrillaListAll(base string) Key { return Key(prefixes[KindHydrillaListAll] + base) }

// HydrillaSync is the key of the record of a completed sync of an upstream.
func HydrillaSync(base string) Key { return Key(prefixes[KindHydrillaSync] + base) }

// Parsed is a key taken apart; which fields are set depends on Kind.
type Parsed struct {
	Kind     Kind
	ID       string // RefPack package id, Hydrilla item identifier or source name
	Version  string // explicit version (RefPack zip, meta, doc; Hydrilla item)
	Sub      string // RefPack document; Hydrilla item type
	Upstream string // base URL (sync records, /query, /list_all)
	Rest     string // a list's query, a file's hex, a legacy path, a query's url
}

// Parse takes a key apart. ok is false for a key of no known kind.
func Parse(k string) (p Parsed, ok bool) {
	for kind := KindRefPackList; kind <= KindHydrillaSync; kind++ {
		rest, found := strings.CutPrefix(k, prefixes[kind])
		if !found {
			continue
		}
		p.Kind = kind
		switch kind {
		case KindRefPackList, KindRefPackSearch, KindHydrillaFile, KindHydrillaLegacy:
			p.Rest = rest
		case KindRefPackVersions:
			p.ID = rest
		case KindRefPackZip, KindRefPackMeta:
			p.ID, p.Version, ok = cutLast(rest, '@')
			return p, ok
		case KindRefPackDoc:
			sub, iv, cut := strings.Cut(rest, "/")
			if !cut {
				return Parsed{}, false
			}
			p.Sub = sub
			p.ID, p.Version, ok = cutLast(iv, '@')
			return p, ok
		case KindRefPackSync, KindHydrillaListAll, KindHydrillaSync:
			p.Upstream = rest
		case KindHydrillaItem:
			typ, iv, cut := strings.Cut(rest, "/")
			if !cut {
				return Parsed{}, false
			}
			p.Sub = typ
			p.ID, p.Version, ok = cutLast(iv, '/')
			return p, ok
		case KindHydrillaLatest:
			typ, id, cut := strings.Cut(rest, "/")
			if !cut {
				return Parsed{}, false
			}
			p.Sub, p.ID = typ, id
		case KindHydrillaSource:
			p.ID = strings.TrimSuffix(rest, ".json")
		case KindHydrillaSourceZip:
			p.ID, p.Rest, ok = cutLast(rest, '/')
			return p, ok
		case KindHydrillaQuery:
			// A base URL holds no '?' (NewPool refuses a query in it).
			p.Upstream, p.Rest, _ = strings.Cut(rest, "?")
		}
		return p, true
	}
	return Parsed{}, false
}

func cutLast(s string, sep byte) (before, after string, ok bool) {
	i := strings.LastIndexByte(s, sep)
	if i <= 0 || i == len(s)-1 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}
