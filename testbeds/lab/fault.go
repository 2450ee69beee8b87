package lab

// Silent failures on a running fabric: a switch port made to drop every
// frame it sends for a while, its carrier up, with `sparsecast switch
// fault` run in the switch's namespace (the switch's metrics server takes
// faults from loopback only).

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SetFault sets a runtime fault on a switch port: frames it sends are
// dropped with probability loss (1: all of them) for d.
func (f *Fabric) SetFault(ctx context.Context, sw, port string, loss float64, d time.Duration) error {
	ns, ok := f.SwitchNS[sw]
	if !ok {
		return fmt.Errorf("fault: no switch %q", sw)
	}
	_, err := f.Lab.Exec(ctx, ns, f.bin, "switch", "fault", "--metrics-addr", "127.0.0.1:9470", "--port", port,
		"--loss", strconv.FormatFloat(loss, 'f', -1, 64), "--for", d.String())
	return err
}

// LinkEnds returns both ends, "switch:port", of the switch-to-switch link
// on ref ("switch:port").
func (f *Fabric) LinkEnds(ref string) ([2]string, error) {
	sw, port, _ := strings.Cut(ref, ":")
	for _, l := range f.Topo.Links {
		a := f.Topo.Switches[l.ASw].Name + ":" + f.Topo.Switches[l.ASw].Ports[l.APort].Name
		b := f.Topo.Switches[l.BSw].Name + ":" + f.Topo.Switches[l.BSw].Ports[l.BPort].Name
		if a == sw+":"+port || b == sw+":"+port {
			return [2]string{a, b}, nil
		}
	}
	return [2]string{}, fmt.Errorf("fault: %q is not a switch-to-switch link's port", ref)
}

// SilenceLink makes both ends of the link on ref drop everything for d,
// both faults set at once; the carrier stays up.
func (f *Fabric) SilenceLink(ctx context.Context, ref string, d time.Duration) error {
	ends, err := f.LinkEnds(ref)
	if err != nil {
		return err
	}
	errs := make(chan error, len(ends))
	for _, e := range ends {
		go func() {
			sw, port, _ := strings.Cut(e, ":")
			errs <- f.SetFault(ctx, sw, port, 1, d)
		}()
	}
	var all []error
	for range ends {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}
