//go:build unix && !linux

package pgserver

import "syscall"

// procAttr runs a child as who. Without Pdeathsig outside Linux, a server
// whose benchmark binary dies without calling Stop runs on until killed.
func procAttr(who *osUser, server bool) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: server}
	if who != nil {
		a.Credential = &syscall.Credential{Uid: uint32(who.uid), Gid: uint32(who.gid)}
	}
	return a
}
