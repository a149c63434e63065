package proxy

import (
	"net/http"

	"github.com/regmirror/regmirror/status"
	"github.com/regmirror/regmirror/upstream"
)

// The status page lives in package status; the server keeps its Board and
// hands it what it reads when a report is asked for.

// noteRequest counts one answered request by its X-Cache value for the status
// page's last-5-minutes figures.
func (s *Server) noteRequest(xcache string) { s.stat.NoteRequest(xcache) }

// noteError records a problem for the status page's recent errors.
func (s *Server) noteError(what string) { s.stat.NoteError(what) }

// RecordSync keeps r as the latest sync of its upstream for the status page;
// a sync that did not succeed is also a recent error.
func (s *Server) RecordSync(r *status.SyncRun) { s.stat.RecordSync(r) }

// hostedStatus is what the status page shows of the hosted content.
func (s *Server) hostedStatus() status.Hosted {
	h := status.Hosted{Keys: s.keys.Len()}
	if s.hosted != nil {
		h.Owners = s.hosted.Owners()
		h.Packages, h.Versions = s.hosted.Packages(), s.hosted.Versions()
	}
	if s.local != nil {
		h.LocalDirs = s.cfg.HydrillaLocal
		h.LocalResources, h.LocalMappings, h.LocalFiles = s.local.Counts()
	}
	return h
}

// statusReport is what the status page and /status.json show now.
func (s *Server) statusReport() *status.Report {
	return s.stat.Report(status.Inputs{
		Version: s.version, Started: s.started, Ready: s.ready.Load(), Offline: s.cfg.Offline,
		Pools: []*upstream.Pool{s.refpack, s.hydrilla}, Requests: s.metrics.Requests, Cache: s.cache,
		MemoryLimit: s.cfg.MemoryCacheSize, DiskLimit: s.cfg.DiskCacheSize,
		Fleet: s.fleet, BlobStore: s.cfg.BlobStore, S3Endpoint: s.cfg.S3Endpoint,
		Patterns: s.hy.Patterns(), ItemVersions: s.hy.Size(), HydrillaSyncs: s.hy.Syncs(),
		Hosted: s.hostedStatus(),
	})
}

func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request, path string) {
	status.Serve(w, r, path, s.statusReport(), s.log)
}
