package registrytest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Masterminds/semver/v3"

	"github.com/regmirror/regmirror/refpack"
)

// DefaultOwner is the owner of packages pushed in the RefPack CLI's raw form
// (which carries no ownerId) unless SetDefaultOwner says otherwise.
const DefaultOwner = "refpack"

// Registry is an in-memory RefPack registry. It is safe for concurrent use; the
// zero value is not, use New.
type Registry struct {
	mu           sync.Mutex
	pkgs         map[string]*regPackage
	keys         map[string]bool
	defaultOwner string
	limits       refpack.Limits
	requests     []RecordedRequest
	changed      chan struct{} // closed and replaced whenever a request is recorded
	delay        time.Duration
	failStatus   int
	failNext     int
	failNextCode int
	down         bool
	cutAfter     int
	hold         chan struct{}
	hook         func(http.ResponseWriter, *http.Request) bool
	closeOnce    sync.Once
	closed       chan struct{}
}

// regPackage is one registry id with its versions.
type regPackage struct {
	id       string // "owner/name" or "name"
	owner    string
	name     string
	versions map[string]*regVersion
}

// regVersion is one published version.
type regVersion struct {
	version  string
	sv       *semver.Version
	zip      []byte
	manifest map[string]any // as uploaded; /meta rewrites its id
	created  string
	archived bool
}

// RecordedRequest is what the registry saw of one request, recorded on arrival
// (before any delay, hold or failure), so tests can count upstream fetches and
// check forwarded headers such as X-API-Key and Authorization.
type RecordedRequest struct {
	Method   string
	Path     string // r.URL.EscapedPath(): "%2F" stays encoded
	RawQuery string
	Query    url.Values
	Header   http.Header
	BodySize int64
}

// New returns an empty registry with no API keys, DefaultOwner and
// refpack.DefaultLimits.
func New() *Registry {
	return &Registry{
		pkgs:         map[string]*regPackage{},
		keys:         map[string]bool{},
		defaultOwner: DefaultOwner,
		limits:       refpack.DefaultLimits(),
		changed:      make(chan struct{}),
		cutAfter:     -1,
		closed:       make(chan struct{}),
	}
}

// Start serves the registry on 127.0.0.1 until the test ends. The cleanup first
// releases held and delayed requests so that closing the server cannot hang.
func (r *Registry) Start(t testing.TB) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(r)
	t.Cleanup(func() {
		r.Close()
		srv.Close()
	})
	return srv
}

// Handler returns the registry as an http.Handler, for callers that run their
// own server; call Close when done if holds or delays are used.
func (r *Registry) Handler() http.Handler { return r }

// Close releases every held or delayed request; they are then answered 503.
func (r *Registry) Close() { r.closeOnce.Do(func() { close(r.closed) }) }

// SetAPIKey accepts key for writes, as X-API-Key or Authorization: Bearer.
func (r *Registry) SetAPIKey(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys[key] = true
}

// SetDefaultOwner sets the owner of packages pushed without ownerId.
func (r *Registry) SetDefaultOwner(owner string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.defaultOwner = owner
}

// SetLimits sets the upload and zip limits of pushes.
func (r *Registry) SetLimits(l refpack.Limits) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.limits = l
}

// registryID joins owner and name; owner "" is a one-segment id.
func registryID(owner, name string) string {
	if owner == "" {
		return name
	}
	return owner + "/" + name
}

// AddPackage publishes owner/name at version (owner "" for a one-segment id),
// built by MakeZip(name, version, opts...) with Archived honoured. An existing
// version is replaced. It panics on a version that is not SemVer or an invalid
// id, since that is a mistake in the test.
func (r *Registry) AddPackage(owner, name, version string, opts ...PackageOption) {
	id := registryID(owner, name)
	sv := mustVersion(id, version)
	p := buildSpec(opts)
	z, man := makeZip(name, version, p)
	created, _ := man["createdUtc"].(string)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pkg(id).versions[version] = &regVersion{version: version, sv: sv, zip: z, manifest: man, created: created, archived: p.archived}
}

