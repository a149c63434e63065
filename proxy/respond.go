package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/engine"
)

// errBodyGone means a stored entry's body vanished or failed its check between
// lookup and open; the entry is already dropped and the request is resolved again.
var errBodyGone = errors.New("stored body is gone")

// serve resolves t and writes the answer.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, t *engine.Target) {
	s.serveAtLeast(w, r, t, engine.HitOutcome)
}

// serveExact is serve for a target that is a function of the request alone:
// its hits may be answered again on the fast lane.
func (s *Server) serveExact(w http.ResponseWriter, r *http.Request, t *engine.Target) {
	s.fastHint(w, string(t.Key))
	s.serve(w, r, t)
}

// serveAtLeast serves t but reports at least the outcome floor: an answer
// found through a stale (or just fetched) "latest" is reported as that, even
// when the version itself is held.
func (s *Server) serveAtLeast(w http.ResponseWriter, r *http.Request, t *engine.Target, floor engine.Outcome) {
	for attempt := 0; ; attempt++ {
		a, err := s.eng.Resolve(r.Context(), t)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		a.Outcome = a.Outcome.AtLeast(floor)
		if err := s.respond(w, r, a); errors.Is(err, errBodyGone) && attempt == 0 {
			continue
		} else if err != nil {
			s.fail(w, r, err)
		}
		return
	}
}

// respond writes a resolved answer with the mirror's cache headers.
func (s *Server) respond(w http.ResponseWriter, r *http.Request, a *engine.Answer) error {
	noteUpstream(w, a.Upstream)
	if a.Relay != nil {
		return s.writeRaw(w, r, a.Outcome, a.Relay.Status, a.Relay.Header, a.Relay.Body)
	}
	e := a.Hot.Entry
	if e.Status != http.StatusOK {
		body := a.Hot.Body
		if body == nil {
			var err error
			if body, err = s.cache.ReadAll(r.Context(), e); err != nil {
				return errBodyGone
			}
		}
		return s.writeRaw(w, r, a.Outcome, e.Status, e.Header, body)
	}
	if a.Hot.Body != nil && plainGet(r) {
		return s.writeHot(w, r, a)
	}
	var content io.ReadSeeker
	if a.Hot.Body != nil {
		content = bytes.NewReader(a.Hot.Body)
	} else {
		b, err := s.cache.Open(r.Context(), e)
		if err != nil {
			if errors.Is(err, cache.ErrNotFound) {
				return errBodyGone
			}
			s.metrics.StoreErrors.WithLabelValues("read").Inc()
			return err
		}
		defer b.Close()
		content = b
		// Hand net/http the *os.File itself so it can use sendfile.
		if u, ok := b.(interface{ Unwrap() cache.Blob }); ok {
			content = u.Unwrap()
		}
	}
	// The same prepared headers as the hot path; ServeContent then replaces
	// Content-Length for a range and drops it for a 304.
	h := w.Header()
	for k, v := range a.Hot.Prepared() {
		h[k] = v
	}
	if a.ContentType != "" {
		h["Content-Type"] = []string{a.ContentType}
	}
	a.Outcome.SetHeaders(h)
	http.ServeContent(w, r, "", time.Time{}, content)
	return nil
}

// plainGet reports whether r is a whole-body GET with no conditions, the one
// request form that needs none of http.ServeContent's work.
func plainGet(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	for _, k := range []string{"Range", "If-None-Match", "If-Match", "If-Modified-Since", "If-Unmodified-Since", "If-Range"} {
		if _, ok := r.Header[k]; ok {
			return false
		}
	}
	return true
}

// writeHot writes a body held in memory with headers prepared when it was
// stored: the cached-hit hot path.
func (s *Server) writeHot(w http.ResponseWriter, r *http.Request, a *engine.Answer) error {
	h := w.Header()
	for k, v := range a.Hot.Prepared() {
		h[k] = v
	}
	if a.ContentType != "" {
		h["Content-Type"] = []string{a.ContentType}
	}
	a.Outcome.SetHeaders(h)
	if s.fast != nil && (a.Outcome == engine.HitOutcome || a.Outcome == hostedOutcome) {
		s.fast.remember(w, r, a.Hot, h)
	}
	w.WriteHeader(http.StatusOK)
	w.Write(a.Hot.Body)
	return nil
}

func (s *Server) writeRaw(w http.ResponseWriter, r *http.Request, o engine.Outcome, status int, hdr http.Header, body []byte) error {
	h := w.Header()
	for k, v := range hdr {
		h[k] = v
	}
	o.SetHeaders(h)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
	return nil
}

// writeJSON writes a 200 JSON document the mirror made itself (a list or a
// query answer derived from what it holds).
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, o engine.Outcome, body []byte) {
	h := w.Header()
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	s.writeRaw(w, r, o, http.StatusOK, nil, body)
}

// errorBody is the error shape of both APIs: {"error": ..., "message": ...}.
func errorBody(title, message string) []byte {
	b, _ := json.Marshal(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{title, message})
	return b
}

// writeError answers with the registry's error shape.
func writeError(w http.ResponseWriter, status int, title, message string) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	body := errorBody(title, message)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// fail answers a request the mirror could not obtain: status, message and
// cache headers from engine.FailureOf, the one mapping of errors to answers.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client hung up; there is nobody to answer.
		return
	}
	f := engine.FailureOf(err)
	if f.Unknown {
		s.log.Error("request failed", "path", r.URL.Path, "err", err)
		s.noteError(r.Method + " " + r.URL.Path + ": " + err.Error())
	}
	noteUpstream(w, f.Upstream)
	h := w.Header()
	if f.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((f.RetryAfter+time.Second-1)/time.Second)))
	}
	f.Outcome.SetHeaders(h)
	writeError(w, f.Status, f.Title, f.Message)
}
