package healercheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
)

func nodeFlags(dir string) NodeFlags {
	return NodeFlags{StateDir: dir, Recent: time.Hour, Timeout: "10", IcingaCA: "/ca.crt",
		BreakerThreshold: 10, BreakerWindow: 5 * time.Minute, BreakerQuiet: 2 * time.Minute}
}

// TestNodeFlagsIcinga: --icinga-api takes the API's base as handle_worker
// does, and the /v1 it once asked for; the handler's credentials file is
// read with the handler's rules.
func TestNodeFlagsIcinga(t *testing.T) {
	dir := t.TempDir()
	for _, url := range []string{"https://icinga.example:5665", "https://icinga.example:5665/v1", "https://icinga.example:5665/v1/"} {
		f := nodeFlags(dir)
		f.IcingaAPI = url
		c, err := f.Config(fsutil.Self())
		if err != nil || c.Icinga == nil || c.Icinga.URL != "https://icinga.example:5665" || c.Icinga.CAFile != "/ca.crt" || c.Icinga.User != "" {
			t.Errorf("%s: %+v, %v", url, c.Icinga, err)
		}
	}
	creds := filepath.Join(dir, "creds")
	if err := os.WriteFile(creds, []byte("selfheal:s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := nodeFlags(dir)
	f.IcingaAPI, f.IcingaCredentials = "https://localhost:5665", creds
	c, err := f.Config(fsutil.Self())
	if err != nil || c.Icinga.User != "selfheal" || c.Icinga.Password != "s3cret" {
		t.Errorf("credentials: %+v, %v", c.Icinga, err)
	}
	for _, bad := range []struct{ api, creds, want string }{
		{"http://localhost:5665", "", "want an https:// URL"},
		{"", creds, "--icinga-credentials without --icinga-api"},
	} {
		f := nodeFlags(dir)
		f.IcingaAPI, f.IcingaCredentials = bad.api, bad.creds
		if _, err := f.Config(fsutil.Self()); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q %q: %v, want %q", bad.api, bad.creds, err, bad.want)
		}
	}
}
