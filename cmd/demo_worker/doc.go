/*
demo_worker is a small job-processing worker that serves the status
contract (docs/status-contract.md) and takes injected faults, so that the
whole self-healing loop can be shown and tested with a real process. The
narrated story that `make demo` tells with it is not part of it: that is
internal/lab/demo, which is never installed.

Usage:

	demo_worker run --listen 127.0.0.1:PORT [--pid-file F] [--jobs-per-sec N]
	        [--queue-cap N] [--hang-status-delay 60s] [--ignore-sigterm]
	demo_worker daemon start|stop|restart|status --pid-file F [--listen ADDR]
	        [--log-file F] [--jobs-per-sec N] [--start-timeout 10s] [--stop-timeout 10s]
	        [--hang-status-delay 60s] [--ignore-sigterm]
	demo_worker fault crash|hang|degrade|fail|depfail|clear --listen ADDR [--timeout 5s]

# run

Runs the worker in the foreground. A generator enqueues --jobs-per-sec jobs
into a bounded queue (a full queue drops jobs and counts them); the
processor hashes each job's 16 KiB payload and waits 2 ms of simulated I/O.
The heartbeat advances with every job, and every 250 ms when idle, so a
quiet worker is not taken for a stale one.

GET /status serves the status document: status, a message naming the pid,
heartbeat, started_at, version, the sub-checks queue (warning at 80 % full,
critical when full), latency (warning above 50 ms a job), store and database
(scope "dependency": a service the worker needs but does not own), and the
metrics queue_depth, jobs_done, jobs_failed, jobs_dropped and job_duration
(ms). SIGTERM or SIGINT stops it cleanly and removes the pid file.

# fault

Injects a fault through POST /fault/NAME on the worker's own port. The
endpoint answers loopback peers only (403 otherwise), also when the worker
listens on a wildcard address.

	crash    the process exits at once with code 70, leaving its pid file
	hang     work and heartbeat stop; /status stalls for --hang-status-delay
	         (default 60 s, longer than any check timeout) and then answers
	         with the stale heartbeat
	degrade  jobs take 80 ms; the latency sub-check and the status go to warning
	fail     jobs fail; the store sub-check and the status go to critical
	depfail  the database sub-check (scope dependency) and the status go to
	         critical: the worker is down for its users but not at fault, so
	         check_worker says CRITICAL and handle_worker does not restart it
	clear    removes every fault (a hung worker resumes); a restart does too

# daemon

What the listener's start/stop/restart actions run. start re-executes
demo_worker run detached: a new session (setsid), stdin and stdout/stderr on
/dev/null (or --log-file), working directory /, a fixed small environment,
and no inherited descriptors, so the worker survives its caller and never
holds its pipes. start returns once the new worker's pid is in the pid file
and /status answers (at most --start-timeout; a worker that does not come up
is killed and start fails). A start finds a worker already running for the
pid file and succeeds without starting another; a pid file naming a dead
process is removed.

stop sends SIGTERM to the worker's process group, waits --stop-timeout, then
sends SIGKILL. It only signals a process whose command line is a
demo_worker run with the same pid file, so a recycled pid is never killed.
restart is stop then start and prints both pids. start, stop and restart on
one pid file are serialised by flock on PIDFILE.lock.

Exit codes: 0 done, 1 failed, 2 usage error. status exits as an LSB init
script does: 0 running, 1 dead with a pid file left, 3 not running,
4 unknown.
*/
package main
