package cache

import (
	"os"
	"syscall"
)

// renameFile is os.Rename without the Lstat of the new name that os.Rename
// makes first (to refuse replacing a folder): a blob's name is never a
// folder, and a sync renames tens of thousands of bodies into place, where
// that extra path walk was a measurable share of the kernel time.
func renameFile(from, to string) error {
	if err := syscall.Rename(from, to); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}
