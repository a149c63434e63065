package proxy

import "net/http"

func (s *Server) serveHydrilla(w http.ResponseWriter, r *http.Request, path string) {
	writeError(w, http.StatusNotFound, "Not found", "no such route")
}
