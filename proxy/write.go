package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/engine"
	"github.com/regmirror/regmirror/refpack"
	"github.com/regmirror/regmirror/upstream"
)

// Writes: POST /packages (push) and POST /packages/{id}/archive go to the
// first healthy RefPack upstream with the client's own credentials. The mirror
// checks an upload first (size, form, zip layout and limits) and refuses what
// is invalid without bothering the upstream; what it forwards is exactly what
// the client sent. Credentials are only ever copied into that one upstream
// request: never stored, cached, logged or counted.

const (
	// maxFormParts bounds the parts of a push form; real clients send two.
	maxFormParts = 64
	// maxOwnerField bounds the ownerId field.
	maxOwnerField = 1 << 10
	// titlePayloadTooLarge is the 413 title.
	titlePayloadTooLarge = "Payload too large"
)

// credentialHeaders are the client headers that carry an API key or token. They
// are copied to the upstream request of a write and nowhere else.
var credentialHeaders = []string{"X-API-Key", "Authorization"}

// relayHeaders are the upstream headers a write answer keeps.
var relayHeaders = []string{"Content-Type", "WWW-Authenticate", "Retry-After"}

// credentials returns the client's key headers, as they came, for the upstream
// request; ok is false when there is none.
func credentials(r *http.Request) (h http.Header, ok bool) {
	h = http.Header{}
	for _, k := range credentialHeaders {
		vs := r.Header.Values(k)
		if len(vs) == 0 || strings.TrimSpace(vs[0]) == "" {
			continue
		}
		h[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
		ok = true
	}
	if v := r.Header.Get("Accept"); v != "" {
		h.Set("Accept", v)
	}
	return h, ok
}

// bypassWriter marks every answer of a write X-Cache: BYPASS, whoever writes
// it (a local refusal, s.fail, or the relayed upstream answer).
type bypassWriter struct {
	http.ResponseWriter
	wrote bool
}

func (b *bypassWriter) WriteHeader(code int) {
	if !b.wrote {
		b.wrote = true
		engine.WriteOutcome.SetHeaders(b.Header())
	}
	b.ResponseWriter.WriteHeader(code)
}

func (b *bypassWriter) Write(p []byte) (int, error) {
	if !b.wrote {
		b.WriteHeader(http.StatusOK)
	}
	return b.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (b *bypassWriter) Unwrap() http.ResponseWriter { return b.ResponseWriter }

func writeUnauthorized(w http.ResponseWriter) {
	writeError(w, http.StatusUnauthorized, refpack.ErrTitleUnauthorized, refpack.MsgUnauthorized)
}

func writeValidationFailed(w http.ResponseWriter, detail string) {
	writeError(w, http.StatusBadRequest, refpack.ErrTitleValidationFailed, refpack.MsgValidationFailed+": "+detail)
}

func (s *Server) tooLarge(w http.ResponseWriter) {
	writeError(w, http.StatusRequestEntityTooLarge, titlePayloadTooLarge,
		"the upload is larger than the limit of "+strconv.FormatInt(s.cfg.MaxUploadSize, 10)+" bytes")
}

// pushForm is what the mirror reads of a push: the zip (staged) and, in the
// multipart form, the owner.
type pushForm struct {
	zip      *cache.Staged
	owner    string
	hasOwner bool
}

// rpPush answers POST /packages in both forms: the documented multipart form
// (file + ownerId, X-API-Key) and the RefPack CLI's raw application/zip body
// (Authorization: Bearer, no ownerId).
func (s *Server) rpPush(w http.ResponseWriter, r *http.Request) {
	direct := w // hosted answers are the mirror's own, not a bypass
	w = &bypassWriter{ResponseWriter: w}
	hdr, ok := credentials(r)
	if !ok {
		writeUnauthorized(w)
		return
	}
	if s.refpack.Offline() && s.hosted == nil {
		s.fail(w, r, upstream.ErrOffline)
		return
	}
	// Each upload is spooled to disk; bound how many at once so a burst of large
	// pushes cannot fill it.
	select {
	case s.uploads <- struct{}{}:
		defer func() { <-s.uploads }()
	default:
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "Service Unavailable", "too many uploads in progress; retry shortly")
		return
	}
	query, ok := forwardQuery(w, r)
	if !ok {
		return
	}
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	multipartForm := err == nil && mt == "multipart/form-data"
	if !multipartForm && !(err == nil && mt == refpack.ContentTypeZip) {
		writeError(w, http.StatusUnsupportedMediaType, "Unsupported Media Type",
			"a push is multipart/form-data (file, ownerId) or the raw package as application/zip")
		return
	}
	if multipartForm && params["boundary"] == "" {
		writeValidationFailed(w, "multipart/form-data without a boundary")
		return
	}
	limit := s.cfg.MaxUploadSize
	if r.ContentLength > limit {
		s.tooLarge(w)
		return
	}

	// Spool the body as it came: it is checked from disk and forwarded byte for byte.
	body := &engine.ReadTracker{R: http.MaxBytesReader(w, r.Body, limit)}
	raw, err := s.cache.Stage(body, limit, "")
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.Is(err, cache.ErrTooLarge) || errors.As(body.Err, &mbe):
			s.tooLarge(w)
		case body.Err != nil:
			// The client hung up or was too slow; it may not be there to read this.
			writeError(w, http.StatusBadRequest, "Invalid request", "the upload could not be read to its end")
		default:
			s.metrics.StoreErrors.WithLabelValues("write").Inc()
			s.log.Error("spool upload", "err", err)
			writeError(w, http.StatusInternalServerError, "Internal Server Error", "the mirror could not spool the upload")
		}
		return
	}
	defer raw.Discard()

	form := &pushForm{zip: raw}
	if multipartForm {
		var bad string
		form, bad, err = s.readPushForm(raw, params["boundary"])
		if err != nil {
			s.metrics.StoreErrors.WithLabelValues("write").Inc()
			s.log.Error("spool upload file", "err", err)
			writeError(w, http.StatusInternalServerError, "Internal Server Error", "the mirror could not spool the upload")
			return
		}
		if bad != "" {
			writeValidationFailed(w, bad)
			return
		}
		defer form.zip.Discard()
	}
	if s.hosted != nil {
		// A hosted owner's push is stored here, never forwarded.
		if to := s.hosted.PushTarget(s.keys, r.Header, form.owner, form.hasOwner); to.Hosted {
			s.rpHostedPush(direct, r, to, form.zip)
			return
		}
		if s.refpack.Offline() {
			s.fail(w, r, upstream.ErrOffline)
			return
		}
	}
	man, err := refpack.ValidateZip(form.zip, form.zip.Size, s.limits)
	if err != nil {
		writeValidationFailed(w, strings.TrimPrefix(err.Error(), refpack.ErrInvalidPackage.Error()+": "))
		return
	}

	hdr.Set("Content-Type", ct)
	inv := &invalidation{pushed: true, match: func(id string) bool {
		// The raw form names no owner: every package of that name may be it.
		_, name, two := strings.Cut(id, "/")
		if !two {
			name = id
		}
		return strings.EqualFold(name, man.ID)
	}}
	if owner := strings.TrimSpace(form.owner); owner != "" {
		inv.id = owner + "/" + man.ID
		inv.match = func(id string) bool { return strings.EqualFold(id, inv.id) }
	}
	s.forwardWrite(w, r, "/packages"+query, hdr, io.NewSectionReader(raw, 0, raw.Size), inv)
}

