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
	if c.Listen != DefaultListen || c.ReplayWindow != time.Minute || c.Limits != DefaultLimits() || a.Timeout != DefaultActionTimeout || a.Dir != "/" {
		t.Fatalf("defaults not applied: %+v %+v", c, a)
	}
	// The sample's timeouts: 10 s + 5 s grace stay inside the handler's 18 s.
	if a.Timeout != 10*time.Second || a.KillGrace != 5*time.Second {
		t.Fatalf("action defaults %s + %s, want 10s + 5s", a.Timeout, a.KillGrace)
	}
	if c.Agent != "worker1" || c.KeyIDs()[0] != "fleet1" {
		t.Fatalf("agent %q, keys %v", c.Agent, c.KeyIDs())
	}
	if b := c.Services["demo"].RestartBudget(); b != DefaultBudget() || b != (Budget{Max: 3, Window: time.Hour, MinGap: 2 * time.Minute}) {
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
}

// TestBadConfigs: each file in testdata/bad is a config with one mistake,
// and its first line, "# error: ...", is what Parse must say about it.
// ${DIR}, ${KEY}, ${FLEET_KEY}, ${OTHER_KEY} and ${BIN} stand for this
// test's temp dir, worker1's host key, the fleet key, worker2's host key
// and an action binary.
func TestBadConfigs(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{
		"DIR": dir, "KEY": filepath.Join(dir, "k.key"), "FLEET_KEY": filepath.Join(dir, "fleet.key"),
		"OTHER_KEY": filepath.Join(dir, "other.key"), "BIN": filepath.Join(dir, "a.sh"),
	}
	writeKeys(t, "worker1", vars["KEY"], vars["FLEET_KEY"], vars["OTHER_KEY"])
	if err := os.WriteFile(vars["BIN"], []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join("testdata", "bad", "*.yaml"))
	if err != nil || len(files) < 30 {
		t.Fatalf("%d fixtures in testdata/bad (%v)", len(files), err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			text := os.Expand(string(b), func(k string) string { return vars[k] })
			first, _, _ := strings.Cut(text, "\n")
			want, ok := strings.CutPrefix(first, "# error: ")
			if !ok || want == "" {
				t.Fatalf("the first line must be \"# error: WHAT PARSE SAYS\", not %q", first)
			}
			if _, err := Parse([]byte(text)); err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("want an error with %q, got %v", want, err)
			}
		})
	}
	// The fixtures are one mistake each: the same config without it loads.
	good := "agent: worker1\nkeys: [${KEY}]\nallow: [\"10.0.0.0/8\", \"::ffff:192.168.0.0/112\", 127.0.0.1]\nstate_dir: ${DIR}/s\nservices:\n  demo:\n    actions:\n      restart: {argv: [${BIN}]}\n"
	if _, err := Parse([]byte(os.Expand(good, func(k string) string { return vars[k] }))); err != nil {
		t.Fatalf("the fixtures' base config: %v", err)
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