func mustVersion(id, version string) *semver.Version {
	if !refpack.ValidID(id) {
		panic(fmt.Sprintf("registrytest: invalid package id %q", id))
	}
	sv, err := refpack.ParseVersion(version)
	if err != nil {
		panic(fmt.Sprintf("registrytest: %v", err))
	}
	return sv
}

// pkg returns (creating) the package; r.mu must be held.
func (r *Registry) pkg(id string) *regPackage {
	p := r.pkgs[id]
	if p == nil {
		owner, name, ok := strings.Cut(id, "/")
		if !ok {
			owner, name = "", id
		}
		p = &regPackage{id: id, owner: owner, name: name, versions: map[string]*regVersion{}}
		r.pkgs[id] = p
	}
	return p
}

// SetZip makes the registry serve these exact bytes (corrupt, truncated, another
// layout, other bytes for a published version) as id (registry id, owner/name or
// name) at version. An existing version keeps its manifest for /meta, lists and
// /versions, as a registry whose stored file changed would; a new version takes
// its manifest from the bytes when they have one, else {"id","version"}. The
// documents (/data, …) are read from these bytes.
func (r *Registry) SetZip(id, version string, zip []byte) {
	sv := mustVersion(id, version)
	zip = bytes.Clone(zip)
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pkg(id)
	if v := p.versions[version]; v != nil {
		v.zip = zip
		return
	}
	man := map[string]any{"id": p.name, "version": version}
	if b, err := refpack.ReadZipFile(bytes.NewReader(zip), int64(len(zip)), refpack.FileMeta); err == nil {
		if m, err := refpack.ParseManifest(b); err == nil {
			man = m.Raw
		}
	}
	created, _ := man["createdUtc"].(string)
	p.versions[version] = &regVersion{version: version, sv: sv, zip: zip, manifest: man, created: created}
}

// Zip returns the bytes served for id at version, or nil.
func (r *Registry) Zip(id, version string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.pkgs[id]; p != nil {
		if v := p.versions[version]; v != nil {
			return v.zip
		}
	}
	return nil
}

// Archive archives one version of id, or every version when version is "".
func (r *Registry) Archive(id, version string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.pkgs[id]; p != nil {
		for _, v := range p.versions {
			if version == "" || v.version == version {
				v.archived = true
			}
		}
	}
}

// Requests returns a copy of the requests recorded so far, oldest first.
func (r *Registry) Requests() []RecordedRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.requests)
}

// Count returns how many recorded requests have an escaped path starting with
// pathPrefix ("/packages/vendor%2Fcountry-codes" and
// "/packages/vendor/country-codes" are different prefixes).
func (r *Registry) Count(pathPrefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.countLocked(pathPrefix)
}

func (r *Registry) countLocked(prefix string) int {
	n := 0
	for _, q := range r.requests {
		if strings.HasPrefix(q.Path, prefix) {
			n++
		}
	}
	return n
}

// WaitCount waits until Count(pathPrefix) ≥ n or ctx ends; with Hold it lets a
// test know that requests have arrived without sleeping.
func (r *Registry) WaitCount(ctx context.Context, pathPrefix string, n int) error {
	for {
		r.mu.Lock()
		c, ch := r.countLocked(pathPrefix), r.changed
		r.mu.Unlock()
		if c >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("registrytest: %d of %d requests under %q: %w", c, n, pathPrefix, ctx.Err())
		}
	}
}

// Reset forgets the recorded requests (packages, keys and hooks stay).
func (r *Registry) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = nil
}

// SetDelay delays every answer by d (0: none); a request whose client gives up
// stops waiting.
func (r *Registry) SetDelay(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delay = d
}

// SetFail answers every request with status (e.g. 500, 502, 503) and the
// registry's error body; 0 restores normal answers.
func (r *Registry) SetFail(status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failStatus = status
}

// FailNext answers the next n requests with status, then recovers.
func (r *Registry) FailNext(n, status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failNext, r.failNextCode = n, status
}

// SetDown makes every request end with the connection closed and no answer, as
// an upstream that crashed would. Go's client retries an idempotent request once
// on a reused connection closed this way, so two requests may be recorded.
func (r *Registry) SetDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

