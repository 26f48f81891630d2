package sqlitestore

import "os"

// pidNamespace names the PID namespace of this process, as the link
// /proc/self/ns/pid does ("pid:[4026531836]"): processes see each other's
// PIDs only within one.
func pidNamespace() (string, error) { return os.Readlink("/proc/self/ns/pid") }
