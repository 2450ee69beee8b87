//go:build dpdk

// The C half of the DPDK layer; see dpdk.h for the contract with Go.
#define _GNU_SOURCE 1
#define ALLOW_EXPERIMENTAL_API 1
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_common.h>
#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_prefetch.h>
#include <rte_ring.h>

#include "dpdk.h"

// How many frames ahead sc_burst prefetches (l3fwd's PREFETCH_OFFSET).
#define SC_PREFETCH 3

// rte_eal_init pins the calling thread to the main lcore. That thread is one
// of the Go runtime's; the affinity it had is put back afterwards, so the
// runtime's other threads (which it may spawn from this one) are not all
// confined to one CPU.
int sc_eal_init(int argc, char **argv, char *err, int errlen) {
	cpu_set_t saved;
	int have = pthread_getaffinity_np(pthread_self(), sizeof(saved), &saved) == 0;
	int ret = rte_eal_init(argc, argv);
	if (ret < 0) {
		snprintf(err, errlen, "rte_eal_init: %s", rte_strerror(rte_errno));
	}
	if (have) {
		pthread_setaffinity_np(pthread_self(), sizeof(saved), &saved);
	}
	return ret;
}

// A worker thread becomes an lcore (a per-lcore mempool cache, a valid
// rte_lcore_id) without changing its affinity.
int sc_thread_register(void) {
	if (rte_lcore_id() != LCORE_ID_ANY) {
		return 0;
	}
	return rte_thread_register();
}

// sc_probe finds the ethdev named by the devargs' first field, probing the
// device (a vdev such as "net_null0,size=64", or a PCI address) if it is
// not there yet.
int sc_probe(const char *devargs, char *name, int namelen, uint16_t *port) {
	snprintf(name, namelen, "%s", devargs);
	char *comma = strchr(name, ',');
	if (comma) {
		*comma = 0;
	}
	if (rte_eth_dev_get_port_by_name(name, port) == 0) {
		return 0;
	}
	int ret = rte_dev_probe(devargs);
	if (ret < 0) {
		return ret;
	}
	if (rte_eth_dev_get_port_by_name(name, port) == 0) {
		return 0;
	}
	// Some drivers name the ethdev after an argument (net_ring's
	// nodeaction names its rings): find it by its device instead.
	uint16_t p;
	RTE_ETH_FOREACH_DEV(p) {
		struct rte_eth_dev_info info;
		if (rte_eth_dev_info_get(p, &info) == 0 && info.device && strcmp(rte_dev_name(info.device), name) == 0) {
			*port = p;
			return 0;
		}
	}
	return -ENODEV;
}

struct obj_init {
	sc_pool *p;
	uint32_t i;
};

static void obj_init(struct rte_mempool *mp, void *arg, void *obj, unsigned idx) {
	(void)mp;
	(void)idx;
	struct obj_init *a = arg;
	struct rte_mbuf *m = obj;
	*(uint32_t *)rte_mbuf_to_priv(m) = a->i;
	a->p->objs[a->i] = (sc_obj){.mbuf = (uintptr_t)m, .buf = m->buf_addr, .buf_len = m->buf_len};
	a->i++;
}

// sc_pool_create makes a packet mempool whose mbufs carry their index in a
// private area, and the table of their buffers that Go turns into views once.
sc_pool *sc_pool_create(const char *name, uint32_t n, uint32_t data_room, int socket) {
	sc_pool *p = calloc(1, sizeof(*p));
	if (!p) {
		return NULL;
	}
	p->mp = rte_pktmbuf_pool_create(name, n, 256, 8, data_room, socket);
	if (!p->mp) {
		free(p);
		return NULL;
	}
	p->n = ((struct rte_mempool *)p->mp)->size;
	p->objs = calloc(p->n, sizeof(sc_obj));
	if (!p->objs) {
		rte_mempool_free(p->mp);
		free(p);
		return NULL;
	}
	struct obj_init a = {.p = p};
	rte_mempool_obj_iter(p->mp, obj_init, &a);
	return p;
}

void sc_pool_free(sc_pool *p) {
	if (!p) {
		return;
	}
	rte_mempool_free(p->mp);
	free(p->objs);
	free(p->stamp);
	free(p);
}

void *sc_clone_pool(const char *name, uint32_t n, int socket) {
	return rte_pktmbuf_pool_create(name, n, 256, 0, 0, socket);
}

