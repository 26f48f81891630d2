package pgtest

import "syscall"

// procAttr runs a child as who. For the server (daemon), Pdeathsig SIGINT,
// PostgreSQL's fast shutdown, stops it if the test binary dies without
// calling Stop, and Setpgid keeps a terminal's Ctrl-C from reaching it before
// Stop does.
func procAttr(who *osUser, daemon bool) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{}
	if who != nil {
		a.Credential = &syscall.Credential{Uid: uint32(who.uid), Gid: uint32(who.gid)}
	}
	if daemon {
		a.Pdeathsig = syscall.SIGINT
		a.Setpgid = true
	}
	return a
}
