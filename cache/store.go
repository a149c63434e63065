package cache

import (
	"context"
	"errors"
	"io"
	"io/fs"
)

// ErrDigestMismatch means bytes did not hash to the digest they were promised to have.
var ErrDigestMismatch = errors.New("digest mismatch")

// ErrNotFound is returned for an absent key or blob; it is fs.ErrNotExist so
// callers can test either.
var ErrNotFound = fs.ErrNotExist

// Blob is an open stored body. *os.File satisfies it, which lets net/http use
// sendfile for blobs on disk.
type Blob interface {
	io.ReadSeekCloser
	io.ReaderAt
	Stat() (fs.FileInfo, error)
}

// Store is the storage backend: blobs addressed by their sha256 and an index of
// entries by key. Every backend runs the compliance suite in cache/storetest.
type Store interface {
	// Entry returns the entry stored under key, or an error wrapping ErrNotFound.
	Entry(ctx context.Context, key string) (*Entry, error)
	// PutEntry records e under e.Key. The blob e.Digest must already be committed.
	PutEntry(ctx context.Context, e *Entry) error
	// DeleteEntry removes the entry under key; removing an absent key is not an error.
	DeleteEntry(ctx context.Context, key string) error
	// Entries calls fn for every entry; fn's error stops the walk and is returned.
	Entries(ctx context.Context, fn func(*Entry) error) error

	// Commit moves a staged body into the store under its digest. Committing a
	// digest that is already stored is not an error.
	Commit(ctx context.Context, s *Staged) error
	// Open opens the blob with the given digest, or fails wrapping ErrNotFound.
	// Backends check a blob's bytes against its digest before its first use after
	// a start, and fail with ErrDigestMismatch when they differ.
	Open(ctx context.Context, digest string) (Blob, error)
	// DeleteBlob removes a blob; removing an absent blob is not an error.
	DeleteBlob(ctx context.Context, digest string) error
	// Blobs calls fn for every stored blob.
	Blobs(ctx context.Context, fn func(digest string, size int64) error) error

	// Close releases the store.
	Close() error
}

// PrefixWalker is an optional ability of a Store: walking only the entries
// whose key starts with a prefix, without decoding the others. Callers fall
// back to Entries when a store lacks it (see WalkPrefix).
type PrefixWalker interface {
	EntriesWithPrefix(ctx context.Context, prefix string, fn func(*Entry) error) error
}

// WalkPrefix calls fn for every entry whose key starts with prefix.
func WalkPrefix(ctx context.Context, st Store, prefix string, fn func(*Entry) error) error {
	if pw, ok := st.(PrefixWalker); ok {
		return pw.EntriesWithPrefix(ctx, prefix, fn)
	}
	return st.Entries(ctx, func(e *Entry) error {
		if len(e.Key) >= len(prefix) && e.Key[:len(prefix)] == prefix {
			return fn(e)
		}
		return nil
	})
}

// RawPrefixWalker is an optional ability of a Store: the encoded entry records
// (JSON of Entry) whose key starts with prefix, for callers that decode only the
// fields they need, in parallel. The bytes are valid only during fn.
type RawPrefixWalker interface {
	RawEntriesWithPrefix(ctx context.Context, prefix string, fn func(key, record []byte) error) error
}

// MetaWalker is an optional ability of a Store: the Meta of the entries whose
// key starts with prefix, with their upstream, without the rest of each record,
// for a caller that decodes them on several cores (the Hydrilla catalogue at
// start-up).
type MetaWalker interface {
	// MetaBatches hands the records over in batches of consecutive keys,
	// numbered from 0 in key order, to fn on up to workers goroutines at once.
	// The batch and the bytes it points to are views of the store's own
	// memory: valid only until fn returns, and never to be changed. fn's
	// error (or ctx's) stops the walk and is returned.
	MetaBatches(ctx context.Context, prefix string, workers int, fn func(seq int, batch []MetaRecord) error) error
	// MetaKeys calls fn with the key of every record whose key starts with
	// prefix, in key order, reading nothing else (to count them before
	// MetaBatches, say). The key is valid only during fn.
	MetaKeys(ctx context.Context, prefix string, fn func(key []byte) error) error
}

// MetaRecord is one record a MetaWalker hands over.
type MetaRecord struct {
	Key, Upstream, Meta []byte
}
