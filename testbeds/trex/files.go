// Package trex holds the TRex testbed: the STL profile and its scapy
// layer, the NDR search and the feedback benchmark (Python, run where TRex's
// client is), the switch-under-test and TRex configs, and the TRex lab
// (lab.go) that runs them all against a switch in network namespaces.
// In: a TRex directory. Out: the lab's report on standard output.
package trex

import "embed"

// Files are the testbed's files as the lab writes them out next to its
// configs, so the sparsecast binary runs the lab from anywhere.
//
//go:embed smh.py smh_stl.py ndr.py fbbench.py dut-switch.yaml trex_cfg_low_end.yaml
var Files embed.FS
