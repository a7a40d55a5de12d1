package pkgtest

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/selfheal/selfheal/internal/lab/testutil"
)

// debs builds both packages into a temp dir with `make package` (or takes
// them from SELFHEAL_DIST, a directory a build already filled) and returns
// each package's .deb for the host's architecture.
func debs(t *testing.T) map[string]string {
	t.Helper()
	testutil.LookTool(t, "dpkg-deb")
	root := testutil.ModuleRoot(t)
	arch := strings.TrimSpace(run(t, root, "dpkg", "--print-architecture"))
	dist := os.Getenv("SELFHEAL_DIST")
	if dist == "" {
		testutil.LookTool(t, "make")
		dist = t.TempDir()
		cmd := exec.Command("make", "-s", "package", "DIST="+dist)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make package: %v\n%s", err, out)
		}
	}
	got := map[string]string{}
	for _, p := range []string{"selfheal-node", "selfheal-agent"} {
		m, _ := filepath.Glob(filepath.Join(dist, p+"_*_"+arch+".deb"))
		if len(m) != 1 {
			t.Fatalf("want one %s .deb for %s in %s, found %v", p, arch, dist, m)
		}
		got[p] = m[0]
	}
	return got
}

func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), stderr.String())
	}
	return out.String()
}

// TestPackages checks both packages as Debian's tools see them: lintian,
// the file list with modes and owners, the conffiles, the maintainer
// scripts, and a man page for every binary that names every flag its
// grammar has.
func TestPackages(t *testing.T) {
	testutil.LookTool(t, "lintian")
	root := testutil.ModuleRoot(t)
	pkgs := debs(t)

	t.Run("lintian", func(t *testing.T) {
		cmd := exec.Command("lintian", "--pedantic", pkgs["selfheal-node"], pkgs["selfheal-agent"])
		out, err := cmd.CombinedOutput()
		errs, warns := Lintian(string(out))
		for _, e := range errs {
			t.Errorf("lintian error: %s", e)
		}
		// Every warning left must be justified in docs/packaging.md.
		doc, rerr := os.ReadFile(filepath.Join(root, "docs", "packaging.md"))
		if rerr != nil {
			t.Fatal(rerr)
		}
		for _, w := range warns {
			if tag := LintianTag(w); !strings.Contains(string(doc), "`"+tag+"`") {
				t.Errorf("lintian warning not justified in docs/packaging.md: %s", w)
			}
		}
		if err != nil && len(errs) == 0 {
			t.Fatalf("lintian: %v\n%s", err, out)
		}
	})

	// path -> mode; every entry root/root.
	want := map[string]map[string]string{
		"selfheal-node": {
			"/usr/lib/nagios/plugins/check_worker":                     "-rwxr-xr-x",
			"/usr/lib/nagios/plugins/handle_worker":                    "-rwxr-xr-x",
			"/usr/share/man/man1/check_worker.1.gz":                    "-rw-r--r--",
			"/usr/share/man/man1/handle_worker.1.gz":                   "-rw-r--r--",
			"/usr/share/selfheal/nagios4/selfheal-commands.cfg":        "-rw-r--r--",
			"/usr/share/selfheal/nagios4/selfheal-templates.cfg":       "-rw-r--r--",
			"/usr/share/selfheal/icinga2/selfheal-constants.conf":      "-rw-r--r--",
			"/usr/share/selfheal/icinga2/selfheal-objects.conf":        "-rw-r--r--",
			"/usr/share/selfheal/icinga2/selfheal-healer.conf":         "-rw-r--r--",
			"/usr/share/doc/selfheal-node/examples/nagios4/worker.cfg": "-rw-r--r--",
			"/usr/share/doc/selfheal-node/examples/icinga2/hosts.conf": "-rw-r--r--",
			"/usr/share/doc/selfheal-node/copyright":                   "-rw-r--r--",
			"/usr/share/doc/selfheal-node/changelog.gz":                "-rw-r--r--",
			"/usr/share/doc/selfheal-node/README.Debian":               "-rw-r--r--",
			"/etc/logrotate.d/selfheal-node":                           "-rw-r--r--",
		},
		"selfheal-agent": {
			"/usr/sbin/worker_listener":                                     "-rwxr-xr-x",
			"/usr/lib/selfheal/demo_worker":                                 "-rwxr-xr-x",
			"/usr/lib/selfheal/demo-ctl":                                    "-rwxr-xr-x",
			"/lib/systemd/system/selfheal-demo.service":                     "-rw-r--r--",
			"/usr/share/polkit-1/rules.d/60-selfheal-demo.rules":            "-rw-r--r--",
			"/usr/share/man/man8/worker_listener.8.gz":                      "-rw-r--r--",
			"/usr/share/man/man1/demo_worker.1.gz":                          "-rw-r--r--",
			"/etc/selfheal/worker_listener.yaml":                            "-rw-r--r--",
			"/etc/logrotate.d/selfheal-agent":                               "-rw-r--r--",
			"/lib/systemd/system/worker_listener.service":                   "-rw-r--r--",
			"/lib/systemd/system/worker_listener.socket":                    "-rw-r--r--",
			"/lib/systemd/system/worker_listener-inetd.socket":              "-rw-r--r--",
			"/lib/systemd/system/worker_listener-inetd@.service":            "-rw-r--r--",
			"/usr/share/doc/selfheal-agent/examples/xinetd.worker_listener": "-rw-r--r--",
			"/usr/share/doc/selfheal-agent/examples/root-mode.conf":         "-rw-r--r--",
			"/usr/share/doc/selfheal-agent/copyright":                       "-rw-r--r--",
			"/usr/share/doc/selfheal-agent/changelog.gz":                    "-rw-r--r--",
			"/usr/share/doc/selfheal-agent/README.Debian":                   "-rw-r--r--",
		},
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "check_selfheal")); err == nil {
		want["selfheal-node"]["/usr/lib/nagios/plugins/check_selfheal"] = "-rwxr-xr-x"
		want["selfheal-node"]["/usr/share/man/man1/check_selfheal.1.gz"] = "-rw-r--r--"
	}
	conffiles := map[string][]string{
		"selfheal-node":  {"/etc/logrotate.d/selfheal-node"},
		"selfheal-agent": {"/etc/logrotate.d/selfheal-agent", "/etc/selfheal/worker_listener.yaml"},
	}

	for name, deb := range pkgs {
		t.Run(name, func(t *testing.T) {
			es, err := ParseContents(run(t, root, "dpkg-deb", "-c", deb))
			if err != nil {
				t.Fatal(err)
			}
			have := map[string]Entry{}
			for _, e := range es {
				have[e.Path] = e
				if e.Owner != "root/root" {
					t.Errorf("%s is owned by %s: a package ships root's files (postinst chowns what the daemons own)", e.Path, e.Owner)
				}
				if e.Mode[0] == '-' && strings.ContainsAny(e.Mode[5:6]+e.Mode[8:9], "w") {
					t.Errorf("%s is group- or world-writable (%s)", e.Path, e.Mode)
				}
			}
			for p, mode := range want[name] {
				e, ok := have[p]
				if !ok {
					t.Errorf("missing %s", p)
				} else if e.Mode != mode {
					t.Errorf("%s has mode %s, want %s", p, e.Mode, mode)
				}
			}
			// Never Debian's own files.
			for p := range have {
				if strings.HasPrefix(p, "/etc/nagios4/") || strings.HasPrefix(p, "/etc/icinga2/") {
					t.Errorf("%s is an engine's own configuration: the package must not ship it", p)
				}
			}

			got := strings.Fields(run(t, root, "dpkg-deb", "-I", deb, "conffiles"))
			sort.Strings(got)
			if strings.Join(got, " ") != strings.Join(conffiles[name], " ") {
				t.Errorf("conffiles %v, want %v", got, conffiles[name])
			}

			x := t.TempDir()
			run(t, root, "dpkg-deb", "-x", deb, x)
			ctrl := t.TempDir()
			run(t, root, "dpkg-deb", "-e", deb, ctrl)
			checkManPages(t, x, es)
			if name == "selfheal-node" {
				checkNode(t, x, ctrl)
			} else {
				checkAgent(t, x, ctrl)
			}
		})
	}
}

