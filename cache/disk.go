package cache

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

var entriesBucket = []byte("entries")

// metaBucket mirrors the Meta of the entries that have one, as
// "<upstream>\n<meta JSON>", so a start-up that needs only those facts (the
// Hydrilla catalogue) reads a fraction of the bytes and decodes no records.
var metaBucket = []byte("meta")

// Disk is the embedded store: blobs as files under <dir>/blobs/sha256/, entries in
// a bbolt database at <dir>/index.db. bbolt commits are crash-safe, and an entry
// is written only after its blob is renamed into place, so a crash leaves either
// the old entry or the new one.
type Disk struct {
	dir string
	db  *bolt.DB
	// verified holds digests whose file was written or hashed since this
	// process started (the most recently used of them); a blob changed on
	// disk while the mirror was stopped is caught on first use.
	verified verifiedSet
	// releasing is set while a drop of the index's mapped pages is due.
	releasing atomic.Bool
}

// The index's pages and this process's memory: bbolt reads the index through
// a shared mapping of index.db, and every page a lookup, a write or a walk
// touched stays counted in the process's resident memory until it is
// unmapped. A walk of a million entries (the start-up accounting, the
// catalogue) touches them all: well over a gigabyte that is the kernel's page
// cache anyway, and that only a miss or a sync reads again. So the store drops
// the pages it touched from the process (dropResident) at the end of every
// walk, every walkDropEvery records of one, and indexReleaseDelay after any
// other use of the index; what is read again is mapped again from the page
// cache, at the cost of a minor page fault.
const (
	walkDropEvery     = 1 << 16
	indexReleaseDelay = 200 * time.Millisecond
)

// releaseSoon schedules a drop of the index's pages (see above), unless one
// is scheduled already.
func (d *Disk) releaseSoon() {
	if !d.releasing.Load() && d.releasing.CompareAndSwap(false, true) {
		time.AfterFunc(indexReleaseDelay, d.release)
	}
}

// release drops the index's pages from this process's memory now.
func (d *Disk) release() {
	d.releasing.Store(false)
	d.db.View(func(tx *bolt.Tx) error { // fails harmlessly once closed
		d.dropMapped(tx)
		return nil
	})
}

// dropMapped drops the index's pages; within tx, which keeps bbolt from
// mapping the file anew meanwhile.
func (d *Disk) dropMapped(tx *bolt.Tx) { dropResident(d.db.Info().Data, tx.Size()) }

// OpenDisk opens (creating if needed) the store in dir. Temporary files left by
// an earlier crash are removed.
func OpenDisk(dir string) (*Disk, error) {
	for _, sub := range []string{"blobs/sha256", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o750); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	// The index lock comes first: temporary files are only ours to remove once
	// no other regmirror process uses this directory.
	db, err := bolt.Open(filepath.Join(dir, "index.db"), 0o640, &bolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open store index %s: locked: is another regmirror using %s?", filepath.Join(dir, "index.db"), dir)
	}
	if err != nil {
		return nil, fmt.Errorf("open store index %s: %w", filepath.Join(dir, "index.db"), err)
	}
	if err := clearDir(filepath.Join(dir, "tmp")); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	// A lone writer should not wait long for company in a batch.
	db.MaxBatchDelay = time.Millisecond
	if err := db.Update(func(tx *bolt.Tx) error {
		entries, err := tx.CreateBucketIfNotExists(entriesBucket)
		if err != nil {
			return err
		}
		if tx.Bucket(metaBucket) != nil {
			return nil
		}
		// A store written before the meta bucket existed: fill it once.
		if _, err := tx.CreateBucket(metaBucket); err != nil {
			return err
		}
		return entries.ForEach(func(_, v []byte) error {
			e := new(Entry)
			if err := json.Unmarshal(v, e); err != nil {
				return err
			}
			return putMeta(tx, e)
		})
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store index: %w", err)
	}
	return &Disk{dir: dir, db: db}, nil
}

func clearDir(dir string) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, de := range des {
		if err := os.RemoveAll(filepath.Join(dir, de.Name())); err != nil {
			return err
		}
	}
	return nil
}

// TempDir is where bodies are staged before Commit; it is on the same
// filesystem as the blobs so Commit is a rename.
func (d *Disk) TempDir() string { return filepath.Join(d.dir, "tmp") }

