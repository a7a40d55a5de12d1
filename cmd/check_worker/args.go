package main

import (
	"strconv"
	"strings"
)

// fastParse fills g from args for the plain forms Nagios command lines
// use (-H X, --hostname X, --hostname=X, -p N, -v, --ssl ...) and reports
// false for anything else: -h, -V, an unknown or malformed flag, a
// positional argument. Then kong parses the same args and owns the help,
// the version and every usage error.
//
// Why: kong builds its model by reflection on every start, which costs
// more CPU than the whole HTTP check (docs/benchmarks.md). A plugin that
// Nagios runs every minute for every worker should not pay that.
// TestFastParseMatchesKong proves both parsers agree on what this accepts.
func fastParse(args []string, g *grammar) bool {
	*g = grammar{Path: "/status", Timeout: "10"} // kong's defaults
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := a, "", false
		switch {
		case strings.HasPrefix(a, "--"):
			name, val, hasVal = strings.Cut(a[2:], "=")
		case len(a) == 2 && a[0] == '-':
			name = a[1:]
		case a == "-vv" || a == "-vvv":
			g.Verbose += len(a) - 1
			continue
		default:
			return false
		}
		var dst *string
		switch name {
		case "H", "hostname":
			dst = &g.Hostname
		case "path":
			dst = &g.Path
		case "u", "url":
			dst = &g.URL
		case "unix-socket":
			dst = &g.UnixSocket
		case "t", "timeout":
			dst = &g.Timeout
		case "w", "warning":
			dst = &g.Warning
		case "c", "critical":
			dst = &g.Critical
		case "max-age":
			dst = &g.MaxAge
		case "min-uptime":
			dst = &g.MinUptime
		case "ca-file":
			dst = &g.CAFile
		case "cert-file":
			dst = &g.CertFile
		case "key-file":
			dst = &g.KeyFile
		case "p", "port", "metric", "header":
			// valued, handled below
		case "S", "ssl", "plain", "insecure", "v", "verbose":
			if hasVal {
				return false // --ssl=false and the like: leave to kong
			}
			switch name {
			case "S", "ssl":
				g.SSL = true
			case "plain":
				g.Plain = true
			case "insecure":
				g.Insecure = true
			default:
				g.Verbose++
			}
			continue
		default:
			return false
		}
		if !hasVal {
			// A value that looks like a flag is kong's call (it may be a
			// negative number or a mistake).
			if i+1 >= len(args) || strings.HasPrefix(args[i+1], "-") {
				return false
			}
			i++
			val = args[i]
		}
		switch {
		case dst != nil:
			*dst = val
		case name == "p" || name == "port":
			n, err := strconv.Atoi(val)
			if err != nil || val != strconv.Itoa(n) { // "010", "+1": kong's call
				return false
			}
			g.Port = n
		case name == "metric":
			g.Metric = append(g.Metric, val)
		case name == "header":
			g.Header = append(g.Header, val)
		}
	}
	return true
}