// checkManPages: every executable in the package has a man page, and the
// page names every flag of every command that the binary's own --help
// lists (kong's help: the grammar, read independently of the generator).
func checkManPages(t *testing.T, x string, es []Entry) {
	t.Helper()
	n := 0
	for _, e := range es {
		if e.Mode[0] != '-' || !strings.Contains(e.Mode, "x") {
			continue
		}
		bin := filepath.Join(x, e.Path)
		name := filepath.Base(e.Path)
		// A helper script that only the agent's config runs (demo-ctl),
		// off the PATH, has no grammar of its own to document.
		if strings.HasPrefix(e.Path, "/usr/lib/selfheal/") && strings.HasPrefix(read(t, bin), "#!") {
			continue
		}
		n++
		pages, _ := filepath.Glob(filepath.Join(x, "usr/share/man/man[18]", name+".[18].gz"))
		if len(pages) != 1 {
			t.Errorf("%s: want one man page, found %v", e.Path, pages)
			continue
		}
		page := gunzip(t, pages[0])
		if !strings.HasPrefix(page, `.TH "`+strings.ToUpper(strings.ReplaceAll(name, "-", `\-`))) {
			t.Errorf("%s: the page does not start with its .TH line:\n%.200s", pages[0], page)
		}
		top := help(t, bin)
		checks := map[string]string{"": top}
		for _, c := range HelpCommands(top) {
			checks[c] = help(t, bin, c)
		}
		flags := 0
		for cmd, h := range checks {
			if cmd != "" && !strings.Contains(page, strings.ReplaceAll(name+" "+cmd, "-", `\-`)) {
				t.Errorf("%s: the man page lacks the command %q", name, cmd)
			}
			for _, f := range HelpFlags(h) {
				flags++
				if !strings.Contains(page, RoffFlag(f)) {
					t.Errorf("%s %s: the man page lacks --%s", name, cmd, f)
				}
			}
		}
		if flags < 3 {
			t.Errorf("%s: only %d flags seen in its help: the check proves nothing", name, flags)
		}
	}
	if n < 2 {
		t.Fatalf("only %d executables in the package", n)
	}
}

