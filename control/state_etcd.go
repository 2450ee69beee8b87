// Fabric-wide control state in etcd: the groups and the link states the
// switches report, shared by every control process of a fabric (one per
// white box). In: group changes from this process's API (written with a
// compare-and-swap, so two controls never lose each other's change) and
// this process's link reports. Out: every change anyone made, in etcd
// revision order, handed to the Server, which pushes it to its own
// switches; and the store's health (revision seen, caught up, connected).
//
// Keys, under the prefix (default /sparsecast/):
//
//	groups/<id>              JSON array of members, ascending
//	links/<switch>/<port>    {"state": 0|1|2, "loss_ppm": N}  (headers.Link*)
//
// While etcd is unreachable nothing here blocks the Server: group writes
// fail after the write timeout (the API answers 503), link reports wait in
// a queue that keeps the latest state per port, and the watch resumes from
// the last revision it delivered when etcd is back, or reloads everything
// if that revision was compacted away.
package control

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// DefaultEtcdPrefix is where the state goes in etcd by default.
const DefaultEtcdPrefix = "/sparsecast/"

// ErrStateConflict says a group changed through another control process
// between this one reading it and writing it.
var ErrStateConflict = errors.New("the group was changed through another control process meanwhile")

// EtcdOptions configure OpenEtcdStore.
type EtcdOptions struct {
	// Endpoints are HOST:PORT (or URLs) of etcd members.
	Endpoints []string
	Prefix    string
	// TLS: a CA to check the servers with and, optionally, a client
	// certificate and key.
	CAFile, CertFile, KeyFile string
	Username, Password        string
	// Timeout bounds each write and the first connection (default 2 s).
	Timeout time.Duration
	Log     *log.Logger
}

// ParseEtcdURL splits an --store value etcd://HOST:PORT[,HOST:PORT...]
// into endpoints.
func ParseEtcdURL(s string) ([]string, error) {
	rest, ok := strings.CutPrefix(s, "etcd://")
	if !ok || rest == "" {
		return nil, fmt.Errorf("--store %q: want etcd://HOST:PORT[,HOST:PORT...]", s)
	}
	var eps []string
	for _, e := range strings.Split(rest, ",") {
		if e == "" || strings.ContainsAny(e, "/?#@") {
			return nil, fmt.Errorf("--store %q: endpoint %q: want HOST:PORT", s, e)
		}
		if _, port, ok := strings.Cut(e, ":"); !ok || port == "" {
			return nil, fmt.Errorf("--store %q: endpoint %q has no port", s, e)
		}
		eps = append(eps, e)
	}
	return eps, nil
}

// LinkReport is one switch port's state as its control process reported it.
type LinkReport struct {
	Switch  string `json:"-"`
	Port    int    `json:"-"`
	State   uint8  `json:"state"`
	LossPPM uint32 `json:"loss_ppm"`
}

// StoreChange is what the watch hands the Server: one group or link
// change, or (Full) the whole state after a reload.
type StoreChange struct {
	Revision int64
	Full     bool
	Groups   map[uint32][]uint16 // Full
	Links    []LinkReport        // Full

	Group   uint32
	Members []uint16 // nil with Deleted
	Deleted bool
	Link    *LinkReport
}

// StoreHealth is a shared store's state, for status and metrics.
type StoreHealth struct {
	Revision  int64  `json:"revision"`
	Head      int64  `json:"head_revision"`
	CaughtUp  bool   `json:"caught_up"`
	Connected bool   `json:"connected"`
	Error     string `json:"error,omitempty"`
	Reloads   uint64 `json:"reloads"`
}

