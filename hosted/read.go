package hosted

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/url"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/refpack"
)

// Reads of hosted packages: every GET route in the registry's shapes.

// Get answers a GET or HEAD of a hosted package route (the zip, /meta,
// /data, /schema, /changelog, /readme, /versions) in the registry's shapes.
// ver is the request's ?version= ("" for latest); one that is not SemVer is
// the registry's 400.
func (s *RefPack) Get(ctx context.Context, rt refpack.Route, ver string) *Answer {
	id := s.canonical(rt.ID)
	if rt.Sub == refpack.SubVersions {
		return s.versions(ctx, id)
	}
	p, v, refused := s.resolve(ctx, id, ver)
	if refused != nil {
		return refused
	}
	switch rt.Sub {
	case "":
		h, refused := s.zipOf(ctx, v)
		if refused != nil {
			return refused
		}
		return &Answer{Status: http.StatusOK, Hot: h, Body: h.Body}
	case refpack.SubMeta:
		return jsonAnswer(http.StatusOK, v.meta)
	}
	file := refpack.FileName(rt.Sub)
	if file == "" {
		return notFound(id, ver)
	}
	b, err := s.readFile(ctx, v, file)
	if errors.Is(err, fs.ErrNotExist) {
		return errorAnswer(http.StatusNotFound, refpack.ErrTitleFileNotFound, refpack.FileNotFoundMessage(p.id, v.rec.Version, file))
	}
	if err != nil {
		s.log.Error("read hosted package file", "key", v.entry.Key, "file", file, "err", err)
		return errorAnswer(http.StatusInternalServerError, "Internal Server Error", "the stored package cannot be read")
	}
	a := jsonAnswer(http.StatusOK, b)
	a.Header.Set("Content-Type", refpack.DocContentType(rt.Sub))
	return a
}

// Zip is Get of the zip alone, for the cached-hit path: the stored entry, or
// the answer refusing it.
func (s *RefPack) Zip(ctx context.Context, id, ver string) (*cache.Hot, *Answer) {
	_, v, refused := s.resolve(ctx, s.canonical(id), ver)
	if refused != nil {
		return nil, refused
	}
	return s.zipOf(ctx, v)
}

// resolve finds the version a read asks for ("" = latest): on a shared
// store, a version the index lacks is looked for in the store at once.
func (s *RefPack) resolve(ctx context.Context, id, ver string) (*pkg, *version, *Answer) {
	if ver != "" && !refpack.ValidVersion(ver) {
		return nil, nil, errorAnswer(http.StatusBadRequest, refpack.ErrTitleInvalidVersion, refpack.MsgInvalidVersion)
	}
	s.fresh(ctx)
	p, v := s.find(id, ver)
	if v == nil && s.shared {
		s.freshPackage(ctx, id)
		p, v = s.find(id, ver)
	}
	if v == nil {
		return nil, nil, notFound(id, ver)
	}
	return p, v, nil
}

// zipOf is the stored zip of a version.
func (s *RefPack) zipOf(ctx context.Context, v *version) (*cache.Hot, *Answer) {
	h, err := s.c.Lookup(ctx, v.entry.Key)
	if err != nil {
		// The index names it but the store does not (any more): the
		// operator's to restore; never a fetch from anywhere else.
		s.log.Error("hosted package is indexed but not stored", "key", v.entry.Key, "err", err)
		return nil, errorAnswer(http.StatusInternalServerError, "Internal Server Error", "the stored package cannot be read")
	}
	return h, nil
}

// readFile reads one file of a stored zip.
func (s *RefPack) readFile(ctx context.Context, v *version, name string) ([]byte, error) {
	if h, ok := s.c.Memory(v.entry.Key); ok && h.Body != nil {
		return refpack.ReadZipFile(bytes.NewReader(h.Body), int64(len(h.Body)), name)
	}
	b, err := s.c.Open(ctx, v.entry)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	return refpack.ReadZipFile(b, v.entry.Size, name)
}

func (s *RefPack) versions(ctx context.Context, id string) *Answer {
	s.fresh(ctx)
	infos := s.infos(id)
	if len(infos) == 0 && s.shared {
		s.freshPackage(ctx, id)
		infos = s.infos(id)
	}
	if len(infos) == 0 {
		return notFound(id, "")
	}
	refpack.SortNewestFirst(infos)
	return marshalAnswer(http.StatusOK, refpack.VersionsAnswer{PackageID: id, Versions: infos})
}

func (s *RefPack) infos(id string) []refpack.VersionInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if p := s.pkgs[id]; p != nil {
		return p.infos()
	}
	return nil
}

// versionParam reads ?version=: "" for latest, or the registry's 400 when it is
// not SemVer.
func versionParam(query string) (string, *Answer) {
	v := ""
	if query != "" {
		q, err := url.ParseQuery(query)
		if err != nil {
			return "", errorAnswer(http.StatusBadRequest, "Invalid request", "the query string cannot be parsed")
		}
		v = q.Get("version")
	}
	if v == "" {
		return "", nil
	}
	if !refpack.ValidVersion(v) {
		return "", errorAnswer(http.StatusBadRequest, refpack.ErrTitleInvalidVersion, refpack.MsgInvalidVersion)
	}
	return v, nil
}