// SetCutBody makes every answer longer than n bytes send its full Content-Length
// and only the first n bytes, then close the connection; n < 0 turns it off.
func (r *Registry) SetCutBody(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cutAfter = n
}

// Hold makes requests arriving from now on wait (after being recorded) until
// the returned release is called, so tests can pile up concurrent requests, for
// coalescing, without sleeping. Release is idempotent.
func (r *Registry) Hold() (release func()) {
	ch := make(chan struct{})
	r.mu.Lock()
	r.hold = ch
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			if r.hold == ch {
				r.hold = nil
			}
			r.mu.Unlock()
			close(ch)
		})
	}
}

// SetHook runs h on every request after it is recorded; when h returns true it
// has answered and the registry does nothing more. nil removes the hook.
func (r *Registry) SetHook(h func(http.ResponseWriter, *http.Request) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hook = h
}

// ServeHTTP records the request, applies the hooks, then answers it as the
// registry would.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	limit := r.limits.MaxUploadBytes
	r.mu.Unlock()
	if limit <= 0 {
		limit = refpack.DefaultLimits().MaxUploadBytes
	}
	// Read the body up front so its size is recorded even for requests the hooks
	// fail; one byte past the limit is enough to know it is too large.
	body, _ := io.ReadAll(io.LimitReader(req.Body, limit+1))
	req.Body = io.NopCloser(bytes.NewReader(body))

	r.mu.Lock()
	r.requests = append(r.requests, RecordedRequest{
		Method: req.Method, Path: req.URL.EscapedPath(), RawQuery: req.URL.RawQuery,
		Query: req.URL.Query(), Header: req.Header.Clone(), BodySize: int64(len(body)),
	})
	close(r.changed)
	r.changed = make(chan struct{})
	hook, hold, delay, down, cut := r.hook, r.hold, r.delay, r.down, r.cutAfter
	fail := r.failStatus
	if r.failNext > 0 {
		r.failNext--
		fail = r.failNextCode
	}
	r.mu.Unlock()

	if hook != nil && hook(w, req) {
		return
	}
	if hold != nil && !r.wait(req.Context(), hold, nil) {
		r.finish(w, req, errorResp(http.StatusServiceUnavailable, "Service Unavailable", "registry closed"), -1)
		return
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		if !r.wait(req.Context(), nil, t.C) {
			r.finish(w, req, errorResp(http.StatusServiceUnavailable, "Service Unavailable", "registry closed"), -1)
			return
		}
	}
	if down {
		// Closing the connection without a word: net/http does that, and does not
		// log, when a handler panics with ErrAbortHandler.
		panic(http.ErrAbortHandler)
	}
	if fail != 0 {
		r.finish(w, req, failResp(fail), cut)
		return
	}
	r.finish(w, req, r.route(req, body), cut)
}

// wait blocks until ch is closed or t fires; false when the request or the
// registry ended first.
func (r *Registry) wait(ctx context.Context, ch <-chan struct{}, t <-chan time.Time) bool {
	select {
	case <-ch:
		return true
	case <-t:
		return true
	case <-ctx.Done():
		return false
	case <-r.closed:
		return false
	}
}

// resp is an answer built before it is written, so ETag, 304 and cutting apply
// to every route in one place.
type resp struct {
	status int
	header http.Header
	body   []byte
	etag   bool
}

func jsonResp(status int, body []byte) *resp {
	h := http.Header{}
	h.Set("Content-Type", refpack.ContentTypeJSON)
	return &resp{status: status, header: h, body: body, etag: status == http.StatusOK}
}

func marshalResp(status int, v any) *resp {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return jsonResp(status, b)
}

func errorResp(status int, title, msg string) *resp {
	r := jsonResp(status, refpack.ErrorBody(title, msg))
	return r
}

// failResp is the registry's answer for an injected failure: its 500 body has
// the ProblemDetails shape of the API document.
func failResp(status int) *resp {
	if status == http.StatusInternalServerError {
		return marshalResp(status, map[string]any{"title": "Internal Server Error", "detail": "An error occurred while processing the package", "status": 500})
	}
	return errorResp(status, http.StatusText(status), "injected failure")
}

