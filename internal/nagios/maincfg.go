package nagios

import (
	"bufio"
	"io"
	"strings"
)

// DefaultMainConfig is Debian's nagios.cfg, where the handler looks up a
// path whose macro reached it empty and no --nagios-config was given.
const DefaultMainConfig = "/etc/nagios4/nagios.cfg"

// MainConfig is what the suite reads of Nagios' main config file.
type MainConfig struct {
	StatusFile  string // status_file
	CommandFile string // command_file
}

// ReadMainConfig reads the settings the handler needs from nagios.cfg.
// Nagios reads the file top to bottom, so a later line wins; comments
// (# or ;) and lines without '=' are skipped, as Nagios skips them.
func ReadMainConfig(r io.Reader) (MainConfig, error) {
	var mc MainConfig
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "status_file":
			mc.StatusFile = strings.TrimSpace(v)
		case "command_file":
			mc.CommandFile = strings.TrimSpace(v)
		}
	}
	return mc, sc.Err()
}
