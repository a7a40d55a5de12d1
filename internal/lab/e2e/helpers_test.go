package e2e

import (
	"bufio"
	"os"
	"strings"
)

// readResource reads $USERn$=value lines from a Nagios resource.cfg.
func readResource(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok {
			out[strings.Trim(k, "$")] = v
		}
	}
	return out, sc.Err()
}
