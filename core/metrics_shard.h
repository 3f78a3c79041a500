/*
 * metrics_shard.h - the counters of one shard. Each shard owns one struct
 * and is its only writer (metrics_add/metrics_set: relaxed load + store,
 * no read-modify-write); the metrics thread sums every shard's struct at
 * scrape time (metrics_shard_write).
 */
#ifndef OMX_METRICS_SHARD_H
#define OMX_METRICS_SHARD_H

#include "../verify/auth.h"
#include "metrics.h"

/* Why an accepted connection was closed at once. */
enum metrics_refuse {
	METRICS_REFUSE_LIMIT = 0, /* --max-connections or --max-connections-per-ip: 421 */
	METRICS_REFUSE_MEMORY,    /* no memory for the session */
	METRICS_REFUSE_PEER,      /* getpeername failed: the client already left */
	METRICS_REFUSE_SHUTDOWN,  /* accepted while stopping */
	METRICS_REFUSE_RATE,      /* --max-connection-rate: 421 */
	METRICS_REFUSE_PROXY,     /* --listen-proxy: a peer outside --proxy-trusted, or a bad header */
	METRICS_REFUSE_DNSBL,     /* --dnsbl-reject: listed */
	METRICS_REFUSE_COUNT      /* sentinel */
};

/* Reply codes 200..599 are counted; others (none exist) are not. */
#define METRICS_CODE_MIN 200
#define METRICS_CODE_NUM 400

/* Transaction latency (final dot to the reply), µs; message size, octets. */
#define METRICS_LAT_BOUNDS  14
#define METRICS_SIZE_BOUNDS 10
extern const uint64_t metrics_lat_bounds_us[METRICS_LAT_BOUNDS];
extern const uint64_t metrics_size_bounds[METRICS_SIZE_BOUNDS];

struct metrics_shard {
	_Atomic uint64_t conns_open;                 /* gauge */
	_Atomic uint64_t conns_accepted;
	_Atomic uint64_t conns_refused[METRICS_REFUSE_COUNT];
	_Atomic uint64_t bytes_received;             /* every octet a client sent */
	_Atomic uint64_t tx_started;                 /* MAIL FROM accepted */
	_Atomic uint64_t tx_aborted;                 /* message data dropped before its end (size, bare LF, RSET in BDAT) */
	_Atomic uint64_t replies[METRICS_CODE_NUM];  /* every final reply line, by code */
	_Atomic uint64_t messages[METRICS_CODE_NUM]; /* end-of-data replies, by code */
	_Atomic uint64_t dkim[AUTH_RES_COUNT];       /* per signature; none: unsigned message */
	_Atomic uint64_t spf_mfrom[AUTH_RES_COUNT];
	_Atomic uint64_t spf_helo[AUTH_RES_COUNT];
	_Atomic uint64_t dmarc[AUTH_RES_COUNT];
	_Atomic uint64_t arc[AUTH_RES_COUNT];
	_Atomic uint64_t verify_jobs;                /* gauge: jobs in the verify pool */
	_Atomic uint64_t pbuf_total;                 /* gauge: provided receive buffers */
	_Atomic uint64_t pbuf_partial;               /* gauge: buffers partly consumed (incremental mode) */
	_Atomic uint64_t pbuf_waiters;               /* gauge: connections waiting for a buffer */
	_Atomic uint64_t enobufs;                    /* receives that found the pool empty */
	_Atomic uint64_t input_throttled;            /* times a connection went past --max-input-rate */
	struct metrics_hist tx_latency_us;
	struct metrics_hist msg_size;
};

/* metrics_shard_code counts reply `code` in arr (a replies/messages array). Owner thread. */
static inline void metrics_shard_code(_Atomic uint64_t *arr, unsigned code)
{
	if (code >= METRICS_CODE_MIN && code < METRICS_CODE_MIN + METRICS_CODE_NUM) {
		metrics_add(&arr[code - METRICS_CODE_MIN], 1);
	}
}

/* metrics_shard_write appends the families of the sum of `n` shards. Metrics thread. 0 or -ENOMEM. */
int metrics_shard_write(struct bb *out, const struct metrics_shard *const *sh, size_t n);

#endif