func (r *Registry) finish(w http.ResponseWriter, req *http.Request, rs *resp, cut int) {
	for k, v := range rs.header {
		w.Header()[k] = v
	}
	if rs.etag {
		sum := sha256.Sum256(rs.body)
		etag := `"` + hex.EncodeToString(sum[:16]) + `"`
		w.Header().Set("ETag", etag)
		if etagMatch(req.Header.Get("If-None-Match"), etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(rs.body)))
	w.WriteHeader(rs.status)
	if req.Method == http.MethodHead {
		return
	}
	if cut >= 0 && len(rs.body) > cut {
		_, _ = w.Write(rs.body[:cut])
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler)
	}
	_, _ = w.Write(rs.body)
}

// etagMatch is If-None-Match's weak comparison.
func etagMatch(header, etag string) bool {
	for t := range strings.SplitSeq(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// route answers one request from the registry's state.
func (r *Registry) route(req *http.Request, body []byte) *resp {
	path := req.URL.EscapedPath()
	if strings.HasPrefix(path, "//") {
		path = path[1:] // the RefPack CLI's "//packages/…" from an API URL ending in "/"
	}
	get := req.Method == http.MethodGet || req.Method == http.MethodHead
	switch path {
	case "/packages", "/packages/":
		switch {
		case get:
			return r.list(req, false)
		case req.Method == http.MethodPost:
			return r.push(req, body)
		}
		return methodNotAllowed("GET, HEAD, POST")
	case "/packages/advanced-search":
		if !get {
			return methodNotAllowed("GET, HEAD")
		}
		return r.list(req, true)
	}
	if !strings.HasPrefix(path, "/packages/") {
		return errorResp(http.StatusNotFound, "Not found", "No route for "+path)
	}
	rt, err := refpack.ParsePackagePath(path)
	if err != nil {
		// The real registry has no such package rather than a rule about ids.
		id, _ := url.PathUnescape(strings.TrimPrefix(path, "/packages/"))
		return errorResp(http.StatusNotFound, refpack.ErrTitlePackageNotFound, refpack.PackageNotFoundMessage(id, req.URL.Query().Get("version")))
	}
	if rt.Sub == refpack.SubArchive {
		if req.Method != http.MethodPost {
			return methodNotAllowed("POST")
		}
		return r.archive(req, rt.ID)
	}
	if !get {
		return methodNotAllowed("GET, HEAD")
	}
	if rt.Sub == refpack.SubVersions {
		return r.versions(rt.ID)
	}
	return r.download(req, rt)
}

func methodNotAllowed(allow string) *resp {
	rs := errorResp(http.StatusMethodNotAllowed, "Method not allowed", "Allowed: "+allow)
	rs.header.Set("Allow", allow)
	return rs
}

// versionParam reads ?version=: "" for latest, or a 400 answer when it is not
// SemVer (a raw "+" has become a space and fails here, as upstream).
func versionParam(req *http.Request) (string, *resp) {
	v := req.URL.Query().Get("version")
	if v == "" {
		return "", nil
	}
	if _, err := refpack.ParseVersion(v); err != nil {
		return "", errorResp(http.StatusBadRequest, refpack.ErrTitleInvalidVersion, refpack.MsgInvalidVersion)
	}
	return v, nil
}

// infos lists a package's versions for refpack.Latest; r.mu must be held.
func (p *regPackage) infos() []refpack.VersionInfo {
	out := make([]refpack.VersionInfo, 0, len(p.versions))
	for _, v := range p.versions {
		out = append(out, refpack.VersionInfo{Version: v.version, CreatedAt: v.created, IsArchived: v.archived})
	}
	return out
}

// find resolves id and version ("" = latest); r.mu must be held.
func (r *Registry) find(id, version string) (*regPackage, *regVersion) {
	p := r.pkgs[id]
	if p == nil {
		return nil, nil
	}
	if version == "" {
		l, ok := refpack.Latest(p.infos())
		if !ok {
			return p, nil
		}
		version = l
	}
	return p, p.versions[version]
}

// download answers the zip and the per-version documents.
func (r *Registry) download(req *http.Request, rt refpack.Route) *resp {
	version, bad := versionParam(req)
	if bad != nil {
		return bad
	}
	r.mu.Lock()
	p, v := r.find(rt.ID, version)
	var zipBytes []byte
	var man map[string]any
	if v != nil {
		zipBytes, man = v.zip, v.manifest
	}
	r.mu.Unlock()
	if v == nil {
		return errorResp(http.StatusNotFound, refpack.ErrTitlePackageNotFound, refpack.PackageNotFoundMessage(rt.ID, version))
	}
	switch rt.Sub {
	case "":
		h := http.Header{}
		h.Set("Content-Type", refpack.ContentTypeZip)
		h.Set("Content-Disposition", refpack.ContentDisposition(p.id, v.version))
		return &resp{status: http.StatusOK, header: h, body: zipBytes}
	case refpack.SubMeta:
		m := make(map[string]any, len(man))
		for k, val := range man {
			m[k] = val
		}
		m["id"] = p.id // the registry's view: its own id, not the manifest's name
		return jsonResp(http.StatusOK, refpack.OrderedJSON(m, refpack.ManifestKeys))
	}
	file := refpack.FileName(rt.Sub)
	b, err := refpack.ReadZipFile(bytes.NewReader(zipBytes), int64(len(zipBytes)), file)
	if errors.Is(err, fs.ErrNotExist) {
		return errorResp(http.StatusNotFound, refpack.ErrTitleFileNotFound, refpack.FileNotFoundMessage(p.id, v.version, file))
	}
	if err != nil {
		return failResp(http.StatusInternalServerError)
	}
	rs := jsonResp(http.StatusOK, b)
	rs.header.Set("Content-Type", refpack.DocContentType(rt.Sub))
	return rs
}

// versions answers /versions, newest first by SemVer precedence.
func (r *Registry) versions(id string) *resp {
	var infos []refpack.VersionInfo
	r.mu.Lock()
	if p := r.pkgs[id]; p != nil {
		infos = p.infos()
	}
	r.mu.Unlock()
	if len(infos) == 0 {
		return errorResp(http.StatusNotFound, refpack.ErrTitlePackageNotFound, refpack.PackageNotFoundMessage(id, ""))
	}
	refpack.SortNewestFirst(infos)
	return marshalResp(http.StatusOK, refpack.VersionsAnswer{PackageID: id, Versions: infos})
}

// list answers GET /packages and /packages/advanced-search with one item per
// package: its latest version, or when every version is archived its highest
// one, marked archived (shown only with includeArchived).
func (r *Registry) list(req *http.Request, advanced bool) *resp {
	q, err := refpack.ParseListQuery(req.URL.Query(), advanced)
	if err != nil {
		return errorResp(http.StatusBadRequest, "Invalid request", strings.TrimPrefix(err.Error(), refpack.ErrBadQuery.Error()+": "))
	}
	r.mu.Lock()
	items := make([]refpack.ListItem, 0, len(r.pkgs))
	fields := map[string]map[string]any{}
	for id, p := range r.pkgs {
		l, ok := refpack.ListedVersion(p.infos())
		if !ok {
			continue
		}
		v := p.versions[l]
		title, _ := v.manifest["title"].(string)
		desc, _ := v.manifest["description"].(string)
		items = append(items, refpack.ListItem{
			"id": id, "name": title, "description": desc, "version": v.version,
			"isArchived": v.archived, "updatedAt": v.created,
		})
		fields[id] = v.manifest
	}
	r.mu.Unlock()
	page := q.Apply(items, func(id string) map[string]any { return fields[id] })
	return jsonResp(http.StatusOK, refpack.MarshalListPage(page))
}

// authorized accepts X-API-Key or the RefPack CLI's Authorization: Bearer.
func (r *Registry) authorized(req *http.Request) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if k := req.Header.Get("X-API-Key"); k != "" && r.keys[k] {
		return true
	}
	if tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer "); ok && tok != "" && r.keys[tok] {
		return true
	}
	return false
}

