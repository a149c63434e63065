package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// maxURLLen bounds request targets; real clients' URLs are far shorter.
const maxURLLen = 8 << 10

// Handler is the server with its access log, request metrics and request ids.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := requestID()
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		rec.Header().Set("X-Request-Id", id)
		if len(r.RequestURI) > maxURLLen {
			writeError(rec, http.StatusRequestURITooLong, "URI too long", "the request target is longer than "+strconv.Itoa(maxURLLen)+" bytes")
		} else {
			s.ServeHTTP(rec, r)
		}
		d := time.Since(start)
		api, route := classify(r.URL.Path)
		if api == "refpack" && route == "list" && r.Method == http.MethodPost {
			route = "push"
		}
		xc := rec.Header().Get("X-Cache")
		if xc == "" {
			xc = "NONE"
		}
		s.metrics.Requests.WithLabelValues(api, route, strconv.Itoa(rec.status), xc).Inc()
		s.metrics.RequestDuration.WithLabelValues(api, xc).Observe(d.Seconds())
		s.noteRequest(xc)
		s.logRequest(r.Context(), &accessLine{id: id, method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, status: rec.status,
			bytes: rec.bytes, duration: d, cache: xc, upstream: rec.upstream})
	})
}

// logsRequests reports whether access lines are written.
func (s *Server) logsRequests(ctx context.Context) bool {
	if s.access != nil {
		return s.accessOn
	}
	return s.log.Enabled(ctx, slog.LevelInfo)
}

// logRequest writes a request's access line when the log level lets it
// through. The path goes with its query, so the version of ?version=1.2.0 is
// visible (keys travel in headers, never in a query the mirror logs).
func (s *Server) logRequest(ctx context.Context, a *accessLine) {
	if !s.logsRequests(ctx) {
		return
	}
	if s.access != nil {
		s.access.write(a)
	} else {
		path := a.path
		if a.query != "" {
			path += "?" + a.query
		}
		s.log.LogAttrs(ctx, slog.LevelInfo, "request",
			slog.String("id", a.id), slog.String("method", a.method), slog.String("path", path),
			slog.Int("status", a.status), slog.Int64("bytes", a.bytes), slog.Duration("duration", a.duration),
			slog.String("cache", a.cache), slog.String("upstream", a.upstream))
	}
}

// noteUpstream records the upstream an answer came from for the access line,
// in the recorder under w (found through Unwrap; kept there rather than in the
// request's context, which would copy the request on every hit).
func noteUpstream(w http.ResponseWriter, base string) {
	if base == "" {
		return
	}
	if rec := recorderOf(w); rec != nil {
		rec.upstream = base
	}
}

// recorderOf finds the recorder under w.
func recorderOf(w http.ResponseWriter) *recorder {
	for {
		switch x := w.(type) {
		case *recorder:
			return x
		case interface{ Unwrap() http.ResponseWriter }:
			w = x.Unwrap()
		default:
			return nil
		}
	}
}

// requestIDs are a random per-process prefix and a counter: unique, and cheap
// enough for every request.
var (
	requestPrefix = func() string {
		var b [4]byte
		rand.Read(b[:])
		return hex.EncodeToString(b[:])
	}()
	requestSeq atomic.Uint64
)

func requestID() string {
	var b [24]byte
	return string(appendRequestID(b[:0]))
}

func appendRequestID(b []byte) []byte {
	b = append(b, requestPrefix...)
	b = append(b, '-')
	return strconv.AppendUint(b, requestSeq.Add(1), 36)
}

// classify names a request's API and route for metrics, from a bounded set so
// hostile paths cannot blow up the label space.
func classify(p string) (api, route string) {
	for strings.HasPrefix(p, "//") {
		p = p[1:]
	}
	switch {
	case p == "/healthz" || p == "/readyz" || p == "/metrics" || p == "/" || p == "/status.json":
		return "mirror", strings.TrimPrefix(p, "/")
	case p == "/packages" || p == "/packages/":
		return "refpack", "list"
	case p == "/packages/advanced-search":
		return "refpack", "search"
	case strings.HasPrefix(p, "/packages/"):
		for _, sub := range []string{"meta", "data", "schema", "changelog", "readme", "versions", "archive"} {
			if strings.HasSuffix(p, "/"+sub) {
				return "refpack", sub
			}
		}
		return "refpack", "download"
	}
	seg := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 2)[0]
	switch seg {
	case "resource", "mapping", "file", "source", "query", "list_all", "script", "bag", "pattern", "content":
		return "hydrilla", seg
	}
	return "hydrilla", "other"
}

type recorder struct {
	http.ResponseWriter
	status   int
	bytes    int64
	wrote    bool
	upstream string // the upstream the answer came from, when it came from one
	// fastKey is the key whose entry alone answers this request, whatever the
	// server's state: such a hit may be answered again on the fast lane.
	fastKey string
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// ReadFrom keeps sendfile available through the recorder.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	r.wrote = true
	rf, ok := r.ResponseWriter.(io.ReaderFrom)
	if !ok {
		n, err := io.Copy(r.ResponseWriter, src)
		r.bytes += n
		return n, err
	}
	n, err := rf.ReadFrom(src)
	r.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
