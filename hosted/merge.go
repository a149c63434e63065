package hosted

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/regmirror/regmirror/refpack"
)

// UpstreamPageSize is the page size of the upstream pages a merged list
// fetches (the registry's largest).
const UpstreamPageSize = refpack.MaxPageSize

// MaxUpstreamPages bounds the upstream pages one merged list reads (a hundred
// thousand packages), so an upstream claiming a billion pages cannot make the
// mirror fetch them.
const MaxUpstreamPages = 1000

// upstreamParallel is how many upstream pages are fetched at once after the
// first (which says how many there are).
const upstreamParallel = 4

// PageFetcher fetches one page (1-based, UpstreamPageSize items) of the
// upstream's answer to the same list or search. The caller builds it over its
// own read path, so the pages are cached like any other list answer.
type PageFetcher func(ctx context.Context, page int) (refpack.ListPage, error)

// MergeList answers a list (GET /packages) or search
// (/packages/advanced-search) as the union of the hosted packages that match q
// and the upstream's answer to the same query, sorted by id and paged by the
// mirror: TotalCount and TotalPages are the union's. Upstream items under a
// hosted owner are left out (nobody shadows a hosted owner by publishing
// upstream), and a search for a hosted owner (q.OwnerID) asks no upstream.
// Upstream items keep their fields as given.
//
// Every upstream page is read, because the union's totals depend on how many
// upstream items a hosted owner hides. When the upstream part fails, the
// answer holds the hosted packages alone and err says why: the caller still
// answers it (with the upstream down, hosted packages are still listed),
// unless it is empty, which would be a list made from nothing. fetch nil
// means no upstream.
func (s *RefPack) MergeList(ctx context.Context, q refpack.ListQuery, fetch PageFetcher) (refpack.ListPage, error) {
	items, fields := s.listing(ctx)
	union := q.Filter(items, func(id string) map[string]any { return fields[id] })
	if _, hostedOwner := s.HostedOwner(q.OwnerID); fetch == nil || (q.OwnerID != "" && hostedOwner) {
		return q.Cut(union), nil
	}
	up, err := s.upstreamItems(ctx, fetch)
	if err != nil {
		return q.Cut(union), err
	}
	seen := make(map[string]bool, len(union)+len(up))
	for _, it := range union {
		seen[refpack.ItemID(it)] = true
	}
	for _, it := range up {
		id := refpack.ItemID(it)
		if id == "" || seen[id] || s.Hosts(id) {
			continue
		}
		seen[id] = true
		union = append(union, it)
	}
	refpack.SortByID(union)
	return q.Cut(union), nil
}

// upstreamItems reads every page of the upstream's answer.
func (s *RefPack) upstreamItems(ctx context.Context, fetch PageFetcher) ([]refpack.ListItem, error) {
	first, err := fetch(ctx, 1)
	if err != nil {
		return nil, fmt.Errorf("upstream list page 1: %w", err)
	}
	pages := first.TotalPages
	if pages > MaxUpstreamPages {
		return nil, fmt.Errorf("the upstream lists %d pages of %d, more than the %d a merged list reads", pages, UpstreamPageSize, MaxUpstreamPages)
	}
	rest := make([][]refpack.ListItem, max(pages-1, 0))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(upstreamParallel)
	for p := 2; p <= pages; p++ {
		g.Go(func() error {
			pg, err := fetch(gctx, p)
			if err != nil {
				return fmt.Errorf("upstream list page %d: %w", p, err)
			}
			rest[p-2] = pg.Items
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := first.Items
	for _, r := range rest {
		out = append(out, r...)
	}
	return out, nil
}
