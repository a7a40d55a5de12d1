package engine

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// APIConfig describes a single Icinga 2 that is spoken to through its REST
// API only, as issue 12 asks: the api feature on and none of the
// deprecated ones (no command pipe, no status.dat, no compat log), so its
// log shows whether anything it runs is deprecated.
type APIConfig struct {
	// Binary is icinga2; empty finds it as New does.
	Binary string
	// NodeName is the endpoint's name and its certificate's CN; empty is
	// "lab-api". Clients verify the server certificate against it.
	NodeName string
	// ObjectFiles, Objects, Resources and Constants are as in Config. The
	// instance also gets the string constants NodeName and ZoneName.
	ObjectFiles []string
	Objects     string
	Resources   map[string]string
	Constants   map[string]string
	// Users are the ApiUser objects under test (the lab adds its own
	// "lab" user, objects/query/* only, to poll with).
	Users []APIUser
	// ClientCNs are client certificates to make, signed by the instance's
	// CA (see APIInstance.ClientCert), for ApiUsers with a ClientCN.
	ClientCNs []string
	// Stderr receives the engine's stdout and stderr; nil writes them to
	// ConsoleLog in the instance directory (Icinga logs there before its
	// FileLogger is active, e.g. config warnings).
	Stderr *os.File
}

// APIUser is one ApiUser object.
type APIUser struct {
	Name string
	// Password for basic auth; empty leaves it unset (certificate only).
	Password string
	// ClientCN authenticates a client certificate with that CN.
	ClientCN string
	// Permissions are the entries of the permissions array, written
	// verbatim as Icinga 2 expressions: a string literal
	// ("\"actions/add-comment\"") or a dictionary with a filter lambda
	// ("{ permission = \"actions/add-comment\"; filter = {{ ... }} }").
	Permissions []string
}

// APIInstance is a prepared (and possibly running) single Icinga 2 with
// the api feature. Its embedded ZoneEndpoint queries the API as the lab's
// own user (ServiceAttrs, MainLogLines); CommandFile, StatusFile and
// LogFile are empty: there is no pipe, status.dat or compat log.
//
//	a, err := engine.NewAPI(engine.APIConfig{Objects: objs, Users: users})
//	defer a.Close()
//	err = a.Start(ctx)
//	// a.URL, a.CAFile, a.NodeName: what a client needs
type APIInstance struct {
	*ZoneEndpoint
	// URL is https://127.0.0.1:<port>, a port from the kernel.
	URL string
	// CAFile is the CA that signed the server certificate (what
	// /var/lib/icinga2/certs/ca.crt is on a real node).
	CAFile string
	// NodeName is the name in the server certificate.
	NodeName string
	// ConsoleLog holds the engine's stdout and stderr when
	// APIConfig.Stderr is nil.
	ConsoleLog string

	console *os.File
	pki     string
	clients map[string]bool
}

// labUser is the lab's own ApiUser, for polling.
const labUser = "lab"

// NewAPI creates the instance's directory, a CA, the server certificate
// and the client certificates (icinga2 pki), and the config. It starts
// nothing.
func NewAPI(cfg APIConfig) (_ *APIInstance, err error) {
	if cfg.NodeName == "" {
		cfg.NodeName = "lab-api"
	}
	names := append([]string{cfg.NodeName}, cfg.ClientCNs...)
	seen := map[string]bool{}
	for _, n := range names {
		// Each name is a file name in pki/ too.
		if n == "" || n == "." || n == ".." || n == "ca" || strings.ContainsAny(n, "/\x00") || seen[n] {
			return nil, fmt.Errorf("engine: bad or repeated certificate name %q", n)
		}
		seen[n] = true
	}
	for _, u := range cfg.Users {
		if u.Name == labUser {
			return nil, fmt.Errorf("engine: ApiUser %q is the lab's own", labUser)
		}
	}
	for _, k := range []string{"NodeName", "ZoneName"} {
		if _, ok := cfg.Resources[k]; ok {
			return nil, fmt.Errorf("engine: resource %s is set by the API instance", k)
		}
		if _, ok := cfg.Constants[k]; ok {
			return nil, fmt.Errorf("engine: constant %s is set by the API instance", k)
		}
	}
	bin := cfg.Binary
	if bin == "" {
		if bin, err = findBinary(string(Icinga2)); err != nil {
			return nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	password, err := randomHex(16)
	if err != nil {
		return nil, err
	}
	res := map[string]string{"NodeName": cfg.NodeName, "ZoneName": "master"}
	// ${api_url} and ${api_ca} in a resource are what a client needs, known
	// only here (the port) and once the certificates are made (the CA).
	url := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for k, v := range cfg.Resources {
		res[k] = strings.NewReplacer("${api_url}", url, "${api_ca}", "${dir}/var/lib/certs/ca.crt").Replace(v)
	}
	inst, err := New(Config{
		Kind:        Icinga2,
		Binary:      bin,
		ObjectFiles: cfg.ObjectFiles,
		Objects:     apiObjects(cfg, port, password) + cfg.Objects,
		Resources:   res,
		Constants:   cfg.Constants,
		Stderr:      cfg.Stderr,
	})
	if err != nil {
		return nil, err
	}
	a := &APIInstance{
		ZoneEndpoint: &ZoneEndpoint{Instance: inst, Name: cfg.NodeName, APIPort: port, user: labUser, password: password},
		URL:          url,
		NodeName:     cfg.NodeName,
		pki:          filepath.Join(inst.Dir, "pki"),
		clients:      map[string]bool{},
	}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if err := makeCerts(bin, a.pki, names); err != nil {
		return nil, err
	}
	for _, n := range cfg.ClientCNs {
		a.clients[n] = true
	}
	certs := filepath.Join(inst.icingaDataDir(), "certs")
	a.CAFile = filepath.Join(certs, "ca.crt")
	for src, dst := range map[string]string{
		filepath.Join(a.pki, cfg.NodeName+".crt"): filepath.Join(certs, cfg.NodeName+".crt"),
		filepath.Join(a.pki, cfg.NodeName+".key"): filepath.Join(certs, cfg.NodeName+".key"),
		filepath.Join(a.pki, "ca", "ca.crt"):      a.CAFile,
	} {
		if err := copyFile(src, dst); err != nil {
			return nil, err
		}
	}
	ca, err := os.ReadFile(a.CAFile)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return nil, errors.New("engine: icinga2 pki wrote no usable CA certificate")
	}
	a.client = &http.Client{
		Timeout: 5 * time.Second,
		// A bare Transport ignores proxy variables: the API is on loopback.
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: cfg.NodeName, MinVersion: tls.VersionTLS12},
		},
	}
	if err := a.writeMainConfig(); err != nil {
		return nil, err
	}
	if cfg.Stderr == nil {
		a.ConsoleLog = filepath.Join(inst.Dir, "var", "log", "console.log")
		if a.console, err = os.Create(a.ConsoleLog); err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
		inst.cfg.Stderr = a.console
	}
	// No FIFO or status.dat to wait for: ready once the API answers the
	// lab's user.
	inst.ready = func(ctx context.Context) (bool, error) {
		var res []apiObject
		return a.apiGet(ctx, "/v1", nil, &res) == nil, nil
	}
	return a, nil
}