int sc_port_setup(uint16_t port, uint16_t nrxq, uint16_t ntxq, uint16_t rxd, uint16_t txd, sc_pool *rxpool, uint8_t mac[6], char *err, int errlen) {
	struct rte_eth_dev_info info;
	int ret = rte_eth_dev_info_get(port, &info);
	if (ret != 0) {
		snprintf(err, errlen, "rte_eth_dev_info_get: %s", rte_strerror(-ret));
		return ret;
	}
	if (nrxq > info.max_rx_queues || ntxq > info.max_tx_queues) {
		snprintf(err, errlen, "driver %s has %u rx and %u tx queues; %u and %u wanted (one tx queue per worker)",
			info.driver_name, info.max_rx_queues, info.max_tx_queues, nrxq, ntxq);
		return -EINVAL;
	}
	struct rte_eth_conf conf;
	memset(&conf, 0, sizeof(conf));
	if (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MULTI_SEGS) {
		conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
	}
	ret = rte_eth_dev_configure(port, nrxq, ntxq, &conf);
	if (ret != 0) {
		snprintf(err, errlen, "rte_eth_dev_configure: %s", rte_strerror(-ret));
		return ret;
	}
	ret = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rxd, &txd);
	if (ret != 0) {
		snprintf(err, errlen, "rte_eth_dev_adjust_nb_rx_tx_desc: %s", rte_strerror(-ret));
		return ret;
	}
	int socket = rte_eth_dev_socket_id(port);
	for (uint16_t q = 0; q < nrxq; q++) {
		ret = rte_eth_rx_queue_setup(port, q, rxd, socket, NULL, rxpool->mp);
		if (ret != 0) {
			snprintf(err, errlen, "rte_eth_rx_queue_setup: %s", rte_strerror(-ret));
			return ret;
		}
	}
	for (uint16_t q = 0; q < ntxq; q++) {
		ret = rte_eth_tx_queue_setup(port, q, txd, socket, NULL);
		if (ret != 0) {
			snprintf(err, errlen, "rte_eth_tx_queue_setup: %s", rte_strerror(-ret));
			return ret;
		}
	}
	ret = rte_eth_dev_start(port);
	if (ret != 0) {
		snprintf(err, errlen, "rte_eth_dev_start: %s", rte_strerror(-ret));
		return ret;
	}
	// Drivers that cannot be promiscuous (vdevs without a wire) say so;
	// that is not an error for them.
	rte_eth_promiscuous_enable(port);
	struct rte_ether_addr a;
	if (rte_eth_macaddr_get(port, &a) == 0) {
		memcpy(mac, a.addr_bytes, 6);
	}
	return 0;
}

void sc_port_close(uint16_t port) {
	rte_eth_dev_stop(port);
	rte_eth_dev_close(port);
}

sc_txq *sc_txq_new(uint16_t port, uint16_t queue, sc_pool *hdr, void *clone_mp) {
	sc_txq *q = calloc(1, sizeof(*q));
	if (!q) {
		return NULL;
	}
	q->port = port;
	q->queue = queue;
	q->hdr_pool = hdr;
	q->clone_mp = clone_mp;
	return q;
}

void sc_txq_free(sc_txq *q) {
	if (!q) {
		return;
	}
	// Frames queued but never sent: their own mbufs are references Go
	// consigned to the queue (ref == 0) or took for it (ref == 1, taken
	// only at flush), and stash mbufs belong to the queue.
	for (uint32_t i = 0; i < q->n; i++) {
		if (!q->d[i].ref) {
			rte_pktmbuf_free((struct rte_mbuf *)q->d[i].head);
		}
	}
	for (uint32_t i = 0; i < q->stash_n; i++) {
		rte_pktmbuf_free((struct rte_mbuf *)q->stash[i]);
	}
	free(q);
}

sc_rxq *sc_rxq_new(uint16_t port, uint16_t queue, sc_pool *pool) {
	sc_rxq *r = calloc(1, sizeof(*r));
	if (!r) {
		return NULL;
	}
	r->port = port;
	r->queue = queue;
	r->pool = pool;
	return r;
}

sc_ctx *sc_ctx_new(void) { return calloc(1, sizeof(sc_ctx)); }

