//go:build unix

package main

import (
	"errors"
	"os"
	"syscall"
)

// heldByAnother reports whether another process holds the lock the store
// takes on its index (bbolt's flock(2)): serve would then refuse to start.
// The probe takes a shared lock for an instant and gives it back.
func heldByAnother(f *os.File) bool {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if err == nil {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return false
	}
	return errors.Is(err, syscall.EWOULDBLOCK)
}
