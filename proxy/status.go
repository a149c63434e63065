package proxy

import "net/http"

func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request, path string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("regmirror " + s.version + "\n"))
}