// apiObjects is the instance's ApiListener, Endpoint, Zone and ApiUsers.
func apiObjects(cfg APIConfig, port int, labPassword string) string {
	var b strings.Builder
	b.WriteString("/* Generated by engine: a single Icinga 2 with the api feature. */\n")
	fmt.Fprintf(&b, `object ApiListener "api" {
  bind_host = "127.0.0.1"
  bind_port = %d
  accept_config = false
  accept_commands = false
}
object Endpoint NodeName { }
object Zone ZoneName { endpoints = [ NodeName ] }
object ApiUser %s {
  password = %s
  permissions = [ "objects/query/*" ]
}
`, port, quoteIcinga(labUser), quoteIcinga(labPassword))
	b.WriteString(apiUsers(cfg.Users))
	return b.String()
}

// apiUsers is the ApiUser objects of users.
func apiUsers(users []APIUser) string {
	var b strings.Builder
	for _, u := range users {
		fmt.Fprintf(&b, "object ApiUser %s {\n", quoteIcinga(u.Name))
		if u.Password != "" {
			fmt.Fprintf(&b, "  password = %s\n", quoteIcinga(u.Password))
		}
		if u.ClientCN != "" {
			fmt.Fprintf(&b, "  client_cn = %s\n", quoteIcinga(u.ClientCN))
		}
		fmt.Fprintf(&b, "  permissions = [\n")
		for _, p := range u.Permissions {
			fmt.Fprintf(&b, "    %s,\n", p)
		}
		b.WriteString("  ]\n}\n")
	}
	return b.String()
}

// writeMainConfig replaces the icinga2.conf that New wrote (with the pipe,
// status.dat and compat log) by one with only what this instance needs:
// the checker, the main log and the API. Notifications are not needed.
func (a *APIInstance) writeMainConfig() error {
	in := a.Instance
	in.CommandFile, in.StatusFile, in.LogFile = "", "", ""
	etc := filepath.Dir(in.MainConfig)
	var b strings.Builder
	fmt.Fprintf(&b, `/* Generated by engine: a throwaway Icinga 2 spoken to through its REST API only.
 * No deprecated feature: no ExternalCommandListener, StatusDataWriter or CompatLogger. */
include "constants.conf"
include <itl>

object CheckerComponent "checker" { }

object FileLogger "main-log" {
  path = %s
  severity = "notice"
}
`, quoteIcinga(in.MainLog))
	for _, f := range in.cfg.ObjectFiles {
		fmt.Fprintf(&b, "include %s\n", quoteIcinga(f))
	}
	// New always wrote the API objects there.
	fmt.Fprintf(&b, "include %s\n", quoteIcinga(filepath.Join(etc, "lab-objects.conf")))
	return writeFile(in.MainConfig, b.String())
}

// ClientCert returns the certificate and key files made for cn (one of
// APIConfig.ClientCNs), signed by the instance's CA.
func (a *APIInstance) ClientCert(cn string) (cert, key string, err error) {
	if !a.clients[cn] {
		return "", "", fmt.Errorf("engine: no client certificate for %q", cn)
	}
	return filepath.Join(a.pki, cn+".crt"), filepath.Join(a.pki, cn+".key"), nil
}

// Deprecations returns every line of the main log and the console log
// that mentions a deprecation (case-insensitive), e.g. Icinga's "This
// feature is DEPRECATED" at the start of a deprecated feature.
func (a *APIInstance) Deprecations() ([]string, error) {
	return deprecationLines(a.MainLog, a.ConsoleLog)
}

func deprecationLines(paths ...string) ([]string, error) {
	var out []string
	for _, p := range paths {
		if p == "" {
			continue
		}
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			if strings.Contains(strings.ToLower(sc.Text()), "deprecated") {
				out = append(out, sc.Text())
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("engine: %s: %w", p, err)
		}
	}
	return out, nil
}

// Close stops the engine and removes its directory.
func (a *APIInstance) Close() error {
	err := a.Instance.Close()
	if a.client != nil {
		a.client.CloseIdleConnections()
	}
	if a.console != nil {
		err = errors.Join(err, a.console.Close())
	}
	return err
}