// readPushForm reads the multipart push form from the spooled body. bad, when
// not empty, says what is wrong with the form; err is a failure of the mirror.
func (s *Server) readPushForm(raw *cache.Staged, boundary string) (form *pushForm, bad string, err error) {
	form = &pushForm{}
	defer func() {
		if (bad != "" || err != nil) && form.zip != nil {
			form.zip.Discard()
		}
	}()
	mr := multipart.NewReader(raw.Reader(), boundary)
	for n := 0; ; n++ {
		// Raw parts: a Content-Transfer-Encoding the mirror decoded but the
		// upstream did not would have the mirror check other bytes than it stores.
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return form, "malformed multipart body: " + err.Error(), nil
		}
		if n >= maxFormParts {
			return form, fmt.Sprintf("more than %d form fields", maxFormParts), nil
		}
		switch cte := strings.ToLower(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding"))); cte {
		case "", "binary", "8bit", "7bit":
		default:
			return form, fmt.Sprintf("form field %q has Content-Transfer-Encoding %q (only binary is accepted)", clipForMessage(p.FormName(), 64), clipForMessage(cte, 64)), nil
		}
		name, filename := p.FormName(), p.FileName()
		switch {
		case strings.EqualFold(name, "file") || filename != "":
			// Exactly one file, so the upstream cannot take another than the one checked.
			if form.zip != nil {
				return form, "the upload holds more than one file", nil
			}
			if !strings.EqualFold(name, "file") {
				return form, fmt.Sprintf("the package must be sent in the field \"file\", not %q", clipForMessage(name, 64)), nil
			}
			if !strings.HasSuffix(strings.ToLower(filename), ".zip") {
				return form, fmt.Sprintf("the file name %q must end with .zip or .refpack.zip", clipForMessage(filename, 128)), nil
			}
			part := &engine.ReadTracker{R: p}
			st, err := s.cache.Stage(part, s.cfg.MaxUploadSize, "")
			if err != nil {
				if part.Err != nil {
					return form, "malformed multipart body: " + part.Err.Error(), nil
				}
				return form, "", err
			}
			form.zip = st
		case strings.EqualFold(name, "ownerId"):
			if form.hasOwner {
				return form, "the field \"ownerId\" appears twice", nil
			}
			b, err := io.ReadAll(io.LimitReader(p, maxOwnerField+1))
			if err != nil {
				return form, "malformed multipart body: " + err.Error(), nil
			}
			if len(b) > maxOwnerField {
				return form, "the field \"ownerId\" is too long", nil
			}
			form.owner, form.hasOwner = string(b), true
		default:
			// Other fields are the upstream's to judge; the body is bounded already.
			if _, err := io.Copy(io.Discard, p); err != nil {
				return form, "malformed multipart body: " + err.Error(), nil
			}
		}
	}
	if form.zip == nil {
		return form, "the form has no \"file\" field with the package", nil
	}
	return form, "", nil
}

