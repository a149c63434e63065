package hydrilla

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Item types, as in the "type" field and in the /resource/ and /mapping/
// routes.
const (
	TypeResource = "resource"
	TypeMapping  = "mapping"
)

// Errors wrapped by ParseItem and CheckItem, so callers can tell a broken
// upstream answer (ErrBadItem) from a well-formed item that is not the one
// asked for (ErrItemMismatch). Both mean: do not store, answer 502.
var (
	ErrBadItem      = errors.New("invalid item JSON")
	ErrItemMismatch = errors.New("item does not match the request")
)

// ItemRef names one item version: what a /resource/<id>/<ver> or
// /mapping/<id>/<ver> path asks for.
type ItemRef struct {
	Type       string // TypeResource or TypeMapping
	Identifier string
	Version    Version
}

// String returns the ref as the path the real server serves it under,
// "resource/<id>/<ver>", which is also a natural cache key.
func (r ItemRef) String() string {
	return r.Type + "/" + r.Identifier + "/" + r.Version.String()
}

// FileRef is a {"file", "sha256"} entry naming a /file/sha256/<hex> blob.
type FileRef struct {
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
}

// Item is what the mirror needs to know of one item version. It is read from
// the upstream's bytes and never written back.
type Item struct {
	Type        string // TypeResource or TypeMapping
	Identifier  string
	LongName    string
	Version     Version // normalised
	Revision    int     // resources only; 0 when absent
	SchemaMajor int     // 1 or 2
	// Files are every sha256 file the item names, scripts first, then
	// source_copyright, then any other {"file", "sha256"} object found in
	// fields this package does not know; each sha256 once. A full mirror
	// must hold all of them for Haketilo to install the item.
	Files []FileRef
	// Patterns are a mapping's payload keys (URL patterns), sorted.
	Patterns []string
}

// Ref returns the item's identity.
func (it *Item) Ref() ItemRef {
	return ItemRef{Type: it.Type, Identifier: it.Identifier, Version: it.Version}
}

// schemaNameRe is the real server's $schema pattern (hydrilla
// json_instances._schema_name_re): a name, a dash, a dotted version whose
// major has no leading zero, ".schema.json".
var schemaNameRe = regexp.MustCompile(`^([^/]*)-([1-9][0-9]*)((?:\.(?:[1-9][0-9]*|0))*)\.schema\.json$`)

// parseSchema splits a $schema value into its document name and major
// version. Like the real server it reads only the last path segment, so a
// bare "api_mapping_description-2.schema.json" works as well as the full URL.
func parseSchema(s string) (name string, major int, ok bool) {
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		s = s[i+1:]
	}
	m := schemaNameRe.FindStringSubmatch(s)
	if m == nil {
		return "", 0, false
	}
	major, err := strconv.Atoi(m[2])
	if err != nil {
		return "", 0, false
	}
	return m[1], major, true
}

// itemSchemaNames maps the $schema document name of item JSON to its type.
var itemSchemaNames = map[string]string{
	"api_resource_description": TypeResource,
	"api_mapping_description":  TypeMapping,
}

// knownFields are the top-level fields ParseItem reads itself; every other
// field is only searched for file references.
var knownFields = map[string]bool{
	"$schema": true, "type": true, "identifier": true, "long_name": true,
	"version": true, "revision": true, "scripts": true,
	"source_copyright": true, "payloads": true,
}

