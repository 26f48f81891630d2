//go:build !linux

package sqlitestore

// pidNamespace is "": the processes of a host share its PIDs.
func pidNamespace() (string, error) { return "", nil }
