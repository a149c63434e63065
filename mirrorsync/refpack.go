package mirrorsync

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/engine"
	"github.com/regmirror/regmirror/refpack"
	"github.com/regmirror/regmirror/upstream"
)

// RefPack mirrors every RefPack upstream ahead of time: its whole catalogue
// (/packages?includeArchived=true, every page, kept so lists and searches can be
// answered offline), each package's /versions, and for every package in scope
// its latest version's zip and /meta (every version with AllVersions). Zips are
// verified exactly as on the read path; what is held is not fetched again; all
// of it is pinned.
func (s *Syncer) RefPack(ctx context.Context, o Options) []*Result {
	var out []*Result
	for _, up := range s.p.RefPack.Upstreams() {
		out = append(out, s.refPackOne(ctx, up, o))
	}
	return out
}

func (s *Syncer) refPackOne(ctx context.Context, up *upstream.Upstream, o Options) *Result {
	res := &Result{API: "refpack", Upstream: up.Base, Started: time.Now()}
	defer func() { res.Ended = time.Now() }()
	ids, err := s.refPackCatalogue(ctx, up)
	if err != nil {
		res.Err = fmt.Errorf("read the catalogue of %s: %w", up.Base, err)
		return res
	}
	ids = withoutHostedOwners(filterPackages(ids, o.Packages, o.Owners), s.p.HostedOwners)
	res.Packages = len(ids)

	var mu sync.Mutex
	var done atomic.Int64
	total := len(ids)
	watch := watchUpstream(ctx, up.Base)
	defer watch.cancel(nil)
	note := func(what string, a *engine.Answer, err error, doc bool) {
		if watch.check(err) {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		res.tally(what, a, err, doc)
	}
	progress := func(what string, more int) {
		mu.Lock()
		total += more
		t := total
		mu.Unlock()
		if o.Progress != nil {
			o.Progress(Progress{API: "refpack", Upstream: up.Base, Done: int(done.Add(1)), Total: t, What: what})
		}
	}
	type job struct{ id, version string }
	var jobs []job
	// What is fetched is committed in rounds (design.md, "Sync at the speed
	// of the network"); the sync is complete once the group is.
	group := cache.NewGroup()
	gctx, workers := fetching(watch.ctx, group, o)
	parallel(watch.ctx, workers, len(ids), func(i int) {
		id := ids[i]
		vt := &engine.Target{API: "refpack", Route: "versions", Key: engine.RefPackVersions(id), Class: cache.Mutable,
			Pool: s.p.RefPack, From: up, Path: "/packages/" + url.PathEscape(id) + "/" + refpack.SubVersions, Refresh: true, Pin: true}
		a, err := s.fetchWithRetry(gctx, vt)
		if err != nil || a.Relay != nil || a.Hot.Entry.Status != http.StatusOK {
			note(id+"/versions", a, err, true)
			progress(id+"/versions", 0)
			return
		}
		body, err := s.p.Cache.ReadAll(gctx, a.Hot.Entry)
		var vs struct {
			Versions []refpack.VersionInfo `json:"versions"`
		}
		if err == nil {
			err = json.Unmarshal(body, &vs)
		}
		if err != nil {
			note(id+"/versions", nil, err, true)
			progress(id+"/versions", 0)
			return
		}
		var want []string
		if o.AllVersions {
			for _, v := range vs.Versions {
				want = append(want, v.Version)
			}
		} else if v, ok := latestIncludingArchived(vs.Versions); ok {
			want = append(want, v)
		}
		mu.Lock()
		for _, v := range want {
			jobs = append(jobs, job{id, v})
		}
		mu.Unlock()
		progress(id+"/versions", len(want))
	})
	parallel(watch.ctx, workers, len(jobs), func(i int) {
		j := jobs[i]
		zt := s.p.Targets.RefPackZip(j.id, j.version, true)
		zt.From = up
		a, err := s.fetchWithRetry(gctx, zt)
		note(j.id+"@"+j.version, a, err, false)
		mt := s.p.Targets.RefPackMeta(j.id, j.version, true)
		mt.From = up
		a, err = s.fetchWithRetry(gctx, mt)
		note(j.id+"@"+j.version+"/meta", a, err, true)
		progress(j.id+"@"+j.version, 0)
	})
	s.finish(ctx, group, res, watch, engine.RefPackSync(up.Base))
	return res
}

// latestIncludingArchived is the latest version by refpack.md's rule, or, when
// every version is archived, the highest one (which the registry still lists).
func latestIncludingArchived(vs []refpack.VersionInfo) (string, bool) {
	if v, ok := refpack.Latest(vs); ok {
		return v, true
	}
	all := make([]refpack.VersionInfo, len(vs))
	for i, v := range vs {
		all[i] = refpack.VersionInfo{Version: v.Version, CreatedAt: v.CreatedAt}
	}
	return refpack.Latest(all)
}

// refPackCatalogue walks /packages?includeArchived=true page by page from one
// upstream, storing (and pinning) each page, and returns every package id.
func (s *Syncer) refPackCatalogue(ctx context.Context, up *upstream.Upstream) ([]string, error) {
	var ids []string
	seen := map[string]bool{}
	for page := 1; ; page++ {
		q := url.Values{"includeArchived": {"true"}, "page": {fmt.Sprint(page)}, "pageSize": {fmt.Sprint(refpack.MaxPageSize)}}
		t := &engine.Target{API: "refpack", Route: "list", Key: engine.RefPackList(false, q), Class: cache.Mutable, Pool: s.p.RefPack,
			From: up, Path: "/packages?" + q.Encode(), Refresh: true, Pin: true}
		a, err := s.fetchWithRetry(ctx, t)
		if err == nil && (a.Relay != nil || a.Hot.Entry.Status != http.StatusOK || a.Outcome.State == engine.Stale) {
			err = fmt.Errorf("page %d: %s", page, describe(a))
		}
		if err != nil {
			return nil, err
		}
		body, err := s.p.Cache.ReadAll(ctx, a.Hot.Entry)
		if err != nil {
			return nil, err
		}
		var lp struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
			TotalPages int `json:"totalPages"`
		}
		if err := json.Unmarshal(body, &lp); err != nil {
			return nil, fmt.Errorf("page %d: %w", page, err)
		}
		for _, it := range lp.Items {
			if refpack.ValidID(it.ID) && !seen[it.ID] {
				seen[it.ID] = true
				ids = append(ids, it.ID)
			}
		}
		if page >= lp.TotalPages || len(lp.Items) == 0 || page >= 100000 {
			return ids, nil
		}
	}
}

// withoutHostedOwners leaves out the ids of hosted owners: the mirror is
// their registry, and an upstream's packages under them are never fetched.
func withoutHostedOwners(ids, hosted []string) []string {
	if len(hosted) == 0 {
		return ids
	}
	out := ids[:0:0]
	for _, id := range ids {
		owner, _, two := strings.Cut(id, "/")
		if !two || !slices.ContainsFunc(hosted, func(h string) bool { return strings.EqualFold(h, owner) }) {
			out = append(out, id)
		}
	}
	return out
}

// filterPackages keeps the ids named by packages (either id form) or owned by
// owners; with neither, all.
func filterPackages(ids, packages, owners []string) []string {
	if len(packages) == 0 && len(owners) == 0 {
		return ids
	}
	want := map[string]bool{}
	for _, p := range packages {
		if u, err := url.PathUnescape(p); err == nil {
			p = u
		}
		want[p] = true
	}
	own := map[string]bool{}
	for _, o := range owners {
		own[o] = true
	}
	var out []string
	for _, id := range ids {
		owner, _, two := strings.Cut(id, "/")
		if want[id] || (two && own[owner]) {
			out = append(out, id)
		}
	}
	return out
}
