//go:build !linux

package cache

import "os"

// renameFile is os.Rename (rename_linux.go says why Linux differs).
func renameFile(from, to string) error { return os.Rename(from, to) }
