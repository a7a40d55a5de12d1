package handler

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/textsafe"
)

// pipeBuf is PIPE_BUF on Linux: a write of at most this many bytes to a
// FIFO is atomic, so our lines never interleave with another writer's.
const pipeBuf = 4096

// maxCommentText bounds a comment so that a batch stays well under pipeBuf.
const maxCommentText = 512

// CommandFile writes external commands to Nagios' (or Icinga 2's
// ExternalCommandListener's) command FIFO.
type CommandFile struct {
	Path string
}

// Command is one external command line without its timestamp and newline.
type Command string

// AddSvcComment builds ADD_SVC_COMMENT. Persistent comments survive a
// Nagios restart; we use them for "a human must look".
func AddSvcComment(host, service string, persistent bool, author, text string) Command {
	p := "0"
	if persistent {
		p = "1"
	}
	if len(text) > maxCommentText {
		text = text[:maxCommentText]
	}
	return Command("ADD_SVC_COMMENT;" + field(host) + ";" + field(service) + ";" + p + ";" + field(author) + ";" + clean(text))
}

// DelSvcComment builds DEL_SVC_COMMENT for one comment: status.dat's
// comment_id (Nagios, decimal) or the comment's name (Icinga 2's API); ok
// is false for an empty or overlong id.
func DelSvcComment(id string) (Command, bool) {
	if id == "" || len(id) > 512 || clean(id) != id {
		return "", false
	}
	return Command("DEL_SVC_COMMENT;" + field(id)), true
}

// commentText is the text of an ADD_SVC_COMMENT.
func (c Command) commentText() (string, bool) {
	s, ok := strings.CutPrefix(string(c), "ADD_SVC_COMMENT;")
	if !ok {
		return "", false
	}
	f := strings.SplitN(s, ";", 5)
	if len(f) != 5 {
		return "", false
	}
	return f[4], true
}

// ScheduleForcedSvcCheck builds SCHEDULE_FORCED_SVC_CHECK for time at.
func ScheduleForcedSvcCheck(host, service string, at time.Time) Command {
	return Command(fmt.Sprintf("SCHEDULE_FORCED_SVC_CHECK;%s;%s;%d", field(host), field(service), at.Unix()))
}

// clean removes what would end or split a command line.
func clean(s string) string { return textsafe.Line.Clean(s) }

// field additionally removes ';', the field separator (Nagios names
// cannot contain it, but a bad argument must not inject a field).
func field(s string) string { return strings.ReplaceAll(clean(s), ";", "_") }

// Write sends the commands, stamped with now, in one write(2). It refuses
// anything but a FIFO (writing to a missing path would create a regular
// file nobody reads), and a symlink: opened O_NOFOLLOW, so a link planted
// as the command file cannot turn this write into one to a file the
// nagios user can write (its nagios.cfg, its retention file). It opens
// non-blocking, so a FIFO without a reader is an immediate nagios.ErrNoReader
// instead of a hang.
//
// The trust rule of the key and the state directory (fsutil.Trust.Check)
// is not applied: the command file is group-writable by design (the web
// interface's group submits commands through it, and Nagios' own install
// makes its rw/ directory group-writable too), so it would always be
// refused. Nothing is read from it, and anyone who can replace it can
// write commands to Nagios already.
func (c CommandFile) Write(now time.Time, cmds ...Command) error {
	if len(cmds) == 0 {
		return nil
	}
	var b strings.Builder
	for _, cmd := range cmds {
		fmt.Fprintf(&b, "[%d] %s\n", now.Unix(), cmd)
	}
	if b.Len() > pipeBuf {
		return fmt.Errorf("command file: %d bytes would not be written atomically (max %d)", b.Len(), pipeBuf)
	}
	fi, err := os.Lstat(c.Path)
	if err != nil {
		return fmt.Errorf("command file: %w", err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return c.symlink()
	}
	if fi.Mode()&os.ModeNamedPipe == 0 {
		return fmt.Errorf("command file %s is not a FIFO (mode %s)", c.Path, fi.Mode())
	}
	fd, err := syscall.Open(c.Path, syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|syscall.O_NOCTTY, 0)
	if errors.Is(err, syscall.ENXIO) {
		return fmt.Errorf("command file %s: %w", c.Path, nagios.ErrNoReader)
	}
	if errors.Is(err, syscall.ELOOP) {
		return c.symlink() // swapped in since the Lstat
	}
	if err != nil {
		return fmt.Errorf("command file %s: %w", c.Path, err)
	}
	defer syscall.Close(fd)
	// Re-check what we opened: the path could have been swapped.
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		return fmt.Errorf("command file %s: not a FIFO once opened", c.Path)
	}
	data := []byte(b.String())
	n, err := syscall.Write(fd, data)
	if errors.Is(err, syscall.EAGAIN) {
		return fmt.Errorf("command file %s: pipe full, Nagios is not keeping up; commands dropped", c.Path)
	}
	if err != nil {
		return fmt.Errorf("command file %s: %w", c.Path, err)
	}
	if n != len(data) {
		return fmt.Errorf("command file %s: short write %d of %d bytes", c.Path, n, len(data))
	}
	return nil
}

// symlink is the refusal of a command file that is a symlink.
func (c CommandFile) symlink() error {
	return fmt.Errorf("command file %s %w: refusing to follow it (pass Nagios' command_file itself)", c.Path, fsutil.ErrSymlink)
}
