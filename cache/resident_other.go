//go:build !linux

package cache

// dropResident is Linux's madvise(MADV_DONTNEED); elsewhere the index's pages
// stay mapped until the kernel takes them back.
func dropResident(uintptr, int64) {}
