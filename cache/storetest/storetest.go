// Package storetest is the compliance suite every cache.Store backend must pass.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regmirror/regmirror/cache"
)

// Backend opens the store under test. Reopen closes nothing: the suite closes
// the store it had and calls Open again to check what survived.
type Backend struct {
	// Open returns the store (the same data every call) and a folder for staging.
	Open func(t *testing.T) (cache.Store, string)
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func stage(t *testing.T, dir string, body []byte) *cache.Staged {
	t.Helper()
	st, err := cache.Stage(dir, bytes.NewReader(body), 0, "")
	if err != nil {
		t.Fatalf("Stage: %v", err)
	}
	t.Cleanup(st.Discard)
	return st
}

func readBlob(t *testing.T, s cache.Store, digest string) []byte {
	t.Helper()
	b, err := s.Open(context.Background(), digest)
	if err != nil {
		t.Fatalf("Open(%s): %v", digest[:8], err)
	}
	defer b.Close()
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatalf("read blob: %v", err)
	}
	return got
}

// Run runs the whole suite against b.
func Run(t *testing.T, b Backend) {
	ctx := context.Background()

	t.Run("AbsentIsNotFound", func(t *testing.T) {
		s, _ := b.Open(t)
		defer s.Close()
		if _, err := s.Entry(ctx, "no/such/key"); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("Entry(absent) = %v, want ErrNotFound", err)
		}
		if _, err := s.Open(ctx, digestOf([]byte("never stored"))); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("Open(absent) = %v, want ErrNotFound", err)
		}
		if _, err := s.Open(ctx, "../../etc/passwd"); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("Open(traversal) = %v, want ErrNotFound", err)
		}
		if err := s.DeleteEntry(ctx, "no/such/key"); err != nil {
			t.Fatalf("DeleteEntry(absent) = %v", err)
		}
		if err := s.DeleteBlob(ctx, digestOf([]byte("x"))); err != nil {
			t.Fatalf("DeleteBlob(absent) = %v", err)
		}
	})

	t.Run("CommitOpenRoundTrip", func(t *testing.T) {
		s, tmp := b.Open(t)
		defer s.Close()
		body := bytes.Repeat([]byte("regmirror "), 10000)
		st := stage(t, tmp, body)
		if st.Digest != digestOf(body) || st.Size != int64(len(body)) {
			t.Fatalf("staged digest/size = %s/%d", st.Digest, st.Size)
		}
		if err := s.Commit(ctx, st); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		if got := readBlob(t, s, digestOf(body)); !bytes.Equal(got, body) {
			t.Fatalf("blob bytes differ")
		}
		// Committing the same content again is not an error.
		if err := s.Commit(ctx, stage(t, tmp, body)); err != nil {
			t.Fatalf("second Commit: %v", err)
		}
		blob, err := s.Open(ctx, digestOf(body))
		if err != nil {
			t.Fatal(err)
		}
		defer blob.Close()
		fi, err := blob.Stat()
		if err != nil || fi.Size() != int64(len(body)) {
			t.Fatalf("Stat = %v, %v", fi, err)
		}
		part := make([]byte, 9)
		if _, err := blob.ReadAt(part, 10); err != nil || string(part) != "regmirror" {
			t.Fatalf("ReadAt = %q, %v", part, err)
		}
	})

	t.Run("EntryRoundTrip", func(t *testing.T) {
		s, tmp := b.Open(t)
		defer s.Close()
		body := []byte(`{"id":"vendor/country-codes"}`)
		st := stage(t, tmp, body)
		if err := s.Commit(ctx, st); err != nil {
			t.Fatal(err)
		}
		want := &cache.Entry{
			Key: "rp/meta/vendor/country-codes@1.2.0", Digest: digestOf(body), Size: int64(len(body)), Status: 200,
			Header:    http.Header{"Content-Type": {"application/json; charset=utf-8"}, "Content-Disposition": {`attachment; filename="a.zip"`}},
			FetchedAt: time.Date(2026, 11, 25, 1, 2, 3, 4, time.UTC), Class: cache.Mutable,
			ETag: `W/"abc"`, LastModified: "Wed, 25 Nov 2026 01:02:03 GMT", Upstream: "http://127.0.0.1:1/api", Pinned: true, Hosted: true,
			Meta: []byte(`{"patterns":["https://example.org/***"]}`),
		}
		if err := s.PutEntry(ctx, want); err != nil {
			t.Fatal(err)
		}
		got, err := s.Entry(ctx, want.Key)
		if err != nil {
			t.Fatal(err)
		}
		if got.Key != want.Key || got.Digest != want.Digest || got.Size != want.Size || got.Status != want.Status ||
			!got.FetchedAt.Equal(want.FetchedAt) || got.Class != want.Class || got.ETag != want.ETag ||
			got.LastModified != want.LastModified || got.Upstream != want.Upstream || got.Pinned != want.Pinned || got.Hosted != want.Hosted ||
			string(got.Meta) != string(want.Meta) ||
			got.Header.Get("Content-Type") != want.Header.Get("Content-Type") ||
			got.Header.Get("Content-Disposition") != want.Header.Get("Content-Disposition") {
			t.Fatalf("Entry = %+v, want %+v", got, want)
		}
		// Overwrite.
		want.Class = cache.Immutable
		if err := s.PutEntry(ctx, want); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Entry(ctx, want.Key); got.Class != cache.Immutable {
			t.Fatalf("overwrite not visible: %v", got.Class)
		}
		if err := s.DeleteEntry(ctx, want.Key); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Entry(ctx, want.Key); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("after delete: %v", err)
		}
	})

	t.Run("WalkEntriesAndBlobs", func(t *testing.T) {
		s, tmp := b.Open(t)
		defer s.Close()
		var keys []string
		for i, k := range []string{"a/1", "b/2", "c/3"} {
			body := []byte(strings.Repeat("x", i+1))
			st := stage(t, tmp, body)
			if err := s.Commit(ctx, st); err != nil {
				t.Fatal(err)
			}
			if err := s.PutEntry(ctx, &cache.Entry{Key: "walk/" + k, Digest: digestOf(body), Size: int64(len(body)), Status: 200, Class: cache.Immutable}); err != nil {
				t.Fatal(err)
			}
			keys = append(keys, "walk/"+k)
		}
		var seen []string
		if err := s.Entries(ctx, func(e *cache.Entry) error {
			if strings.HasPrefix(e.Key, "walk/") {
				seen = append(seen, e.Key)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		sort.Strings(seen)
		if strings.Join(seen, ",") != strings.Join(keys, ",") {
			t.Fatalf("Entries saw %v, want %v", seen, keys)
		}
		blobs := map[string]int64{}
		if err := s.Blobs(ctx, func(d string, n int64) error { blobs[d] = n; return nil }); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 3; i++ {
			body := []byte(strings.Repeat("x", i))
			if blobs[digestOf(body)] != int64(i) {
				t.Fatalf("Blobs missing %d-byte blob: %v", i, blobs)
			}
		}
		stop := errors.New("stop")
		if err := s.Entries(ctx, func(*cache.Entry) error { return stop }); !errors.Is(err, stop) {
			t.Fatalf("Entries did not return fn's error: %v", err)
		}
		if err := s.DeleteBlob(ctx, digestOf([]byte("x"))); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Open(ctx, digestOf([]byte("x"))); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("Open after DeleteBlob = %v", err)
		}
	})

	t.Run("SurvivesReopen", func(t *testing.T) {
		s, tmp := b.Open(t)
		body := []byte("kept across a restart")
		if err := s.Commit(ctx, stage(t, tmp, body)); err != nil {
			t.Fatal(err)
		}
		if err := s.PutEntry(ctx, &cache.Entry{Key: "reopen", Digest: digestOf(body), Size: int64(len(body)), Status: 200, Class: cache.Immutable}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, _ = b.Open(t)
		defer s.Close()
		e, err := s.Entry(ctx, "reopen")
		if err != nil {
			t.Fatal(err)
		}
		if got := readBlob(t, s, e.Digest); !bytes.Equal(got, body) {
			t.Fatalf("after reopen: %q", got)
		}
	})

	t.Run("ConcurrentCommits", func(t *testing.T) {
		s, tmp := b.Open(t)
		defer s.Close()
		body := bytes.Repeat([]byte{7}, 1<<16)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, err := cache.Stage(tmp, bytes.NewReader(body), 0, "")
				if err != nil {
					errs <- err
					return
				}
				defer st.Discard()
				errs <- s.Commit(ctx, st)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("concurrent Commit: %v", err)
			}
		}
		if got := readBlob(t, s, digestOf(body)); !bytes.Equal(got, body) {
			t.Fatal("concurrent commits left wrong bytes")
		}
	})

	t.Run("StageRefusesWrongDigestAndOversize", func(t *testing.T) {
		_, tmp := b.Open(t)
		body := []byte("some bytes")
		if _, err := cache.Stage(tmp, bytes.NewReader(body), 0, digestOf([]byte("other"))); !errors.Is(err, cache.ErrDigestMismatch) {
			t.Fatalf("wrong digest: %v", err)
		}
		if _, err := cache.Stage(tmp, bytes.NewReader(body), 4, ""); !errors.Is(err, cache.ErrTooLarge) {
			t.Fatalf("oversize: %v", err)
		}
	})
}
