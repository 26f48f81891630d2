//go:build linux || darwin || freebsd || netbsd || openbsd

package sqlitestore

import "syscall"

// fileSizeLimit returns the largest file this process may write
// (RLIMIT_FSIZE), if it is limited.
func fileSizeLimit() (int64, bool) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &l); err != nil || l.Cur >= 1<<62 { // RLIM_INFINITY is all ones
		return 0, false
	}
	return int64(l.Cur), true
}
