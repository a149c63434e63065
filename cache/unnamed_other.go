//go:build !linux

package cache

import (
	"errors"
	"os"
)

// openUnnamed is Linux's O_TMPFILE (unnamed_linux.go); elsewhere bodies are
// staged in named temporary files.
func openUnnamed(string) (*os.File, error) {
	return nil, errors.New("unnamed files: not on this system")
}

func linkUnnamed(*os.File, string) error { return errors.New("unnamed files: not on this system") }

func unnamedWorks(string) bool { return false }
