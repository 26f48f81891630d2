package pgserver

import "syscall"

// procAttr runs a child as who. The server gets Pdeathsig (SIGINT, a fast
// shutdown) so that it stops with the benchmark binary even when that dies
// without calling Stop, and its own process group so that a terminal's
// Ctrl-C reaches it only through Stop.
func procAttr(who *osUser, server bool) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{}
	if who != nil {
		a.Credential = &syscall.Credential{Uid: uint32(who.uid), Gid: uint32(who.gid)}
	}
	if server {
		a.Pdeathsig = syscall.SIGINT
		a.Setpgid = true
	}
	return a
}
