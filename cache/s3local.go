package cache

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// errLocalWrite marks a failure to write the local tier (a full disk), as
// opposed to the bucket cutting a download short.
var errLocalWrite = errors.New("local tier write failed")

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// s3Local is the S3 store's local disk tier: blobs under <dir>/blobs/<hex>,
// least recently used dropped first once they pass the limit. Every file is
// hashed on its first use after a start. An open *os.File keeps reading a file
// that is evicted meanwhile (it is only unlinked).
type s3Local struct {
	dir   string
	limit int64

	mu       sync.Mutex
	lru      *list.List               // of *localBlob, most recent first
	byDigest map[string]*list.Element // digest → element of lru
	used     int64
}

type localBlob struct {
	digest   string
	size     int64
	verified bool
}

func openS3Local(dir string, limit int64) (*s3Local, error) {
	l := &s3Local{dir: dir, limit: limit, lru: list.New(), byDigest: map[string]*list.Element{}}
	for _, sub := range []string{"blobs", "tmp", "entries"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o750); err != nil {
			return nil, fmt.Errorf("local tier: %w", err)
		}
	}
	if err := clearDir(l.tmpDir()); err != nil {
		return nil, fmt.Errorf("local tier: %w", err)
	}
	des, err := os.ReadDir(filepath.Join(dir, "blobs"))
	if err != nil {
		return nil, fmt.Errorf("local tier: %w", err)
	}
	type found struct {
		digest string
		size   int64
		mtime  int64
	}
	var files []found
	for _, de := range des {
		fi, err := de.Info()
		if err != nil || !fi.Mode().IsRegular() || !validDigest(de.Name()) {
			os.RemoveAll(filepath.Join(dir, "blobs", de.Name()))
			continue
		}
		files = append(files, found{de.Name(), fi.Size(), fi.ModTime().UnixNano()})
	}
	// Oldest first, so the newest end up at the front.
	sort.Slice(files, func(i, j int) bool { return files[i].mtime < files[j].mtime })
	for _, f := range files {
		l.byDigest[f.digest] = l.lru.PushFront(&localBlob{digest: f.digest, size: f.size})
		l.used += f.size
	}
	l.mu.Lock()
	l.evictLocked(nil)
	l.mu.Unlock()
	return l, nil
}

func (l *s3Local) tmpDir() string { return filepath.Join(l.dir, "tmp") }

func (l *s3Local) path(digest string) string { return filepath.Join(l.dir, "blobs", digest) }

func (l *s3Local) usage() (int64, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.used, int64(l.lru.Len())
}

// open opens a blob held locally, hashing it on its first use since start; a
// copy that does not match its digest is dropped. Absent wraps ErrNotFound.
func (l *s3Local) open(digest string) (*os.File, error) {
	l.mu.Lock()
	el, ok := l.byDigest[digest]
	if !ok {
		l.mu.Unlock()
		return nil, ErrNotFound
	}
	l.lru.MoveToFront(el)
	lb := el.Value.(*localBlob)
	verified := lb.verified
	l.mu.Unlock()
	f, err := os.Open(l.path(digest))
	if err != nil {
		l.remove(digest)
		return nil, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	if verified {
		return f, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		f.Close()
		l.remove(digest)
		return nil, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	if hex.EncodeToString(h.Sum(nil)) != digest {
		f.Close()
		l.remove(digest)
		return nil, fmt.Errorf("local copy of %s changed on disk; dropped: %w", digest, ErrNotFound)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	l.mu.Lock()
	lb.verified = true
	l.mu.Unlock()
	return f, nil
}

// fill writes r into the tier as the blob digest, checking the bytes hash to it.
func (l *s3Local) fill(digest string, r io.Reader) (int64, error) {
	f, err := os.CreateTemp(l.tmpDir(), "dl-*")
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errLocalWrite, err)
	}
	defer func() {
		if f != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(fileWriter{f}, h), r)
	if err != nil {
		var we *writeErr
		if errors.As(err, &we) {
			return 0, fmt.Errorf("%w: %v", errLocalWrite, err)
		}
		return 0, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		return 0, fmt.Errorf("blob %s in the bucket holds sha256 %s: %w", digest, got, ErrDigestMismatch)
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("%w: %v", errLocalWrite, err)
	}
	name := f.Name()
	f = nil
	if err := l.place(name, digest, n, true); err != nil {
		os.Remove(name)
		return 0, fmt.Errorf("%w: %v", errLocalWrite, err)
	}
	return n, nil
}

// writeErr is a failed write to the local file, told apart from a failed read
// of the download.
type writeErr struct{ err error }

// fileWriter marks the local file's write errors.
type fileWriter struct{ f *os.File }

func (w fileWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		err = &writeErr{err}
	}
	return n, err
}