// sharedStore is a StateStore other control processes write too.
type sharedStore interface {
	StateStore
	// PutGroupIf writes next (del: deletes) if the store still holds cur
	// (curOK false: no such group), else returns ErrStateConflict; it
	// returns the write's revision.
	PutGroupIf(id uint32, cur []uint16, curOK bool, next []uint16, del bool) (int64, error)
	// LoadLinks returns the link states loaded with LoadGroups.
	LoadLinks() []LinkReport
	// ReportLink queues a port's state for writing; it never blocks.
	ReportLink(r LinkReport)
	// Watch hands every change after the loaded revision to fn, in
	// revision order, until ctx ends.
	Watch(ctx context.Context, fn func(StoreChange))
	Health() StoreHealth
}

// EtcdStore is a StateStore in etcd.
type EtcdStore struct {
	cli     *clientv3.Client
	prefix  string
	timeout time.Duration
	log     *log.Logger
	where   string

	mu      sync.Mutex
	rev     int64 // last revision delivered (or loaded)
	head    int64 // the cluster's revision at the last probe
	conn    bool
	lastErr string
	reloads uint64
	links   []LinkReport // loaded with the groups
	pending map[string]LinkReport
	kick    chan struct{}
}

// OpenEtcdStore connects to etcd and checks it answers.
func OpenEtcdStore(o EtcdOptions) (*EtcdStore, error) {
	if len(o.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	if o.Prefix == "" {
		o.Prefix = DefaultEtcdPrefix
	}
	if !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Log == nil {
		o.Log = log.New(discard{}, "", 0)
	}
	var tc *tls.Config
	if o.CAFile != "" || o.CertFile != "" || o.KeyFile != "" {
		if (o.CertFile == "") != (o.KeyFile == "") {
			return nil, errors.New("etcd TLS: a client certificate needs its key, and a key its certificate")
		}
		ti := transport.TLSInfo{TrustedCAFile: o.CAFile, CertFile: o.CertFile, KeyFile: o.KeyFile}
		var err error
		if tc, err = ti.ClientConfig(); err != nil {
			return nil, fmt.Errorf("etcd TLS: %w", err)
		}
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: o.Endpoints, DialTimeout: o.Timeout, TLS: tc,
		Username: o.Username, Password: o.Password, Logger: zap.NewNop(),
		DialKeepAliveTime: 2 * time.Second, DialKeepAliveTimeout: 2 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(o.Endpoints, ","), err)
	}
	e := &EtcdStore{
		cli: cli, prefix: o.Prefix, timeout: o.Timeout, log: o.Log,
		where:   "etcd://" + strings.Join(o.Endpoints, ",") + o.Prefix,
		pending: map[string]LinkReport{}, kick: make(chan struct{}, 1),
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	if _, err := cli.Get(ctx, o.Prefix+"groups/", clientv3.WithLimit(1)); err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(o.Endpoints, ","), err)
	}
	return e, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func (e *EtcdStore) groupKey(id uint32) string {
	return e.prefix + "groups/" + strconv.FormatUint(uint64(id), 10)
}
func (e *EtcdStore) linkKey(sw string, port int) string {
	return e.prefix + "links/" + sw + "/" + strconv.Itoa(port)
}

