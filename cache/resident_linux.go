package cache

import "golang.org/x/sys/unix"

// dropResident unmaps from this process the pages of the file mapping at
// [addr, addr+n): they stay in the kernel's page cache, and the next read of
// one maps it again from there. Reading through a shared mapping of a file
// is all the index does with it, so nothing is lost.
func dropResident(addr uintptr, n int64) {
	if n > 0 {
		unix.Syscall(unix.SYS_MADVISE, addr, uintptr(n), unix.MADV_DONTNEED)
	}
}