func unauthorized() *resp {
	return errorResp(http.StatusUnauthorized, refpack.ErrTitleUnauthorized, refpack.MsgUnauthorized)
}

func badRequest(msg string) *resp { return errorResp(http.StatusBadRequest, "Invalid request", msg) }

func validationFailed(detail string) *resp {
	return errorResp(http.StatusBadRequest, refpack.ErrTitleValidationFailed, refpack.MsgValidationFailed+": "+detail)
}

// push answers POST /packages in both forms: the documented multipart form
// (file + ownerId) and the RefPack CLI's raw application/zip body.
func (r *Registry) push(req *http.Request, body []byte) *resp {
	if !r.authorized(req) {
		return unauthorized()
	}
	r.mu.Lock()
	lim, defOwner := r.limits, r.defaultOwner
	r.mu.Unlock()
	if lim.MaxUploadBytes <= 0 {
		lim.MaxUploadBytes = refpack.DefaultLimits().MaxUploadBytes
	}
	if int64(len(body)) > lim.MaxUploadBytes {
		return errorResp(http.StatusRequestEntityTooLarge, "Payload too large", fmt.Sprintf("The upload is over %d bytes", lim.MaxUploadBytes))
	}
	mt, params, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	var zipBytes []byte
	owner := defOwner
	switch mt {
	case "application/zip":
		zipBytes = body
	case "multipart/form-data":
		form, err := multipartForm(body, params["boundary"])
		if err != nil {
			return badRequest(err.Error())
		}
		if form.file == nil {
			return badRequest("The 'file' field is required")
		}
		if !strings.HasSuffix(strings.ToLower(form.filename), ".zip") {
			return badRequest("The file name must end with .zip or .refpack.zip")
		}
		if form.owner == "" {
			return badRequest("The 'ownerId' field is required")
		}
		zipBytes, owner = form.file, form.owner
	default:
		return badRequest("Content-Type must be multipart/form-data or application/zip")
	}
	if !refpack.ValidSegment(owner) {
		return badRequest("Invalid ownerId")
	}
	man, err := refpack.ValidateZip(bytes.NewReader(zipBytes), int64(len(zipBytes)), lim)
	if err != nil {
		return validationFailed(strings.TrimPrefix(err.Error(), refpack.ErrInvalidPackage.Error()+": "))
	}
	if !refpack.ValidSegment(man.ID) {
		return validationFailed(fmt.Sprintf("manifest id %q is not a valid package name", man.ID))
	}
	sv, err := refpack.ParseVersion(man.Version)
	if err != nil {
		return validationFailed(fmt.Sprintf("manifest version %q is not SemVer", man.Version))
	}
	id := registryID(owner, man.ID)
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.pkgs[id]; p != nil {
		for _, v := range p.versions {
			if sv.Compare(v.sv) <= 0 {
				return errorResp(http.StatusConflict, "Conflict", fmt.Sprintf("Package '%s' version '%s' is not greater than published version '%s'", id, man.Version, v.version))
			}
		}
	}
	r.pkg(id).versions[man.Version] = &regVersion{version: man.Version, sv: sv, zip: bytes.Clone(zipBytes), manifest: man.Raw, created: man.CreatedUtc}
	return marshalResp(http.StatusOK, map[string]bool{"success": true})
}

// archive answers POST /packages/{id}/archive.
func (r *Registry) archive(req *http.Request, id string) *resp {
	if !r.authorized(req) {
		return unauthorized()
	}
	version, bad := versionParam(req)
	if bad != nil {
		return bad
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pkgs[id]
	if p == nil || (version != "" && p.versions[version] == nil) {
		return errorResp(http.StatusNotFound, refpack.ErrTitlePackageNotFound, refpack.PackageNotFoundMessage(id, version))
	}
	for _, v := range p.versions {
		if version == "" || v.version == version {
			v.archived = true
		}
	}
	if version == "" {
		return marshalResp(http.StatusOK, map[string]any{"success": true, "packageId": id, "message": fmt.Sprintf("Package '%s' (all versions) has been archived", id)})
	}
	return marshalResp(http.StatusOK, map[string]any{"success": true, "packageId": id, "version": version, "message": fmt.Sprintf("Package '%s' version '%s' has been archived", id, version)})
}