func encodeGroup(m []uint16) string {
	if m == nil {
		m = []uint16{}
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// decode turns one key and value into a change; ok false: not ours.
func (e *EtcdStore) decode(key, value []byte, deleted bool) (StoreChange, error) {
	k := strings.TrimPrefix(string(key), e.prefix)
	if id, ok := strings.CutPrefix(k, "groups/"); ok {
		v, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			return StoreChange{}, fmt.Errorf("key %s: not a group ID", key)
		}
		c := StoreChange{Group: uint32(v), Deleted: deleted}
		if !deleted {
			if err := json.Unmarshal(value, &c.Members); err != nil || c.Members == nil {
				return StoreChange{}, fmt.Errorf("key %s: members %q: want a JSON array of IDs", key, value)
			}
			if !slices.IsSorted(c.Members) || len(slices.Compact(slices.Clone(c.Members))) != len(c.Members) {
				return StoreChange{}, fmt.Errorf("key %s: members not strictly ascending", key)
			}
		}
		return c, nil
	}
	if rest, ok := strings.CutPrefix(k, "links/"); ok {
		sw, port, ok := strings.Cut(rest, "/")
		p, err := strconv.Atoi(port)
		if !ok || sw == "" || err != nil || p < 0 || p > 255 {
			return StoreChange{}, fmt.Errorf("key %s: want links/SWITCH/PORT", key)
		}
		r := LinkReport{Switch: sw, Port: p, State: 0}
		if !deleted {
			if err := json.Unmarshal(value, &r); err != nil {
				return StoreChange{}, fmt.Errorf("key %s: %v", key, err)
			}
		}
		return StoreChange{Link: &r}, nil
	}
	return StoreChange{}, fmt.Errorf("key %s: not a sparsecast key", key)
}

// load reads the whole state at one revision.
func (e *EtcdStore) load(ctx context.Context) (map[uint32][]uint16, []LinkReport, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*e.timeout)
	defer cancel()
	resp, err := e.cli.Get(ctx, e.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, nil, 0, fmt.Errorf("%s: %w", e.where, err)
	}
	groups := map[uint32][]uint16{}
	var links []LinkReport
	for _, kv := range resp.Kvs {
		c, err := e.decode(kv.Key, kv.Value, false)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("%s: %w", e.where, err)
		}
		if c.Link != nil {
			links = append(links, *c.Link)
		} else {
			groups[c.Group] = c.Members
		}
	}
	return groups, links, resp.Header.Revision, nil
}

// LoadGroups reads every group (and link state) and notes the revision
// the watch starts after.
func (e *EtcdStore) LoadGroups() (map[uint32][]uint16, error) {
	groups, links, rev, err := e.load(context.Background())
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.rev, e.head, e.links, e.conn = rev, rev, links, true
	e.mu.Unlock()
	return groups, nil
}

// LoadLinks returns the link states read by LoadGroups.
func (e *EtcdStore) LoadLinks() []LinkReport {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.links
}

func (e *EtcdStore) noteErr(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err == nil {
		e.conn, e.lastErr = true, ""
		return
	}
	e.conn, e.lastErr = false, err.Error()
}

// PutGroupIf writes a group if it still holds cur.
func (e *EtcdStore) PutGroupIf(id uint32, cur []uint16, curOK bool, next []uint16, del bool) (int64, error) {
	key := e.groupKey(id)
	cmp := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	if curOK {
		cmp = clientv3.Compare(clientv3.Value(key), "=", encodeGroup(cur))
	}
	op := clientv3.OpPut(key, encodeGroup(next))
	if del {
		op = clientv3.OpDelete(key)
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	resp, err := e.cli.Txn(ctx).If(cmp).Then(op).Commit()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer from etcd within %v: %w", e.timeout, err)
		}
		err = fmt.Errorf("%s: %w", e.where, err)
		e.noteErr(err)
		return 0, err
	}
	e.noteErr(nil)
	if !resp.Succeeded {
		return 0, ErrStateConflict
	}
	return resp.Header.Revision, nil
}

// PutGroup writes a group whatever the store holds.
func (e *EtcdStore) PutGroup(id uint32, members []uint16) error {
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	_, err := e.cli.Put(ctx, e.groupKey(id), encodeGroup(members))
	return err
}

// DeleteGroup deletes a group whatever the store holds.
func (e *EtcdStore) DeleteGroup(id uint32) error {
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	_, err := e.cli.Delete(ctx, e.groupKey(id))
	return err
}

