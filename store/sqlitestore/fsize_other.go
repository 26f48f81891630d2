//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package sqlitestore

// fileSizeLimit reports no limit where the system has no RLIMIT_FSIZE.
func fileSizeLimit() (int64, bool) { return 0, false }
