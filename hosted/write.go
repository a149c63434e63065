package hosted

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/refpack"
)

// Writes of hosted packages: push and archive, under the registry's rules.

// Publish stores a pushed package for a hosted owner. zip is the upload,
// staged and already checked with refpack.ValidateZip, which returned man; it
// is moved into the store (the caller still Discards it). keyName labels the
// key in the log line. Answers: 400 for a manifest whose id or version the
// registry could not take, 409 for a version not above every published one,
// 200 {"success": true}.
func (s *RefPack) Publish(ctx context.Context, owner string, zip *cache.Staged, man *refpack.Manifest, keyName string) *Answer {
	owner, ok := s.HostedOwner(owner)
	if !ok {
		return errorAnswer(http.StatusForbidden, "Forbidden", "the owner is not hosted by this mirror")
	}
	if !refpack.ValidSegment(man.ID) {
		return validationFailed(fmt.Sprintf("manifest id %q is not a valid package name", clip(man.ID)))
	}
	sv, err := refpack.ParseVersion(man.Version)
	if err != nil {
		return validationFailed(fmt.Sprintf("manifest version %q is not SemVer", clip(man.Version)))
	}
	manifest, err := json.Marshal(man.Raw)
	if err != nil {
		return validationFailed("the manifest cannot be read")
	}
	id := owner + "/" + man.ID

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	// Another replica may have pushed: judge against the store, not a cache.
	s.freshPackage(ctx, id)
	s.mu.RLock()
	var above *version
	if p := s.pkgs[id]; p != nil {
		for _, v := range p.versions {
			if sv.Compare(v.sv) <= 0 && (above == nil || v.sv.Compare(above.sv) > 0) {
				above = v
			}
		}
	}
	s.mu.RUnlock()
	if above != nil {
		return errorAnswer(http.StatusConflict, "Conflict", fmt.Sprintf("Package '%s' version '%s' is not greater than published version '%s'", id, man.Version, above.rec.Version))
	}

	rec := record{ID: id, Version: man.Version, PushedAt: s.now().UTC(), Manifest: manifest}
	meta, _ := json.Marshal(rec)
	e := &cache.Entry{
		Key: entryKey(id, man.Version), Status: http.StatusOK, Class: cache.Immutable,
		FetchedAt: rec.PushedAt, Pinned: true, Hosted: true, Meta: meta,
		Header: http.Header{
			"Content-Type":        {refpack.ContentTypeZip},
			"Content-Disposition": {refpack.ContentDisposition(id, man.Version)},
		},
	}
	v, err := newVersion(rec, e)
	if err != nil {
		return validationFailed(err.Error())
	}
	if _, err := s.c.Put(ctx, e, zip); err != nil {
		s.log.Error("store hosted package", "id", id, "version", man.Version, "err", err)
		return errorAnswer(http.StatusInternalServerError, "Internal Server Error", "the mirror could not store the package")
	}
	s.mu.Lock()
	addVersion(s.pkgs, v)
	s.mu.Unlock()
	s.log.Info("hosted package pushed", "id", id, "version", man.Version, "bytes", e.Size, "key_name", keyName)
	return marshalAnswer(http.StatusOK, map[string]bool{"success": true})
}

func validationFailed(detail string) *Answer {
	return errorAnswer(http.StatusBadRequest, refpack.ErrTitleValidationFailed, refpack.MsgValidationFailed+": "+detail)
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Archive archives one version of a hosted package (query ?version=V) or
// all of them (none); archiving twice is fine. Archived versions leave lists
// and "latest" but still download when asked for.
func (s *RefPack) Archive(ctx context.Context, id, query, keyName string) *Answer {
	id = s.canonical(id)
	ver, bad := versionParam(query)
	if bad != nil {
		return bad
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.freshPackage(ctx, id)
	s.mu.RLock()
	var targets []*version
	if p := s.pkgs[id]; p != nil {
		for _, v := range p.versions {
			if ver == "" || v.rec.Version == ver {
				targets = append(targets, v)
			}
		}
	}
	s.mu.RUnlock()
	if len(targets) == 0 {
		return notFound(id, ver)
	}
	for _, v := range targets {
		if v.rec.Archived {
			continue
		}
		rec := v.rec
		rec.Archived = true
		meta, _ := json.Marshal(rec)
		e := *v.entry
		e.Meta = meta
		if _, err := s.c.Put(ctx, &e, nil); err != nil {
			s.log.Error("archive hosted package", "id", id, "version", rec.Version, "err", err)
			return errorAnswer(http.StatusInternalServerError, "Internal Server Error", "the mirror could not record the archive")
		}
		nv := *v
		nv.rec, nv.entry = rec, &e
		s.mu.Lock()
		addVersion(s.pkgs, &nv)
		s.mu.Unlock()
	}
	s.log.Info("hosted package archived", "id", id, "version", ver, "key_name", keyName)
	if ver == "" {
		return marshalAnswer(http.StatusOK, map[string]any{"success": true, "packageId": id, "message": fmt.Sprintf("Package '%s' (all versions) has been archived", id)})
	}
	return marshalAnswer(http.StatusOK, map[string]any{"success": true, "packageId": id, "version": ver, "message": fmt.Sprintf("Package '%s' version '%s' has been archived", id, ver)})
}
