// Package version holds the build's version, stamped by the Makefile with
// -ldflags "-X github.com/selfheal/selfheal/internal/version.Version=...".
package version

// Version is overwritten at link time; "dev" marks an unstamped build.
var Version = "dev"

// String is the one-line version every binary prints for -V/--version.
func String(binary string) string { return binary + " " + Version }
