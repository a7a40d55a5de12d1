package rig

import (
	"context"

	"github.com/selfheal/selfheal/internal/protocol"
)

// FleetKeyArgs is handle_worker's command line for a new fleet key, the way
// the docs tell an operator to make one on the monitoring node.
func FleetKeyArgs(id, out string) []string { return []string{"genkey", "--id", id, "--out", out} }

// IssueKeyArgs is handle_worker's command line that issues agent's host key
// from the fleet key into out.
func IssueKeyArgs(fleetFile, agent, out string) []string {
	return []string{"issue-key", "--key-file", fleetFile, "--agent", agent, "--out", out}
}

// IssueKeys makes a fleet key and agent's host key with the real
// handle_worker binary, the documented way, and loads both.
func IssueKeys(ctx context.Context, handler, fleetID, agent, fleetOut, hostOut string) (fleet, host protocol.Key, err error) {
	if _, err = Run(ctx, handler, FleetKeyArgs(fleetID, fleetOut)...); err != nil {
		return
	}
	if _, err = Run(ctx, handler, IssueKeyArgs(fleetOut, agent, hostOut)...); err != nil {
		return
	}
	if fleet, err = protocol.LoadKeyFile(fleetOut); err != nil {
		return
	}
	host, err = protocol.LoadKeyFile(hostOut)
	return
}

// IssueHostKey issues agent's host key from an existing fleet key file into
// hostOut: with the real handle_worker binary (handler set), or in-process.
func IssueHostKey(ctx context.Context, handler, fleetFile, agent, hostOut string) (fleet, host protocol.Key, err error) {
	if fleet, err = protocol.LoadKeyFile(fleetFile); err != nil {
		return
	}
	if handler != "" {
		if _, err = Run(ctx, handler, IssueKeyArgs(fleetFile, agent, hostOut)...); err != nil {
			return
		}
		host, err = protocol.LoadKeyFile(hostOut)
		return
	}
	if host, err = fleet.ForAgent(agent); err != nil {
		return
	}
	err = protocol.WriteKeyFile(hostOut, host)
	return
}

// NewKeys makes the same two key files in-process (what genkey and
// issue-key do, without the binaries), mode 0600, never overwriting.
func NewKeys(fleetID, agent, fleetOut, hostOut string) (fleet, host protocol.Key, err error) {
	if fleet, err = protocol.GenerateFleetKey(fleetID); err != nil {
		return
	}
	if host, err = fleet.ForAgent(agent); err != nil {
		return
	}
	if err = protocol.WriteKeyFile(fleetOut, fleet); err != nil {
		return
	}
	err = protocol.WriteKeyFile(hostOut, host)
	return
}
