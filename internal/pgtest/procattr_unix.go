//go:build unix && !linux

package pgtest

import "syscall"

// procAttr runs a child as who. Without Pdeathsig outside Linux, a server
// whose test binary dies without calling Stop keeps running until killed.
func procAttr(who *osUser, daemon bool) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: daemon}
	if who != nil {
		a.Credential = &syscall.Credential{Uid: uint32(who.uid), Gid: uint32(who.gid)}
	}
	return a
}
