package refpack

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// ErrBadQuery is wrapped by every error of ParseListQuery (a 400).
var ErrBadQuery = errors.New("invalid query")

// ListItem is one item of a package list, kept with the upstream's fields as
// given ("id", "name", "description", "version", "isArchived", "updatedAt", and
// whatever else it sends) so the mirror never drops or reshapes them.
type ListItem = map[string]any

// ListQuery is the query of GET /packages and /packages/advanced-search.
type ListQuery struct {
	// Q matches id, name or description, case-insensitively; "" matches all.
	Q string
	// IncludeArchived keeps archived items.
	IncludeArchived bool
	// Page is 1-based; PageSize is 1–100.
	Page, PageSize int
	// Tags must all be present (advanced search only).
	Tags []string
	// OwnerID must equal the id's owner part (advanced search only).
	OwnerID string
	// Filters are manifest field/value pairs that must all match (advanced search only).
	Filters map[string]string
}

// Paging defaults and bounds of refpack.md.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
)

// ParseListQuery reads a list query. page ≥ 1 (default 1) and pageSize 1–100
// (default 20); an empty value takes the default. With advanced, tags
// (repeatable), ownerId and filters ("k1:v1,k2:v2"; a pair without ':' or with an
// empty key is malformed) are read too. Errors wrap ErrBadQuery and say which
// parameter is wrong.
func ParseListQuery(v url.Values, advanced bool) (ListQuery, error) {
	q := ListQuery{Q: v.Get("q"), Page: 1, PageSize: DefaultPageSize}
	var err error
	if s := v.Get("includeArchived"); s != "" {
		if q.IncludeArchived, err = strconv.ParseBool(s); err != nil {
			return ListQuery{}, fmt.Errorf("%w: includeArchived must be true or false", ErrBadQuery)
		}
	}
	if s := v.Get("page"); s != "" {
		if q.Page, err = strconv.Atoi(s); err != nil || q.Page < 1 {
			return ListQuery{}, fmt.Errorf("%w: page must be an integer of at least 1", ErrBadQuery)
		}
	}
	if s := v.Get("pageSize"); s != "" {
		if q.PageSize, err = strconv.Atoi(s); err != nil || q.PageSize < 1 || q.PageSize > MaxPageSize {
			return ListQuery{}, fmt.Errorf("%w: pageSize must be an integer from 1 to %d", ErrBadQuery, MaxPageSize)
		}
	}
	if !advanced {
		return q, nil
	}
	for _, t := range v["tags"] {
		if t != "" {
			q.Tags = append(q.Tags, t)
		}
	}
	q.OwnerID = v.Get("ownerId")
	if s := v.Get("filters"); s != "" {
		q.Filters = make(map[string]string)
		for pair := range strings.SplitSeq(s, ",") {
			k, val, ok := strings.Cut(pair, ":")
			k = strings.TrimSpace(k)
			if !ok || k == "" {
				return ListQuery{}, fmt.Errorf("%w: filters must be key:value pairs separated by commas, %q is not", ErrBadQuery, truncate(pair, 80))
			}
			q.Filters[k] = strings.TrimSpace(val)
		}
	}
	return q, nil
}

// ListPage is the registry's list answer.
type ListPage struct {
	Items      []ListItem `json:"items"`
	TotalCount int        `json:"totalCount"`
	PageNumber int        `json:"pageNumber"`
	PageSize   int        `json:"pageSize"`
	TotalPages int        `json:"totalPages"`
}

// Apply filters items by the query, sorts them by id and cuts the asked page.
// fields returns the manifest fields of an item's package (for Tags and Filters);
// when it is nil or returns nil, an item cannot be shown to match a tag or filter
// and is left out of such a search. Items are returned as given, not copied.
// A page past the end has no items; Items is never nil so it encodes as [].
func (q ListQuery) Apply(items []ListItem, fields func(id string) map[string]any) ListPage {
	return q.Cut(q.Filter(items, fields))
}

// Filter returns the items that match the query (see Apply), sorted by id.
func (q ListQuery) Filter(items []ListItem, fields func(id string) map[string]any) []ListItem {
	var kept []ListItem
	for _, it := range items {
		if q.matches(it, fields) {
			kept = append(kept, it)
		}
	}
	SortByID(kept)
	return kept
}

// SortByID sorts list items by id, as every list is.
func SortByID(items []ListItem) {
	sort.SliceStable(items, func(i, j int) bool { return ItemID(items[i]) < ItemID(items[j]) })
}

// Cut cuts the asked page out of items that are already filtered and sorted;
// TotalCount and TotalPages are those of all of them.
func (q ListQuery) Cut(kept []ListItem) ListPage {
	page, size := max(q.Page, 1), q.PageSize
	if size < 1 || size > MaxPageSize {
		size = DefaultPageSize
	}
	out := ListPage{Items: []ListItem{}, TotalCount: len(kept), PageNumber: page, PageSize: size}
	out.TotalPages = (len(kept) + size - 1) / size
	// Compare pages before multiplying: a huge page number must not overflow.
	if page <= out.TotalPages {
		from := (page - 1) * size
		out.Items = kept[from:min(from+size, len(kept))]
	}
	return out
}

// ItemID is a list item's "id" ("" when it has none).
func ItemID(it ListItem) string { s, _ := it["id"].(string); return s }

// matches applies every criterion of q to one item.
func (q ListQuery) matches(it ListItem, fields func(string) map[string]any) bool {
	id := ItemID(it)
	if !q.IncludeArchived {
		if a, _ := it["isArchived"].(bool); a {
			return false
		}
	}
	if q.Q != "" {
		needle := strings.ToLower(q.Q)
		found := false
		for _, k := range []string{"id", "name", "description"} {
			if s, _ := it[k].(string); strings.Contains(strings.ToLower(s), needle) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if q.OwnerID != "" {
		owner, _, ok := strings.Cut(id, "/")
		if !ok || owner != q.OwnerID {
			return false
		}
	}
	if len(q.Tags) == 0 && len(q.Filters) == 0 {
		return true
	}
	var f map[string]any
	if fields != nil {
		f = fields(id)
	}
	if f == nil {
		return false
	}
	for _, t := range q.Tags {
		if !valueMatches(f["tags"], t) {
			return false
		}
	}
	for k, v := range q.Filters {
		if !valueMatches(f[k], v) {
			return false
		}
	}
	return true
}

// valueMatches compares a manifest value with a query string case-insensitively:
// strings by equality, arrays when any element matches, numbers and booleans by
// their JSON text.
func valueMatches(v any, want string) bool {
	switch x := v.(type) {
	case string:
		return strings.EqualFold(x, want)
	case []any:
		for _, e := range x {
			if valueMatches(e, want) {
				return true
			}
		}
	case []string:
		for _, e := range x {
			if strings.EqualFold(e, want) {
				return true
			}
		}
	case bool, float64, int, int64:
		return strings.EqualFold(fmt.Sprint(x), want)
	case fmt.Stringer: // json.Number
		return strings.EqualFold(x.String(), want)
	}
	return false
}
