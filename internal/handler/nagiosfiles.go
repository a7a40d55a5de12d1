package handler

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/nagios"
)

// NagiosFiles names the files of Nagios a run uses, as the command line
// gave them: nil is a flag not given, "" a flag given empty. Nagios 4.4.6
// expands $STATUSDATAFILE$ to nothing after a reload (SIGHUP), for good:
// a path given empty is looked up in Nagios' main config instead, which
// names the file Nagios still writes.
type NagiosFiles struct {
	StatusFile, CommandFile *string
	// MainConfig is nagios.cfg ($MAINCONFIGFILE$); "" is Debian's.
	MainConfig string
}

// ResolvedFiles are the paths to use; "" is none. StatusErr and
// CommandErr say why a path given empty could not be looked up.
type ResolvedFiles struct {
	StatusFile, CommandFile string
	StatusErr, CommandErr   error
	// Notes say which path came from the main config, for the log.
	Notes []string
}

// Resolve applies the fallback. It reads the main config only when a path
// was given empty, under the trust rule of the status file (the command
// file it names is where the handler writes).
func (f NagiosFiles) Resolve(t fsutil.Trust) ResolvedFiles {
	var r ResolvedFiles
	empty := func(p *string) bool { return p != nil && strings.TrimSpace(*p) == "" }
	needS, needC := empty(f.StatusFile), empty(f.CommandFile)
	if f.StatusFile != nil && !needS {
		r.StatusFile = *f.StatusFile
	}
	if f.CommandFile != nil && !needC {
		r.CommandFile = *f.CommandFile
	}
	if !needS && !needC {
		return r
	}
	main := strings.TrimSpace(f.MainConfig)
	if main == "" {
		main = nagios.DefaultMainConfig
	}
	var mc nagios.MainConfig
	b, err := readNagiosFile(t, "Nagios main config", main)
	if err == nil {
		mc, err = nagios.ReadMainConfig(bytes.NewReader(b))
	}
	look := func(flag, macro, key, val string, dst *string, dstErr *error) {
		switch {
		case err != nil:
			*dstErr = fmt.Errorf("%s is empty (Nagios expanded %s to nothing, as it does after a reload) and the fallback failed: %w", flag, macro, err)
		case val == "":
			*dstErr = fmt.Errorf("%s is empty (Nagios expanded %s to nothing) and %s sets no %s", flag, macro, fsutil.Quote(main), key)
		default:
			*dst = val
			r.Notes = append(r.Notes, fmt.Sprintf("%s is empty (Nagios expanded %s to nothing): using %s=%s from %s", flag, macro, key, val, main))
		}
	}
	if needS {
		look("--status-file", "$STATUSDATAFILE$", "status_file", mc.StatusFile, &r.StatusFile, &r.StatusErr)
	}
	if needC {
		look("--command-file", "$COMMANDFILE$", "command_file", mc.CommandFile, &r.CommandFile, &r.CommandErr)
	}
	return r
}
