//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package sqlitestore

// processAlive assumes every process is alive where it cannot tell: their
// members' partitions pass on when their leases run out.
func processAlive(int) bool { return true }