// txq_flush turns the queue's descriptors into mbuf chains and sends them.
// A copy is its header mbuf chained to an indirect mbuf attached to the
// original's payload, so the payload is never copied; the original itself
// goes out as the last copy (ipv4_multicast's mcast_out_pkt). What the
// device does not take is freed and counted, as testpmd's io mode does.
static void txq_flush(sc_txq *q) {
	uint32_t n = q->n;
	if (n == 0) {
		return;
	}
	uint32_t nclones = q->ntail;
	if (nclones && rte_pktmbuf_alloc_bulk(q->clone_mp, (struct rte_mbuf **)q->clones, nclones) != 0) {
		nclones = 0;
	}
	uint32_t k = 0, c = 0;
	for (uint32_t i = 0; i < n; i++) {
		sc_txd *d = &q->d[i];
		struct rte_mbuf *m = (struct rte_mbuf *)d->head;
		if (d->ref) {
			rte_mbuf_refcnt_update(m, 1);
		}
		// Every head is one segment (received ones are made so, stash ones
		// are fresh): only a chain touches next, in the mbuf's second
		// cache line.
		m->data_off = d->off;
		m->data_len = d->len;
		m->pkt_len = d->len;
		if (d->tail) {
			struct rte_mbuf *t = (struct rte_mbuf *)d->tail;
			if (d->tlen <= SC_COPY_MAX && (uint32_t)d->off + d->len + d->tlen <= m->buf_len) {
				// A short payload: copied in after the header.
				rte_memcpy(rte_pktmbuf_mtod(m, uint8_t *) + d->len, (uint8_t *)t->buf_addr + d->toff, d->tlen);
				m->data_len += d->tlen;
				m->pkt_len += d->tlen;
				q->out[k++] = m;
				continue;
			}
			struct rte_mbuf *ind = c < nclones ? q->clones[c++] : rte_pktmbuf_alloc(q->clone_mp);
			if (!ind) {
				// No indirect mbuf for this copy.
				rte_pktmbuf_free(m);
				q->nobuf++;
				continue;
			}
			rte_pktmbuf_attach(ind, t);
			ind->data_off = d->toff;
			ind->data_len = d->tlen;
			ind->pkt_len = d->tlen;
			m->next = ind;
			m->nb_segs = 2;
			m->pkt_len += d->tlen;
		}
		q->out[k++] = m;
	}
	if (c < nclones) {
		// Copies that came short after all (no room to copy into).
		rte_pktmbuf_free_bulk((struct rte_mbuf **)q->clones + c, nclones - c);
	}
	q->n = 0;
	q->ntail = 0;
	uint16_t sent = 0;
	while (sent < k) {
		uint16_t s = rte_eth_tx_burst(q->port, q->queue, (struct rte_mbuf **)q->out + sent, RTE_MIN(k - sent, 512u));
		if (s == 0) {
			break;
		}
		sent += s;
	}
	q->sent += sent;
	if (sent < k) {
		rte_pktmbuf_free_bulk((struct rte_mbuf **)q->out + sent, k - sent);
		q->dropped += k - sent;
	}
}

static void stash_refill(sc_txq *q) {
	uint32_t want = SC_STASH - q->stash_n;
	if (want < SC_BURST) {
		return;
	}
	struct rte_mbuf **m = (struct rte_mbuf **)(q->stash + q->stash_n);
	if (rte_pktmbuf_alloc_bulk(q->hdr_pool->mp, m, want) != 0) {
		q->nobuf++;
		return;
	}
	for (uint32_t i = 0; i < want; i++) {
		q->stash_idx[q->stash_n + i] = *(uint32_t *)rte_mbuf_to_priv(m[i]);
	}
	q->stash_n += want;
}

// hstash_refill tops up the context's header stash once a burst's worth is
// gone: one bulk allocation, the indexes read from the mbufs' private areas.
static void hstash_refill(sc_ctx *c) {
	uint32_t want = SC_HSTASH - c->hstash_n;
	if (!c->hdr_pool || want < SC_BURST) {
		return;
	}
	struct rte_mbuf **m = (struct rte_mbuf **)(c->hstash + c->hstash_n);
	if (rte_pktmbuf_alloc_bulk(c->hdr_pool->mp, m, want) != 0) {
		c->hnobuf++;
		return;
	}
	for (uint32_t i = 0; i < want; i++) {
		c->hstash_idx[c->hstash_n + i] = *(uint32_t *)rte_mbuf_to_priv(m[i]);
	}
	c->hstash_n += want;
}

// sc_ctx_flush sends every queue of the worker, then gives back the mbufs Go
// released, in that order: a released original may still be the payload of
// a copy queued above, which takes its own reference when attached.
void sc_ctx_flush(sc_ctx *c) {
	for (uint32_t i = 0; i < c->nq; i++) {
		txq_flush(c->q[i]);
		stash_refill(c->q[i]);
	}
	if (c->nfree) {
		rte_pktmbuf_free_bulk((struct rte_mbuf **)c->free, c->nfree);
		c->nfree = 0;
	}
	hstash_refill(c);
}

void sc_ctx_free(sc_ctx *c) {
	if (!c) {
		return;
	}
	if (c->hstash_n) {
		rte_pktmbuf_free_bulk((struct rte_mbuf **)c->hstash, c->hstash_n);
	}
	free(c);
}

