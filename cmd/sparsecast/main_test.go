package main

import (
	"os"
	"testing"
)

// TestMain lets this test binary stand in for bin/sparsecast where a command
// under test starts the binary again: `bench control` runs its dataplane
// half as os.Executable() `bench control-dataplane ...`, which a test
// binary would otherwise take for a test run of its own.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "bench" && os.Args[2] == "control-dataplane" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}
