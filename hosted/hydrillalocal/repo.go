// Package hydrillalocal serves Hydrilla repository directories
// (--hydrilla-local DIR): the layout hydrilla-builder writes and a Hydrilla
// server serves,
//
//	resource/<identifier>/<version>   item JSON
//	mapping/<identifier>/<version>    item JSON
//	file/sha256/<hex>                 the files items name
//	source/<name>.json, <name>.zip    source package description and archive
//
// as the mirror's first repository. Everything is checked at load as Hydrilla
// does — an item's identifier and version agree with its path, every file it
// names is present and its bytes match its sha256 name — and what fails is
// logged and not served. A load builds a new snapshot and swaps it in, so a
// reload (SIGHUP) never shows a half-loaded repository.
//
// An identifier that has a folder here is the repository's own: the mirror
// must never request it upstream, nor list an upstream's versions of it.
package hydrillalocal

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/pattern"
)

// maxItemBytes bounds an item file read into memory.
const maxItemBytes = 16 << 20

// Item is one served item version.
type Item struct {
	Ref      hydrilla.ItemRef // version normalised
	LongName string
	Revision int
	Body     []byte // the file's exact bytes: never re-serialised
	Dir      string // the repository directory it came from
	// Hot is the item as a held answer (application/json, a strong ETag of
	// its sha256), so the mirror answers it on the same path as a cached hit.
	// It lives in memory only: the directory is its store.
	Hot *cache.Hot
}

// File is one served file of file/sha256/ or source/.
type File struct {
	Path string
	Size int64
}

// snapshot is one load of every directory.
type snapshot struct {
	items   map[string]*Item // by ItemRef.String()
	newest  map[string]*Item // by "type/identifier"
	held    map[string]bool  // "type/identifier" of every identifier folder, served or not
	files   map[string]File  // by sha256 hex
	sources map[string]File  // by "<name>.json" / "<name>.zip"
	list    *hydrilla.List
	index   *pattern.Index[*Item]
	skipped int
}

// Repo is the loaded local repositories. It is safe for concurrent use.
type Repo struct {
	dirs []string
	log  *slog.Logger
	snap atomic.Pointer[snapshot]
}

// Open loads the directories; the first that holds an item version or a file
// wins. A directory that cannot be read at all is an error (a mistyped flag
// must not start a mirror that silently serves nothing); problems with single
// items or files are logged and those are left out.
func Open(dirs []string, log *slog.Logger) (*Repo, error) {
	if log == nil {
		log = slog.Default()
	}
	r := &Repo{dirs: slices.Clone(dirs), log: log}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload loads every directory again and swaps the result in. On an error
// the repository served stays as it was.
func (r *Repo) Reload() error {
	s := &snapshot{
		items: map[string]*Item{}, newest: map[string]*Item{}, held: map[string]bool{},
		files: map[string]File{}, sources: map[string]File{},
	}
	for _, dir := range r.dirs {
		fi, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("hydrilla local repository: %w", err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("hydrilla local repository %s: not a directory", dir)
		}
		r.loadFiles(s, dir)
		r.loadSources(s, dir)
	}
	for _, dir := range r.dirs {
		for _, typ := range []string{hydrilla.TypeResource, hydrilla.TypeMapping} {
			r.loadItems(s, dir, typ)
		}
	}
	s.finish()
	r.snap.Store(s)
	r.log.Info("hydrilla local repository loaded", "dirs", len(r.dirs), "items", len(s.items), "files", len(s.files), "skipped", s.skipped)
	return nil
}

// loadFiles hashes every file/sha256/<hex> and keeps those whose bytes match.
func (r *Repo) loadFiles(s *snapshot, dir string) {
	fdir := filepath.Join(dir, "file", "sha256")
	ents, err := os.ReadDir(fdir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.log.Error("hydrilla local repository: cannot read files", "dir", fdir, "err", err)
		}
		return
	}
	for _, e := range ents {
		name := e.Name()
		if _, ok := s.files[name]; ok || !e.Type().IsRegular() {
			continue
		}
		if !hydrilla.ValidHex(name) {
			r.log.Warn("hydrilla local repository: not a sha256 file name; not served", "file", filepath.Join(fdir, name))
			continue
		}
		p := filepath.Join(fdir, name)
		sum, size, err := hashFile(p)
		switch {
		case err != nil:
			r.log.Error("hydrilla local repository: cannot read file; not served", "file", p, "err", err)
		case sum != name:
			r.log.Error("hydrilla local repository: file bytes do not match its sha256 name; not served", "file", p, "sha256", sum)
		default:
			s.files[name] = File{Path: p, Size: size}
		}
	}
}

