package nodestate

import (
	"strings"

	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/protocol"
)

// TrustError is a file the trust rule refuses: What it is for ("key
// file", "state directory", "log file"), its Path as given, and every
// problem found on the way to it, each with its fix.
type TrustError struct {
	What, Path string
	Problems   fsutil.Problems
}

// Error reads "WHAT PATH refused: PROBLEM; PROBLEM", one line (a
// Nagios comment, a log field).
func (e *TrustError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Error()
	}
	return e.What + " " + fsutil.Quote(e.Path) + " refused: " + strings.Join(parts, "; ")
}

func (e *TrustError) Unwrap() error { return e.Problems }

// LoadKey reads a key file once the trust rule passes it as a secret of
// t's user. A missing file is left to protocol.LoadKeyFile to report, as
// it always was; the rule still refuses one that others could create
// first (in /tmp).
func LoadKey(t fsutil.Trust, path string) (protocol.Key, error) {
	if ps := t.Check(path, fsutil.SecretFile|fsutil.Optional); len(ps) > 0 {
		return protocol.Key{}, &TrustError{What: "key file", Path: path, Problems: ps}
	}
	return protocol.LoadKeyFile(path)
}
