package hydrillatest

import (
	"os"
	"path/filepath"

	"github.com/regmirror/regmirror/hydrilla"
)

// WriteDir writes the repository to dir in the layout hydrilla-builder
// writes and a Hydrilla server serves: resource/<id>/<ver>,
// mapping/<id>/<ver> (the exact bytes served), file/sha256/<hex> (the true
// content, not what CorruptFile makes the server send) and
// source/<name>.json and .zip. Tests break the result on purpose afterwards.
func (r *Repo) WriteDir(dir string) error {
	r.mu.RLock()
	var names []string
	seen := map[string]bool{}
	write := func(p string, b []byte) error {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, b, 0o644)
	}
	for _, typ := range []string{hydrilla.TypeResource, hydrilla.TypeMapping} {
		for _, it := range r.sortedItems(typ) {
			if err := write(filepath.Join(dir, typ, it.ref.Identifier, it.ref.Version.String()), it.body); err != nil {
				r.mu.RUnlock()
				return err
			}
			if it.sourceName != "" && !seen[it.sourceName] {
				seen[it.sourceName] = true
				names = append(names, it.sourceName)
			}
		}
	}
	for sha, b := range r.files {
		if err := write(filepath.Join(dir, "file", "sha256", sha), b); err != nil {
			r.mu.RUnlock()
			return err
		}
	}
	r.mu.RUnlock()
	for _, name := range names {
		src := r.source(name) // takes the lock itself
		if src == nil {
			continue
		}
		if err := write(filepath.Join(dir, "source", name+".json"), src.json); err != nil {
			return err
		}
		if err := write(filepath.Join(dir, "source", name+".zip"), src.zip); err != nil {
			return err
		}
	}
	return nil
}
