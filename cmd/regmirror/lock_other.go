//go:build !unix

package main

import "os"

// heldByAnother is not checked where the store's lock is not flock(2).
func heldByAnother(*os.File) bool { return false }