// ReportLink queues a port's state; the latest per port is written, retried
// until etcd takes it.
func (e *EtcdStore) ReportLink(r LinkReport) {
	e.mu.Lock()
	e.pending[e.linkKey(r.Switch, r.Port)] = r
	e.mu.Unlock()
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// writeLinks is the goroutine that writes queued link reports.
func (e *EtcdStore) writeLinks(ctx context.Context) {
	delay := 100 * time.Millisecond
	for {
		e.mu.Lock()
		batch := e.pending
		e.pending = map[string]LinkReport{}
		e.mu.Unlock()
		failed := false
		for key, r := range batch {
			b, _ := json.Marshal(r)
			wctx, cancel := context.WithTimeout(ctx, e.timeout)
			_, err := e.cli.Put(wctx, key, string(b))
			cancel()
			if err != nil {
				failed = true
				e.noteErr(fmt.Errorf("%s: %w", e.where, err))
				e.mu.Lock()
				if _, newer := e.pending[key]; !newer {
					e.pending[key] = r
				}
				e.mu.Unlock()
			}
		}
		wait := time.Duration(1 << 62)
		if failed {
			wait, delay = delay, min(2*delay, 2*time.Second)
		} else {
			delay = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-e.kick:
		case <-time.After(wait):
		}
	}
}

// probe notes whether etcd answers and its current revision, and asks the
// watch for a progress notice so that an idle watch shows it is caught up.
func (e *EtcdStore) probe(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, e.timeout)
		resp, err := e.cli.Get(pctx, e.prefix+"groups/", clientv3.WithLimit(1), clientv3.WithCountOnly())
		if err == nil {
			e.mu.Lock()
			e.head = resp.Header.Revision
			e.mu.Unlock()
			err = e.cli.RequestProgress(clientv3.WithRequireLeader(pctx))
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			err = fmt.Errorf("%s: %w", e.where, err)
		}
		if ctx.Err() == nil {
			e.noteErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Watch delivers changes from the loaded revision on until ctx ends.
func (e *EtcdStore) Watch(ctx context.Context, fn func(StoreChange)) {
	go e.writeLinks(ctx)
	go e.probe(ctx)
	for ctx.Err() == nil {
		e.mu.Lock()
		from := e.rev + 1
		e.mu.Unlock()
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		ch := e.cli.Watch(wctx, e.prefix, clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithProgressNotify())
		compacted := false
		for resp := range ch {
			if resp.CompactRevision != 0 {
				e.log.Printf("state %s: revision %d compacted away (oldest kept %d): reloading everything", e.where, from, resp.CompactRevision)
				compacted = true
				break
			}
			if err := resp.Err(); err != nil {
				e.noteErr(fmt.Errorf("%s: watch: %w", e.where, err))
				break
			}
			for _, ev := range resp.Events {
				c, err := e.decode(ev.Kv.Key, ev.Kv.Value, ev.Type == clientv3.EventTypeDelete)
				if err != nil {
					e.log.Printf("state %s: revision %d: %v (ignored)", e.where, ev.Kv.ModRevision, err)
					continue
				}
				c.Revision = ev.Kv.ModRevision
				fn(c)
			}
			e.mu.Lock()
			e.rev = max(e.rev, resp.Header.Revision)
			e.head = max(e.head, e.rev)
			e.mu.Unlock()
		}
		cancel()
		if compacted {
			for ctx.Err() == nil {
				groups, links, rev, err := e.load(ctx)
				if err == nil {
					fn(StoreChange{Revision: rev, Full: true, Groups: groups, Links: links})
					e.mu.Lock()
					e.rev, e.reloads = rev, e.reloads+1
					e.mu.Unlock()
					break
				}
				e.noteErr(err)
				sleepCtx(ctx, 500*time.Millisecond)
			}
			continue
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Health is the store's state now.
func (e *EtcdStore) Health() StoreHealth {
	e.mu.Lock()
	defer e.mu.Unlock()
	return StoreHealth{Revision: e.rev, Head: e.head, CaughtUp: e.conn && e.rev >= e.head, Connected: e.conn, Error: e.lastErr, Reloads: e.reloads}
}

// Describe is etcd://endpoints/prefix.
func (e *EtcdStore) Describe() string { return e.where }

// Close closes the connection.
func (e *EtcdStore) Close() error { return e.cli.Close() }
