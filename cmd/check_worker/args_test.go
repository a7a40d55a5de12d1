package main

import (
	"io"
	"math/rand"
	"reflect"
	"testing"

	"github.com/selfheal/selfheal/internal/cli"
)

func kongParse(args []string) (grammar, error) {
	var g grammar
	app := cli.App{Name: "check_worker", Version: "v", Stdout: io.Discard, Stderr: io.Discard, InfoExit: cli.Unknown}
	_, err := cli.Parse(app, &g, args)
	return g, err
}

// TestFastParseMatchesKong: whatever fastParse accepts, kong parses to the
// identical grammar; what it declines is left to kong.
func TestFastParseMatchesKong(t *testing.T) {
	corpus := [][]string{
		{},
		{"-H", "127.0.0.1", "-p", "8080"},
		{"--hostname", "w1", "--port=9000", "--path", "/health", "--ssl"},
		{"-H", "w1", "-S", "-t", "5:unknown", "-w", "0.5", "-c", "~:2"},
		{"-u", "http://w1:8080/status", "-v", "-vv", "--verbose"},
		{"--unix-socket", "/run/w.sock", "--plain", "--insecure"},
		{"-H", "w1", "--metric", "queue_depth,warn=100,crit=500", "--metric=lag,crit=@~:0"},
		{"-H", "w1", "--header", "Authorization: Bearer x=y", "--header=X-A: b"},
		{"-H", "w1", "--max-age", "60,300", "--min-uptime", "5m", "--ca-file", "a", "--cert-file", "b", "--key-file", "c"},
		{"-H", "a", "-H", "b"},
		{"-H", "w1", "--path="},
		{"-H", "w1", "-vvv"},
		// Declined by fastParse, so kong's answer stands:
		{"-h"}, {"--help"}, {"-V"}, {"--version"}, {"--bogus"}, {"-H"}, {"-H", "-p"}, {"pos"},
		{"-p", "010"}, {"-p", "+1"}, {"-p", "x"}, {"--ssl=true"}, {"-t", "-1"}, {"-Hw1"}, {"--", "-H"},
		{"-w", "-5:"}, {"--verbose=2"},
	}
	for _, args := range corpus {
		compareParsers(t, args)
	}
	// Random mixes of valid and odd tokens, fixed seed: reproducible.
	tokens := []string{"-H", "w1", "-p", "80", "--path", "/s", "-S", "--ssl", "-u", "/x", "-t", "3", "-w", "1",
		"-c", "2", "--metric", "m,crit=1", "--header", "A: b", "--plain", "--insecure", "-v", "-vv", "--max-age",
		",5", "--min-uptime", "1s", "--ca-file", "f", "-h", "-V", "--nope", "=", "--port=1", "--hostname=h", "-", ""}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 3000; i++ {
		args := make([]string, rng.Intn(7))
		for j := range args {
			args[j] = tokens[rng.Intn(len(tokens))]
		}
		compareParsers(t, args)
	}
}

func compareParsers(t *testing.T, args []string) {
	t.Helper()
	var fast grammar
	if !fastParse(args, &fast) {
		return
	}
	slow, err := kongParse(args)
	if err != nil {
		t.Errorf("%q: fastParse accepted what kong rejects: %v", args, err)
		return
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Errorf("%q:\nfast %+v\nkong %+v", args, fast, slow)
	}
}