func (d *Disk) blobPath(digest string) (string, error) {
	if !validDigest(digest) {
		return "", fmt.Errorf("blob %q: not a sha256 digest: %w", digest, ErrNotFound)
	}
	return filepath.Join(d.dir, "blobs", "sha256", digest[:2], digest), nil
}

func validDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Entry implements Store.
func (d *Disk) Entry(_ context.Context, key string) (*Entry, error) {
	var e *Entry
	err := d.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(entriesBucket).Get([]byte(key))
		if v == nil {
			return entryNotFound(key)
		}
		e = new(Entry)
		return json.Unmarshal(v, e)
	})
	d.releaseSoon()
	return e, err
}

// entryNotFound is the error of a lookup that finds no entry: a type, not
// fmt.Errorf, since every miss of a sync or a cold read makes one.
type entryNotFound string

func (e entryNotFound) Error() string { return fmt.Sprintf("entry %q: %v", string(e), ErrNotFound) }
func (e entryNotFound) Unwrap() error { return ErrNotFound }

// PutEntry implements Store.
func (d *Disk) PutEntry(_ context.Context, e *Entry) error {
	v, err := marshalEntry(e)
	if err != nil {
		return err
	}
	// Batch lets concurrent writers (a sync with several jobs) share one
	// commit and its fsync; each still returns only once its write is durable.
	defer d.releaseSoon()
	return d.db.Batch(func(tx *bolt.Tx) error {
		if err := tx.Bucket(entriesBucket).Put([]byte(e.Key), v); err != nil {
			return err
		}
		return putMeta(tx, e)
	})
}

// putMeta keeps the meta bucket in step with one entry.
func putMeta(tx *bolt.Tx, e *Entry) error {
	b := tx.Bucket(metaBucket)
	if len(e.Meta) == 0 {
		return b.Delete([]byte(e.Key))
	}
	v := make([]byte, 0, len(e.Upstream)+1+len(e.Meta))
	v = append(append(append(v, e.Upstream...), '\n'), e.Meta...)
	return b.Put([]byte(e.Key), v)
}

// metaBatchSize is how many records MetaBatches hands over at once: large
// enough that handing over costs nothing, small enough to spread a walk over
// the cores evenly.
const metaBatchSize = 1024

// MetaBatches implements MetaWalker. The walk itself is one cursor in one read
// transaction; fn runs on the workers, on views of the mapped file.
func (d *Disk) MetaBatches(ctx context.Context, prefix string, workers int, fn func(seq int, batch []MetaRecord) error) error {
	workers = max(workers, 1)
	return d.db.View(func(tx *bolt.Tx) error {
		type job struct {
			seq   int
			batch []MetaRecord
		}
		jobs := make(chan job, workers)
		// Batches go back to the walk once fn is done with them.
		free := make(chan []MetaRecord, 2*workers+1)
		stop := make(chan struct{})
		var (
			errOnce  sync.Once
			firstErr error
			wg       sync.WaitGroup
		)
		fail := func(err error) {
			errOnce.Do(func() { firstErr = err; close(stop) })
		}
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range jobs {
					select {
					case <-stop:
					default:
						if err := fn(j.seq, j.batch); err != nil {
							fail(err)
						}
					}
					select {
					case free <- j.batch[:0]:
					default:
					}
				}
			}()
		}
		seq := 0
		var batch []MetaRecord
		send := func() bool {
			select {
			case <-stop: // before a send that may also be ready
				return false
			default:
			}
			select {
			case jobs <- job{seq, batch}:
				seq++
				batch = nil
				return true
			case <-stop:
				return false
			}
		}
		defer d.dropMapped(tx)
		c := tx.Bucket(metaBucket).Cursor()
		p := []byte(prefix)
		n := 0
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			if n++; n%walkDropEvery == 0 {
				d.dropMapped(tx)
			}
			up, meta, ok := bytes.Cut(v, []byte{'\n'})
			if !ok {
				continue
			}
			if batch == nil {
				select {
				case batch = <-free:
				default:
					batch = make([]MetaRecord, 0, metaBatchSize)
				}
			}
			batch = append(batch, MetaRecord{Key: k, Upstream: up, Meta: meta})
			if len(batch) == metaBatchSize {
				if err := ctx.Err(); err != nil {
					fail(err)
				}
				if !send() {
					break
				}
			}
		}
		if err := ctx.Err(); err != nil {
			fail(err)
		}
		if len(batch) > 0 {
			send()
		}
		close(jobs)
		wg.Wait()
		return firstErr
	})
}

