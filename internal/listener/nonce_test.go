package listener

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
)

// TestNonceCache: persistence, expiry of old entries on load, a torn last
// line, compaction, and the lock between two caches on one directory.
func TestNonceCache(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state") // created 0700: t.TempDir's own is 0755
	sd := stateDir(t, dir)
	now := time.Unix(1_700_000_000, 0)
	c, err := OpenNonceCache(sd, time.Minute, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenNonceCache(sd, time.Minute, now, 0); err == nil {
		t.Fatal("two caches on one state_dir")
	}
	old, fresh := strings.Repeat("a", 32), strings.Repeat("b", 32)
	if err := c.Use(old, now.Unix()-50, now); err != nil {
		t.Fatal(err)
	}
	if err := c.Use(fresh, now.Unix(), now); err != nil {
		t.Fatal(err)
	}
	if err := c.Use(fresh, now.Unix(), now); err != ErrReplay {
		t.Fatalf("replay: %v", err)
	}
	c.Close()
	f, _ := os.OpenFile(filepath.Join(dir, "nonces"), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("17000000") // torn line, as after a crash mid-write
	f.Close()
	// 20 s later "old" (ts now-50) has left the 60 s window; "fresh" has not.
	later := now.Add(20 * time.Second)
	c, err = OpenNonceCache(sd, time.Minute, later, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Use(fresh, now.Unix(), later); err != ErrReplay {
		t.Fatalf("fresh nonce forgotten across restart: %v", err)
	}
	if _, ok := c.seen[old]; ok {
		t.Fatal("expired nonce kept")
	}
	b, _ := os.ReadFile(filepath.Join(dir, "nonces"))
	if strings.Count(string(b), "\n") != 1 {
		t.Fatalf("not compacted on load: %q", b)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "nonces")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("nonce file mode %v", fi.Mode())
	}
}

// TestNonceCacheForgetsExpired: expired nonces leave memory within about a
// window, not only when the cache reaches maxNonces.
func TestNonceCacheForgetsExpired(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c, err := OpenNonceCache(stateDir(t, filepath.Join(t.TempDir(), "state")), time.Minute, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 100; i++ {
		if err := c.Use(fmt.Sprintf("%032x", i), now.Unix(), now); err != nil {
			t.Fatal(err)
		}
	}
	later := now.Add(130 * time.Second)
	if err := c.Use(strings.Repeat("f", 32), later.Unix(), later); err != nil {
		t.Fatal(err)
	}
	if n := len(c.seen); n != 1 {
		t.Fatalf("%d nonces in memory two windows later, want 1", n)
	}
}

// stateDir opens dir as the server does state_dir.
func stateDir(t *testing.T, dir string) *fsutil.Dir {
	t.Helper()
	d, err := openStateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}
