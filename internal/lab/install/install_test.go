package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/engine"
	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/nagios"
)

// runOrder is the README's blocks as a fresh host without systemd runs
// them: install, start (xinetd, Debian's init script), the demo worker,
// then the kill that Nagios heals. oncall, upgrade and uninstall run
// later, each at its point.
var runOrder = []string{"install", "install-nosystemd", "install-demo", "heal-demo", "oncall", "upgrade", "uninstall"}

// The system's own paths the README's commands touch.
const (
	nagiosCfg  = "/etc/nagios4/nagios.cfg"
	nagiosLog  = "/var/log/nagios4/nagios.log"
	statusDat  = "/var/lib/nagios4/status.dat"
	nagiosPID  = "/run/nagios4/nagios4.pid" // lock_file in Debian's nagios.cfg
	xinetdPID  = "/run/xinetd.pid"
	xinetdConf = "/etc/xinetd.d/worker_listener"
	confD      = "/etc/nagios4/conf.d"
	conffile   = "/etc/selfheal/worker_listener.yaml"
	demoPID    = "/var/lib/selfheal/demo/demo.pid"
	handlerDir = "/var/lib/selfheal/handler"
	minGap     = 2 * time.Minute // budget.min_gap in the packaged worker_listener.yaml
)

// Nagios' own state, put back as it was found: the log, retention,
// status, object caches, the command FIFO, check results, the lock.
var nagiosState = []string{"/var/lib/nagios4", "/var/log/nagios4", "/run/nagios4"}

// need skips the test when the machine cannot run it, or fails it under
// CI=true, where the machine is made for it.
func need(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	if testutil.InCI() {
		t.Fatalf("CI=true: "+format, args...)
	}
	t.Skipf(format+" (CI=true makes this a failure)", args...)
}

