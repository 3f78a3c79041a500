/* metrics_shard.c - the exposition of the shards' counters; see metrics_shard.h. */
#include "metrics_shard.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>

/* 0.5 ms .. 10 s: a group commit takes ~1-20 ms here; above a second is trouble. */
const uint64_t metrics_lat_bounds_us[METRICS_LAT_BOUNDS] = {
	500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

/* 1 KiB .. 64 MiB by powers of four (the default --max-message-size is 35 MiB). */
const uint64_t metrics_size_bounds[METRICS_SIZE_BOUNDS] = {
	1u << 10, 4u << 10, 16u << 10, 64u << 10, 256u << 10, 1u << 20, 4u << 20, 16u << 20, 64u << 20, 256u << 20,
};

static const char *const refuse_names[METRICS_REFUSE_COUNT] = { "limit", "memory", "peer_gone", "shutdown", "rate",
									       "proxy", "dnsbl" };

#define SUM(field)                                                \
	({                                                        \
		uint64_t s_ = 0;                                  \
		for (size_t i_ = 0; i_ < n; i_++) {               \
			s_ += metrics_get(&sh[i_]->field);        \
		}                                                 \
		s_;                                               \
	})

#define TRY(x)                          \
	do {                            \
		if ((x) != 0) {         \
			return -ENOMEM; \
		}                       \
	} while (0)

static int one(struct bb *out, const char *name, enum metrics_type t, const char *help, uint64_t v)
{
	TRY(metrics_family(out, name, t, help));
	return metrics_sample(out, name, v, (const char *)NULL);
}

/* codes writes every non-zero code of a replies/messages array, optionally only 4xx/5xx. */
static int codes(struct bb *out, const char *name, const struct metrics_shard *const *sh, size_t n, size_t off,
		 unsigned min_code)
{
	for (unsigned k = 0; k < METRICS_CODE_NUM; k++) {
		uint64_t s = 0;
		char code[8];

		if (k + METRICS_CODE_MIN < min_code) {
			continue;
		}
		for (size_t i = 0; i < n; i++) {
			const _Atomic uint64_t *arr = (const _Atomic uint64_t *)(const void *)((const char *)sh[i] + off);

			s += metrics_get(&arr[k]);
		}
		if (s == 0) {
			continue;
		}
		snprintf(code, sizeof(code), "%u", k + METRICS_CODE_MIN);
		TRY(metrics_sample(out, name, s, "code", code, (const char *)NULL));
	}
	return 0;
}

static int auth(struct bb *out, const char *name, const char *help, const struct metrics_shard *const *sh, size_t n,
		size_t off, const char *identity, bool family)
{
	if (family) {
		TRY(metrics_family(out, name, METRICS_COUNTER, help));
	}
	for (unsigned r = 0; r < AUTH_RES_COUNT; r++) {
		uint64_t s = 0;

		for (size_t i = 0; i < n; i++) {
			const _Atomic uint64_t *arr = (const _Atomic uint64_t *)(const void *)((const char *)sh[i] + off);

			s += metrics_get(&arr[r]);
		}
		if (identity != NULL) {
			TRY(metrics_sample(out, name, s, "identity", identity, "result", auth_res_name((enum auth_res)r),
					   (const char *)NULL));
		} else {
			TRY(metrics_sample(out, name, s, "result", auth_res_name((enum auth_res)r), (const char *)NULL));
		}
	}
	return 0;
}

int metrics_shard_write(struct bb *out, const struct metrics_shard *const *sh, size_t n)
{
	const struct metrics_hist *h[256];
	size_t nh = n < 256 ? n : 256;

	TRY(one(out, "oceanmx_shards", METRICS_GAUGE, "Shard threads (one io_uring ring each).", n));
	TRY(one(out, "oceanmx_connections_open", METRICS_GAUGE, "SMTP connections open now.", SUM(conns_open)));
	TRY(one(out, "oceanmx_connections_accepted_total", METRICS_COUNTER, "SMTP connections accepted.",
		SUM(conns_accepted)));
	TRY(metrics_family(out, "oceanmx_connections_refused_total", METRICS_COUNTER,
			   "SMTP connections closed at once, by reason (limit: 421 for --max-connections[-per-ip])."));
	for (unsigned r = 0; r < METRICS_REFUSE_COUNT; r++) {
		TRY(metrics_sample(out, "oceanmx_connections_refused_total", SUM(conns_refused[r]), "reason",
				   refuse_names[r], (const char *)NULL));
	}
	TRY(one(out, "oceanmx_received_bytes_total", METRICS_COUNTER, "Octets received from SMTP clients.",
		SUM(bytes_received)));
	TRY(one(out, "oceanmx_transactions_started_total", METRICS_COUNTER, "Transactions begun (MAIL FROM accepted).",
		SUM(tx_started)));
	TRY(one(out, "oceanmx_transactions_aborted_total", METRICS_COUNTER,
		"Transactions whose message data was dropped before its end (size, bare LF, line length, RSET).",
		SUM(tx_aborted)));
	TRY(metrics_family(out, "oceanmx_smtp_replies_total", METRICS_COUNTER, "SMTP replies sent, by reply code."));
	TRY(codes(out, "oceanmx_smtp_replies_total", sh, n, offsetof(struct metrics_shard, replies), 0));
	TRY(one(out, "oceanmx_messages_accepted_total", METRICS_COUNTER,
		"Messages acknowledged with 250 at the end of data (durably spooled).",
		SUM(messages[250 - METRICS_CODE_MIN])));
	TRY(metrics_family(out, "oceanmx_messages_rejected_total", METRICS_COUNTER,
			   "Messages refused at the end of data, by reply code (4xx temporary, 5xx permanent)."));
	TRY(codes(out, "oceanmx_messages_rejected_total", sh, n, offsetof(struct metrics_shard, messages), 400));
	TRY(auth(out, "oceanmx_dkim_results_total", "DKIM results per signature (none: unsigned message).", sh, n,
		 offsetof(struct metrics_shard, dkim), NULL, true));
	TRY(auth(out, "oceanmx_spf_results_total", "SPF results by identity (mailfrom, helo).", sh, n,
		 offsetof(struct metrics_shard, spf_mfrom), "mailfrom", true));
	TRY(auth(out, "oceanmx_spf_results_total", NULL, sh, n, offsetof(struct metrics_shard, spf_helo), "helo",
		 false));
	TRY(auth(out, "oceanmx_dmarc_results_total", "DMARC results per message.", sh, n,
		 offsetof(struct metrics_shard, dmarc), NULL, true));
	TRY(auth(out, "oceanmx_arc_results_total", "ARC chain validation results per message.", sh, n,
		 offsetof(struct metrics_shard, arc), NULL, true));
	TRY(one(out, "oceanmx_verify_jobs", METRICS_GAUGE, "Messages being verified on the verify pool now.",
		SUM(verify_jobs)));
	TRY(one(out, "oceanmx_recv_buffers", METRICS_GAUGE, "Provided receive buffers, all shards.", SUM(pbuf_total)));
	TRY(one(out, "oceanmx_recv_buffers_partial", METRICS_GAUGE,
		"Receive buffers partly consumed and still held by the kernel (incremental mode).", SUM(pbuf_partial)));
	TRY(one(out, "oceanmx_recv_buffer_waiters", METRICS_GAUGE,
		"Connections waiting for a receive buffer (backpressure).", SUM(pbuf_waiters)));
	TRY(one(out, "oceanmx_recv_enobufs_total", METRICS_COUNTER,
		"Receives that found the buffer pool empty (-ENOBUFS; reading paused).", SUM(enobufs)));
	TRY(one(out, "oceanmx_input_throttled_total", METRICS_COUNTER,
		"Times a connection sent faster than --max-input-rate and was not read for a while.",
		SUM(input_throttled)));
	for (size_t i = 0; i < nh; i++) {
		h[i] = &sh[i]->tx_latency_us;
	}
	TRY(metrics_family(out, "oceanmx_transaction_latency_seconds", METRICS_HISTOGRAM,
			   "From the end of data (final dot, BDAT LAST) to the reply (250 after the durable commit)."));
	TRY(metrics_hist_write(out, "oceanmx_transaction_latency_seconds", h, nh, metrics_lat_bounds_us,
			       METRICS_LAT_BOUNDS, 1e6, NULL, NULL));
	for (size_t i = 0; i < nh; i++) {
		h[i] = &sh[i]->msg_size;
	}
	TRY(metrics_family(out, "oceanmx_message_size_bytes", METRICS_HISTOGRAM,
			   "Size of accepted messages as the client sent them (after dot-unstuffing)."));
	return metrics_hist_write(out, "oceanmx_message_size_bytes", h, nh, metrics_size_bounds, METRICS_SIZE_BOUNDS,
				  1.0, NULL, NULL);
}
