package lab

// One switch's forwarding time, as the kernel sees it: the failover
// benchmark samples, before the failure, how long the switch upstream of
// the failed link takes from a DATA frame's arrival on any of its ports to
// its departure through the port that will fail (the kernel's timestamps on
// both, matched by session and sequence). Beside repair_us it shows what
// the machine adds: a repair leaves that switch with the first packet it
// forwards after its reroute, about one such hop after the reroute.

import (
	"slices"
	"sync"
	"time"

	"github.com/sparsecast/sparsecast/dataplane/afpacket"
)

// hopWatch samples a switch's forwarding time; see the file comment.
type hopWatch struct {
	watchSockets
	out     []bool // per socket: its departures are the ones timed
	udpPort uint16

	mu  sync.Mutex
	in  map[uint64]int64 // session<<32|sequence -> first arrival (CLOCK_REALTIME ns)
	lat []time.Duration
}

// hopKeys bounds the arrivals a window remembers.
const hopKeys = 1 << 16

// watchHop opens a packet socket on each of ports in namespace ns, closed
// by a filter until SampleLater; departures count on out only.
func watchHop(ns string, ports []string, out string, udpPort uint16) (*hopWatch, error) {
	h := &hopWatch{watchSockets: newWatchSockets(), udpPort: udpPort, in: map[uint64]int64{}}
	err := afpacket.InNetns(ns, func() error {
		for _, name := range ports {
			fd, err := openWatchSocket(name)
			if err != nil {
				return err
			}
			h.fds, h.out = append(h.fds, fd), append(h.out, name == out)
			if err := setFilter(fd, false); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		h.closeFds()
		return nil, err
	}
	for i := range h.fds {
		h.wg.Add(1)
		go h.read(i)
	}
	return h, nil
}

// SampleLater lets frames through for d, starting wait from now, then
// closes the sockets again; Close ends it early.
func (h *hopWatch) SampleLater(wait, d time.Duration) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		select {
		case <-time.After(wait):
		case <-h.stop:
			return
		}
		for _, fd := range h.fds {
			_ = setFilter(fd, true)
		}
		select {
		case <-time.After(d):
		case <-h.stop:
		}
		for _, fd := range h.fds {
			_ = setFilter(fd, false)
		}
	}()
}

// Latencies returns the forwarding times sampled so far, sorted.
func (h *hopWatch) Latencies() []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := slices.Clone(h.lat)
	slices.Sort(l)
	return l
}

func (h *hopWatch) read(i int) {
	defer h.wg.Done()
	h.readLoop(h.fds[i], func(f []byte, out bool, ts int64) {
		smh, ok := smhData(f, h.udpPort)
		if !ok {
			return
		}
		key := uint64(smh.SessionID())<<32 | uint64(smh.Sequence())
		switch {
		case !out:
			h.arrived(key, ts)
		case h.out[i]:
			h.departed(key, ts)
		}
	})
}

// arrived keeps a frame's first arrival.
func (h *hopWatch) arrived(key uint64, t int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, seen := h.in[key]; !seen && len(h.in) < hopKeys {
		h.in[key] = t
	}
}

// departed times a frame whose arrival was seen, once.
func (h *hopWatch) departed(key uint64, t int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if a, ok := h.in[key]; ok && t >= a {
		h.lat = append(h.lat, time.Duration(t-a))
		delete(h.in, key)
	}
}