// TestInstallFromREADME installs the packages on this Debian machine and
// follows the README's install blocks exactly, under Debian's own system
// Nagios 4 (/etc/nagios4): a killed demo worker must be healed, asserted
// from /var/log/nagios4/nagios.log. Then Debian's nagios4 files must be
// untouched, an upgrade must keep an edited conffile, the README's purge
// must leave nothing behind, and the machine is put back as found.
func TestInstallFromREADME(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the system install test takes minutes")
	}
	need(t, os.Geteuid() == 0, "the install test installs packages and runs the system Nagios: run it as root")
	for _, tool := range []string{"apt-get", "dpkg", "dpkg-deb", "dpkg-query", "make", "runuser", "service"} {
		_, err := exec.LookPath(tool)
		need(t, err == nil, "%s is missing: not a Debian host", tool)
	}
	for _, p := range []string{"nagios4-core", "xinetd"} {
		need(t, installed(p) || candidate(p), "%s is neither installed nor installable here", p)
	}
	for _, p := range []string{"selfheal-node", "selfheal-agent"} {
		need(t, !installed(p), "%s is installed already: the test wants a host without selfheal", p)
	}
	need(t, !alive(nagiosPID), "the system Nagios runs (%s): the test does not stop a Nagios it did not start", nagiosPID)
	need(t, !alive(xinetdPID), "the system xinetd runs (%s): the test does not restart it", xinetdPID)
	for _, addr := range []string{"127.0.0.1:5690", "127.0.0.1:8080"} {
		need(t, portFree(addr), "%s is in use: the README's defaults need it", addr)
	}
	for _, p := range []string{"/etc/selfheal", "/var/lib/selfheal", "/var/log/selfheal", xinetdConf} {
		_, err := os.Lstat(p)
		need(t, os.IsNotExist(err), "%s exists: the test wants a host without selfheal", p)
	}
	left, _ := filepath.Glob(filepath.Join(confD, "selfheal-*"))
	need(t, len(left) == 0, "%v in %s: the test wants a host without selfheal", left, confD)

	root := testutil.ModuleRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := Blocks(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range runOrder {
		if len(blocks[tag]) == 0 {
			t.Fatalf("README.md has no ```sh %s block", tag)
		}
	}

	// What the machine was before, to put it back and to compare.
	hadUser := userExists("selfheal")
	hadPkg := map[string]bool{"nagios4-core": installed("nagios4-core"), "xinetd": installed("xinetd")}
	verifyBefore := dpkgVerify(t)
	snap := snapshot(t, nagiosState)

	dist1, v1 := packages(t, root, "")
	debFiles := packagedPaths(t, dist1)
	existedBefore := map[string]bool{}
	for _, p := range debFiles {
		if _, err := os.Lstat(p); err == nil {
			existedBefore[p] = true
		}
	}

	// Cleanup runs even when a step fails: daemons stopped, the admin's
	// files and the packages gone, Nagios' state as it was.
	t.Cleanup(func() { restore(t, snap, hadUser, hadPkg) })

	steps := 0
	runBlock := func(tag, dir string) {
		t.Helper()
		for _, c := range blocks[tag] {
			steps++
			t.Logf("README %s #%d: %s", tag, steps, c)
			out, err := sh(dir, c, 5*time.Minute)
			if err != nil {
				t.Fatalf("README %s: %s: %v\n%s", tag, c, err, out)
			}
			if s := strings.TrimSpace(out); s != "" {
				t.Logf("%s", lastLines(s, 8))
			}
		}
	}

	// Install, start, start the demo worker.
	runBlock("install", dist1)
	runBlock("install-nosystemd", dist1)
	if !waitFor(30*time.Second, func() bool { return alive(nagiosPID) }) {
		t.Fatalf("Nagios did not start: no live pid in %s", nagiosPID)
	}
	runBlock("install-demo", dist1)
	toHealthy := steps
	if !waitFor(10*time.Second, func() bool { return alive(demoPID) }) {
		t.Fatal("the demo worker did not start")
	}

	// Nagios sees the worker OK, then the kill, and heals it by itself.
	const host, svc = "worker1", "worker"
	ok := func(s engine.Service) bool { return s.HasBeenChecked && s.State == nagios.OK }
	if _, err := waitService(4*time.Minute, host, svc, ok); err != nil {
		t.Fatalf("Nagios never saw %s/%s OK: %v", host, svc, err)
	}
	oldPID := readPID(demoPID)
	killed := time.Now().Truncate(time.Second)
	runBlock("heal-demo", dist1)
	var heal Heal
	if !waitFor(4*time.Minute, func() bool {
		log, err := engine.ReadLog(nagiosLog)
		if err != nil {
			return false
		}
		h, done := FindHeal(log, killed, host, svc)
		heal = h
		return done
	}) {
		t.Fatalf("no HARD CRITICAL -> SERVICE EVENT HANDLER -> OK for %s/%s in %s after the kill at %s:\n%s",
			host, svc, nagiosLog, killed.UTC().Format(time.RFC3339), lastLines(readFile(nagiosLog), 40))
	}
	newPID := readPID(demoPID)
	if newPID == 0 || newPID == oldPID || !alive(demoPID) {
		t.Fatalf("the demo worker was not restarted: pid %d before, %d after", oldPID, newPID)
	}
	t.Logf("healed: kill %s, HARD CRITICAL +%s, handler +%s, OK +%s (pid %d -> %d); %d commands from a fresh host to a monitored worker",
		killed.UTC().Format(time.TimeOnly), heal.Hard.Sub(killed), heal.Handler.Sub(killed), heal.OK.Sub(killed), oldPID, newPID, toHealthy)

	// A reload (SIGHUP, what `service nagios4 reload` and `systemctl
	// reload nagios4` send), then a kill: still healed. This needs the
	// handler to survive the macros a reload empties ($STATUSDATAFILE$,
	// issue 17). After the agent's min_gap since the first restart, so that
	// the gap is not what this step tests.
	if wait := time.Until(heal.Handler.Add(minGap + 2*time.Second)); wait > 0 {
		t.Logf("waiting %s for the agent's min_gap to pass", wait.Round(time.Second))
		time.Sleep(wait)
	}
	reloaded := time.Now().Truncate(time.Second)
	if out, err := sh("", "service nagios4 reload", time.Minute); err != nil {
		t.Fatalf("service nagios4 reload: %v\n%s", err, out)
	}
	if !waitFor(2*time.Minute, func() bool {
		log, _ := engine.ReadLog(nagiosLog)
		for _, e := range log {
			if !e.Time.Before(reloaded) && strings.Contains(e.Raw, "Caught SIGHUP") {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no SIGHUP in %s after service nagios4 reload", nagiosLog)
	}
	oldPID = readPID(demoPID)
	killed = time.Now().Truncate(time.Second)
	runBlock("heal-demo", dist1)
	if !waitFor(4*time.Minute, func() bool {
		log, err := engine.ReadLog(nagiosLog)
		if err != nil {
			return false
		}
		h, done := FindHeal(log, killed, host, svc)
		heal = h
		return done
	}) {
		t.Fatalf("after service nagios4 reload: no HARD CRITICAL -> SERVICE EVENT HANDLER -> OK for %s/%s after the kill at %s:\n%s\n%s",
			host, svc, killed.UTC().Format(time.RFC3339), lastLines(readFile(nagiosLog), 30),
			lastLines(readFile("/var/log/selfheal/handler/handle_worker.log"), 10))
	}
	if newPID = readPID(demoPID); newPID == 0 || newPID == oldPID || !alive(demoPID) {
		t.Fatalf("after the reload the demo worker was not restarted: pid %d before, %d after", oldPID, newPID)
	}
	t.Logf("after service nagios4 reload, healed: HARD CRITICAL +%s, OK +%s", heal.Hard.Sub(killed), heal.OK.Sub(killed))

	// On call: each command works as written; the dry run writes nothing.
	for _, c := range blocks["oncall"] {
		before := listing(t, handlerDir)
		out, err := sh(dist1, c, time.Minute)
		// A person's restart is a new fault: a minute after the heal
		// above it is inside the agent's min_gap, so it is deferred
		// (exit 1, WARNING), never "ok" for a restart that did not run.
		if err != nil && strings.Contains(c, " send restart ") && exitCode(err) == 1 && strings.Contains(out, "back-off at the agent") {
			err = nil
		}
		if err != nil {
			t.Fatalf("README oncall: %s: %v\n%s", c, err, out)
		}
		t.Logf("README oncall: %s\n%s", c, lastLines(out, 4))
		// At a terminal (script(1) gives it one) a human sees the human
		// line only, not the JSON log line beside it.
		if strings.Contains(c, " send ping ") {
			tty, err := sh(dist1, "script -qec "+shellQuote(c)+" /dev/null", time.Minute)
			if err != nil || strings.Contains(tty, `{"level"`) || !strings.Contains(tty, "ping demo on 127.0.0.1:5690 ok") {
				t.Errorf("send at a terminal: %v\n%s", err, tty)
			}
		}
		if strings.Contains(c, "--dry-run") {
			if !strings.Contains(out, "dry-run: would send restart demo") {
				t.Errorf("dry run says: %s", out)
			}
			if after := listing(t, handlerDir); after != before {
				t.Errorf("the dry run wrote into %s:\nbefore:\n%s\nafter:\n%s", handlerDir, before, after)
			}
		}
	}

	// Stopped, the worker's status says so, in words.
	nodeKey := "--host 127.0.0.1 --agent worker1 --target demo --key-file /etc/selfheal/handler/fleet1.key"
	if out, err := sh(dist1, "runuser -u nagios -- /usr/lib/nagios/plugins/handle_worker send stop "+nodeKey, time.Minute); err != nil {
		t.Fatalf("send stop: %v\n%s", err, out)
	}
	out, err := sh(dist1, "runuser -u nagios -- /usr/lib/nagios/plugins/handle_worker send status "+nodeKey, time.Minute)
	human := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "status demo on ") {
			human = l
		}
	}
	if err == nil || !strings.Contains(human, ": not running (status exit 3)") || strings.Contains(human, "failed") {
		t.Errorf("send status of a stopped worker: %v %q", err, out)
	}

	stopNagios(t)
	stopXinetd(t)

	// Debian's Nagios files are as Debian shipped them (or as they were).
	if after := dpkgVerify(t); after != verifyBefore {
		t.Errorf("dpkg --verify nagios4-core nagios4-common changed:\nbefore:\n%s\nafter:\n%s", verifyBefore, after)
	}

	// Upgrade to a newer build: the edited conffile stays.
	edit := "\n# edited by internal/lab/install\n"
	appendFile(t, conffile, edit)
	dist2, v2 := packages(t, root, v1+"+upgrade1")
	if _, err := sh("", "dpkg --compare-versions "+v2+" gt "+v1, 10*time.Second); err != nil {
		t.Fatalf("%s does not upgrade %s", v2, v1)
	}
	runBlock("upgrade", dist2)
	for _, p := range []string{"selfheal-node", "selfheal-agent"} {
		if got := version(p); got != v2 {
			t.Errorf("%s is %q after the upgrade, want %q", p, got, v2)
		}
	}
	if !strings.HasSuffix(readFile(conffile), edit) {
		t.Errorf("the upgrade lost the edit of %s", conffile)
	}
	for _, sfx := range []string{".dpkg-dist", ".dpkg-new", ".dpkg-old"} {
		if _, err := os.Lstat(conffile + sfx); err == nil {
			t.Errorf("the upgrade left %s", conffile+sfx)
		}
	}
	for _, l := range []string{"selfheal-commands.cfg", "selfheal-templates.cfg"} {
		if _, err := os.Stat(filepath.Join(confD, l)); err != nil {
			t.Errorf("after the upgrade: %v", err)
		}
	}
	if out, err := sh("", "nagios4 -v "+nagiosCfg, time.Minute); err != nil {
		t.Errorf("nagios4 -v after the upgrade: %v\n%s", err, lastLines(out, 20))
	}

	// Purge with the agent and the demo worker running (started as the
	// agent's action and by hand, as an admin would without systemd):
	// nothing of the packages is left, no process, no file of the selfheal
	// user anywhere, no link or state, and Debian's Nagios config still
	// validates.
	if out, err := sh("", "runuser -u selfheal -- /usr/lib/selfheal/demo-ctl start", time.Minute); err != nil {
		t.Fatalf("demo-ctl start: %v\n%s", err, out)
	}
	agent := exec.Command("runuser", "-u", "selfheal", "--", "/usr/sbin/worker_listener", "serve", "--config", conffile)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	agentDone := make(chan struct{})
	go func() { agent.Wait(); close(agentDone) }()
	t.Cleanup(func() {
		select {
		case <-agentDone:
		case <-time.After(10 * time.Second):
			agent.Process.Kill()
			<-agentDone
		}
	})
	if !waitFor(30*time.Second, func() bool { return !portFree("127.0.0.1:5690") && !portFree("127.0.0.1:8080") }) {
		t.Fatal("the hand-run agent or the demo worker did not listen")
	}
	uid := strings.TrimSpace(mustRun(t, "id", "-u", "selfheal"))
	gid := strings.TrimSpace(mustRun(t, "id", "-g", "selfheal"))
	runBlock("uninstall", dist2)
	if pids := ours(); len(pids) > 0 {
		t.Errorf("processes of the package left after the purge: %v", pids)
	}
	select {
	case <-agentDone:
	case <-time.After(10 * time.Second):
		t.Error("the hand-run agent still runs after the purge")
	}
	for _, addr := range []string{"127.0.0.1:5690", "127.0.0.1:8080"} {
		if !portFree(addr) {
			t.Errorf("%s still listens after the purge", addr)
		}
	}
	// Not internal/lab/systemd's cached container root: its own users'
	// numbers may be this host's selfheal's.
	if out, _ := sh("", "find / -xdev -ignore_readdir_race -path /var/cache/selfheal-lab -prune -o \\( -uid "+uid+" -o -gid "+gid+" \\) -print", 5*time.Minute); strings.TrimSpace(out) != "" {
		t.Errorf("files of the selfheal user left after the purge:\n%s", lastLines(out, 20))
	}
	for _, p := range []string{"selfheal-node", "selfheal-agent"} {
		if installed(p) || version(p) != "" {
			t.Errorf("%s is still known to dpkg after the purge", p)
		}
	}
	for _, p := range debFiles {
		if _, err := os.Lstat(p); err == nil && !existedBefore[p] {
			t.Errorf("left after the purge: %s", p)
		}
	}
	for _, p := range []string{"/etc/selfheal", "/var/lib/selfheal", "/var/log/selfheal", xinetdConf} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("left after the purge: %s", p)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(confD, "selfheal-*")); len(left) > 0 {
		t.Errorf("left in %s after the purge: %v", confD, left)
	}
	if out, err := sh("", "nagios4 -v "+nagiosCfg, time.Minute); err != nil {
		t.Errorf("nagios4 -v after the purge: %v\n%s", err, lastLines(out, 20))
	}
	t.Logf("README commands run: %d (versions %s -> %s)", steps, v1, v2)
}

