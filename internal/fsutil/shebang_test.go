package fsutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInterpreter(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ content, want string }{
		{"#!/bin/sh\necho\n", "/bin/sh"},
		{"#! /usr/bin/python3 -u\n", "/usr/bin/python3"},
		{"#!\t/bin/bash\t-e\n", "/bin/bash"},
		{"#!/bin/sh", "/bin/sh"},
		{"#!relative/sh\n", "relative/sh"},
		{"\x7fELF\x02\x01\x01", ""},
		{"echo no shebang\n", ""},
		{"", ""},
		{" #!/bin/sh\n", ""},
		{"#!/opt/x/" + strings.Repeat("a", 300) + "\n", "/opt/x/" + strings.Repeat("a", 254-len("/opt/x/"))},
	} {
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, []byte(c.content), 0o755); err != nil {
			t.Fatal(err)
		}
		if got, err := Interpreter(p); err != nil || got != c.want {
			t.Errorf("Interpreter(%q) = %q, %v; want %q", c.content, got, err, c.want)
		}
	}
	if _, err := Interpreter(dir); err == nil {
		t.Error("a directory: no error")
	}
}
