// Command check_worker is a Nagios plugin that asks a worker whether it is
// healthy, by reading the status document it serves (docs/status-contract.md),
// and exits 0 OK, 1 WARNING, 2 CRITICAL or 3 UNKNOWN. CRITICAL is what makes
// handle_worker restart the worker, so check_worker reports CRITICAL only for
// evidence that the worker is unhealthy, and UNKNOWN for its own failures.
//
// Usage:
//
//	check_worker -H HOST -p PORT [--path /status] [--ssl]
//	check_worker -u http://HOST:PORT/status
//	check_worker --unix-socket /run/worker.sock [--path /status]
//
// Flags, as check_worker -h prints them from the one grammar,
// internal/check.Flags (TestDocMatchesHelp fails when this copy differs;
// go test ./cmd/check_worker -run TestDocMatchesHelp -update rewrites it):
//
//	-h, --help                       Show context-sensitive help.
//	-H, --hostname=HOST              Worker host name or address.
//	-p, --port=PORT                  TCP port (default 80, or 443 with --ssl).
//	    --path="/status"             Path of the status endpoint.
//	-S, --ssl                        Use HTTPS.
//	-u, --url=URL                    Full URL of the status endpoint instead of
//	                                 -H/-p/--path (a value starting with / is
//	                                 taken as --path, as check_http does).
//	    --unix-socket=PATH           Talk HTTP over this unix socket (local
//	                                 workers, e.g. under NRPE).
//	-t, --timeout=SECONDS[:STATE]    Give up after SECONDS; STATE for a worker
//	                                 that does not answer (default critical).
//	-w, --warning=RANGE              Response time (seconds) range for WARNING.
//	-c, --critical=RANGE             Response time (seconds) range for CRITICAL.
//	    --metric=NAME,warn=RANGE,crit=RANGE
//	                                 Thresholds on a worker metric (repeatable).
//	    --max-age=WARN,CRIT          Heartbeat age limits (seconds or durations,
//	                                 e.g. 60,300 or ,5m).
//	    --min-uptime=DURATION        WARNING while the worker has been up for less
//	                                 than this (shows restart loops).
//	    --plain                      Not JSON: 2xx is OK, anything else CRITICAL,
//	                                 the body's first line is the message.
//	    --header='NAME: VALUE'       Extra request header, e.g. an auth token
//	                                 (repeatable).
//	    --ca-file=FILE               PEM CA bundle to verify the worker's
//	                                 certificate.
//	    --cert-file=FILE             PEM client certificate (mTLS).
//	    --key-file=FILE              PEM client key (mTLS).
//	    --insecure                   Do not verify the worker's certificate.
//	-v, --verbose                    Diagnostics on stderr (repeatable); stdout
//	                                 stays plugin output only.
//	-V, --version                    Print the version and exit 3.
//
// STATE in -t is ok, warning, critical, unknown or 0-3. The default,
// critical, is what makes a worker that does not answer get healed. -vvv
// adds the start of the body to the diagnostics. -h and -V exit 3, as
// monitoring-plugins do.
//
// RANGE is Nagios' [@]START:END syntax: "10" alerts outside 0..10, "10:" below
// 10, "~:10" above 10, "@10:20" inside 10..20.
//
// Example:
//
//	$ check_worker -H 127.0.0.1 -p 8080 --max-age 60,300 --metric 'queue_depth,warn=100,crit=500'
//	WORKER OK - processed 120 jobs in the last minute | 'heartbeat_age'=1.000000s;60;300;0; ...
//
// Output is one summary line, then sub-checks as long output, then perfdata
// (critical_self, critical_dependency, time, time_connect, time_tls,
// time_firstbyte, size, heartbeat_age, uptime and every worker metric). Worker
// text is sanitised and the whole output stays under Nagios' 8192 bytes.
// Diagnostics (-v) go to stderr only.
//
// critical_self and critical_dependency count the CRITICAL findings, in every
// answer: those of checks the worker scoped "dependency", and all others
// (check_worker's own included). handle_worker reads them from the perfdata
// and does not restart a worker whose every CRITICAL finding is a
// dependency's.
//
// docs/check_worker.md explains each flag in full and has the state table
// (which failure gives which state, and why).
package main
