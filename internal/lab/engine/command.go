package engine

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// ErrNotFIFO is returned when the command file is missing or is not a FIFO:
// writing to a plain file would go unread, so the lab refuses.
var ErrNotFIFO = errors.New("engine: command file is not a FIFO")

// ErrNoReader is returned when the FIFO has no reader (the engine is not
// running): a blocking open would hang forever.
var ErrNoReader = errors.New("engine: command FIFO has no reader")

// SubmitCommand writes one external command line, "[now] COMMAND;args", to
// the instance's command FIFO.
func (in *Instance) SubmitCommand(command string) error {
	return WriteCommand(in.CommandFile, time.Now(), command)
}

// WriteCommand writes "[ts] command\n" to the FIFO at path. It opens the
// FIFO non-blocking, refuses anything that is not a FIFO, and keeps the line
// under 4096 bytes so that the write is atomic. The timestamp carries
// nanoseconds: Icinga 2 drops a passive result stamped with a whole second
// if an active check ran later in that second; Nagios ignores the fraction.
func WriteCommand(path string, ts time.Time, command string) error {
	if strings.ContainsAny(command, "\n\r") {
		return errors.New("engine: command contains a newline")
	}
	if !isFIFO(path) {
		return fmt.Errorf("%w: %s", ErrNotFIFO, path)
	}
	line := fmt.Sprintf("[%d.%09d] %s\n", ts.Unix(), ts.Nanosecond(), command)
	if len(line) >= 4096 {
		return fmt.Errorf("engine: command of %d bytes is too long for an atomic write", len(line))
	}
	fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errors.Is(err, syscall.ENXIO) {
		return fmt.Errorf("%w: %s", ErrNoReader, path)
	}
	if err != nil {
		return fmt.Errorf("engine: open %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	// A full pipe with a stuck reader must not hang the caller.
	_ = f.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := f.WriteString(line); err != nil {
		return fmt.Errorf("engine: write %s: %w", path, err)
	}
	return nil
}

func isFIFO(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&os.ModeNamedPipe != 0
}
