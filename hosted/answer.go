package hosted

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/refpack"
)

// CacheStatus is the Cache-Status of every hosted answer (RFC 9211): a hit
// whose source is the mirror itself. X-Cache says HIT.
const CacheStatus = `regmirror; hit; detail="hosted"`

// cacheHeaders are the shared, read-only header values of hosted answers.
var (
	xCacheHit        = []string{"HIT"}
	cacheStatusValue = []string{CacheStatus}
)

// SetCacheHeaders marks an answer as hosted: X-Cache HIT and CacheStatus.
func SetCacheHeaders(h http.Header) {
	h["X-Cache"] = xCacheHit
	h["Cache-Status"] = cacheStatusValue
}

// Answer is one answer of a hosted route, built before it is written so a
// caller can add its own headers, count it, or write it with its own hot path.
type Answer struct {
	Status int
	Header http.Header
	// Body is the whole body, or nil when Hot's body is only in the store.
	Body []byte
	// Hot is set for a zip download: the stored entry, whose prepared headers
	// (strong ETag, Content-Length, Accept-Ranges) the answer carries.
	Hot *cache.Hot
}

// jsonAnswer is a JSON answer with a strong ETag of its bytes.
func jsonAnswer(status int, body []byte) *Answer {
	h := http.Header{}
	h.Set("Content-Type", refpack.ContentTypeJSON)
	if status == http.StatusOK {
		h.Set("ETag", etagOf(body))
	}
	return &Answer{Status: status, Header: h, Body: body}
}

func marshalAnswer(status int, v any) *Answer {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs and maps of decoded JSON
	}
	return jsonAnswer(status, b)
}

// errorAnswer is the registry's {"error","message"} shape.
func errorAnswer(status int, title, msg string) *Answer {
	a := jsonAnswer(status, refpack.ErrorBody(title, msg))
	a.Header.Set("Cache-Control", "no-store")
	return a
}

func notFound(id, version string) *Answer {
	return errorAnswer(http.StatusNotFound, refpack.ErrTitlePackageNotFound, refpack.PackageNotFoundMessage(id, version))
}

func etagOf(b []byte) string {
	sum := sha256.Sum256(b)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

// Write writes the answer; c opens a zip's body when it is not in memory.
// JSON bodies and zips are served with http.ServeContent (HEAD, Range,
// If-None-Match), errors as they are.
func (a *Answer) Write(w http.ResponseWriter, r *http.Request, c *cache.Cache) error {
	h := w.Header()
	if a.Hot != nil {
		for k, v := range a.Hot.Prepared() {
			h[k] = v
		}
	}
	for k, v := range a.Header {
		h[k] = v
	}
	SetCacheHeaders(h)
	if a.Status != http.StatusOK {
		h.Set("Content-Length", strconv.Itoa(len(a.Body)))
		w.WriteHeader(a.Status)
		if r.Method != http.MethodHead {
			w.Write(a.Body)
		}
		return nil
	}
	var content io.ReadSeeker
	switch {
	case a.Body != nil || a.Hot == nil:
		content = bytes.NewReader(a.Body)
	default:
		b, err := c.Open(r.Context(), a.Hot.Entry)
		if err != nil {
			// A hosted blob that is gone is the operator's to restore; the
			// entry stays (cache keeps hosted entries) and this is a 500.
			for k := range a.Hot.Prepared() {
				h.Del(k)
			}
			e := errorAnswer(http.StatusInternalServerError, "Internal Server Error", "the stored package cannot be read")
			e.Write(w, r, c)
			return errors.Join(errBlob, err)
		}
		defer b.Close()
		content = b
		// Hand net/http the *os.File itself so it can use sendfile.
		if u, ok := b.(interface{ Unwrap() cache.Blob }); ok {
			content = u.Unwrap()
		}
	}
	http.ServeContent(w, r, "", time.Time{}, content)
	return nil
}

// errBlob marks a Write that failed because a hosted blob could not be read.
var errBlob = errors.New("hosted blob unreadable")
