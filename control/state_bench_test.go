package control

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// restartGroups is the group count of the restart benchmarks (issue 22
// asks for 100,000).
const restartGroups = 100_000

func benchMembers(i int) []uint16 {
	m := []uint16{uint16(1 + i%4), uint16(1 + (i/4)%4), uint16(1 + (i/16)%4)} // failover.yaml's receivers 1-4
	slices.Sort(m)
	return slices.Compact(m)
}

// benchRestart times what a restarted control does before its first
// resync is out: open the store, load and check every group, build the
// server and push the full table of one switch (to a fake ring).
func benchRestart(b *testing.B, open func() (StateStore, error)) {
	topo := testbed(b, "failover.yaml")
	b.ResetTimer()
	for b.Loop() {
		st, err := open()
		if err != nil {
			b.Fatal(err)
		}
		ff := newFakeFabric(topo, 0xb1)
		s, err := NewServer(topo, ServerOptions{Switches: []string{"leaf2"}, RingDir: "/fake", Open: ff.open, Store: st})
		if err != nil {
			b.Fatal(err)
		}
		s.mu.Lock()
		s.step(time.Now())
		s.mu.Unlock()
		if bt := ff.ring("leaf2").last(); bt.kind != PushFullKind || len(bt.full.Groups) != restartGroups {
			b.Fatalf("first push: %d groups", len(bt.full.Groups))
		}
		st.Close()
	}
}

// go test -run '^$' -bench RestartWithGroups ./control/
func BenchmarkRestartWithGroupsBolt(b *testing.B) {
	dir := b.TempDir()
	openStore(b, dir).Close()
	db, err := bolt.Open(filepath.Join(dir, StateFileName), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for i := range restartGroups {
			if err := tx.Bucket(bucketGroups).Put(groupKey(uint32(i)), encodeMembers(benchMembers(i))); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		b.Fatal(err)
	}
	benchRestart(b, func() (StateStore, error) { return OpenBoltStore(dir, time.Second) })
}

func BenchmarkRestartWithGroupsEtcd(b *testing.B) {
	e := startEtcd(b)
	s := openEtcd(b, e, "/bench/")
	ctx := context.Background()
	for i := 0; i < restartGroups; i += 128 {
		var ops []clientv3.Op
		for j := i; j < min(i+128, restartGroups); j++ {
			ops = append(ops, clientv3.OpPut(s.groupKey(uint32(j)), encodeGroup(benchMembers(j))))
		}
		if _, err := s.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			b.Fatal(err)
		}
	}
	benchRestart(b, func() (StateStore, error) {
		return OpenEtcdStore(EtcdOptions{Endpoints: []string{e.client}, Prefix: "/bench/"})
	})
}
