package icingaapi

import (
	"context"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
)

// TestSessionFileResumes: a second client (a new handler process) with
// the same SessionFile resumes the first one's TLS session; a client
// without it, or with a file planted for another server name, does not.
func TestSessionFileResumes(t *testing.T) {
	var mu sync.Mutex
	var resumed []bool
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		resumed = append(resumed, r.TLS.DidResume)
		mu.Unlock()
		io.WriteString(w, `{"results":[{"user":"selfheal","permissions":[],"version":"r2.13.6-1"}]}`)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	sessions := SessionFile{Trust: fsutil.User(os.Getuid()), Dir: state}
	ping := func(cfg Config) bool {
		t.Helper()
		cfg.URL, cfg.CAFile, cfg.User, cfg.Password, cfg.Timeout = srv.URL, ca, "selfheal", "pw", 5*time.Second
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		return resumed[len(resumed)-1]
	}
	if ping(Config{Sessions: sessions}) {
		t.Fatal("the first connection resumed a session")
	}
	if fi, err := os.Stat(filepath.Join(state, "icinga-tls-session")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("session file: %v %v", fi, err)
	}
	if !ping(Config{Sessions: sessions}) {
		t.Fatal("a new client with the session file did not resume")
	}
	if ping(Config{}) {
		t.Fatal("a client without the session file resumed")
	}
	if ping(Config{Sessions: SessionFile{Trust: fsutil.User(os.Getuid()), Dir: state, Name: "other"}}) {
		t.Fatal("resumed from a file that was never written")
	}
	// A group-writable directory fails the trust rule: no session from it.
	if err := os.Chmod(state, 0o770); err != nil {
		t.Fatal(err)
	}
	if ping(Config{Sessions: sessions}) {
		t.Fatal("resumed a session kept in an untrusted directory")
	}
}
