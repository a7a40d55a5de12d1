package nagios

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func readTestdata(t *testing.T, name string, only ...string) *StatusData {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sd, err := ReadStatusData(f, only...)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return sd
}

// TestReadStatusData: a Nagios 4.4 status.dat with every kind of block;
// only the four kinds the suite uses are read, each field as Nagios
// writes it.
func TestReadStatusData(t *testing.T) {
	sd := readTestdata(t, "status.dat")
	if want := time.Unix(1764023001, 0); !sd.Created.Equal(want) {
		t.Fatalf("created %v, want %v", sd.Created, want)
	}
	if len(sd.Services) != 3 || len(sd.Hosts) != 3 || len(sd.Comments) != 3 {
		t.Fatalf("%d services, %d hosts, %d comments; want 3, 3, 3 (no host comment, no downtime block)",
			len(sd.Services), len(sd.Hosts), len(sd.Comments))
	}
	w, ok := sd.Service("web1", "Worker")
	want := ServiceStatus{Host: "web1", Service: "Worker", State: Critical, Hard: true, Checked: true, ProblemID: "517",
		Acknowledged: true, DowntimeDepth: 0,
		Perfdata:  "'critical_self'=1;;;0; 'critical_dependency'=0;;;0; 'queue'=12",
		LastCheck: time.Unix(1764022980, 5e8), LastHardChange: time.Unix(1764022920, 0)}
	if !ok || !reflect.DeepEqual(w, want) {
		t.Fatalf("web1/Worker:\n got %+v\nwant %+v", w, want)
	}
	if two, _ := sd.Service("web1", "Worker Two"); two.State != OK || two.Hard || two.DowntimeDepth != 1 || two.ProblemID != "0" || two.Perfdata != "" {
		t.Fatalf("web1/Worker Two: %+v", two)
	}
	if soft, _ := sd.Service("web2", "Worker"); soft.State != Critical || soft.Hard || soft.Acknowledged || soft.ProblemID != "612" {
		t.Fatalf("web2/Worker: %+v", soft)
	}
	if _, ok := sd.Service("web1", "worker"); ok {
		t.Fatal("service names are case-sensitive in Nagios")
	}
	hosts := map[string]HostStatus{
		"web1": {Host: "web1", State: HostUp, Checked: true},
		"web2": {Host: "web2", State: HostDown, Checked: true, DowntimeDepth: 2, Acknowledged: true},
		"web3": {Host: "web3", State: HostDown, Checked: false},
	}
	if !reflect.DeepEqual(sd.Hosts, hosts) {
		t.Fatalf("hosts:\n got %+v\nwant %+v", sd.Hosts, hosts)
	}
	// '=' in a comment's text is the text's: only the first one splits.
	c := sd.CommentsOn("web1", "Worker", "handle_worker")
	wantC := []Comment{{Host: "web1", Service: "Worker", ID: "7", Author: "handle_worker",
		Text:      "auto-restart held back (downtime): a=b; x == y ; see http://wiki/?page=worker&lang=en",
		EntryTime: time.Unix(1764022921, 0)}}
	if !reflect.DeepEqual(c, wantC) {
		t.Fatalf("handle_worker's comments on web1/Worker:\n got %+v\nwant %+v", c, wantC)
	}
	all := sd.CommentsOn("web1", "Worker", "")
	if len(all) != 2 || all[0].ID != "7" || all[1].ID != "8" || all[1].Author != "Alice Admin" || !all[1].Persistent {
		t.Fatalf("every comment on web1/Worker, oldest first: %+v", all)
	}
	if c := sd.CommentsOn("web1", "Worker Two", ""); len(c) != 0 {
		t.Fatalf("comments on web1/Worker Two: %+v", c)
	}
}

// TestReadStatusDataOnly: with hosts named, the other hosts' services,
// host blocks and comments are skipped; info is always read.
func TestReadStatusDataOnly(t *testing.T) {
	for _, tc := range []struct {
		only              []string
		services, hosts   int
		comments          int
		hasWeb2, hasWeb1W bool
	}{
		{nil, 3, 3, 3, true, true},
		{[]string{"web1"}, 2, 1, 2, false, true},
		{[]string{"web2"}, 1, 1, 1, true, false},
		{[]string{"web2", "web1"}, 3, 2, 3, true, true},
		{[]string{"nosuch"}, 0, 0, 0, false, false},
	} {
		sd := readTestdata(t, "status.dat", tc.only...)
		_, web2 := sd.Service("web2", "Worker")
		_, web1 := sd.Service("web1", "Worker")
		if len(sd.Services) != tc.services || len(sd.Hosts) != tc.hosts || len(sd.Comments) != tc.comments ||
			web2 != tc.hasWeb2 || web1 != tc.hasWeb1W || sd.Created.IsZero() {
			t.Errorf("only %q: %d services, %d hosts, %d comments, web2/Worker %v, web1/Worker %v, created %v; want %d, %d, %d, %v, %v",
				tc.only, len(sd.Services), len(sd.Hosts), len(sd.Comments), web2, web1, sd.Created,
				tc.services, tc.hosts, tc.comments, tc.hasWeb2, tc.hasWeb1W)
		}
	}
}

