// Package oneproc gives a short-lived plugin one P (GOMAXPROCS=1) as early
// in start-up as a package can: import it for its side effect, first in
// the plugin's main.
//
// check_worker does one request in one goroutine. With a second P, each
// goroutine the runtime or a package starts (and every wake-up from the
// network poller) makes the scheduler start and spin a second thread on
// the other core, which costs CPU and, on a busy machine, wall time, for
// nothing. Measured on check_worker, paired runs of whole processes: the
// GOMAXPROCS=1 environment saved 7-9 % CPU, this package's init about 5 %
// (it runs after the runtime's own start and the first ~15 package inits;
// a call in main saved nothing). A GOMAXPROCS set in the environment wins.
package oneproc

import "runtime"

func init() {
	if runtime.GOMAXPROCS(0) > 1 {
		runtime.GOMAXPROCS(1)
	}
}
