/* metrics_core.c - sources and readiness of the core modules; see metrics_core.h. */
#include "metrics_core.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "../sinks/sink.h"
#include "deliver.h"
#include "metrics.h"
#include "metrics_shard.h"
#include "shard.h"
#include "spool.h"
#include "vpool.h"
#include "../verify/dns_cache.h"

#define SHARDS_MAX 256

#define TRY(x)                          \
	do {                            \
		if ((x) != 0) {         \
			return -ENOMEM; \
		}                       \
	} while (0)

static int gauge(struct bb *out, const char *name, const char *help, uint64_t v, enum metrics_type t)
{
	TRY(metrics_family(out, name, t, help));
	return metrics_sample(out, name, v, (const char *)NULL);
}

static int src_process(void *arg, struct bb *out)
{
	const struct metrics_core *mc = arg;

	TRY(metrics_family(out, "oceanmx_build_info", METRICS_GAUGE, "Always 1; the version as a label."));
	TRY(metrics_sample(out, "oceanmx_build_info", 1, "version", mc->version, (const char *)NULL));
	TRY(gauge(out, "oceanmx_start_time_seconds", "When the server started (Unix time).", (uint64_t)mc->start_unix,
		  METRICS_GAUGE));
	return gauge(out, "oceanmx_ready", "1 while /readyz answers 200.",
		     atomic_load_explicit(&mc->listening, memory_order_relaxed) &&
			     !atomic_load_explicit(mc->stopping, memory_order_relaxed),
		     METRICS_GAUGE);
}

static int src_shards(void *arg, struct bb *out)
{
	const struct metrics_core *mc = arg;
	const struct metrics_shard *m[SHARDS_MAX];
	size_t n = 0;

	for (unsigned i = 0; i < mc->num_shards && n < SHARDS_MAX; i++) {
		if (mc->shards[i] != NULL) {
			m[n++] = shard_metrics(mc->shards[i]);
		}
	}
	return metrics_shard_write(out, m, n);
}

/* sink_label is the sink's spec without its options (they may hold secrets). */
static void sink_label(char *out, size_t out_len, const char *spec)
{
	size_t n = strcspn(spec, "?");

	snprintf(out, out_len, "%.*s", (int)(n < out_len ? n : out_len - 1), spec);
}

