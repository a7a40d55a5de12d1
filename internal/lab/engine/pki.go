package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// toolTimeout bounds one icinga2 CLI command (pki, daemon -C). RSA 4096 key
// generation takes about a second on a quiet machine and its time is
// random; on a loaded 2-core machine (load 30-80) a 60 s bound killed it,
// so the bound only catches a hung tool.
const toolTimeout = 10 * time.Minute

// labPKI is the lab's CA and endpoint keys, made with icinga2 pki once per
// test binary and copied into every instance's pki/: key generation is by
// far the slowest step of an instance under load, and what is checked
// (the engines' TLS, a client certificate) does not depend on the keys
// being fresh. Instances of one binary thus share a CA; each is still
// reached only on its own port, by the names its own config lists.
var labPKI struct {
	mu    sync.Mutex
	ca    map[string][]byte // ca.crt and ca.key, nil until made
	certs map[string][2][]byte
}

// makeCerts writes the lab's CA into pki/ca, and a key and CA-signed
// certificate per name into pki/, making (with icinga2 pki) what this test
// binary has not made yet. DataDir points into a scratch directory, so
// nothing under /var/lib/icinga2 is read or written.
func makeCerts(bin, pki string, names []string) error {
	labPKI.mu.Lock()
	defer labPKI.mu.Unlock()
	var missing []string
	for _, n := range names {
		if _, ok := labPKI.certs[n]; !ok {
			missing = append(missing, n)
		}
	}
	if labPKI.ca == nil || len(missing) > 0 {
		if err := generateCerts(bin, missing); err != nil {
			return err
		}
	}
	if err := mkdirs(filepath.Join(pki, "ca")); err != nil {
		return err
	}
	files := map[string][]byte{}
	for f, b := range labPKI.ca {
		files[filepath.Join(pki, "ca", f)] = b
	}
	for _, n := range names {
		files[filepath.Join(pki, n+".crt")] = labPKI.certs[n][0]
		files[filepath.Join(pki, n+".key")] = labPKI.certs[n][1]
	}
	for p, b := range files {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return fmt.Errorf("engine: %w", err)
		}
	}
	return nil
}

// generateCerts makes the CA if it is not made yet and a key and
// certificate for each name, in a scratch directory it removes, and keeps
// their bytes in labPKI. The caller holds labPKI.mu.
func generateCerts(bin string, names []string) error {
	dir, err := os.MkdirTemp("", "selfheal-lab-pki-")
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	defer os.RemoveAll(dir)
	usr, grp, err := runAs()
	if err != nil {
		return err
	}
	// Without RunAsUser the pki commands switch to the nagios user.
	base := []string{"-DDataDir=" + dir, "-DRunAsUser=" + usr, "-DRunAsGroup=" + grp}
	caFiles := []string{"ca.crt", "ca.key"}
	if labPKI.ca == nil {
		if err := runTool(bin, dir, append([]string{"pki", "new-ca"}, base...)...); err != nil {
			return err
		}
		ca := map[string][]byte{}
		for _, f := range caFiles {
			b, err := os.ReadFile(filepath.Join(dir, "ca", f))
			if err != nil {
				return fmt.Errorf("engine: icinga2 pki new-ca: %w", err)
			}
			ca[f] = b
		}
		labPKI.ca = ca
		labPKI.certs = map[string][2][]byte{}
	} else {
		if err := mkdirs(filepath.Join(dir, "ca")); err != nil {
			return err
		}
		for _, f := range caFiles {
			if err := os.WriteFile(filepath.Join(dir, "ca", f), labPKI.ca[f], 0o600); err != nil {
				return fmt.Errorf("engine: %w", err)
			}
		}
	}
	// Key generation (RSA 4096) takes about a second each: in parallel.
	made := make([][2][]byte, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := filepath.Join(dir, n)
			if err := runTool(bin, dir, append([]string{"pki", "new-cert", "--cn", n, "--key", p + ".key", "--csr", p + ".csr"}, base...)...); err != nil {
				errs[i] = err
				return
			}
			if err := runTool(bin, dir, append([]string{"pki", "sign-csr", "--csr", p + ".csr", "--cert", p + ".crt"}, base...)...); err != nil {
				errs[i] = err
				return
			}
			for j, ext := range []string{".crt", ".key"} {
				b, err := os.ReadFile(p + ext)
				if err != nil {
					errs[i] = fmt.Errorf("engine: icinga2 pki: %w", err)
					return
				}
				made[i][j] = b
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i, n := range names {
		labPKI.certs[n] = made[i]
	}
	return nil
}

// runTool runs one short icinga2 CLI command, bounded by toolTimeout.
func runTool(bin, dir string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("engine: icinga2 %s: %w\n%s", strings.Join(args[:2], " "), err, out)
	}
	return nil
}
