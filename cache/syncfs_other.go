//go:build !linux

package cache

import "errors"

// syncFS is Linux's syncfs(2); elsewhere Persist fsyncs file by file.
func syncFS(string) error { return errors.New("syncfs: not on this system") }
