// Package cache is regmirror's store: content-addressed blobs, an index of cache
// keys to entries, and a memory tier for small hot entries.
package cache

import (
	"encoding/json"
	"net/http"
	"time"

	gojson "github.com/goccy/go-json"
)

// Class says how an entry ages.
type Class uint8

const (
	// Immutable entries are verified once and never revalidated (a file by hash,
	// a package zip at an explicit version).
	Immutable Class = iota + 1
	// Mutable entries are fresh for metadata-max-age and then revalidated.
	Mutable
	// Negative entries record a not-found answer for negative-max-age.
	Negative
)

// String names the class for logs and the status page.
func (c Class) String() string {
	switch c {
	case Immutable:
		return "immutable"
	case Mutable:
		return "mutable"
	case Negative:
		return "negative"
	}
	return "unknown"
}

// Entry describes one stored answer. The body lives in the blob named by Digest.
type Entry struct {
	Key       string      `json:"key"`
	Digest    string      `json:"digest"` // sha256 of the body, lowercase hex
	Size      int64       `json:"size"`
	Status    int         `json:"status"`           // 200, or 404 for negative entries
	Header    http.Header `json:"header,omitempty"` // headers replayed on every answer
	FetchedAt time.Time   `json:"fetchedAt"`        // when the upstream last confirmed it
	Class     Class       `json:"class"`
	// Upstream validators, sent back on revalidation.
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"lastModified,omitempty"`
	Upstream     string `json:"upstream,omitempty"` // base URL the answer came from
	// Pinned entries were stored by sync; eviction never removes them.
	Pinned bool `json:"pinned,omitempty"`
	// Hosted entries are the mirror's own (packages pushed to it): there is no
	// upstream to fetch them from again, so nothing removes them — not
	// eviction, not a failed blob check, not verify --repair. They are Pinned
	// too.
	Hosted bool `json:"hosted,omitempty"`
	// Meta holds facts the API layer derived from the body when it was stored
	// (a Hydrilla item's identity and URL patterns), so an index can be rebuilt
	// at start from the entries alone, without reading every body.
	Meta json.RawMessage `json:"meta,omitempty"`
}

// StrongETag is the entry's own validator: the quoted sha256 of its bytes.
func (e *Entry) StrongETag() string { return `"` + e.Digest + `"` }

// marshalEntry is e's record in the index: the bytes encoding/json makes of
// it (TestEntryRecordIsEncodingJSON), made by go-json at about three times
// its speed; a sync records every object it stores.
func marshalEntry(e *Entry) ([]byte, error) { return gojson.Marshal(e) }
