package handler

// The trust rule (fsutil.Trust.Check, sshd's StrictModes) for what the
// handler loads and writes as the nagios user: the key file, the state
// directory and the log file must be owned by root or that user and be
// reached through directories no one else can write. The command file is
// not judged by it (see CommandFile.Write): it is Nagios' FIFO, writable
// by a group by design. docs/event-handler.md, "What it trusts", has the
// list and the rule for each.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/nodestate"
	"github.com/selfheal/selfheal/internal/protocol"
)

// refused makes a Trust.OpenDir error a TrustError when it is the rule's.
func refused(what, path string, err error) error {
	var ps fsutil.Problems
	if errors.As(err, &ps) {
		return &nodestate.TrustError{What: what, Path: path, Problems: ps}
	}
	return err
}

// OpenLog opens the --log-file for appending, creating it 0640, once the
// trust rule passes it as a data file of t's user: through its checked
// directory (openat), never through a symlink, only a regular file.
func OpenLog(t fsutil.Trust, path string) (*os.File, error) {
	if ps := t.Check(path, fsutil.DataFile|fsutil.Optional); len(ps) > 0 {
		return nil, &nodestate.TrustError{What: "log file", Path: path, Problems: ps}
	}
	dir := filepath.Dir(path)
	d, err := t.OpenDir(dir, fsutil.DataDir)
	if err != nil {
		return nil, refused("log file directory", dir, err)
	}
	defer d.Close()
	return d.OpenFile(filepath.Base(path), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
}

// Files is what one configuration of the handler trusts; "" is not used.
type Files struct {
	KeyFile, StateDir, LogFile, CommandFile string
}

// Finding is one problem of CheckFiles, with what the path is for ("key file,
// state directory" when one problem stands in the way of both).
type Finding struct {
	What string
	fsutil.Problem
}

// CheckFiles judges every file of f as the handler would use it, as t's user,
// and returns every problem at once (nil when all pass), so that an admin
// fixes them in one pass: the rule's problems with their fixes, and what
// would stop the file being used (a key that does not load, a missing
// state directory, a symlink the handler will not follow, a command file
// that is not a FIFO).
func CheckFiles(t fsutil.Trust, f Files) []Finding {
	var out []Finding
	add := func(what string, ps ...fsutil.Problem) {
		for _, p := range ps {
			i := slices.IndexFunc(out, func(f Finding) bool { return f.Path == p.Path && f.Why == p.Why })
			switch {
			case i < 0:
				out = append(out, Finding{What: what, Problem: p})
			case !strings.Contains(out[i].What, what):
				out[i].What += ", " + what
			}
		}
	}
	if f.KeyFile != "" {
		ps := t.Check(f.KeyFile, fsutil.SecretFile)
		add("key file", ps...)
		if len(ps) == 0 {
			if _, err := protocol.LoadKeyFile(f.KeyFile); err != nil {
				add("key file", fsutil.Problem{Path: f.KeyFile, Why: "cannot be used: " + err.Error()})
			}
		}
	}
	if f.StateDir != "" {
		ps := t.Check(f.StateDir, fsutil.PrivateDir|fsutil.Optional)
		add("state directory", ps...)
		fi, err := os.Lstat(f.StateDir)
		switch {
		case errors.Is(err, fs.ErrNotExist) && !saysMissing(ps):
			add("state directory", fsutil.Problem{Path: f.StateDir,
				Why: "does not exist (handle_worker does not create it; without it no advisory record is kept)",
				Fix: "install -d -m 0700 -o " + owner(t) + " " + fsutil.Quote(f.StateDir)})
		case err == nil && fi.Mode()&fs.ModeSymlink != 0:
			add("state directory", symlinkProblem(f.StateDir, "opens its state directory"))
		}
	}
	if f.LogFile != "" {
		add("log file", t.Check(f.LogFile, fsutil.DataFile|fsutil.Optional)...)
		if fi, err := os.Lstat(f.LogFile); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			add("log file", symlinkProblem(f.LogFile, "writes its log"))
		}
	}
	if f.CommandFile != "" {
		if p, ok := commandFileProblem(f.CommandFile); !ok {
			add("command file", p)
		}
	}
	return out
}

