package nagios

import (
	"strings"
	"testing"
)

func TestReadMainConfig(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     MainConfig
	}{
		{"debian", "# comment\nlog_file=/var/log/nagios4/nagios.log\nstatus_file=/var/lib/nagios4/status.dat\ncommand_file=/var/lib/nagios4/rw/nagios.cmd\n",
			MainConfig{StatusFile: "/var/lib/nagios4/status.dat", CommandFile: "/var/lib/nagios4/rw/nagios.cmd"}},
		{"later wins", "status_file=/a\nstatus_file = /b \n", MainConfig{StatusFile: "/b"}},
		{"comments and junk", "#status_file=/x\n;command_file=/y\nnot a setting\n  \n", MainConfig{}},
		{"none", "", MainConfig{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadMainConfig(strings.NewReader(tc.in))
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
