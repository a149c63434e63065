package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
)

// ErrTooLarge means a body passed the size limit it was staged with.
var ErrTooLarge = errors.New("body exceeds the size limit")

// Staged is a body written to a temporary file and hashed on the way, not yet in
// the store. It can be read (to verify it) before it is committed or discarded.
type Staged struct {
	Digest string // sha256, lowercase hex
	Size   int64
	file   *os.File
	// unnamed: file has no name (StageUnnamed); it is linked into place.
	unnamed bool
}

// Stage copies r into a new temporary file in dir, hashing it. It does not
// fsync it: the store makes a body durable when it commits it, and a body
// that is only read (a push being checked) or uploaded never needs it.
// A body larger than maxSize (when > 0) fails with ErrTooLarge. When want is
// not empty the bytes must hash to it, else the result is ErrDigestMismatch.
// On any error nothing is left behind.
func Stage(dir string, r io.Reader, maxSize int64, want string) (*Staged, error) {
	return stage(dir, false, r, maxSize, want)
}

// StageUnnamed is Stage into a file without a name (Linux's O_TMPFILE), for
// a store that gives it its name when it commits it (the disk store: one
// directory entry instead of a temporary one renamed into place). Where that
// is not possible it is Stage.
func StageUnnamed(dir string, r io.Reader, maxSize int64, want string) (*Staged, error) {
	return stage(dir, unnamedIn(dir), r, maxSize, want)
}

// unnamedIn reports, once per folder, whether bodies can be staged unnamed there.
func unnamedIn(dir string) bool {
	if ok, known := unnamedDirs.Load(dir); known {
		return ok.(bool)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return false
	}
	ok := unnamedWorks(dir)
	unnamedDirs.Store(dir, ok)
	return ok
}

var unnamedDirs sync.Map // folder → whether unnamed staging works there

func stage(dir string, unnamed bool, r io.Reader, maxSize int64, want string) (s *Staged, err error) {
	create := func() (*os.File, error) { return os.CreateTemp(dir, "stage-*") }
	if unnamed {
		create = func() (*os.File, error) { return openUnnamed(dir) }
	}
	f, err := create()
	if errors.Is(err, fs.ErrNotExist) {
		// The folder is made when first missing, not checked per body: a
		// sync stages tens of thousands, and a stat each is measurable.
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("stage: %w", err)
		}
		f, err = create()
	}
	if err != nil {
		return nil, fmt.Errorf("stage: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			if !unnamed {
				os.Remove(f.Name())
			}
		}
	}()
	h := sha256.New()
	src := r
	if maxSize > 0 {
		src = io.LimitReader(r, maxSize+1)
	}
	buf := copyBufs.Get().(*[]byte)
	n, err := io.CopyBuffer(io.MultiWriter(f, h), src, *buf)
	copyBufs.Put(buf)
	if err != nil {
		return nil, fmt.Errorf("stage: %w", err)
	}
	if maxSize > 0 && n > maxSize {
		return nil, ErrTooLarge
	}
	digest := hex.EncodeToString(h.Sum(nil))
	if want != "" && digest != want {
		return nil, fmt.Errorf("stage: got sha256 %s, want %s: %w", digest, want, ErrDigestMismatch)
	}
	return &Staged{Digest: digest, Size: n, file: f, unnamed: unnamed}, nil
}

// copyBufs keeps the copy buffers of Stage: a sync stages tens of thousands
// of bodies, and a fresh 32 KiB buffer for each is most of its garbage.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// ReadAt reads the staged bytes, e.g. to open them as a zip.
func (s *Staged) ReadAt(p []byte, off int64) (int, error) { return s.file.ReadAt(p, off) }

// Len is the staged body's size.
func (s *Staged) Len() int64 { return s.Size }

// Path is the temporary file's path ("" for a body staged unnamed).
func (s *Staged) Path() string {
	if s.unnamed {
		return ""
	}
	return s.file.Name()
}

// Reader returns a reader over the whole staged body from its start.
func (s *Staged) Reader() io.Reader { return io.NewSectionReader(s.file, 0, s.Size) }

// Discard removes the temporary file. It is safe to call after Commit.
func (s *Staged) Discard() {
	if s.file != nil {
		s.file.Close()
		if !s.unnamed {
			os.Remove(s.file.Name())
		}
		s.file = nil
	}
}