// rx_fix replaces an mbuf Go cannot take as it is (from another pool, as a
// ring port returns what was sent into it, or in segments) by a copy in the
// port's pool, or drops it.
static struct rte_mbuf *rx_fix(sc_rxq *r, struct rte_mbuf *m) {
	struct rte_mempool *mp = r->pool->mp;
	struct rte_mbuf *c = rte_pktmbuf_alloc(mp);
	if (!c || m->pkt_len > rte_pktmbuf_tailroom(c)) {
		if (c) {
			rte_pktmbuf_free(c);
		}
		rte_pktmbuf_free(m);
		r->dropped++;
		return NULL;
	}
	const void *src = rte_pktmbuf_read(m, 0, m->pkt_len, rte_pktmbuf_mtod(c, void *));
	if (src != rte_pktmbuf_mtod(c, void *)) {
		memcpy(rte_pktmbuf_mtod(c, void *), src, m->pkt_len);
	}
	c->data_len = c->pkt_len = m->pkt_len;
	rte_pktmbuf_free(m);
	r->foreign++;
	return c;
}

// sc_burst is the worker's one C call per round: flush what it queued, then
// receive a burst from r into r->rx.
uint16_t sc_burst(sc_ctx *c, sc_rxq *r, uint16_t max) {
	sc_ctx_flush(c);
	struct rte_mbuf *m[SC_BURST];
	uint16_t n = rte_eth_rx_burst(r->port, r->queue, m, RTE_MIN(max, (uint16_t)SC_BURST));
	uint16_t k = 0;
	struct rte_mempool *mp = r->pool->mp;
	// As l3fwd does: the frames' first bytes (which Go parses next) and
	// the private areas (their pool index) are fetched SC_PREFETCH frames
	// ahead.
	for (uint16_t i = 0; i < RTE_MIN(n, (uint16_t)SC_PREFETCH); i++) {
		rte_prefetch0(rte_pktmbuf_mtod(m[i], void *));
		rte_prefetch0(rte_mbuf_to_priv(m[i]));
	}
	for (uint16_t i = 0; i < n; i++) {
		struct rte_mbuf *x = m[i];
		if (i + SC_PREFETCH < n) {
			rte_prefetch0(rte_pktmbuf_mtod(m[i + SC_PREFETCH], void *));
			rte_prefetch0(rte_mbuf_to_priv(m[i + SC_PREFETCH]));
		}
		if (unlikely(x->pool != mp || x->nb_segs != 1 || !RTE_MBUF_DIRECT(x) || rte_mbuf_refcnt_read(x) != 1)) {
			if (!(x = rx_fix(r, x))) {
				continue;
			}
		}
		if (r->pool->stamp_len) {
			rte_memcpy(rte_pktmbuf_mtod(x, void *), r->pool->stamp, RTE_MIN(r->pool->stamp_len, (uint32_t)x->data_len));
		}
		r->rx[k].idx = *(uint32_t *)rte_mbuf_to_priv(x);
		r->rx[k].off = x->data_off;
		r->rx[k].len = x->data_len;
		k++;
	}
	return k;
}

int sc_port_stats(uint16_t port, uint64_t *out) {
	struct rte_eth_stats s;
	int ret = rte_eth_stats_get(port, &s);
	if (ret != 0) {
		return ret;
	}
	out[0] = s.ipackets;
	out[1] = s.opackets;
	out[2] = s.imissed;
	out[3] = s.ierrors;
	out[4] = s.oerrors;
	out[5] = s.rx_nombuf;
	return 0;
}

// sc_ring_drain takes up to max frames from the named rte_ring (a net_ring
// device's), copies them back to back into buf and their lengths into lens,
// and frees them: for tests that read what a ring device was sent.
int sc_ring_drain(const char *name, uint8_t *buf, uint32_t buflen, uint32_t *lens, uint32_t max) {
	struct rte_ring *r = rte_ring_lookup(name);
	if (!r) {
		return -ENOENT;
	}
	uint32_t n = 0, off = 0;
	void *m;
	while (n < max && rte_ring_dequeue(r, &m) == 0) {
		struct rte_mbuf *x = m;
		if (off + x->pkt_len <= buflen) {
			const void *src = rte_pktmbuf_read(x, 0, x->pkt_len, buf + off);
			if (src != buf + off) {
				memcpy(buf + off, src, x->pkt_len);
			}
			lens[n++] = x->pkt_len;
			off += x->pkt_len;
		}
		rte_pktmbuf_free(x);
	}
	return n;
}
