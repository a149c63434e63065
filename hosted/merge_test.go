package hosted

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/refpack"
	"github.com/regmirror/regmirror/refpack/registrytest"
)

// fetcherFor reads the upstream's answer to q's list or search over HTTP, as
// the mirror's read path does.
func fetcherFor(base string, advanced bool, query url.Values) PageFetcher {
	return func(ctx context.Context, page int) (refpack.ListPage, error) {
		q := url.Values{}
		for k, v := range query {
			if k != "page" && k != "pageSize" {
				q[k] = v
			}
		}
		q.Set("page", strconv.Itoa(page))
		q.Set("pageSize", strconv.Itoa(UpstreamPageSize))
		path := "/packages"
		if advanced {
			path = "/packages/advanced-search"
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path+"?"+q.Encode(), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return refpack.ListPage{}, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return refpack.ListPage{}, fmt.Errorf("upstream answered %d", resp.StatusCode)
		}
		var p refpack.ListPage
		err = json.NewDecoder(resp.Body).Decode(&p)
		return p, err
	}
}

func ids(items []refpack.ListItem) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = refpack.ItemID(it)
	}
	return out
}

func TestMergeList(t *testing.T) {
	reg := registrytest.New()
	for i := range 230 {
		reg.AddPackage("vendor", fmt.Sprintf("pkg-%03d", i), "1.0.0")
	}
	// The upstream holds packages under the hosted owner: never shown.
	reg.AddPackage("ourco", "rates", "9.0.0", registrytest.WithTitle("impostor"))
	reg.AddPackage("OurCo", "evil", "1.0.0")
	reg.AddPackage("zeta", "last", "1.0.0", registrytest.WithTags("fx"))
	srv := reg.Start(t)

	f := newFixture(t, "ourco")
	f.push("ourco", registrytest.MakeZip("rates", "1.0.0", registrytest.WithTags("fx"), registrytest.WithDescription("exchange rates")))
	f.push("ourco", registrytest.MakeZip("aaa", "0.1.0-rc.1"))
	f.push("ourco", registrytest.MakeZip("gone", "1.0.0"))
	f.rp.Archive(context.Background(), "ourco/gone", "", "k")

	list := func(advanced bool, query url.Values) refpack.ListPage {
		t.Helper()
		q, err := refpack.ParseListQuery(query, advanced)
		if err != nil {
			t.Fatal(err)
		}
		p, err := f.rp.MergeList(context.Background(), q, fetcherFor(srv.URL, advanced, query))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	// Pages of 3 concatenate to the whole, sorted by id, with the union's totals.
	var all []string
	first := list(false, url.Values{"pageSize": {"3"}})
	for page := 1; page <= first.TotalPages; page++ {
		p := list(false, url.Values{"pageSize": {"3"}, "page": {strconv.Itoa(page)}})
		if p.TotalCount != first.TotalCount || p.TotalPages != first.TotalPages || p.PageNumber != page || p.PageSize != 3 {
			t.Fatalf("page %d: %+v", page, p)
		}
		all = append(all, ids(p.Items)...)
	}
	want := []string{"ourco/aaa", "ourco/rates"}
	for i := range 230 {
		want = append(want, fmt.Sprintf("vendor/pkg-%03d", i))
	}
	want = append(want, "zeta/last")
	slices.Sort(want)
	if !slices.Equal(all, want) {
		t.Fatalf("pages concatenate to %d ids %v…, want %d", len(all), all[:min(5, len(all))], len(want))
	}
	if first.TotalCount != len(want) || first.TotalPages != (len(want)+2)/3 {
		t.Errorf("totals %d/%d, want %d/%d", first.TotalCount, first.TotalPages, len(want), (len(want)+2)/3)
	}
	for _, r := range reg.Requests() {
		if ps := r.Query.Get("pageSize"); ps != "100" {
			t.Errorf("upstream page fetched with pageSize %q", ps)
		}
	}

	// includeArchived shows the archived hosted package; the hosted item's fields.
	p := list(false, url.Values{"includeArchived": {"true"}, "q": {"ourco"}})
	if got := ids(p.Items); !slices.Equal(got, []string{"ourco/aaa", "ourco/gone", "ourco/rates"}) {
		t.Errorf("q=ourco&includeArchived: %v", got)
	}
	for _, it := range p.Items {
		if it["id"] == "ourco/rates" && (it["name"] != "rates" || it["description"] != "exchange rates" || it["version"] != "1.0.0" || it["isArchived"] != false || it["updatedAt"] != registrytest.DefaultCreated) {
			t.Errorf("hosted item %v", it)
		}
	}

	// Searches: tags match across both sources; an ownerId that is hosted asks no upstream.
	if got := ids(list(true, url.Values{"tags": {"fx"}}).Items); !slices.Equal(got, []string{"ourco/rates", "zeta/last"}) {
		t.Errorf("tags=fx: %v", got)
	}
	reg.Reset()
	if got := ids(list(true, url.Values{"ownerId": {"ourco"}}).Items); !slices.Equal(got, []string{"ourco/aaa", "ourco/rates"}) {
		t.Errorf("ownerId=ourco: %v", got)
	}
	if n := len(reg.Requests()); n != 0 {
		t.Errorf("a search for a hosted owner made %d upstream requests", n)
	}
	for _, r := range reg.Requests() {
		if strings.Contains(strings.ToLower(r.RawQuery), "ourco") {
			t.Errorf("upstream asked about the hosted owner: %s?%s", r.Path, r.RawQuery)
		}
	}

	// The upstream down: the hosted packages, and the cause.
	reg.SetFail(http.StatusServiceUnavailable)
	q, _ := refpack.ParseListQuery(url.Values{}, false)
	p, err := f.rp.MergeList(context.Background(), q, fetcherFor(srv.URL, false, url.Values{}))
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("err %v, want the upstream's 503", err)
	}
	if got := ids(p.Items); !slices.Equal(got, []string{"ourco/aaa", "ourco/rates"}) || p.TotalCount != 2 {
		t.Errorf("upstream down: %v (%d)", got, p.TotalCount)
	}
}

func TestMergeListRefusesEndlessUpstream(t *testing.T) {
	f := newFixture(t, "ourco")
	calls := 0
	fetch := func(ctx context.Context, page int) (refpack.ListPage, error) {
		calls++
		return refpack.ListPage{TotalPages: 1 << 30, TotalCount: 100 << 30}, nil
	}
	q, _ := refpack.ParseListQuery(url.Values{}, false)
	if _, err := f.rp.MergeList(context.Background(), q, fetch); err == nil {
		t.Error("an upstream claiming 2^30 pages was read")
	}
	if calls != 1 {
		t.Errorf("%d pages fetched", calls)
	}
}