// saysMissing: the rule already says where the path is missing (in a
// directory others can create it in), which is the better advice.
func saysMissing(ps fsutil.Problems) bool {
	for _, p := range ps {
		if strings.HasPrefix(p.Why, "does not exist") {
			return true
		}
	}
	return false
}

// commandFileProblem is what Write would refuse in the command file
// itself. It does not open the FIFO: a writer's open and close is an
// event to the Nagios reading it, and check must change nothing.
func commandFileProblem(path string) (fsutil.Problem, bool) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fsutil.Problem{Path: path, Why: "does not exist: is Nagios running with check_external_commands=1, and is this its command_file?"}, false
	case err != nil:
		return fsutil.Problem{Path: path, Why: "cannot be examined: " + err.Error()}, false
	case fi.Mode()&fs.ModeSymlink != 0:
		return symlinkProblem(path, "writes to the command file"), false
	case fi.Mode()&fs.ModeNamedPipe == 0:
		return fsutil.Problem{Path: path, Why: fmt.Sprintf("is not a FIFO (mode %s): pass Nagios' command_file", fi.Mode())}, false
	}
	return fsutil.Problem{}, true
}

// symlinkProblem: the rule judged the symlink's target, but the handler
// uses the name itself (O_NOFOLLOW), so it would refuse it.
func symlinkProblem(path, how string) fsutil.Problem {
	why := "is a symlink"
	if target, err := os.Readlink(path); err == nil {
		why += " to " + target
	}
	return fsutil.Problem{Path: path, Why: why + ", which the handler will not follow (it " + how + " with O_NOFOLLOW): give the path of the file itself"}
}

// owner is the chown/install -o argument for t's user.
func owner(t fsutil.Trust) string {
	switch {
	case t.UID == 0:
		return "root"
	case t.Name != "":
		return t.Name
	}
	return strconv.Itoa(t.UID)
}

// maxStatusFile bounds the read of status.dat (a fleet's is a few MiB).
const maxStatusFile = 256 << 20

// ReadStatusFile reads Nagios' status.dat (only the blocks of hosts, when
// given). It can hold a restart back, name the comments the handler
// deletes, and (in reevaluate) confirm a held fault is still CRITICAL, so
// it must be Nagios' own: a regular file, not a symlink, owned by root or
// t's user, not writable by others. A group may write it, as the command
// file: Nagios' group can already submit any check result through that.
func ReadStatusFile(t fsutil.Trust, path string, hosts ...string) (*nagios.StatusData, error) {
	b, err := readNagiosFile(t, "status file", path)
	if err != nil {
		return nil, err
	}
	return nagios.ReadStatusData(bytes.NewReader(b), hosts...)
}

// readNagiosFile reads a file Nagios owns (status.dat, nagios.cfg) under
// ReadStatusFile's rule; what names it in messages.
func readNagiosFile(t fsutil.Trust, what, path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s %s refused: not a regular file", what, fsutil.Quote(path))
	case st == nil || st.Uid != 0 && int(st.Uid) != t.UID:
		return nil, fmt.Errorf("%s %s refused: not owned by root or the user the handler runs as (uid %d)", what, fsutil.Quote(path), t.UID)
	case fi.Mode().Perm()&0o002 != 0:
		return nil, fmt.Errorf("%s %s refused: writable by others (mode %04o)", what, fsutil.Quote(path), fi.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxStatusFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(b) > maxStatusFile {
		return nil, fmt.Errorf("%s %s: larger than %d bytes", what, fsutil.Quote(path), maxStatusFile)
	}
	return b, nil
}
