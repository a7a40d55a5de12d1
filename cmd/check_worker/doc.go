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
// Options:
//
//	-H, --hostname HOST        worker host name or address
//	-p, --port PORT            TCP port (default 80, or 443 with --ssl)
//	    --path PATH            status path (default /status)
//	-S, --ssl                  use HTTPS
//	-u, --url URL              full URL instead of -H/-p/--path; a value
//	                           starting with "/" is a path, as in check_http
//	    --unix-socket PATH     HTTP over a unix socket (local workers, NRPE)
//	-t, --timeout SECS[:STATE] give up after SECS (default 10); STATE is the
//	                           state for a worker that does not answer:
//	                           ok|warning|critical|unknown or 0-3 (default
//	                           critical: a silent worker is what needs healing)
//	-w, --warning RANGE        response time (seconds) range for WARNING
//	-c, --critical RANGE       response time (seconds) range for CRITICAL
//	    --metric 'NAME,warn=RANGE,crit=RANGE'
//	                           thresholds on a worker metric (repeatable)
//	    --max-age WARN,CRIT    heartbeat age limits, seconds or durations
//	                           (60,300 or ,5m)
//	    --min-uptime DURATION  WARNING while uptime is below DURATION, so a
//	                           restart loop shows in Nagios
//	    --plain                not JSON: 2xx is OK, anything else CRITICAL,
//	                           the body's first line is the message
//	    --header 'NAME: VALUE' extra request header, e.g. auth (repeatable)
//	    --ca-file FILE         PEM CA bundle for the worker's certificate
//	    --cert-file FILE       client certificate for mTLS
//	    --key-file FILE        client key for mTLS
//	    --insecure             do not verify the worker's certificate
//	-v, --verbose              diagnostics on stderr; -vvv adds the start of the body
//	-V, --version              print the version and exit 3
//	-h, --help                 print this help and exit 3
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
// (time, time_connect, time_tls, time_firstbyte, size, heartbeat_age, uptime
// and every worker metric). Worker text is sanitised and the whole output
// stays under Nagios' 8192 bytes. Diagnostics (-v) go to stderr only.
//
// The full state table (which failure gives which state, and why) is in
// docs/check_worker.md.
package main
