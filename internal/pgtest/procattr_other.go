//go:build !unix

package pgtest

import "syscall"

// procAttr has nothing to set outside Unix: there is no root to step down
// from.
func procAttr(*osUser, bool) *syscall.SysProcAttr { return nil }