// MetaKeys implements MetaWalker.
func (d *Disk) MetaKeys(ctx context.Context, prefix string, fn func(key []byte) error) error {
	// The pages it touched are dropped at the end, as MetaBatches drops
	// them: the catalogue runs the two side by side, and either may end
	// last.
	return d.db.View(func(tx *bolt.Tx) error {
		defer d.dropMapped(tx)
		c := tx.Bucket(metaBucket).Cursor()
		p := []byte(prefix)
		n := 0
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			if n++; n%metaBatchSize == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if err := fn(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// PutEntries records many entries in one transaction (one fsync): bulk
// imports and tests that need a large index fast.
func (d *Disk) PutEntries(_ context.Context, es []*Entry) error {
	// A round of a sync's writes touches a page or two of the index per
	// entry, all over it: released at once, not after a delay, since the
	// next round follows closely.
	defer d.release()
	// In key order, so the transaction walks the index's pages once; stable,
	// so a key written twice keeps its later record.
	es = slices.Clone(es)
	slices.SortStableFunc(es, func(a, b *Entry) int { return strings.Compare(a.Key, b.Key) })
	return d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(entriesBucket)
		b.FillPercent = bulkFill
		tx.Bucket(metaBucket).FillPercent = bulkFill
		for _, e := range es {
			v, err := marshalEntry(e)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(e.Key), v); err != nil {
				return err
			}
			if err := putMeta(tx, e); err != nil {
				return err
			}
		}
		return nil
	})
}

// bulkFill is how full PutEntries leaves the index pages it splits. Its
// writes come in rounds of neighbouring keys (a sync fetches in key order),
// mostly appended after what is there: bbolt's default (half full) would
// leave every page it fills half empty.
const bulkFill = 0.9

// DeleteEntry implements Store.
func (d *Disk) DeleteEntry(_ context.Context, key string) error {
	defer d.releaseSoon()
	return d.db.Batch(func(tx *bolt.Tx) error {
		if err := tx.Bucket(metaBucket).Delete([]byte(key)); err != nil {
			return err
		}
		return tx.Bucket(entriesBucket).Delete([]byte(key))
	})
}

// Entries implements Store.
func (d *Disk) Entries(ctx context.Context, fn func(*Entry) error) error {
	return d.EntriesWithPrefix(ctx, "", fn)
}

// EntriesWithPrefix implements PrefixWalker with a cursor seek, so a walk of
// one kind of entry does not decode the others.
func (d *Disk) EntriesWithPrefix(_ context.Context, prefix string, fn func(*Entry) error) error {
	return d.db.View(func(tx *bolt.Tx) error {
		return d.walkPrefix(tx, entriesBucket, prefix, func(_, v []byte) error {
			e := new(Entry)
			if err := json.Unmarshal(v, e); err != nil {
				return err
			}
			return fn(e)
		})
	})
}

// RawEntriesWithPrefix implements RawPrefixWalker.
func (d *Disk) RawEntriesWithPrefix(_ context.Context, prefix string, fn func(key, record []byte) error) error {
	return d.db.View(func(tx *bolt.Tx) error {
		return d.walkPrefix(tx, entriesBucket, prefix, fn)
	})
}

// walkPrefix calls fn, within tx, for every record of bucket whose key starts
// with prefix, in key order, until fn fails. It drops the index's pages from
// the process every walkDropEvery records and at the end (see dropResident).
func (d *Disk) walkPrefix(tx *bolt.Tx, bucket []byte, prefix string, fn func(k, v []byte) error) error {
	defer d.dropMapped(tx)
	c := tx.Bucket(bucket).Cursor()
	p := []byte(prefix)
	n := 0
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		if n++; n%walkDropEvery == 0 {
			d.dropMapped(tx)
		}
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

// Commit implements Store: the staged file is fsynced and renamed into
// place, then the folder is fsynced so the name survives a crash.
func (d *Disk) Commit(_ context.Context, s *Staged) error {
	if s.file == nil {
		return errors.New("commit: staged body already discarded")
	}
	if err := s.file.Sync(); err != nil {
		return fmt.Errorf("commit %s: %w", s.Digest, err)
	}
	p, dir, err := d.moveIntoPlace(s)
	if err != nil || p == "" {
		return err
	}
	syncDir(dir)
	return nil
}

// Place implements GroupStore: Commit without the fsyncs, which Persist does
// for a whole round.
func (d *Disk) Place(_ context.Context, s *Staged) error {
	if s.file == nil {
		return errors.New("place: staged body already discarded")
	}
	_, _, err := d.moveIntoPlace(s)
	return err
}

// moveIntoPlace renames a staged body to its blob path and returns that path
// and its folder, or "" when this process already holds the blob whole (it
// wrote or hashed it). A file found under the name that this process has not
// checked is replaced, not trusted: a power cut may have left it torn.
func (d *Disk) moveIntoPlace(s *Staged) (path, dir string, err error) {
	p, err := d.blobPath(s.Digest)
	if err != nil {
		return "", "", err
	}
	dir = filepath.Dir(p)
	if d.verified.has(s.Digest) {
		if fi, err := os.Stat(p); err == nil && fi.Size() == s.Size {
			s.Discard()
			return "", dir, nil
		}
	}
	err = d.name(s, p)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return "", "", fmt.Errorf("commit %s: %w", s.Digest, err)
		}
		// A new fan-out folder's name must survive a power cut too.
		syncDir(filepath.Dir(dir))
		err = d.name(s, p)
	}
	if err != nil {
		return "", "", fmt.Errorf("commit %s: %w", s.Digest, err)
	}
	s.file.Close()
	s.file = nil
	d.verified.add(s.Digest)
	return p, dir, nil
}

