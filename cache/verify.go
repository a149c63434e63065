package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// Problem is one thing Verify found wrong.
type Problem struct {
	Key    string // the entry, or "" for a blob no entry names
	Digest string
	What   string
	// Unrecoverable: the entry is hosted (the mirror's own), so repair keeps
	// it; only a backup can restore its blob.
	Unrecoverable bool
	// Leftover: a whole, correct blob no entry names, which a process killed
	// between placing a blob and recording its entry leaves (a sync's or a
	// serve's round of writes in flight). It answers nothing and damages
	// nothing: the next serve, sync or verify --repair removes it.
	Leftover bool
}

func (p Problem) String() string {
	if p.Key == "" {
		return fmt.Sprintf("blob %s: %s", p.Digest, p.What)
	}
	if p.Unrecoverable {
		return fmt.Sprintf("entry %q (blob %s): %s; hosted, so unrecoverable: kept, restore the blob from a backup", p.Key, p.Digest, p.What)
	}
	return fmt.Sprintf("entry %q (blob %s): %s", p.Key, p.Digest, p.What)
}

// Verify checks every blob against its digest and every entry against the
// blobs. With repair it drops entries whose blob is missing or corrupt and
// blobs no entry names. It returns what it found (before repair). Hosted
// entries are never dropped, nor their blobs deleted: their problems are
// reported Unrecoverable.
func Verify(ctx context.Context, st Store, repair bool) ([]Problem, error) {
	var problems []Problem
	sizes := map[string]int64{}
	bad := map[string]string{}
	err := st.Blobs(ctx, func(digest string, size int64) error {
		sizes[digest] = size
		if err := hashBlob(ctx, st, digest); err != nil {
			bad[digest] = err.Error()
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("walk blobs: %w", err)
	}
	shared := isShared(st)
	named := map[string]bool{}
	hosted := map[string]bool{} // digests of hosted entries: never deleted
	var drop []string
	err = st.Entries(ctx, func(e *Entry) error {
		named[e.Digest] = true
		if e.Hosted {
			hosted[e.Digest] = true
		}
		if _, ok := sizes[e.Digest]; !ok && shared {
			// On a shared store the blob may have been committed by another
			// process after the blob walk: look again before judging.
			if err := hashBlob(ctx, st, e.Digest); err == nil {
				sizes[e.Digest] = e.Size
			} else if !errors.Is(err, ErrNotFound) {
				bad[e.Digest] = err.Error()
				sizes[e.Digest] = -1
			}
		}
		var what string
		switch size, ok := sizes[e.Digest]; {
		case !ok:
			what = "blob is missing"
		case bad[e.Digest] != "":
			what = bad[e.Digest]
		case size != e.Size:
			what = fmt.Sprintf("blob has %d bytes, entry says %d", size, e.Size)
		default:
			return nil
		}
		problems = append(problems, Problem{Key: e.Key, Digest: e.Digest, What: what, Unrecoverable: e.Hosted})
		if !e.Hosted {
			drop = append(drop, e.Key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk entries: %w", err)
	}
	var orphans []string
	for d := range sizes {
		if !named[d] && shared {
			// Another process may be between committing this blob and
			// recording its entry: neither a problem nor ours to delete.
			continue
		}
		if !named[d] {
			problems = append(problems, Problem{Digest: d, What: "no entry names it", Leftover: bad[d] == ""})
			orphans = append(orphans, d)
		} else if bad[d] != "" && !hosted[d] {
			orphans = append(orphans, d)
		}
	}
	if repair {
		for _, k := range drop {
			if err := st.DeleteEntry(ctx, k); err != nil {
				return problems, err
			}
		}
		for _, d := range orphans {
			if err := st.DeleteBlob(ctx, d); err != nil {
				return problems, err
			}
		}
	}
	return problems, nil
}

// SourceStore is implemented by stores that keep a copy of their blobs in
// front of where the bytes really live (the S3 store's local tier before its
// bucket). Verify hashes the source: a blob changed in the bucket must be
// found even when this replica's local copy is still good.
type SourceStore interface {
	OpenSource(ctx context.Context, digest string) (io.ReadCloser, error)
}

func hashBlob(ctx context.Context, st Store, digest string) error {
	var b io.ReadCloser
	var err error
	if src, ok := st.(SourceStore); ok {
		b, err = src.OpenSource(ctx, digest)
	} else {
		b, err = st.Open(ctx, digest)
	}
	if err != nil {
		if errors.Is(err, ErrDigestMismatch) {
			return errors.New("bytes do not match the digest")
		}
		return err
	}
	defer b.Close()
	// The backend may have checked it already; hash again so verify never
	// trusts a cached verdict.
	h := sha256.New()
	if _, err := io.Copy(h, b); err != nil {
		return err
	}
	if hex.EncodeToString(h.Sum(nil)) != digest {
		return errors.New("bytes do not match the digest")
	}
	return nil
}

// SharedStore is implemented by stores other processes write at the same time
// (the S3 bucket of a fleet): a blob without an entry may be a fill in progress.
type SharedStore interface{ Shared() bool }

func isShared(st Store) bool {
	sh, ok := st.(SharedStore)
	return ok && sh.Shared()
}