// loadSources keeps source/<name>.json and .zip; a zip whose sha256 is not
// the one its description names is not served.
func (r *Repo) loadSources(s *snapshot, dir string) {
	sdir := filepath.Join(dir, "source")
	ents, err := os.ReadDir(sdir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.log.Error("hydrilla local repository: cannot read sources", "dir", sdir, "err", err)
		}
		return
	}
	for _, e := range ents {
		name := e.Name()
		base, ext := strings.TrimSuffix(name, filepath.Ext(name)), filepath.Ext(name)
		if _, ok := s.sources[name]; ok || !e.Type().IsRegular() || (ext != ".json" && ext != ".zip") || !hydrilla.ValidID(base) {
			continue
		}
		p := filepath.Join(sdir, name)
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if ext == ".zip" {
			want := sourceZipSHA(filepath.Join(sdir, base+".json"))
			if want != "" {
				if sum, _, err := hashFile(p); err != nil || sum != want {
					r.log.Error("hydrilla local repository: source archive does not match its description's sha256; not served", "file", p)
					continue
				}
			}
		}
		s.sources[name] = File{Path: p, Size: fi.Size()}
	}
}

// sourceZipSHA reads source_archives.zip.sha256 of a source description.
func sourceZipSHA(p string) string {
	b, err := readBounded(p)
	if err != nil {
		return ""
	}
	var d struct {
		Archives struct {
			Zip struct {
				SHA256 string `json:"sha256"`
			} `json:"zip"`
		} `json:"source_archives"`
	}
	if json.Unmarshal(b, &d) != nil {
		return ""
	}
	return d.Archives.Zip.SHA256
}

// loadItems reads <dir>/<typ>/<identifier>/<version> and keeps the item
// versions that pass Hydrilla's checks.
func (r *Repo) loadItems(s *snapshot, dir, typ string) {
	tdir := filepath.Join(dir, typ)
	ids, err := os.ReadDir(tdir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.log.Error("hydrilla local repository: cannot read items", "dir", tdir, "err", err)
		}
		return
	}
	for _, idEnt := range ids {
		id := idEnt.Name()
		if !idEnt.IsDir() || !hydrilla.ValidID(id) {
			continue
		}
		s.held[typ+"/"+id] = true
		vers, err := os.ReadDir(filepath.Join(tdir, id))
		if err != nil {
			r.log.Error("hydrilla local repository: cannot read item versions", "dir", filepath.Join(tdir, id), "err", err)
			continue
		}
		for _, vEnt := range vers {
			p := filepath.Join(tdir, id, vEnt.Name())
			if !vEnt.Type().IsRegular() {
				continue
			}
			it, err := r.loadItem(s, p, typ, id, vEnt.Name())
			if err != nil {
				s.skipped++
				r.log.Error("hydrilla local repository: item not served", "file", p, "err", err)
				continue
			}
			if it == nil {
				continue // an earlier directory holds it
			}
			it.Dir = dir
			s.items[it.Ref.String()] = it
		}
	}
}

func (r *Repo) loadItem(s *snapshot, p, typ, id, verName string) (*Item, error) {
	v, err := hydrilla.ParseVersion(verName)
	if err != nil {
		return nil, fmt.Errorf("the file name is not a version: %w", err)
	}
	ref := hydrilla.ItemRef{Type: typ, Identifier: id, Version: v.Normalize()}
	if _, ok := s.items[ref.String()]; ok {
		return nil, nil
	}
	body, err := readBounded(p)
	if err != nil {
		return nil, err
	}
	parsed, err := hydrilla.CheckItem(body, ref)
	if err != nil {
		return nil, err
	}
	for _, f := range parsed.Files {
		if _, ok := s.files[f.SHA256]; !ok {
			return nil, fmt.Errorf("file %q (sha256 %s) is not in file/sha256/ with matching bytes", f.File, f.SHA256)
		}
	}
	sum := sha256.Sum256(body)
	hot := &cache.Hot{Body: body, Entry: &cache.Entry{
		Key: "hosted/hy/" + ref.String(), Digest: hex.EncodeToString(sum[:]), Size: int64(len(body)),
		Status: 200, Class: cache.Immutable, Header: map[string][]string{"Content-Type": {"application/json"}},
	}}
	return &Item{Ref: ref, LongName: parsed.LongName, Revision: parsed.Revision, Body: body, Hot: hot}, nil
}

// finish builds what answers derive from the items: newest versions, the
// list, the pattern index.
func (s *snapshot) finish() {
	s.list = &hydrilla.List{}
	// The list's order: by identifier, then version, as the real server lists.
	items := make([]*Item, 0, len(s.items))
	for _, it := range s.items {
		items = append(items, it)
	}
	slices.SortFunc(items, func(a, b *Item) int {
		if c := strings.Compare(a.Ref.Identifier, b.Ref.Identifier); c != 0 {
			return c
		}
		return a.Ref.Version.Compare(b.Ref.Version)
	})
	var pats []pattern.Item[*Item]
	for _, it := range items {
		idKey := it.Ref.Type + "/" + it.Ref.Identifier
		if n := s.newest[idKey]; n == nil || it.Ref.Version.Compare(n.Ref.Version) > 0 {
			s.newest[idKey] = it
		}
		e := hydrilla.ListEntry{Identifier: it.Ref.Identifier, LongName: it.LongName, Version: it.Ref.Version}
		if it.Ref.Type == hydrilla.TypeResource {
			rev := it.Revision
			e.Revision = &rev
			s.list.Resources = append(s.list.Resources, e)
			continue
		}
		s.list.Mappings = append(s.list.Mappings, e)
		if parsed, err := hydrilla.ParseItem(it.Body); err == nil {
			for _, p := range parsed.Patterns {
				pats = append(pats, pattern.Item[*Item]{Pattern: p, Value: it})
			}
		}
	}
	s.index, _ = pattern.Build(pats)
}

