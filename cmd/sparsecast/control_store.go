// control run's state store flags: --state-dir for the local bbolt file,
// or --store etcd://... with its TLS and auth flags. In: the parsed
// options; out: a checked, opened control.StateStore.
package main

import (
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/sparsecast/sparsecast/control"
)

// checkStoreFlags refuses store flags that do not go together.
func checkStoreFlags(o *ControlRunOptions) error {
	if o.Store == "" || o.Store == "local" {
		if o.StateDir == "" {
			return errors.New("--state-dir: empty path")
		}
		for flag, v := range map[string]string{"--etcd-ca": o.EtcdCA, "--etcd-cert": o.EtcdCert, "--etcd-key": o.EtcdKey, "--etcd-user": o.EtcdUser, "--etcd-password-file": o.EtcdPasswordFile} {
			if v != "" {
				return fmt.Errorf("%s goes with --store etcd://...", flag)
			}
		}
		return nil
	}
	if _, err := control.ParseEtcdURL(o.Store); err != nil {
		return fmt.Errorf("%w (or --store local)", err)
	}
	if (o.EtcdCert == "") != (o.EtcdKey == "") {
		return errors.New("--etcd-cert and --etcd-key go together")
	}
	if (o.EtcdUser == "") != (o.EtcdPasswordFile == "") {
		return errors.New("--etcd-user and --etcd-password-file go together")
	}
	return nil
}

// openControlStore opens the state store --store names.
func openControlStore(o *ControlRunOptions) (control.StateStore, error) {
	if o.Store == "" || o.Store == "local" {
		if o.StateDir == "" {
			return nil, errors.New("--state-dir: empty path")
		}
		return control.OpenBoltStore(o.StateDir, time.Second)
	}
	eps, err := control.ParseEtcdURL(o.Store)
	if err != nil {
		return nil, err
	}
	eo := control.EtcdOptions{Endpoints: eps, Prefix: o.EtcdPrefix, CAFile: o.EtcdCA, CertFile: o.EtcdCert, KeyFile: o.EtcdKey,
		Username: o.EtcdUser, Log: log.New(o.Log, "control: ", log.LstdFlags|log.Lmicroseconds)}
	if o.EtcdPasswordFile != "" {
		b, err := os.ReadFile(o.EtcdPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("--etcd-password-file: %w", err)
		}
		eo.Password, _, _ = strings.Cut(string(b), "\n")
	}
	return control.OpenEtcdStore(eo)
}
