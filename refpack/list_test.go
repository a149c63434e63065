package refpack

import (
	"encoding/json"
	"errors"
	"net/url"
	"reflect"
	"testing"
)

func TestParseListQuery(t *testing.T) {
	tests := []struct {
		query    string
		advanced bool
		want     ListQuery
		bad      bool
	}{
		{"", false, ListQuery{Page: 1, PageSize: 20}, false},
		{"q=Geo&includeArchived=true&page=3&pageSize=100", false, ListQuery{Q: "Geo", IncludeArchived: true, Page: 3, PageSize: 100}, false},
		{"page=&pageSize=", false, ListQuery{Page: 1, PageSize: 20}, false},
		{"pageSize=1", false, ListQuery{Page: 1, PageSize: 1}, false},
		{"tags=a&ownerId=o&filters=x:y", false, ListQuery{Page: 1, PageSize: 20}, false},
		{"tags=a&tags=b&tags=&ownerId=vendor&filters=license:MIT,%20idField%20:%20code", true,
			ListQuery{Page: 1, PageSize: 20, Tags: []string{"a", "b"}, OwnerID: "vendor", Filters: map[string]string{"license": "MIT", "idField": "code"}}, false},
		{"filters=k:", true, ListQuery{Page: 1, PageSize: 20, Filters: map[string]string{"k": ""}}, false},
		{"filters=url:http://x", true, ListQuery{Page: 1, PageSize: 20, Filters: map[string]string{"url": "http://x"}}, false},
		{"page=0", false, ListQuery{}, true},
		{"page=-1", false, ListQuery{}, true},
		{"page=x", false, ListQuery{}, true},
		{"page=99999999999999999999", false, ListQuery{}, true},
		{"pageSize=0", false, ListQuery{}, true},
		{"pageSize=101", false, ListQuery{}, true},
		{"pageSize=1.5", false, ListQuery{}, true},
		{"includeArchived=maybe", false, ListQuery{}, true},
		{"filters=novalue", true, ListQuery{}, true},
		{"filters=:v", true, ListQuery{}, true},
		{"filters=a:b,,c:d", true, ListQuery{}, true},
		{"filters=a:b,", true, ListQuery{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			v, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseListQuery(v, tt.advanced)
			if tt.bad {
				if !errors.Is(err, ErrBadQuery) {
					t.Fatalf("ParseListQuery = %+v, %v; want ErrBadQuery", got, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseListQuery = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestApply(t *testing.T) {
	item := func(id, name, desc string, archived bool) ListItem {
		return ListItem{"id": id, "name": name, "description": desc, "version": "1.0.0", "isArchived": archived, "updatedAt": "x", "extra": 1.5}
	}
	items := []ListItem{
		item("zeta/z", "Zeta", "last", false),
		item("vendor/country-codes", "Country Codes ISO3166", "List of countries", false),
		item("currencies", "Currencies", "money", false),
		item("vendor/old", "Old", "gone", true),
		item("acme/cities", "Cities", "Towns of the COUNTRY", false),
	}
	fields := map[string]map[string]any{
		"vendor/country-codes": {"tags": []any{"geography", "iso3166"}, "license": "MIT", "authors": []any{"Ann"}},
		"acme/cities":          {"tags": []any{"Geography"}, "license": "CC0"},
	}
	lookup := func(id string) map[string]any { return fields[id] }
	ids := func(p ListPage) []string {
		out := []string{}
		for _, it := range p.Items {
			out = append(out, it["id"].(string))
		}
		return out
	}
	tests := []struct {
		name  string
		q     ListQuery
		want  []string
		total int
		pages int
	}{
		{"all sorted, archived hidden", ListQuery{Page: 1, PageSize: 20}, []string{"acme/cities", "currencies", "vendor/country-codes", "zeta/z"}, 4, 1},
		{"include archived", ListQuery{Page: 1, PageSize: 20, IncludeArchived: true}, []string{"acme/cities", "currencies", "vendor/country-codes", "vendor/old", "zeta/z"}, 5, 1},
		{"q matches id name description case-insensitively", ListQuery{Q: "country", Page: 1, PageSize: 20}, []string{"acme/cities", "vendor/country-codes"}, 2, 1},
		{"q matches name", ListQuery{Q: "ZETA", Page: 1, PageSize: 20}, []string{"zeta/z"}, 1, 1},
		{"page 2 of 2", ListQuery{Page: 2, PageSize: 3}, []string{"zeta/z"}, 4, 2},
		{"page past the end", ListQuery{Page: 5, PageSize: 3}, []string{}, 4, 2},
		{"huge page", ListQuery{Page: 1 << 62, PageSize: 100}, []string{}, 4, 1},
		{"owner", ListQuery{OwnerID: "vendor", Page: 1, PageSize: 20}, []string{"vendor/country-codes"}, 1, 1},
		{"owner is exact", ListQuery{OwnerID: "vend", Page: 1, PageSize: 20}, []string{}, 0, 0},
		{"tags all present", ListQuery{Tags: []string{"geography", "iso3166"}, Page: 1, PageSize: 20}, []string{"vendor/country-codes"}, 1, 1},
		{"tag case-insensitive", ListQuery{Tags: []string{"GEOGRAPHY"}, Page: 1, PageSize: 20}, []string{"acme/cities", "vendor/country-codes"}, 2, 1},
		{"filters", ListQuery{Filters: map[string]string{"license": "mit"}, Page: 1, PageSize: 20}, []string{"vendor/country-codes"}, 1, 1},
		{"filter array field", ListQuery{Filters: map[string]string{"authors": "ann"}, Page: 1, PageSize: 20}, []string{"vendor/country-codes"}, 1, 1},
		{"filter unknown field", ListQuery{Filters: map[string]string{"nope": "x"}, Page: 1, PageSize: 20}, []string{}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.q.Apply(items, lookup)
			if got := ids(p); !reflect.DeepEqual(got, tt.want) || p.TotalCount != tt.total || p.TotalPages != tt.pages || p.PageNumber != tt.q.Page || p.PageSize != tt.q.PageSize {
				t.Fatalf("Apply = %v total=%d pages=%d page=%d size=%d; want %v total=%d pages=%d", got, p.TotalCount, p.TotalPages, p.PageNumber, p.PageSize, tt.want, tt.total, tt.pages)
			}
		})
	}
	// Items keep the upstream's fields and an empty page encodes as [].
	p := ListQuery{Page: 1, PageSize: 1}.Apply(items, nil)
	if p.Items[0]["extra"] != 1.5 {
		t.Errorf("fields not kept: %v", p.Items[0])
	}
	b, _ := json.Marshal(ListQuery{Page: 9, PageSize: 1}.Apply(items, nil))
	if string(b) != `{"items":[],"totalCount":4,"pageNumber":9,"pageSize":1,"totalPages":4}` {
		t.Errorf("empty page = %s", b)
	}
	// Without manifest fields a tag search cannot match.
	if got := ids((ListQuery{Tags: []string{"geography"}, Page: 1, PageSize: 20}).Apply(items, nil)); len(got) != 0 {
		t.Errorf("tag search without fields = %v", got)
	}
}