func readBounded(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxItemBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxItemBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxItemBytes)
	}
	return b, nil
}

func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// Holds reports whether the identifier of that type is the local
// repository's: it has a folder here, whether or not any version of it
// passed the checks. Such an identifier is never requested upstream.
func (r *Repo) Holds(typ, id string) bool {
	return r != nil && r.snap.Load().held[typ+"/"+id]
}

// Item returns the item version ref names.
func (r *Repo) Item(ref hydrilla.ItemRef) (*Item, bool) {
	if r == nil {
		return nil, false
	}
	ref.Version = ref.Version.Normalize()
	it, ok := r.snap.Load().items[ref.String()]
	return it, ok
}

// Newest returns the newest served version of an identifier (for
// /<type>/<id>.json).
func (r *Repo) Newest(typ, id string) (*Item, bool) {
	if r == nil {
		return nil, false
	}
	it, ok := r.snap.Load().newest[typ+"/"+id]
	return it, ok
}

// File returns the file with that sha256, when a local repository holds it.
func (r *Repo) File(hex string) (File, bool) {
	if r == nil {
		return File{}, false
	}
	f, ok := r.snap.Load().files[hex]
	return f, ok
}

// Source returns source/<name> ("<source>.json" or "<source>.zip").
func (r *Repo) Source(name string) (File, bool) {
	if r == nil {
		return File{}, false
	}
	f, ok := r.snap.Load().sources[name]
	return f, ok
}

// List returns the served item versions as a /list_all list.
func (r *Repo) List() *hydrilla.List {
	if r == nil {
		return &hydrilla.List{}
	}
	return r.snap.Load().list
}

// Without returns l without the entries of identifiers the local repository
// holds: the upstream's versions of them must not be listed, or a client
// would ask for a version only the upstream has and be refused.
func (r *Repo) Without(l *hydrilla.List) *hydrilla.List {
	if r == nil || l == nil {
		return l
	}
	held := r.snap.Load().held
	out := *l
	out.Resources = slices.DeleteFunc(slices.Clone(l.Resources), func(e hydrilla.ListEntry) bool { return held[hydrilla.TypeResource+"/"+e.Identifier] })
	out.Mappings = slices.DeleteFunc(slices.Clone(l.Mappings), func(e hydrilla.ListEntry) bool { return held[hydrilla.TypeMapping+"/"+e.Identifier] })
	return &out
}

// Query answers a URL from the local mappings: most specific first, each
// mapping once at its first position, with its newest version among those
// that match.
func (r *Repo) Query(u pattern.Pattern) []hydrilla.QueryMapping {
	out := []hydrilla.QueryMapping{}
	if r == nil {
		return out
	}
	pos := map[string]int{}
	for _, it := range r.snap.Load().index.Match(u) {
		if i, ok := pos[it.Ref.Identifier]; ok {
			if it.Ref.Version.Compare(out[i].Version) > 0 {
				out[i].Version, out[i].LongName = it.Ref.Version, it.LongName
			}
			continue
		}
		pos[it.Ref.Identifier] = len(out)
		out = append(out, hydrilla.QueryMapping{Identifier: it.Ref.Identifier, LongName: it.LongName, Version: it.Ref.Version})
	}
	return out
}

// MergeQuery puts the local answer first and then the upstream's mappings
// whose identifiers the local repository does not hold.
func (r *Repo) MergeQuery(local, upstream []hydrilla.QueryMapping) []hydrilla.QueryMapping {
	out := slices.Clone(local)
	if out == nil {
		out = []hydrilla.QueryMapping{}
	}
	seen := map[string]bool{}
	for _, m := range local {
		seen[m.Identifier] = true
	}
	for _, m := range upstream {
		if seen[m.Identifier] || r.Holds(hydrilla.TypeMapping, m.Identifier) {
			continue
		}
		seen[m.Identifier] = true
		out = append(out, m)
	}
	return out
}

// Identifiers is the number of item identifiers (by type) with a version
// served: the hosted packages of the Hydrilla API.
func (r *Repo) Identifiers() int {
	if r == nil {
		return 0
	}
	return len(r.snap.Load().newest)
}

// Counts are the served item versions by type, and the files.
func (r *Repo) Counts() (resources, mappings, files int) {
	if r == nil {
		return 0, 0, 0
	}
	s := r.snap.Load()
	return len(s.list.Resources), len(s.list.Mappings), len(s.files)
}
