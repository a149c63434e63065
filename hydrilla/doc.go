// Package hydrilla holds what the mirror must know about the Hydrilla
// repository format (the Haketilo project): identifiers, versions, item JSON,
// the /list_all package list and the /query answer.
//
// It does no HTTP and no storage. Its one rule is that item bytes are never
// re-serialised: Haketilo keys an item version by the sha256 of the bytes it
// received, so the mirror parses item JSON only to check it and to learn what
// it names (files, patterns), and always serves the upstream's exact bytes.
//
// The shapes follow the real Hydrilla 3.x server (hydrilla.server, Flask):
// $schema URLs under https://hydrilla.koszko.org/schemas/ and a
// generated_by object of {"name", "version"}.
package hydrilla

// SchemaBase is the prefix every Hydrilla $schema URL starts with.
const SchemaBase = "https://hydrilla.koszko.org/schemas/"

// Schema URLs of the documents this package writes. They are the ones the
// real 3.x server emits, so a Haketilo client validates them unchanged.
const (
	SchemaPackageList = SchemaBase + "api_package_list-2.schema.json"
	SchemaQueryResult = SchemaBase + "api_query_result-1.schema.json"
)

// GeneratedBy is the generated_by object of Hydrilla documents: the program
// that wrote the document.
type GeneratedBy struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Mirror is the generated_by the mirror puts on documents it writes itself
// (merged lists, query answers), so nobody mistakes them for an upstream's.
var Mirror = GeneratedBy{Name: "regmirror", Version: "1"}
