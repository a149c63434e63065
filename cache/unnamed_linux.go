package cache

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// openUnnamed opens a new file in dir that has no name (O_TMPFILE): staging a
// body then costs one inode and, when it is placed, one directory entry
// (linkUnnamed), where a named temporary file costs an entry in dir, a
// rename across folders and the removal of that entry. A sync stages tens of
// thousands of bodies; a process killed meanwhile leaves nothing behind.
func openUnnamed(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &os.PathError{Op: "open unnamed", Path: dir, Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir, "(unnamed)")), nil
}

// linkUnnamed gives the unnamed file f the name to. It fails with an error
// wrapping fs.ErrExist when to exists.
func linkUnnamed(f *os.File, to string) error {
	if linkByFD.Load() {
		if err := unix.Linkat(int(f.Fd()), "", unix.AT_FDCWD, to, unix.AT_EMPTY_PATH); err != nil {
			return &os.LinkError{Op: "link", Old: f.Name(), New: to, Err: err}
		}
		return nil
	}
	// linkat(2) with AT_EMPTY_PATH needs a capability; through /proc it does
	// not, at the cost of a path lookup.
	from := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	if err := unix.Linkat(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.AT_SYMLINK_FOLLOW); err != nil {
		return &os.LinkError{Op: "link", Old: from, New: to, Err: err}
	}
	return nil
}

// linkByFD says linkat(2) with AT_EMPTY_PATH works (unnamedWorks found the
// capability it needs).
var linkByFD atomic.Bool

// unnamedWorks reports whether files staged unnamed in dir can be given a
// name: the filesystem has O_TMPFILE and /proc is mounted.
func unnamedWorks(dir string) bool {
	f, err := openUnnamed(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	p := filepath.Join(dir, fmt.Sprintf("probe-%d", os.Getpid()))
	os.Remove(p)
	if unix.Linkat(int(f.Fd()), "", unix.AT_FDCWD, p, unix.AT_EMPTY_PATH) == nil {
		linkByFD.Store(true)
		return os.Remove(p) == nil
	}
	if err := linkUnnamed(f, p); err != nil {
		return false
	}
	return os.Remove(p) == nil
}