// rpArchive answers POST /packages/{id}/archive[?version=V].
func (s *Server) rpArchive(w http.ResponseWriter, r *http.Request, id string) {
	w = &bypassWriter{ResponseWriter: w}
	hdr, ok := credentials(r)
	if !ok {
		writeUnauthorized(w)
		return
	}
	query, ok := forwardQuery(w, r)
	if !ok {
		return
	}
	if v := r.URL.Query().Get("version"); v != "" {
		if _, err := refpack.ParseVersion(v); err != nil {
			writeError(w, http.StatusBadRequest, refpack.ErrTitleInvalidVersion, refpack.MsgInvalidVersion)
			return
		}
	}
	if s.refpack.Offline() {
		s.fail(w, r, upstream.ErrOffline)
		return
	}
	s.forwardWrite(w, r, rpPath(id, refpack.SubArchive)+query, hdr, nil, &invalidation{
		id: id, match: func(other string) bool { return strings.EqualFold(other, id) },
	})
}

// forwardQuery returns "?<query>" as the client sent it ("" for none), or
// answers 400 when it cannot be parsed.
func forwardQuery(w http.ResponseWriter, r *http.Request) (string, bool) {
	if r.URL.RawQuery == "" {
		return "", true
	}
	if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
		writeError(w, http.StatusBadRequest, "Invalid request", "the query string cannot be parsed")
		return "", false
	}
	return "?" + r.URL.RawQuery, true
}

// invalidation says which entries a successful write makes out of date.
type invalidation struct {
	// match accepts the registry ids ("owner/name" or "name") written to.
	match func(id string) bool
	// id is the registry id written to, when it is known exactly.
	id string
	// pushed: a new version exists, so its cached not-found answers go too.
	pushed bool
}

// forwardWrite makes the one upstream request of a write and relays its answer.
// After a 2xx it first invalidates what the write made out of date, so that
// the client's next read shows the change.
func (s *Server) forwardWrite(w http.ResponseWriter, r *http.Request, pathQuery string, hdr http.Header, body io.Reader, inv *invalidation) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.UpstreamTimeout)
	defer cancel()
	resp, err := s.refpack.Send(ctx, http.MethodPost, pathQuery, hdr, body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer resp.Body.Close()
	noteUpstream(w, resp.Upstream.Base)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		s.invalidate(context.WithoutCancel(r.Context()), inv)
	}
	h := w.Header()
	for _, k := range relayHeaders {
		if vs := resp.Header.Values(k); len(vs) > 0 {
			h[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
		}
	}
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil // relay as is: never sniff
	}
	if resp.ContentLength >= 0 {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// invalidate makes the lists and searches and the /versions (and so "latest")
// of every package inv matches out of date, and after a push drops their
// not-found answers; immutable entries stay. An out-of-date list or /versions
// is kept, marked stale rather than deleted: the next read revalidates it with
// the upstream (If-None-Match), and while the upstreams are down it is still
// there to be served STALE and to answer lists from. Later requests do not join
// a read of those keys that is still being fetched.
func (s *Server) invalidate(ctx context.Context, inv *invalidation) {
	s.eng.Wrote()
	var entries []*cache.Entry
	if inv.id != "" {
		s.eng.Forget(engine.RefPackVersions(inv.id))
	}
	err := s.cache.Store().Entries(ctx, func(e *cache.Entry) error {
		if rpMutableOf(e, inv.match, inv.pushed) {
			entries = append(entries, e)
		}
		return nil
	})
	if err != nil {
		s.metrics.StoreErrors.WithLabelValues("read").Inc()
		s.log.Error("invalidate after write: list entries", "err", err)
	}
	for _, e := range entries {
		s.eng.Forget(engine.Key(e.Key))
		if e.Class == cache.Mutable && e.Status == http.StatusOK {
			s.eng.Policy().MakeStale(e)
			if _, err = s.cache.Put(ctx, e, nil); err == nil {
				continue
			}
		}
		if err = s.cache.Delete(ctx, e.Key); err != nil {
			s.metrics.StoreErrors.WithLabelValues("write").Inc()
			s.log.Error("invalidate after write", "key", e.Key, "err", err)
		}
	}
}

// rpMutableOf reports whether a write to the packages match accepts makes e
// out of date.
func rpMutableOf(e *cache.Entry, match func(id string) bool, pushed bool) bool {
	k, ok := engine.Parse(e.Key)
	if !ok {
		return false
	}
	switch k.Kind {
	case engine.KindRefPackList, engine.KindRefPackSearch:
		return true
	case engine.KindRefPackVersions:
		return match(k.ID)
	case engine.KindRefPackZip, engine.KindRefPackMeta, engine.KindRefPackDoc:
		// A version asked for before it was pushed is cached as not found.
		return pushed && e.Class == cache.Negative && match(k.ID)
	}
	return false
}

func clipForMessage(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
