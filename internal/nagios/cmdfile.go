package nagios

import "errors"

// ErrNoReader: the external command FIFO exists but nobody reads it (Nagios is stopped or
// check_external_commands=0).
var ErrNoReader = errors.New("no process is reading the command file (Nagios: is it running with check_external_commands=1? Icinga 2: use --icinga-api, its command feature is deprecated)")