// name gives the staged body the name p, replacing a file there.
func (d *Disk) name(s *Staged, p string) error {
	if !s.unnamed {
		return renameFile(s.file.Name(), p)
	}
	err := linkUnnamed(s.file, p)
	if !errors.Is(err, fs.ErrExist) {
		return err
	}
	// A file is there that this process has not checked (moveIntoPlace):
	// replaced in one step, as a rename does, never removed first — a reader
	// of the blob must find it.
	tmp := filepath.Join(d.TempDir(), "link-"+rand.Text())
	if err := linkUnnamed(s.file, tmp); err != nil {
		return err
	}
	if err := renameFile(tmp, p); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// Persist implements GroupStore: the blobs' files and their folders are
// fsynced, or, for a large round on Linux, the whole filesystem at once
// (syncfs), which is one journal commit instead of one per file.
func (d *Disk) Persist(_ context.Context, digests []string) error {
	if len(digests) == 0 {
		return nil
	}
	if len(digests) >= syncfsFrom {
		if err := syncFS(d.dir); err == nil {
			return nil
		}
	}
	var paths []string
	dirs := map[string]bool{}
	for _, dg := range digests {
		p, err := d.blobPath(dg)
		if err != nil {
			return err
		}
		paths = append(paths, p)
		if dir := filepath.Dir(p); !dirs[dir] {
			dirs[dir] = true
			paths = append(paths, dir)
		}
	}
	// Several at once: a device serves concurrent flushes sooner than the
	// same flushes one after another, and a round below syncfsFrom (a
	// serve's round of a few fills) is two fsyncs a blob.
	errs := make([]error, len(paths))
	sem := make(chan struct{}, persistConcurrency)
	var wg sync.WaitGroup
	for i, p := range paths {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := syncFile(p); err != nil {
				errs[i] = fmt.Errorf("persist %s: %w", p, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// persistConcurrency bounds the fsyncs Persist runs at once.
const persistConcurrency = 16

// syncfsFrom is the round size from which one syncfs is cheaper than an fsync
// per blob.
const syncfsFrom = 8

func syncFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
}

// Open implements Store. The first open of a blob in this process hashes it.
func (d *Disk) Open(_ context.Context, digest string) (Blob, error) {
	p, err := d.blobPath(digest)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", digest, err)
	}
	if d.verified.has(digest) {
		return f, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		f.Close()
		return nil, fmt.Errorf("blob %s: %w", digest, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		f.Close()
		return nil, fmt.Errorf("blob %s holds sha256 %s: %w", digest, got, ErrDigestMismatch)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	d.verified.add(digest)
	return f, nil
}

// DeleteBlob implements Store.
func (d *Disk) DeleteBlob(_ context.Context, digest string) error {
	p, err := d.blobPath(digest)
	if err != nil {
		return err
	}
	d.verified.remove(digest)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Blobs implements Store.
func (d *Disk) Blobs(_ context.Context, fn func(string, int64) error) error {
	root := filepath.Join(d.dir, "blobs", "sha256")
	return filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		return fn(de.Name(), fi.Size())
	})
}

// Close implements Store.
func (d *Disk) Close() error { return d.db.Close() }
