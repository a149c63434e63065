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
	"github.com/regmirror/regmirror/upstream"
)

// errBodyGone means a stored entry's body vanished or failed its check between
// lookup and open; the entry is already dropped and the request is resolved again.
var errBodyGone = errors.New("stored body is gone")

// serve resolves t and writes the answer.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, t *target) {
	for attempt := 0; ; attempt++ {
		a, err := s.resolve(r.Context(), t)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if err := s.respond(w, r, a); errors.Is(err, errBodyGone) && attempt == 0 {
			continue
		} else if err != nil {
			s.fail(w, r, err)
		}
		return
	}
}

// serveExact is serve for a target that is a function of the request alone:
// its hits may be answered again on the fast lane.
func (s *Server) serveExact(w http.ResponseWriter, r *http.Request, t *target) {
	s.fastHint(w, t.key)
	s.serve(w, r, t)
}

// respond writes a resolved answer with the mirror's cache headers.
func (s *Server) respond(w http.ResponseWriter, r *http.Request, a *answer) error {
	if a.relay != nil {
		return s.writeRaw(w, r, a, a.relay.status, a.relay.header, a.relay.body)
	}
	e := a.hot.Entry
	noteUpstream(w, e.Upstream)
	if e.Status != http.StatusOK {
		body := a.hot.Body
		if body == nil {
			var err error
			if body, err = s.cache.ReadAll(r.Context(), e); err != nil {
				return errBodyGone
			}
		}
		return s.writeRaw(w, r, a, e.Status, e.Header, body)
	}
	if a.hot.Body != nil && plainGet(r) {
		return s.writeHot(w, r, a)
	}
	var content io.ReadSeeker
	if a.hot.Body != nil {
		content = bytes.NewReader(a.hot.Body)
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
	for k, v := range a.hot.Prepared() {
		h[k] = v
	}
	setCacheHeaders(h, a)
	http.ServeContent(w, r, "", time.Time{}, content)
	return nil
}

// xCacheValues are shared, read-only header values: the hot path assigns
// them instead of allocating.
var xCacheValues = map[State][]string{Hit: {"HIT"}, Miss: {"MISS"}, Stale: {"STALE"}, Bypass: {"BYPASS"}}

var plainHitStatus = []string{"regmirror; hit"}

func setCacheHeaders(h http.Header, a *answer) {
	if v, ok := xCacheValues[a.state]; ok {
		h["X-Cache"] = v
	} else {
		h.Set("X-Cache", string(a.state))
	}
	if a.status == "hit" {
		h["Cache-Status"] = plainHitStatus
	} else {
		h["Cache-Status"] = []string{"regmirror; " + a.status}
	}
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
func (s *Server) writeHot(w http.ResponseWriter, r *http.Request, a *answer) error {
	h := w.Header()
	for k, v := range a.hot.Prepared() {
		h[k] = v
	}
	setCacheHeaders(h, a)
	if s.fast != nil && a.state == Hit && a.status == "hit" {
		s.fast.remember(w, r, a.hot, h)
	}
	w.WriteHeader(http.StatusOK)
	w.Write(a.hot.Body)
	return nil
}

func (s *Server) writeRaw(w http.ResponseWriter, r *http.Request, a *answer, status int, hdr http.Header, body []byte) error {
	h := w.Header()
	for k, v := range hdr {
		h[k] = v
	}
	setCacheHeaders(h, a)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
	return nil
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

// fail maps an error of resolving an answer to its status, in one place.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ue *upstream.Error
	switch {
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client hung up; there is nobody to answer.
		return
	case errors.Is(err, upstream.ErrOffline):
		w.Header().Set("Retry-After", "60")
		w.Header().Set("X-Cache", string(Miss))
		writeError(w, http.StatusServiceUnavailable, "Service Unavailable", "the mirror is offline and does not hold this answer")
	case errors.Is(err, upstream.ErrNoUpstream):
		w.Header().Set("Retry-After", strconv.Itoa(int(s.cfg.FailTimeout.Seconds())+1))
		w.Header().Set("X-Cache", string(Miss))
		writeError(w, http.StatusBadGateway, "Bad Gateway", "every upstream is failing and the mirror does not hold this answer")
	case isVerify(err):
		w.Header().Set("X-Cache", string(Miss))
		writeError(w, http.StatusBadGateway, "Bad Gateway", "the upstream's answer failed verification: "+errors.Unwrap(err).Error())
	case errors.As(err, &ue) && ue.Timeout, errors.Is(err, context.DeadlineExceeded):
		w.Header().Set("X-Cache", string(Miss))
		writeError(w, http.StatusGatewayTimeout, "Gateway Timeout", "the upstream did not answer in time")
	case errors.As(err, &ue):
		w.Header().Set("X-Cache", string(Miss))
		writeError(w, http.StatusBadGateway, "Bad Gateway", ue.Error())
	default:
		s.log.Error("request failed", "path", r.URL.Path, "err", err)
		s.noteError(r.Method + " " + r.URL.Path + ": " + err.Error())
		w.Header().Set("X-Cache", string(Miss))
		writeError(w, http.StatusBadGateway, "Bad Gateway", "the mirror could not obtain this answer")
	}
}
