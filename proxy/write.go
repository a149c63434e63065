package proxy

import "net/http"

func (s *Server) rpPush(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotImplemented, "Not implemented", "push through the mirror is not implemented yet")
}

func (s *Server) rpArchive(w http.ResponseWriter, r *http.Request, id string) {
	writeError(w, http.StatusNotImplemented, "Not implemented", "archive through the mirror is not implemented yet")
}
