// Package systemd holds the test of the packages under a real systemd as
// PID 1: a Debian 12 container (mmdebstrap, systemd-nspawn) that follows
// the README's systemd path. See systemd_test.go and docs/packaging.md.
package systemd
