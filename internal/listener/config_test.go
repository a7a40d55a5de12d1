package listener

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/protocol"
)

// TestParseConfig: defaults are applied, and each invalid field is
// refused with a message naming it.
func TestParseConfig(t *testing.T) {
	dir := t.TempDir()
	key, fleetKey, otherKey := filepath.Join(dir, "k.key"), filepath.Join(dir, "fleet.key"), filepath.Join(dir, "other.key")
	writeKeys(t, "worker1", key, fleetKey, otherKey)
	bin := filepath.Join(dir, "a.sh")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	base := "agent: worker1\nkeys: [" + key + "]\nallow: [\"10.0.0.0/8\", \"::ffff:192.168.0.0/112\", 127.0.0.1]\nstate_dir: " + dir + "/s\nservices:\n  demo:\n    actions:\n      restart: {argv: [" + bin + "]}\n"
	c, err := Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Services["demo"].Actions["restart"]
	if c.Listen != DefaultListen || c.ReplayWindow != time.Minute || c.Limits != DefaultLimits || a.Timeout != DefaultActionTimeout || a.Dir != "/" {
		t.Fatalf("defaults not applied: %+v %+v", c, a)
	}
	// The sample's timeouts: 10 s + 5 s grace stay inside the handler's 18 s.
	if a.Timeout != 10*time.Second || a.KillGrace != 5*time.Second {
		t.Fatalf("action defaults %s + %s, want 10s + 5s", a.Timeout, a.KillGrace)
	}
	if c.Agent != "worker1" || c.KeyIDs()[0] != "fleet1" {
		t.Fatalf("agent %q, keys %v", c.Agent, c.KeyIDs())
	}
	if b := c.Services["demo"].RestartBudget(); b != DefaultBudget || b != (Budget{Max: 3, Window: time.Hour, MinGap: 2 * time.Minute}) {
		t.Fatalf("default budget %+v", b)
	}
	// A top-level budget, overridden per service field by field.
	c, err = Parse([]byte(strings.Replace(base, "services:\n  demo:\n", "budget: {max: 5, min_gap: 0s}\nservices:\n  demo:\n    budget: {window: 30m}\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if b := c.Services["demo"].RestartBudget(); b != (Budget{Max: 5, Window: 30 * time.Minute, MinGap: 0}) {
		t.Fatalf("budget override %+v", b)
	}
	if len(a.env) != 1 || !strings.HasPrefix(a.env[0], "PATH=") {
		t.Fatalf("env %q: want only a default PATH", a.env)
	}
	for addr, want := range map[string]bool{"10.1.2.3": true, "::ffff:10.1.2.3": true, "192.168.7.7": true, "127.0.0.1": true, "127.0.0.2": false, "11.0.0.1": false} {
		if got := c.Allowed(mustAddr(t, addr)); got != want {
			t.Errorf("Allowed(%s) = %v", addr, got)
		}
	}
	for _, tt := range []struct{ name, from, to, want string }{
		{"env with =", "{argv: [" + bin + "]}", "{argv: [" + bin + "], env: {\"A=B\": x}}", "env"},
		{"negative timeout", "{argv: [" + bin + "]}", "{argv: [" + bin + "], timeout: -1s}", "timeout"},
		{"huge timeout", "{argv: [" + bin + "]}", "{argv: [" + bin + "], timeout: 1h}", "timeout"},
		{"missing dir", "{argv: [" + bin + "]}", "{argv: [" + bin + "], dir: /nonexistent}", "dir"},
		{"empty argv", "{argv: [" + bin + "]}", "{argv: []}", "argv is empty"},
		{"unknown action", "restart:", "reboot:", "unknown action"},
		{"ping action", "restart:", "ping:", "unknown action"},
		{"bad cidr", "10.0.0.0/8", "10.0.0.0/33", "not a CIDR"},
		{"no keys", "keys: [" + key + "]", "keys: []", "keys"},
		{"no agent", "agent: worker1\n", "", "agent is required"},
		{"agent upper case", "agent: worker1", "agent: Worker1", "agent \"Worker1\""},
		{"agent with a slash", "agent: worker1", "agent: a/b", "agent \"a/b\""},
		{"fleet key in keys", "keys: [" + key + "]", "keys: [" + fleetKey + "]", "key file " + fleetKey + " is fleet key \"fleet1\": a fleet key belongs on the monitoring nodes only: issue this host's key with handle_worker issue-key --agent worker1"},
		{"another agent's host key", "keys: [" + key + "]", "keys: [" + otherKey + "]", "key file " + otherKey + " is the host key of agent \"worker2\", but this is agent \"worker1\": issue this host's key with handle_worker issue-key --agent worker1"},
		{"agent not the key's", "agent: worker1", "agent: worker2", "is the host key of agent \"worker1\", but this is agent \"worker2\""},
		{"budget max 0", "services:", "budget: {max: 0}\nservices:", "budget: max 0"},
		{"budget tiny window", "services:", "budget: {window: 10ms}\nservices:", "budget: window"},
		{"budget min_gap over window", "services:", "budget: {window: 1m, min_gap: 2m}\nservices:", "budget: min_gap"},
		{"budget negative min_gap", "services:", "budget: {min_gap: -1s}\nservices:", "budget: min_gap"},
		{"service budget", "    actions:", "    budget: {max: 100000}\n    actions:", "service demo budget: max 100000"},
		{"budget typo", "services:", "budget: {maks: 3}\nservices:", "maks"},
		{"relative state_dir", "state_dir: " + dir + "/s", "state_dir: s", "absolute"},
		{"no state_dir", "state_dir: " + dir + "/s", "", "state_dir is required"},
		{"tiny replay window", "services:", "replay_window: 10ms\nservices:", "replay_window"},
		{"slowloris-friendly read timeout", "services:", "limits: {read_timeout: 1h}\nservices:", "read_timeout 1h0m0s is above the maximum"},
		{"unknown user", "{argv: [" + bin + "]}", "{argv: [" + bin + "], user: no-such-user-xyz}", "no-such-user-xyz"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(strings.Replace(base, tt.from, tt.to, 1)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("want error with %q, got %v", tt.want, err)
			}
		})
	}
}

// TestCheckExecutableReplaceable: an action binary that someone else could
// replace is refused even when its own mode and its immediate directory
// look fine: a writable ancestor, a symlink into a writable directory, a
// foreign owner.
func TestCheckExecutableReplaceable(t *testing.T) {
	dir := t.TempDir()
	mk := func(path string, mode os.FileMode) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := mk(filepath.Join(dir, "safe", "a.sh"), 0o755)
	deep := mk(filepath.Join(dir, "open", "sub", "a.sh"), 0o755)
	target := mk(filepath.Join(dir, "open2", "b.sh"), 0o755)
	for _, d := range []string{filepath.Join(dir, "open"), filepath.Join(dir, "open2")} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "safe", "link.sh")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	goodLink := filepath.Join(dir, "safe", "good-link.sh")
	if err := os.Symlink(good, goodLink); err != nil {
		t.Fatal(err)
	}
	// The trust rule, as Parse judges an action's binary.
	checkExecutable := func(bin string) error {
		c := trustCheck{t: fsutil.Self()}
		c.checkAction("service demo action restart", []string{bin})
		return c.err()
	}
	if err := checkExecutable(good); err != nil {
		t.Fatalf("safe binary refused: %v", err)
	}
	if err := checkExecutable(goodLink); err != nil {
		t.Fatalf("safe symlink refused: %v", err)
	}
	rows := map[string]string{
		"world-writable ancestor directory":       deep,
		"symlink into a world-writable directory": link,
	}
	if os.Geteuid() == 0 {
		foreign := mk(filepath.Join(dir, "safe", "foreign.sh"), 0o755)
		if err := os.Chown(foreign, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		rows["owned by another user"] = foreign
	}
	for name, bin := range rows {
		t.Run(name, func(t *testing.T) {
			if err := checkExecutable(bin); err == nil {
				t.Fatalf("%s accepted", bin)
			}
		})
	}
}

// writeKeys writes, 0600, agent's host key, the fleet key it came from,
// and the same fleet's host key of worker2.
func writeKeys(t *testing.T, agent, hostPath, fleetPath, otherPath string) (fleet, host protocol.Key) {
	t.Helper()
	fleet, err := protocol.GenerateFleetKey("fleet1")
	if err != nil {
		t.Fatal(err)
	}
	host, _ = fleet.ForAgent(agent)
	other, _ := fleet.ForAgent("worker2")
	for p, k := range map[string]protocol.Key{hostPath: host, fleetPath: fleet, otherPath: other} {
		if p == "" {
			continue
		}
		if err := protocol.WriteKeyFile(p, k); err != nil {
			t.Fatal(err)
		}
	}
	return fleet, host
}