func help(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, append(args, "--help")...)
	out, _ := cmd.Output() // plugins exit 3 on --help
	if len(out) == 0 {
		t.Fatalf("%s %v --help printed nothing", bin, args)
	}
	return string(out)
}

func gunzip(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return string(b)
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func contains(t *testing.T, what, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
}

func checkNode(t *testing.T, x, ctrl string) {
	// The packaged commands name the package's paths, not $USER3$..$USER5$
	// that Debian's resource.cfg does not define.
	cmds := read(t, filepath.Join(x, "usr/share/selfheal/nagios4/selfheal-commands.cfg"))
	site := read(t, filepath.Join(x, "usr/share/selfheal/nagios4/site/worker.cfg"))
	n := 0
	for _, l := range strings.Split(cmds+site, "\n") {
		if strings.Contains(l, "command_line") {
			n++
			if m := regexp.MustCompile(`\$USER[2-9][0-9]*\$`).FindString(l); m != "" {
				t.Errorf("packaged command uses %s, which Debian's resource.cfg lacks: %s", m, l)
			}
		}
	}
	if n < 2 {
		t.Fatalf("packaged commands.cfg has %d command lines", n)
	}
	// The site sample names Debian's templates for contacts and periods
	// (nagios4 -v warns without them) and carries the healer's checks.
	contains(t, "site sample", site, "use                    selfheal-host,linux-server", "selfheal-worker,generic-service",
		"selfheal-healer,generic-service", "check_command        selfheal-check-node", "check_command        selfheal-check-agent")
	contains(t, "selfheal-commands.cfg", cmds, "--key-file /etc/selfheal/handler/fleet1.key", "--state-dir /var/lib/selfheal/handler", "$USER1$/check_worker")
	contains(t, "selfheal-constants.conf", read(t, filepath.Join(x, "usr/share/selfheal/icinga2/selfheal-constants.conf")),
		`const SelfhealKeyFile = "/etc/selfheal/handler/fleet1.key"`, `const SelfhealStateDir = "/var/lib/selfheal/handler"`)
	post := read(t, filepath.Join(ctrl, "postinst"))
	contains(t, "node postinst", post, "getent passwd nagios",
		"install -d -o nagios -g nagios -m 0700 /etc/selfheal/handler /var/lib/selfheal/handler",
		"dpkg-reconfigure selfheal-node", "handle_worker genkey --id fleet1 --out")
	contains(t, "node postrm", read(t, filepath.Join(ctrl, "postrm")), "purge", "/usr/share/selfheal/*) rm -f")
	checkChangelog(t, x, "selfheal-node")
}

func checkAgent(t *testing.T, x, ctrl string) {
	unit := read(t, filepath.Join(x, "lib/systemd/system/worker_listener.service"))
	contains(t, "packaged unit", unit, "\nUser=selfheal\n", "\nCapabilityBoundingSet=\n", "ExecStart=/usr/sbin/worker_listener serve")
	if strings.Contains(unit, "/usr/local/") {
		t.Error("the packaged unit names /usr/local")
	}
	// Stop and purge leave no process: nothing of ours escapes the stop.
	for _, u := range []string{"worker_listener.service", "worker_listener-inetd@.service", "selfheal-demo.service"} {
		if regexp.MustCompile(`(?m)^KillMode=(process|none)`).MatchString(read(t, filepath.Join(x, "lib/systemd/system", u))) {
			t.Errorf("%s: a KillMode that leaves processes behind on stop", u)
		}
	}
	demo := read(t, filepath.Join(x, "lib/systemd/system/selfheal-demo.service"))
	contains(t, "demo unit", demo, "\nDynamicUser=yes\n")
	if strings.Contains(demo, "User=selfheal") {
		t.Error("the demo worker runs as the agent's user")
	}
	contains(t, "demo polkit rule", read(t, filepath.Join(x, "usr/share/polkit-1/rules.d/60-selfheal-demo.rules")),
		`action.lookup("unit") == "selfheal-demo.service"`, `subject.user == "selfheal"`)
	xi := read(t, filepath.Join(x, "usr/share/doc/selfheal-agent/examples/xinetd.worker_listener"))
	contains(t, "packaged xinetd sample", xi, "server          = /usr/sbin/worker_listener", "user            = selfheal")
	post := read(t, filepath.Join(ctrl, "postinst"))
	contains(t, "agent postinst", post, "adduser --system",
		"install -d -o selfheal -g selfheal -m 0700 /etc/selfheal/keys /var/lib/selfheal/listener",
		"install -d -o selfheal -g selfheal -m 0750 /var/log/selfheal/listener",
		"deb-systemd-invoke try-restart worker_listener.service")
	postrm := read(t, filepath.Join(ctrl, "postrm"))
	contains(t, "agent postrm", postrm, "purge)", "rm -rf /etc/selfheal/keys")
	if strings.Contains(postrm, "deluser") {
		t.Error("purge deletes the system user (Debian keeps it: docs/packaging.md)")
	}
	contains(t, "agent prerm", read(t, filepath.Join(ctrl, "prerm")), "deb-systemd-invoke stop worker_listener.socket",
		"selfheal-demo.service", "/usr/sbin/worker_listener|/usr/lib/selfheal/demo_worker")
	contains(t, "agent postinst", post, "deb-systemd-helper enable worker_listener.socket")
	cfg := read(t, filepath.Join(x, "etc/selfheal/worker_listener.yaml"))
	contains(t, "packaged config", cfg, "audit_log: /var/log/selfheal/listener/audit.log", "state_dir: /var/lib/selfheal/listener")
	if regexp.MustCompile(`(?m)^\s+user:`).MatchString(cfg) {
		t.Error("the packaged config switches users, which the unprivileged agent cannot")
	}
	checkChangelog(t, x, "selfheal-agent")
}

func checkChangelog(t *testing.T, x, pkg string) {
	t.Helper()
	cl := gunzip(t, filepath.Join(x, "usr/share/doc", pkg, "changelog.gz"))
	m := regexp.MustCompile(`^` + pkg + ` \(([^)]+)\) unstable; urgency=medium\n`).FindStringSubmatch(cl)
	if m == nil {
		t.Fatalf("%s changelog is not Debian's format:\n%s", pkg, cl)
	}
	if !regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`).MatchString(m[1]) {
		t.Errorf("%s version %q is not a Debian version without revision", pkg, m[1])
	}
}

// TestVersion: packaging/version.sh gives a Debian version that sorts
// after an older snapshot (so upgrades upgrade).
func TestVersion(t *testing.T) {
	testutil.LookTool(t, "git")
	root := testutil.ModuleRoot(t)
	v := strings.TrimSpace(run(t, root, "sh", "packaging/version.sh"))
	if !regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`).MatchString(v) {
		t.Fatalf("version %q is not Debian-valid", v)
	}
	if _, err := exec.LookPath("dpkg"); err == nil {
		old := "0.0~git20200101000000.0000000"
		if strings.HasPrefix(v, "0.0~git") {
			if err := exec.Command("dpkg", "--compare-versions", v, "gt", old).Run(); err != nil {
				t.Errorf("%s does not sort after %s", v, old)
			}
		}
	}
}