func (e *writeErr) Error() string { return e.err.Error() }

// link hard-links a staged file into the tier (unless the tier has the blob),
// leaving the staged name to its owner; verified says whether it may be served
// without hashing it again.
func (l *s3Local) link(name, digest string, size int64, verified bool) {
	l.mu.Lock()
	_, ok := l.byDigest[digest]
	l.mu.Unlock()
	if !ok {
		l.put(name, digest, size, verified, os.Link)
	}
}

// place renames a verified file into the tier and evicts past the limit.
func (l *s3Local) place(name, digest string, size int64, verified bool) error {
	return l.put(name, digest, size, verified, os.Rename)
}

func (l *s3Local) put(name, digest string, size int64, verified bool, how func(string, string) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := how(name, l.path(digest)); err != nil {
		return err
	}
	if el, ok := l.byDigest[digest]; ok {
		lb := el.Value.(*localBlob)
		l.used += size - lb.size
		lb.size, lb.verified = size, verified
		l.lru.MoveToFront(el)
		l.evictLocked(el)
		return nil
	}
	el := l.lru.PushFront(&localBlob{digest: digest, size: size, verified: verified})
	l.byDigest[digest] = el
	l.used += size
	l.evictLocked(el)
	return nil
}

// evictLocked drops least recently used blobs until the tier fits its limit,
// never keep (the blob just placed, which may alone pass the limit).
func (l *s3Local) evictLocked(keep *list.Element) {
	if l.limit <= 0 {
		return
	}
	for el := l.lru.Back(); el != nil && l.used > l.limit; {
		prev := el.Prev()
		if el != keep {
			lb := el.Value.(*localBlob)
			os.Remove(l.path(lb.digest))
			l.lru.Remove(el)
			delete(l.byDigest, lb.digest)
			l.used -= lb.size
		}
		el = prev
	}
}

func (l *s3Local) remove(digest string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.byDigest[digest]; ok {
		l.lru.Remove(el)
		delete(l.byDigest, digest)
		l.used -= el.Value.(*localBlob).size
	}
	os.Remove(l.path(digest))
}

// The local tier also keeps a copy of the entry records this replica read or
// wrote, so that while the bucket is unreachable it still answers what it
// holds: <dir>/entries/<encoded key>.

func (l *s3Local) entryPath(key string) string {
	return filepath.Join(l.dir, "entries", encodeKey(key))
}

// putEntry records an entry's JSON (temporary file, then rename).
func (l *s3Local) putEntry(key string, rec []byte) {
	f, err := os.CreateTemp(l.tmpDir(), "entry-*")
	if err != nil {
		return
	}
	_, werr := f.Write(rec)
	if cerr := f.Close(); werr != nil || cerr != nil || os.Rename(f.Name(), l.entryPath(key)) != nil {
		os.Remove(f.Name())
	}
}

// entry returns the local copy of key's record.
func (l *s3Local) entry(key string) ([]byte, bool) {
	rec, err := os.ReadFile(l.entryPath(key))
	return rec, err == nil
}

func (l *s3Local) has(digest string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.byDigest[digest]
	return ok
}

func (l *s3Local) dropEntry(key string) { os.Remove(l.entryPath(key)) }
