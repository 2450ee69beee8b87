//go:build !dpdk

package dpdkport

import "github.com/sparsecast/sparsecast/dataplane"

// Open refuses: this build has no DPDK. The options are still checked, so a
// configuration error is reported before the build is.
func Open(o Options) (dataplane.Port, error) {
	if err := o.withDefaults().Validate(); err != nil {
		return nil, err
	}
	return nil, ErrNotBuilt
}

// Built reports whether this binary can open DPDK ports.
const Built = false
