// Start-up warnings for settings that work but expose more than the user
// probably meant: a metrics server reachable from other machines, a token
// file that other users can read. In: the flag values. Out: one line each
// on the log, before "ready".
package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
)

// warnExposedAddr warns when addr (HOST:PORT) listens beyond loopback: an
// empty or unspecified host (every interface) or any other address. A
// host name other than localhost is looked up as the listener would.
func warnExposedAddr(w io.Writer, what, addr string) {
	if addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return // the listener reports it
	}
	if strings.EqualFold(host, "localhost") {
		return
	}
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil && ip.IsLoopback() {
		return
	}
	if host == "" {
		host = "every interface"
	}
	fmt.Fprintf(w, "warning: %s %s listens on %s, not loopback only: anyone who can reach it can read it (use 127.0.0.1:PORT, or firewall it)\n", what, addr, host)
}

// warnTokenFileMode warns when a token file can be read or written by
// users other than its owner.
func warnTokenFileMode(w io.Writer, path string) {
	st, err := os.Stat(path)
	if err != nil {
		return // reading it reports it
	}
	if m := st.Mode().Perm(); m&0o077 != 0 {
		fmt.Fprintf(w, "warning: token file %s is mode %04o: other users can read the API token (chmod 0600 %s)\n", path, m, path)
	}
}