// ours lists the processes running one of the agent package's binaries
// (a deleted one included: the kernel appends " (deleted)").
func ours() []string {
	var out []string
	self, _ := os.Readlink("/proc/self/ns/pid")
	ds, _ := os.ReadDir("/proc")
	for _, d := range ds {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		// Not a container's (internal/lab/systemd runs the same package).
		if ns, _ := os.Readlink(filepath.Join("/proc", d.Name(), "ns", "pid")); ns != self {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", d.Name(), "exe"))
		if err == nil && (strings.HasPrefix(exe, "/usr/sbin/worker_listener") || strings.HasPrefix(exe, "/usr/lib/selfheal/")) {
			out = append(out, d.Name()+" "+exe)
		}
	}
	return out
}

// packages builds both .debs (make package, in a build dir of its own so
// that a concurrent build in the tree is not disturbed), or takes them
// from SELFHEAL_DIST for the first build. It returns the directory and
// the version.
func packages(t *testing.T, root, debVersion string) (string, string) {
	t.Helper()
	dist := os.Getenv("SELFHEAL_DIST")
	if dist == "" || debVersion != "" {
		tmp := t.TempDir()
		dist = filepath.Join(tmp, "dist")
		args := []string{"-s", "package", "DIST=" + dist, "BIN=" + filepath.Join(tmp, "bin"), "BUILD=" + filepath.Join(tmp, "build")}
		if debVersion != "" {
			args = append(args, "DEB_VERSION="+debVersion)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "make", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	arch := strings.TrimSpace(mustRun(t, "dpkg", "--print-architecture"))
	var v string
	for _, p := range []string{"selfheal-node", "selfheal-agent"} {
		m, _ := filepath.Glob(filepath.Join(dist, p+"_*_"+arch+".deb"))
		if len(m) != 1 {
			t.Fatalf("want one %s .deb for %s in %s, found %v", p, arch, dist, m)
		}
		pv := strings.TrimSpace(mustRun(t, "dpkg-deb", "-f", m[0], "Version"))
		if v != "" && pv != v {
			t.Fatalf("%s is %s, the other package %s", m[0], pv, v)
		}
		v = pv
	}
	// The README's globs (./selfheal-node_*.deb) must find only these.
	for _, p := range []string{"selfheal-node", "selfheal-agent"} {
		if m, _ := filepath.Glob(filepath.Join(dist, p+"_*.deb")); len(m) != 1 {
			for _, f := range m {
				if !strings.HasSuffix(f, "_"+arch+".deb") {
					os.Remove(f)
				}
			}
		}
	}
	return dist, v
}

// packagedPaths lists every path of both packages (dpkg-deb -c), the
// directories included.
func packagedPaths(t *testing.T, dist string) []string {
	t.Helper()
	debs, _ := filepath.Glob(filepath.Join(dist, "*.deb"))
	var out []string
	for _, d := range debs {
		for _, l := range strings.Split(strings.TrimSpace(mustRun(t, "dpkg-deb", "-c", d)), "\n") {
			f := strings.Fields(l)
			if len(f) < 6 {
				continue
			}
			p, _, _ := strings.Cut(strings.Join(f[5:], " "), " -> ")
			p = strings.TrimSuffix(strings.TrimPrefix(p, "."), "/")
			if p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// sh runs one README command as the README's reader would: bash, as root,
// noninteractive apt, no terminal, in dir, bounded. WaitDelay: a daemon
// the command starts may keep the output pipe open.
func sh(dir, c string, limit time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", c)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	cmd.WaitDelay = 5 * time.Second
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	return b.String(), err
}

// shellQuote quotes s as one word for bash.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out)
}

func installed(pkg string) bool {
	out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Abbrev}", pkg).Output()
	return err == nil && strings.HasPrefix(string(out), "ii")
}

// version is the installed version, "" when none.
func version(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Version}", pkg).Output()
	f := strings.Fields(string(out))
	if err != nil || len(f) < 2 || f[0] != "ii" {
		return ""
	}
	return f[1]
}

func candidate(pkg string) bool {
	out, err := exec.Command("apt-cache", "policy", pkg).Output()
	return err == nil && strings.Contains(string(out), "Candidate:") && !strings.Contains(string(out), "Candidate: (none)")
}

func userExists(name string) bool { return exec.Command("getent", "passwd", name).Run() == nil }

func dpkgVerify(t *testing.T) string {
	t.Helper()
	out, _ := exec.Command("dpkg", "--verify", "nagios4-core", "nagios4-common").CombinedOutput()
	return string(out)
}

func readPID(file string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// alive: the pid file names a live process.
func alive(file string) bool {
	pid := readPID(file)
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

func portFree(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func waitFor(limit time.Duration, cond func() bool) bool {
	end := time.Now().Add(limit)
	for {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func waitService(limit time.Duration, host, svc string, match func(engine.Service) bool) (engine.Service, error) {
	var last engine.Service
	var lastErr error = fmt.Errorf("no status for %s/%s in %s", host, svc, statusDat)
	if waitFor(limit, func() bool {
		st, err := engine.ReadStatus(statusDat)
		if err != nil {
			lastErr = err
			return false
		}
		s, ok := st.Service(host, svc)
		if ok {
			last, lastErr = s, fmt.Errorf("last seen: state %d, checked %v: %s", s.State, s.HasBeenChecked, s.Output)
		}
		return ok && match(s)
	}) {
		return last, nil
	}
	return last, lastErr
}

// stopNagios ends the Nagios this test started by its pid (not Debian's
// `service nagios4 stop`, which kill -9s every nagios4 on the host after
// 15 s, other tests' included) and waits for it and its workers.
func stopNagios(t *testing.T) {
	t.Helper()
	pid := readPID(nagiosPID)
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return
	}
	workers := nagiosWorkers()
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if !waitFor(30*time.Second, func() bool { return syscall.Kill(pid, 0) != nil }) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	waitFor(10*time.Second, func() bool {
		for _, w := range workers {
			if syscall.Kill(w, 0) == nil {
				return false
			}
		}
		return true
	})
}

// nagiosWorkers are the worker processes of the system Nagios (their
// command line names its query socket under /var/lib/nagios4).
func nagiosWorkers() []int {
	var out []int
	ds, _ := os.ReadDir("/proc")
	for _, d := range ds {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if c := string(b); strings.Contains(c, "--worker") && strings.Contains(c, "/var/lib/nagios4/") {
			out = append(out, pid)
		}
	}
	return out
}

// stopXinetd stops the system xinetd the README's block started: Debian's
// script stops the pid in its pid file only.
func stopXinetd(t *testing.T) {
	t.Helper()
	if !alive(xinetdPID) {
		return
	}
	if out, err := sh("", "service xinetd stop", time.Minute); err != nil {
		t.Errorf("service xinetd stop: %v\n%s", err, out)
	}
	waitFor(10*time.Second, func() bool { return !alive(xinetdPID) })
}

// restore puts the machine back: the daemons stopped, the demo worker
// gone, the admin's files removed, the packages purged, the user removed
// if this test made it, packages it installed removed, Nagios' state as
// found.
func restore(t *testing.T, snap map[string]entry, hadUser bool, hadPkg map[string]bool) {
	stopNagios(t)
	if pid := readPID(demoPID); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	stopXinetd(t)
	os.Remove(xinetdConf)
	if left, _ := filepath.Glob(filepath.Join(confD, "selfheal-*")); len(left) > 0 {
		for _, p := range left {
			os.Remove(p)
		}
	}
	var purge []string
	for _, p := range []string{"selfheal-node", "selfheal-agent"} {
		if version(p) != "" || exec.Command("dpkg-query", "-W", p).Run() == nil {
			purge = append(purge, p)
		}
	}
	for p, had := range hadPkg {
		if !had && installed(p) {
			purge = append(purge, p)
		}
	}
	if len(purge) > 0 {
		if out, err := sh("", "apt-get purge -y "+strings.Join(purge, " "), 5*time.Minute); err != nil {
			t.Errorf("cleanup: apt-get purge: %v\n%s", err, out)
		}
	}
	for _, d := range []string{"/etc/selfheal", "/var/lib/selfheal", "/var/log/selfheal"} {
		os.RemoveAll(d)
	}
	if !hadUser && userExists("selfheal") {
		if out, err := sh("", "deluser --system selfheal", time.Minute); err != nil {
			t.Errorf("cleanup: deluser: %v\n%s", err, out)
		}
	}
	if !hadUser && exec.Command("getent", "group", "selfheal").Run() == nil {
		if out, err := sh("", "delgroup --system selfheal", time.Minute); err != nil {
			t.Errorf("cleanup: delgroup: %v\n%s", err, out)
		}
	}
	putBack(t, snap)
}

// entry is one path of Nagios' state as found.
type entry struct {
	mode     fs.FileMode
	uid, gid int
	data     []byte // regular files
	link     string
}

func snapshot(t *testing.T, roots []string) map[string]entry {
	t.Helper()
	snap := map[string]entry{}
	for _, r := range roots {
		_ = filepath.WalkDir(r, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			fi, err := os.Lstat(p)
			if err != nil {
				return nil
			}
			st := fi.Sys().(*syscall.Stat_t)
			e := entry{mode: fi.Mode(), uid: int(st.Uid), gid: int(st.Gid)}
			switch {
			case fi.Mode().IsRegular():
				if e.data, err = os.ReadFile(p); err != nil {
					t.Fatalf("snapshot: %v", err)
				}
			case fi.Mode()&fs.ModeSymlink != 0:
				e.link, _ = os.Readlink(p)
			}
			snap[p] = e
			return nil
		})
	}
	return snap
}

// putBack removes what is new under the snapshot's roots and rewrites
// what changed, owner and mode included.
func putBack(t *testing.T, snap map[string]entry) {
	now := snapshot(t, nagiosState)
	var gone []string
	for p := range now {
		if _, ok := snap[p]; !ok {
			gone = append(gone, p)
		}
	}
	// Deepest first, so a new directory is empty when it goes.
	sort.Sort(sort.Reverse(sort.StringSlice(gone)))
	for _, p := range gone {
		if err := os.Remove(p); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	for p, e := range snap {
		cur, ok := now[p]
		switch {
		case e.mode.IsRegular() && (!ok || !bytes.Equal(cur.data, e.data) || cur.mode != e.mode):
			if err := os.WriteFile(p, e.data, e.mode.Perm()); err != nil {
				t.Errorf("cleanup: %v", err)
				continue
			}
			os.Chmod(p, e.mode.Perm())
		case e.mode.IsDir() && ok && cur.mode != e.mode:
			os.Chmod(p, e.mode.Perm())
		}
		if ok && (cur.uid != e.uid || cur.gid != e.gid) || !ok && e.mode.IsRegular() {
			os.Lchown(p, e.uid, e.gid)
		}
	}
}

// listing is a directory's names, sizes and mtimes, to see a write.
func listing(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			fmt.Fprintf(&b, "%s %d %s\n", p, fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
		}
		return nil
	})
	return b.String()
}

func appendFile(t *testing.T, p, s string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// exitCode is a command's exit status, or -1 when it did not exit.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}
