package hydrillatest

import (
	"encoding/json"
	"testing"

	"github.com/regmirror/regmirror/hydrilla"
)

// StartGenerated serves a generated repository of n mappings under /api_v2, as
// the real public repository is, for the length of the test; it returns the
// repository and its base URL.
func StartGenerated(t testing.TB, n int, seed int64) (*Repo, string) {
	repo := Generate(n, seed)
	repo.SetPrefix("/api_v2")
	repo.Start(t)
	return repo, repo.BaseURL()
}

// Routes lists every item version path, each <id>.json, and every file path.
func (r *Repo) Routes() []string {
	var out []string
	seen := map[string]bool{}
	for _, ref := range r.Refs() {
		out = append(out, "/"+ref.String())
		latest := "/" + ref.Type + "/" + ref.Identifier + ".json"
		if !seen[latest] {
			seen[latest] = true
			out = append(out, latest)
		}
	}
	for _, f := range r.Files() {
		out = append(out, "/file/sha256/"+f)
	}
	return out
}

// QueryMappings reads the mappings of a /query answer.
func QueryMappings(t testing.TB, body []byte) []hydrilla.QueryMapping {
	t.Helper()
	var qa struct {
		Mappings []hydrilla.QueryMapping `json:"mappings"`
	}
	if err := json.Unmarshal(body, &qa); err != nil {
		t.Fatalf("query answer %q: %v", body, err)
	}
	return qa.Mappings
}

// SameMappings reports whether two /query answers name the same mapping
// versions in the same order.
func SameMappings(a, b []hydrilla.QueryMapping) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Identifier != b[i].Identifier || a[i].Version.Compare(b[i].Version) != 0 {
			return false
		}
	}
	return true
}