// ParseItem reads raw item JSON as a Hydrilla server sends it. It accepts
// $schema majors 1 and 2 of api_resource_description and
// api_mapping_description, ignores fields it does not know, and refuses what
// the mirror could not use safely: a bad identifier, version or sha256.
// The type comes from "type" when present, else from $schema; both must agree.
func ParseItem(body []byte) (*Item, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrBadItem)
	}
	it := &Item{}

	var schema string
	if err := getField(top, "$schema", &schema, true); err != nil {
		return nil, err
	}
	name, major, ok := parseSchema(schema)
	schemaType := itemSchemaNames[name]
	if !ok || schemaType == "" {
		return nil, fmt.Errorf("%w: $schema %q is not an item description", ErrBadItem, schema)
	}
	if major != 1 && major != 2 {
		return nil, fmt.Errorf("%w: $schema %q: unsupported major version %d", ErrBadItem, schema, major)
	}
	it.SchemaMajor = major

	it.Type = schemaType
	if _, ok := top["type"]; ok {
		var typ string
		if err := getField(top, "type", &typ, true); err != nil {
			return nil, err
		}
		if typ != schemaType {
			return nil, fmt.Errorf("%w: type %q but $schema %q", ErrBadItem, typ, schema)
		}
	}

	if err := getField(top, "identifier", &it.Identifier, true); err != nil {
		return nil, err
	}
	if !ValidID(it.Identifier) {
		return nil, fmt.Errorf("%w: identifier %q", ErrBadItem, it.Identifier)
	}
	if err := getField(top, "long_name", &it.LongName, false); err != nil {
		return nil, err
	}
	if err := getField(top, "version", &it.Version, true); err != nil {
		return nil, err
	}
	if it.Type == TypeResource {
		if err := getField(top, "revision", &it.Revision, false); err != nil {
			return nil, err
		}
		if it.Revision < 0 {
			return nil, fmt.Errorf("%w: negative revision", ErrBadItem)
		}
	}

	seen := map[string]bool{}
	addFiles := func(field string) error {
		raw, ok := top[field]
		if !ok || isNull(raw) {
			return nil
		}
		var refs []FileRef
		if err := json.Unmarshal(raw, &refs); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrBadItem, field, err)
		}
		for _, f := range refs {
			if err := it.addFile(f, seen); err != nil {
				return fmt.Errorf("%s: %w", field, err)
			}
		}
		return nil
	}
	if err := addFiles("scripts"); err != nil {
		return nil, err
	}
	if err := addFiles("source_copyright"); err != nil {
		return nil, err
	}
	// Other fields are walked in sorted order so Files is deterministic.
	var others []string
	for k := range top {
		if !knownFields[k] {
			others = append(others, k)
		}
	}
	slices.Sort(others)
	for _, k := range others {
		if err := it.walkFiles(top[k], seen, 0); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
	}

	if it.Type == TypeMapping {
		if raw, ok := top["payloads"]; ok && !isNull(raw) {
			var payloads map[string]json.RawMessage
			if err := json.Unmarshal(raw, &payloads); err != nil {
				return nil, fmt.Errorf("%w: payloads: not an object", ErrBadItem)
			}
			it.Patterns = make([]string, 0, len(payloads))
			for p := range payloads {
				it.Patterns = append(it.Patterns, p)
			}
			slices.Sort(it.Patterns)
		}
	}
	return it, nil
}

// CheckItem parses body and checks it is the item version want names: same
// type, identifier and (normalised) version. The mirror calls it before
// storing an item fetched from <type>/<id>/<ver>, because Haketilo trusts the
// mirror to serve what the path says.
func CheckItem(body []byte, want ItemRef) (*Item, error) {
	it, err := ParseItem(body)
	if err != nil {
		return nil, err
	}
	switch {
	case it.Type != want.Type:
		return nil, fmt.Errorf("%w: type %q, want %q", ErrItemMismatch, it.Type, want.Type)
	case it.Identifier != want.Identifier:
		return nil, fmt.Errorf("%w: identifier %q, want %q", ErrItemMismatch, it.Identifier, want.Identifier)
	case it.Version.Compare(want.Version) != 0:
		return nil, fmt.Errorf("%w: version %s, want %s", ErrItemMismatch, it.Version, want.Version)
	}
	return it, nil
}

// addFile records f unless its sha256 is already recorded; a bad sha256 is
// an error because the mirror would build a /file/sha256/ path from it.
func (it *Item) addFile(f FileRef, seen map[string]bool) error {
	if !ValidHex(f.SHA256) {
		return fmt.Errorf("%w: file %q: bad sha256 %q", ErrBadItem, f.File, f.SHA256)
	}
	if !seen[f.SHA256] {
		seen[f.SHA256] = true
		it.Files = append(it.Files, f)
	}
	return nil
}

// maxWalkDepth bounds the search of unknown fields; encoding/json already
// refuses absurd nesting, this only keeps the walk's cost plain.
const maxWalkDepth = 32

// walkFiles finds {"file": string, "sha256": string} objects anywhere in raw,
// so file lists added by future schema versions are still mirrored.
func (it *Item) walkFiles(raw json.RawMessage, seen map[string]bool, depth int) error {
	if depth > maxWalkDepth {
		return nil
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	switch raw[0] {
	case '{':
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return nil
		}
		var f FileRef
		fileRaw, hasFile := obj["file"]
		shaRaw, hasSHA := obj["sha256"]
		// Only string-valued pairs count: a null or numeric "sha256" in a
		// field we do not know is not a file reference we can fetch.
		if hasFile && hasSHA && isString(fileRaw) && isString(shaRaw) &&
			json.Unmarshal(fileRaw, &f.File) == nil && json.Unmarshal(shaRaw, &f.SHA256) == nil {
			return it.addFile(f, seen)
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if err := it.walkFiles(obj[k], seen, depth+1); err != nil {
				return err
			}
		}
	case '[':
		var arr []json.RawMessage
		if err := json.Unmarshal(raw, &arr); err != nil {
			return nil
		}
		for _, e := range arr {
			if err := it.walkFiles(e, seen, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// getField decodes top[name] into dst; a missing or null field is an error
// only when required.
func getField(top map[string]json.RawMessage, name string, dst any, required bool) error {
	raw, ok := top[name]
	if !ok || isNull(raw) {
		if required {
			return fmt.Errorf("%w: missing %q", ErrBadItem, name)
		}
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("%w: field %q: %v", ErrBadItem, name, err)
	}
	return nil
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

func isString(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '"'
}
