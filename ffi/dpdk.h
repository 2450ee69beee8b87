// sparsecast's C side of DPDK (build tag dpdk). Go crosses into C once per
// receive burst: sc_burst transmits everything the worker queued since its
// previous call, gives back the mbufs Go released, tops up the header stashes
// and receives one burst. Every array both sides touch lives in C memory
// (allocated here), so Go never stores a Go pointer in C memory and C never
// keeps one. mbufs travel as uintptr_t handles.
#ifndef SPARSECAST_DPDK_H
#define SPARSECAST_DPDK_H

#include <stdint.h>

#define SC_BURST 32
// Descriptors a transmit queue holds between two C calls: the worker's
// per-port egress queue is drained in bursts of SC_BURST, several times per
// round when it is long.
#define SC_TXQ_CAP 1024
// A copy whose payload is at most this long gets the payload copied in
// after its header, in its header mbuf, instead of an indirect mbuf attached
// to the original: a copy of up to 256 bytes costs less than allocating,
// attaching (an atomic increment on the original) and, at transmit, freeing
// and detaching (an atomic decrement) an indirect mbuf.
#define SC_COPY_MAX 256
// Header mbufs kept ready for Go in each transmit queue.
#define SC_STASH 128
#define SC_MAX_CTX_TXQ 256
#define SC_FREE_CAP 4096
#define SC_MAX_CTX_RX 64

// Buffer i of a pool: its memory, and its handle (the mbuf's address).
typedef struct sc_obj {
	uintptr_t mbuf;
	uint8_t *buf;
	uint32_t buf_len;
	uint32_t pad;
} sc_obj;

typedef struct sc_pool {
	void *mp; // struct rte_mempool *
	uint32_t n;
	sc_obj *objs; // n entries, by the index kept in each mbuf's private area
	// Bench only: the first stamp_len bytes of stamp are written at the data
	// offset of every mbuf received into this pool (a traffic generator's
	// fresh headers, as the Go bench's generator port copies its template).
	uint8_t *stamp;
	uint32_t stamp_len;
} sc_pool;

// One frame to send. head is the mbuf holding the frame's first bytes at
// [off, off+len) (Go's buffer, or a stash mbuf Go copied the header into);
// tail, if non-zero, an mbuf whose bytes [toff, toff+tlen) follow, attached
// by an indirect mbuf (DPDK ipv4_multicast's clone); ref asks for one more
// reference on head (Go still shares it with queued copies).
typedef struct sc_txd {
	uintptr_t head;
	uintptr_t tail;
	uint16_t off, len;
	uint16_t toff, tlen;
	uint32_t ref;
} sc_txd;

typedef struct sc_txq {
	uint16_t port, queue;
	uint32_t n;
	// ntail counts the descriptors with a tail longer than SC_COPY_MAX, kept
	// as Go queues them so that the flush allocates their indirect mbufs
	// without a pass to count.
	uint32_t ntail;
	sc_txd d[SC_TXQ_CAP];
	// Header mbufs ready for Go: Go takes from the top (stash_n--), writes
	// the header through the view of stash_idx[i] and queues it.
	uint32_t stash_n;
	uintptr_t stash[SC_STASH];
	uint32_t stash_idx[SC_STASH];
	sc_pool *hdr_pool;
	void *clone_mp;
	uint64_t sent, dropped, nobuf;
	void *out[SC_TXQ_CAP];
	void *clones[SC_TXQ_CAP];
} sc_txq;

// What sc_burst received: the index of each mbuf in the port's pool, and
// where its frame is.
typedef struct sc_rxd {
	uint32_t idx;
	uint16_t off, len;
} sc_rxd;

typedef struct sc_rxq {
	uint16_t port, queue;
	sc_pool *pool;
	sc_rxd rx[SC_BURST];
	uint64_t foreign, dropped;
} sc_rxq;

// Header mbufs a worker's context keeps ready for Go's copies.
#define SC_HSTASH 512

// A worker's context: the transmit queues it fills, the mbufs it released,
// and header mbufs for the copies it makes (Go takes them by index from the
// top, hstash_n--, into the worker's header pool; the next flush tops the
// stash up with one rte_pktmbuf_alloc_bulk).
typedef struct sc_ctx {
	uint32_t nq;
	sc_txq *q[SC_MAX_CTX_TXQ];
	uint32_t nfree;
	uintptr_t free[SC_FREE_CAP];
	sc_pool *hdr_pool;
	uint32_t hstash_n;
	uint64_t hnobuf;
	uintptr_t hstash[SC_HSTASH];
	uint32_t hstash_idx[SC_HSTASH];
} sc_ctx;

int sc_eal_init(int argc, char **argv, char *err, int errlen);
int sc_thread_register(void);
int sc_probe(const char *devargs, char *name, int namelen, uint16_t *port);
sc_pool *sc_pool_create(const char *name, uint32_t n, uint32_t data_room, int socket);
void sc_pool_free(sc_pool *p);
int sc_port_setup(uint16_t port, uint16_t nrxq, uint16_t ntxq, uint16_t rxd, uint16_t txd, sc_pool *rxpool, uint8_t mac[6], char *err, int errlen);
void sc_port_close(uint16_t port);
sc_txq *sc_txq_new(uint16_t port, uint16_t queue, sc_pool *hdr, void *clone_mp);
void sc_txq_free(sc_txq *q);
sc_rxq *sc_rxq_new(uint16_t port, uint16_t queue, sc_pool *pool);
sc_ctx *sc_ctx_new(void);
void sc_ctx_flush(sc_ctx *c);
void sc_ctx_free(sc_ctx *c);
uint16_t sc_burst(sc_ctx *c, sc_rxq *r, uint16_t max);
void *sc_clone_pool(const char *name, uint32_t n, int socket);
int sc_port_stats(uint16_t port, uint64_t *out);
int sc_ring_drain(const char *name, uint8_t *buf, uint32_t buflen, uint32_t *lens, uint32_t max);

#endif
