package proxy

import (
	"github.com/regmirror/regmirror/engine"
	"github.com/regmirror/regmirror/hydrilla"
	"github.com/regmirror/regmirror/mirrorsync"
	"github.com/regmirror/regmirror/status"
	"github.com/regmirror/regmirror/upstream"
)

// syncTargets gives a sync the targets of the routes it fetches, built as the
// handlers build them, so what a sync stores is verified exactly as on the
// read path.
type syncTargets struct{ s *Server }

var _ mirrorsync.Targets = syncTargets{}

func (t syncTargets) HydrillaListAll(up *upstream.Upstream) *engine.Target {
	return t.s.hyListTarget(up)
}
func (t syncTargets) HydrillaItem(ref hydrilla.ItemRef, pin bool) *engine.Target {
	return t.s.hyItemTarget(ref, pin)
}
func (t syncTargets) HydrillaFile(hex string, pin bool) *engine.Target {
	return t.s.hyFileTarget(hex, pin)
}
func (t syncTargets) RefPackZip(id, version string, pin bool) *engine.Target {
	return t.s.rpZipTarget(id, version, pin)
}
func (t syncTargets) RefPackMeta(id, version string, pin bool) *engine.Target {
	return t.s.rpMetaTarget(id, version, pin)
}

// newSyncer wires a Syncer to s: its engine, store, pools and catalogue, and
// the status page, which keeps the results of serve's periodic syncs.
func (s *Server) newSyncer() *mirrorsync.Syncer {
	return mirrorsync.New(mirrorsync.Parts{
		Engine: s.eng, Cache: s.cache, Targets: syncTargets{s}, RefPack: s.refpack, Hydrilla: s.hydrilla,
		Catalogue: s.hy, Local: s.local, HostedOwners: s.cfg.HostedOwners, FailTimeout: s.cfg.FailTimeout,
		Logger: s.log, NoteError: s.noteError, LastSuccess: s.metrics.SyncLastSuccess,
		Record: func(r *mirrorsync.Result) {
			s.RecordSync(&status.SyncRun{API: r.API, Upstream: r.Upstream, Started: r.Started, Ended: r.Ended,
				Items: r.Items, Files: r.Files, Packages: r.Packages, Held: r.Held, Bytes: r.Bytes, Failed: r.Failed, Err: r.Err})
		},
	})
}
