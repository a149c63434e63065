package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/engine"
	"github.com/regmirror/regmirror/refpack"
)

// rpLocalList answers a list or search the mirror never stored, with every
// upstream down, from what it holds: the items of every list page it stored
// (the upstream's own fields, newest page first) and, for held packages no
// stored page lists, an item made from the package's held /versions and /meta.
// held is false when the mirror holds no list, /versions or /meta at all:
// then there is nothing to derive an answer from, and body is nil.
func (s *Server) rpLocalList(ctx context.Context, lq refpack.ListQuery) (body []byte, held bool, err error) {
	kept, held, err := s.rpHeldItems(ctx, lq)
	if err != nil || !held {
		return nil, held, err
	}
	body, err = json.Marshal(lq.Cut(kept))
	return body, true, err
}

// rpHeldItems is every held package's list item that matches lq, sorted by
// id, made as rpLocalList describes; held is false when the mirror holds
// nothing of the RefPack API to make them from.
func (s *Server) rpHeldItems(ctx context.Context, lq refpack.ListQuery) (kept []refpack.ListItem, held bool, err error) {
	type listed struct {
		item refpack.ListItem
		at   time.Time
	}
	items := map[string]listed{}
	metas := map[string]map[string]string{} // id → version → meta key
	versions := map[string]*cache.Entry{}
	err = s.cache.Store().Entries(ctx, func(e *cache.Entry) error {
		if e.Status != http.StatusOK {
			return nil
		}
		k, _ := engine.Parse(e.Key)
		switch k.Kind {
		case engine.KindRefPackList, engine.KindRefPackSearch:
			held = true
			body, err := s.cache.ReadAll(ctx, e)
			if err != nil {
				return nil
			}
			var page struct {
				Items []refpack.ListItem `json:"items"`
			}
			if json.Unmarshal(body, &page) != nil {
				return nil
			}
			for _, it := range page.Items {
				id, _ := it["id"].(string)
				if old, ok := items[id]; id != "" && (!ok || e.FetchedAt.After(old.at)) {
					items[id] = listed{it, e.FetchedAt}
				}
			}
		case engine.KindRefPackVersions:
			held = true
			versions[k.ID] = e
		case engine.KindRefPackMeta:
			held = true
			if metas[k.ID] == nil {
				metas[k.ID] = map[string]string{}
			}
			metas[k.ID][k.Version] = e.Key
		}
		return nil
	})
	if err != nil || !held {
		return nil, held, err
	}
	readMeta := func(key string) map[string]any {
		hot, err := s.cache.Lookup(ctx, key)
		if err != nil || hot.Entry.Status != http.StatusOK {
			return nil
		}
		b := hot.Body
		if b == nil {
			if b, err = s.cache.ReadAll(ctx, hot.Entry); err != nil {
				return nil
			}
		}
		var m map[string]any
		if json.Unmarshal(b, &m) != nil {
			return nil
		}
		return m
	}
	// Held packages no stored page lists.
	for id, byVersion := range metas {
		if _, ok := items[id]; ok {
			continue
		}
		var infos []refpack.VersionInfo
		if ve := versions[id]; ve != nil {
			if b, err := s.cache.ReadAll(ctx, ve); err == nil {
				var vs struct {
					Versions []refpack.VersionInfo `json:"versions"`
				}
				json.Unmarshal(b, &vs)
				infos = vs.Versions
			}
		}
		if infos == nil {
			for v := range byVersion {
				infos = append(infos, refpack.VersionInfo{Version: v})
			}
		}
		latest, ok := refpack.Latest(infos)
		archived := false
		if !ok && lq.IncludeArchived {
			// Every version archived: the package still lists, at its highest version.
			all := make([]refpack.VersionInfo, len(infos))
			for i, vi := range infos {
				all[i] = refpack.VersionInfo{Version: vi.Version, CreatedAt: vi.CreatedAt}
			}
			latest, ok = refpack.Latest(all)
			archived = true
		}
		if !ok || byVersion[latest] == "" {
			continue
		}
		m := readMeta(byVersion[latest])
		if m == nil {
			continue
		}
		items[id] = listed{item: refpack.ListItem{
			"id": id, "name": m["title"], "description": m["description"], "version": latest,
			"isArchived": archived, "updatedAt": m["createdUtc"],
		}}
	}
	list := make([]refpack.ListItem, 0, len(items))
	for _, l := range items {
		list = append(list, l.item)
	}
	fields := func(id string) map[string]any {
		it := items[id].item
		v, _ := it["version"].(string)
		if key := metas[id][v]; key != "" {
			return readMeta(key)
		}
		return nil
	}
	return lq.Filter(list, fields), true, nil
}

// rpListLocal is rpList's fallback: a stored or fresh answer when there is one,
// else the mirror's own answer from what it holds.
func (s *Server) rpListLocal(w http.ResponseWriter, r *http.Request, advanced bool, q url.Values, err error) {
	lq, qerr := refpack.ParseListQuery(q, advanced)
	if qerr != nil {
		writeError(w, http.StatusBadRequest, "Invalid request", strings.TrimPrefix(qerr.Error(), refpack.ErrBadQuery.Error()+": "))
		return
	}
	body, held, lerr := s.rpLocalList(r.Context(), lq)
	if lerr != nil || !held {
		// Never a list made from nothing (design.md, honest answers).
		s.fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", refpack.ContentTypeJSON)
	s.writeJSON(w, r, s.eng.Derived("list made by the mirror from the packages it holds"), body)
}
