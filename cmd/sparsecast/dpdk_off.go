//go:build !dpdk

package main

import (
	"context"

	"github.com/sparsecast/sparsecast/dataplane/dpdkport"
)

func init() {
	benchDPDKRun = func(context.Context, *BenchDPDKOptions) error { return dpdkport.ErrNotBuilt }
}