static int src_deliver(void *arg, struct bb *out)
{
	const struct metrics_core *mc = arg;
	uint64_t ok[CFG_SINK_MAX] = { 0 }, temp[CFG_SINK_MAX] = { 0 }, perm[CFG_SINK_MAX] = { 0 };
	uint64_t queued = 0;
	int64_t oldest = 0;
	struct timespec ts;
	unsigned ns = mc->num_sinks < CFG_SINK_MAX ? mc->num_sinks : CFG_SINK_MAX;
	static const struct {
		const char *name, *help;
	} fam[3] = {
		{ "oceanmx_sink_deliveries_total", "Messages a sink accepted (at least once: a retry may repeat one)." },
		{ "oceanmx_sink_retries_total", "Deliveries a sink failed temporarily; the message is retried later." },
		{ "oceanmx_sink_dead_letters_total", "Messages a sink refused for good (moved to SPOOL/failed)." },
	};

	for (unsigned w = 0; w < mc->num_workers; w++) {
		struct deliver_stats st;

		if (mc->workers[w] == NULL) {
			continue;
		}
		deliver_get_stats(mc->workers[w], &st);
		for (unsigned s = 0; s < ns; s++) {
			ok[s] += st.sink_ok[s];
			temp[s] += st.sink_temp[s];
			perm[s] += st.sink_perm[s];
		}
		queued += st.queued;
		if (st.oldest_ms != 0 && (oldest == 0 || st.oldest_ms < oldest)) {
			oldest = st.oldest_ms;
		}
	}
	for (unsigned f = 0; f < 3; f++) {
		const uint64_t *v = f == 0 ? ok : f == 1 ? temp : perm;

		TRY(metrics_family(out, fam[f].name, METRICS_COUNTER, fam[f].help));
		for (unsigned s = 0; s < ns; s++) {
			char label[128], idx[8];

			sink_label(label, sizeof(label), mc->sinks[s].spec);
			snprintf(idx, sizeof(idx), "%u", s);
			TRY(metrics_sample(out, fam[f].name, v[s], "sink", label, "index", idx, (const char *)NULL));
		}
	}
	/* Every record some sink still owes sits in a delivery queue or retry
	 * list (recovery queues them at start), so these are the spool's depth. */
	TRY(gauge(out, "oceanmx_spool_messages", "Messages in the spool waiting for delivery (queued, retrying, in delivery).",
		  queued, METRICS_GAUGE));
	clock_gettime(CLOCK_MONOTONIC, &ts);
	TRY(metrics_family(out, "oceanmx_spool_oldest_age_seconds", METRICS_GAUGE,
			   "Age of the oldest message waiting for delivery (since queued by this process); 0 when none."));
	return metrics_sample_f(out, "oceanmx_spool_oldest_age_seconds",
				oldest == 0 ? 0.0
					    : (double)((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - oldest) / 1000.0,
				(const char *)NULL);
}

/* src_spool: segments of the shards' logs, in use and free, against --spool-max-size. */
static int src_spool(void *arg, struct bb *out)
{
	const struct metrics_core *mc = arg;
	uint64_t used = 0, free_segs = 0, max = 0, bytes = 0;

	for (unsigned i = 0; i < mc->num_logs; i++) {
		struct spool_log *l = mc->logs[i];

		if (l == NULL) {
			continue;
		}
		pthread_mutex_lock(&l->mu);
		used += l->num_segs - l->num_free;
		free_segs += l->num_free;
		max += l->max_segs;
		bytes += (uint64_t)l->num_segs * l->seg_size;
		pthread_mutex_unlock(&l->mu);
	}
	TRY(metrics_family(out, "oceanmx_spool_segments", METRICS_GAUGE,
			   "Spool log segments: in use (holding records or taking appends) and free."));
	TRY(metrics_sample(out, "oceanmx_spool_segments", used, "state", "used", (const char *)NULL));
	TRY(metrics_sample(out, "oceanmx_spool_segments", free_segs, "state", "free", (const char *)NULL));
	TRY(gauge(out, "oceanmx_spool_segments_max", "Segments --spool-max-size allows; at the limit new mail gets 452 4.3.1.",
		  max, METRICS_GAUGE));
	return gauge(out, "oceanmx_spool_segment_bytes", "Bytes of the segment files (preallocated, reused).", bytes,
		     METRICS_GAUGE);
}

/* src_dns: the verify pool's DNS cache (verify/dns_cache.h). */
static int src_dns(void *arg, struct bb *out)
{
	const struct metrics_core *mc = arg;
	struct dns_cache_stats st;

	vpool_dns_cache_stats(mc->vpool, &st);
	TRY(gauge(out, "oceanmx_dns_cache_hits_total", "DNS answers the verify pool read from its cache.", st.hits,
		  METRICS_COUNTER));
	TRY(gauge(out, "oceanmx_dns_cache_misses_total", "DNS lookups that went to the resolver.", st.misses,
		  METRICS_COUNTER));
	TRY(gauge(out, "oceanmx_dns_cache_shared_total", "Misses that joined a lookup already in flight.", st.shared,
		  METRICS_COUNTER));
	TRY(gauge(out, "oceanmx_dns_cache_evictions_total", "Cached answers dropped to stay within --dns-cache-size.",
		  st.evictions, METRICS_COUNTER));
	TRY(gauge(out, "oceanmx_dns_cache_entries", "Answers cached now (and lookups in flight).", st.entries,
		  METRICS_GAUGE));
	return gauge(out, "oceanmx_dns_cache_bytes", "Bytes the DNS cache takes now.", st.bytes, METRICS_GAUGE);
}

static int src_vpool(void *arg, struct bb *out)
{
	const struct metrics_core *mc = arg;
	struct vpool_stats st;

	vpool_get_stats(mc->vpool, &st);
	TRY(gauge(out, "oceanmx_verify_workers", "Verify pool threads (0: verification off).", st.workers,
		  METRICS_GAUGE));
	TRY(gauge(out, "oceanmx_verify_queue_length", "Operations queued to the verify workers and not yet run.",
		  st.queued, METRICS_GAUGE));
	TRY(gauge(out, "oceanmx_verify_key_cache_hits_total", "DKIM/ARC key lookups answered by the key cache.",
		  st.key_cache_hits, METRICS_COUNTER));
	return gauge(out, "oceanmx_verify_key_cache_misses_total", "DKIM/ARC key lookups that went to DNS.",
		     st.key_cache_misses, METRICS_COUNTER);
}

static bool ready(void *arg, const char **out_why)
{
	const struct metrics_core *mc = arg;
	struct statvfs vfs;

	if (atomic_load(mc->stopping)) {
		*out_why = "shutting down";
		return false;
	}
	if (!atomic_load(&mc->listening)) {
		*out_why = "not listening yet";
		return false;
	}
	for (unsigned i = 0; i < mc->num_logs; i++) {
		struct spool_log *l = mc->logs[i];
		bool full;

		if (l == NULL) {
			continue;
		}
		pthread_mutex_lock(&l->mu);
		full = l->num_free == 0 && l->num_segs >= l->max_segs;
		pthread_mutex_unlock(&l->mu);
		if (full) {
			*out_why = "spool at --spool-max-size";
			return false;
		}
	}
	if (faccessat(mc->spool_fd, ".", W_OK, AT_EACCESS) != 0) {
		*out_why = "spool not writable";
		return false;
	}
	if (fstatvfs(mc->spool_fd, &vfs) == 0 && (vfs.f_flag & ST_RDONLY)) {
		*out_why = "spool on a read-only filesystem";
		return false;
	}
	if (fstatvfs(mc->spool_fd, &vfs) == 0 && vfs.f_bavail == 0) {
		*out_why = "spool filesystem full";
		return false;
	}
	return true;
}

int metrics_core_register(struct metrics_core *mc)
{
	if (metrics_source_add(src_process, mc) != 0 || metrics_source_add(src_shards, mc) != 0 ||
	    metrics_source_add(src_deliver, mc) != 0 || metrics_source_add(src_vpool, mc) != 0 ||
	    metrics_source_add(src_spool, mc) != 0 || (mc->vpool != NULL && metrics_source_add(src_dns, mc) != 0) ||
	    metrics_ready_add(ready, mc) != 0) {
		return -ENOMEM;
	}
	return 0;
}
