package engine

import (
	"os"
	"strconv"

	"github.com/selfheal/selfheal/internal/proc"
)

// process identifies a process by pid and start time (field 22 of
// /proc/PID/stat), so that a recycled pid is never mistaken for it.
type process struct {
	pid   int
	start uint64
}

// descendants lists every live descendant of pid. Nagios 4's workers put
// themselves and the commands they run into process groups of their own,
// so killing the engine's group is not enough.
func descendants(root int) []process {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]process{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := proc.ReadStat(pid); err == nil {
			children[st.PPID] = append(children[st.PPID], process{pid, st.Start})
		}
	}
	var out []process
	queue := []int{root}
	for len(queue) > 0 && len(out) < 10000 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c.pid)
		}
	}
	return out
}

// alive reports whether p still runs (a zombie does not count). Unlike
// proc.Alive it also checks the start time: lab.Stop records descendants
// before SIGTERM and checks them after, long enough for a pid to recycle.
func (p process) alive() bool {
	st, err := proc.ReadStat(p.pid)
	return err == nil && st.Start == p.start && st.State != 'Z'
}
