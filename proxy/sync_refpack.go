package proxy

import "context"

// SyncRefPack mirrors the RefPack upstreams ahead of time.
func (s *Server) SyncRefPack(ctx context.Context, o SyncOptions) []*SyncResult {
	var out []*SyncResult
	for _, up := range s.refpack.Upstreams() {
		out = append(out, &SyncResult{API: "refpack", Upstream: up.Base, Err: errNotYet})
	}
	return out
}

var errNotYet = errorString("RefPack sync is not implemented yet")

type errorString string

func (e errorString) Error() string { return string(e) }
