//go:build !unix

package pgserver

import "syscall"

// procAttr has nothing to set outside Unix: there is no root to step down
// from.
func procAttr(*osUser, bool) *syscall.SysProcAttr { return nil }
