package worker

import "github.com/selfheal/selfheal/internal/proc"

// Owns reports whether pid is a live demo_worker run with pidFile; callers
// use it to kill leftovers without ever hitting a recycled pid.
func Owns(pid int, pidFile string) bool { return proc.RunsWithPIDFile(pid, "run", pidFile) }