// TestReadStatusDataLab: the status.dat a real Nagios 4 wrote in the lab.
func TestReadStatusDataLab(t *testing.T) {
	sd := readTestdata(t, "nagios4-lab.dat")
	s, ok := sd.Service("worker1", "worker")
	if !ok || s.State != Critical || !s.Hard || !s.Checked || s.LastHardChange != time.Unix(1764023000, 0) {
		t.Fatalf("worker1/worker: %+v", s)
	}
	c := sd.CommentsOn("worker1", "worker", "handle_worker")
	if len(c) != 1 || c[0].ID != "1" || c[0].Text != "restart budget spent: 3 restarts in 1h" {
		t.Fatalf("comments %+v", c)
	}
}

// TestReadStatusDataCutShort: a file that ends inside a block, kept or
// skipped, is an error (Nagios writes a temp file and renames it, so a
// cut file is not Nagios'); one that ends between blocks is not.
func TestReadStatusDataCutShort(t *testing.T) {
	b, err := os.ReadFile("testdata/status.dat")
	if err != nil {
		t.Fatal(err)
	}
	full := string(b)
	for _, tc := range []struct {
		name, cut string // the file up to and including cut's first occurrence
		bad       bool
	}{
		{"in info", "version=4.4.14\n", true},
		{"in a skipped block", "daemon_mode=1\n", true},
		{"in a host block", "plugin_output=PING OK", true},
		{"in a service block", "current_problem_id=517\n", true},
		{"in a comment, mid-line", "comment_data=auto-restart held", true},
		{"in the last, skipped block", "comment=patching\n", true},
		{"between blocks", "new_version=\n\t}\n", false},
		{"after the header only", "DO NOT MODIFY THIS FILE!\n", false},
	} {
		i := strings.Index(full, tc.cut)
		if i < 0 {
			t.Fatalf("%s: %q not in the file", tc.name, tc.cut)
		}
		_, err := ReadStatusData(strings.NewReader(full[:i+len(tc.cut)]))
		if (err != nil) != tc.bad {
			t.Errorf("%s: err %v, want an error: %v", tc.name, err, tc.bad)
		}
		if err != nil && !strings.Contains(err.Error(), "cut short") {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if _, err := ReadStatusData(strings.NewReader("")); err != nil {
		t.Fatalf("an empty file: %v", err)
	}
}

// TestReadStatusDataLongLine: a line longer than the read buffer is read
// whole; one longer than MaxStatusLine is cut to it, not an error, and the
// fields after it are still read.
func TestReadStatusDataLongLine(t *testing.T) {
	for _, n := range []int{100 << 10, 3 << 20} {
		long := strings.Repeat("x", n)
		in := "servicestatus {\n\thost_name=web1\n\tlong_plugin_output=" + long + "\n\tservice_description=Worker\n\tcurrent_state=2\n\t}\n"
		sd, err := ReadStatusData(strings.NewReader(in))
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if _, ok := sd.Service("web1", "Worker"); !ok || sd.Services[[2]string{"web1", "Worker"}].State != Critical {
			t.Fatalf("%d bytes: the fields after the long line were lost: %+v", n, sd.Services)
		}
		var got string
		err = ParseBlocks(strings.NewReader(in), func(string) bool { return true }, func(b Block) error {
			got = b.Fields["long_plugin_output"]
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := long
		if n > MaxStatusLine {
			want = long[:MaxStatusLine-len("\tlong_plugin_output=")]
		}
		if got != want {
			t.Fatalf("%d bytes: kept %d bytes, want %d", n, len(got), len(want))
		}
	}
}

// TestParseBlocks: kept blocks only reach each; each's error ends the
// parse; blank lines, comments and indentation do not matter.
func TestParseBlocks(t *testing.T) {
	in := "# header\n\ninfo {\ncreated=1\n}\n  a {\n\t  k=v=w  \n\n# not a field\n\t}\nb {\nk=1\n}\na {\n}\n"
	var got []Block
	var asked []string
	err := ParseBlocks(strings.NewReader(in), func(typ string) bool {
		asked = append(asked, typ)
		return typ == "a"
	}, func(b Block) error {
		got = append(got, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Block{{Type: "a", Fields: map[string]string{"k": "v=w"}}, {Type: "a", Fields: map[string]string{}}}
	if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(asked, []string{"info", "a", "b", "a"}) {
		t.Fatalf("blocks %+v (asked %q)", got, asked)
	}
	stop := errors.New("stop")
	n := 0
	err = ParseBlocks(strings.NewReader(in), func(string) bool { return true }, func(Block) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("err %v after %d blocks, want stop after 1", err, n)
	}
}

func TestParseHostState(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want HostState
		ok   bool
	}{
		{"UP", HostUp, true}, {"down", HostDown, true}, {" Unreachable ", HostUnreachable, true},
		{"", HostUp, false}, {"$HOSTSTATE$", HostUp, false}, {"0", HostUp, false}, {"PENDING", HostUp, false},
	} {
		got, ok := ParseHostState(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseHostState(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	for h, s := range map[HostState]string{HostUp: "UP", HostDown: "DOWN", HostUnreachable: "UNREACHABLE", HostState(7): "UNKNOWN"} {
		if h.String() != s {
			t.Errorf("HostState(%d) = %q, want %q", int(h), h.String(), s)
		}
	}
}
