package rig

import (
	"context"

	"github.com/selfheal/selfheal/internal/protocol"
)

// GenKeyArgs is worker_listener's command line for a new key file, the way
// the docs tell an operator to make one.
func GenKeyArgs(id, out string) []string { return []string{"genkey", "--id", id, "--out", out} }

// GenKey makes a key file with the real worker_listener binary and loads it.
func GenKey(ctx context.Context, bin, id, out string) (protocol.Key, error) {
	if _, err := Run(ctx, bin, GenKeyArgs(id, out)...); err != nil {
		return protocol.Key{}, err
	}
	return protocol.LoadKeyFile(out)
}

// NewKey makes a key file in-process (what genkey does, without the binary)
// with mode 0600, never overwriting one.
func NewKey(id, out string) (protocol.Key, error) {
	k, err := protocol.GenerateKey(id)
	if err != nil {
		return protocol.Key{}, err
	}
	if err := protocol.WriteKeyFile(out, k); err != nil {
		return protocol.Key{}, err
	}
	return k, nil
}
