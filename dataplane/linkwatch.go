// Carrier watcher. In: the kernel's link notifications (rtnetlink
// RTMGRP_LINK) for the interfaces behind the switch's ports. Out: LinkChange
// verdicts: down when the interface is administratively down or has lost its
// carrier (`ip link set down` on either end of a veth), up when both are back.
// Netlink tells within microseconds of the change, far sooner than any probe.
package dataplane

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sparsecast/sparsecast/headers"
)

// ifaceNamer is implemented by ports bound to a kernel interface.
type ifaceNamer interface{ Interface() string }

// WatchCarrier follows link notifications until ctx ends. Ports that are not
// kernel interfaces are skipped; it returns at once if there are none.
func (s *Switch) WatchCarrier(ctx context.Context) error {
	byIndex := map[int32]uint8{}
	for i, p := range s.ports {
		n, ok := p.(ifaceNamer)
		if !ok {
			continue
		}
		ifi, err := net.InterfaceByName(n.Interface())
		if err != nil {
			return fmt.Errorf("port %s: %w", p.Name(), err)
		}
		byIndex[int32(ifi.Index)] = uint8(i)
	}
	if len(byIndex) == 0 {
		return nil
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_LINK}); err != nil {
		return fmt.Errorf("netlink bind: %w", err)
	}
	// Interfaces that are already down at start count as failed links.
	for idx, p := range byIndex {
		if ifi, err := net.InterfaceByIndex(int(idx)); err == nil && (ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagRunning == 0) {
			s.LinkChange(p, headers.LinkDown, "carrier", 0, MonotonicNs())
		}
	}
	buf := make([]byte, 1<<16)
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for ctx.Err() == nil {
		if n, err := unix.Poll(pfd, 100); err != nil || n == 0 {
			continue
		}
		n, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
		if err != nil {
			continue // ENOBUFS (we fell behind) or EAGAIN: read on
		}
		now := MonotonicNs()
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			continue
		}
		for _, m := range msgs {
			if m.Header.Type != unix.RTM_NEWLINK && m.Header.Type != unix.RTM_DELLINK {
				continue
			}
			// struct ifinfomsg: family u8, pad u8, type u16, index s32,
			// flags u32, change u32 (host byte order).
			if len(m.Data) < 16 {
				continue
			}
			idx := int32(binary.NativeEndian.Uint32(m.Data[4:]))
			flags := binary.NativeEndian.Uint32(m.Data[8:])
			p, ok := byIndex[idx]
			if !ok {
				continue
			}
			up := m.Header.Type == unix.RTM_NEWLINK && linkUp(flags, flags&unix.IFF_LOWER_UP != 0)
			state := uint8(headers.LinkDown)
			if up {
				state = headers.LinkUp
			}
			s.LinkChange(p, state, "carrier", 0, now)
		}
	}
	return nil
}

// linkUp: administratively up and with a carrier.
func linkUp(flags uint32, lower bool) bool { return flags&unix.IFF_UP != 0 && lower }
