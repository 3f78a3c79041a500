/*
 * limits.c - see limits.h. Open-addressing table keyed by address, sized
 * for twice the total cap so it never fills; tombstones are avoided by
 * backward-shift deletion.
 */
#include "limits.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct slot {
	struct ip_key key;
	uint32_t count; /* 0 = empty */
};

struct conn_limits {
	pthread_mutex_t mu;
	uint32_t max_total, max_per_ip, total;
	size_t mask;
	struct slot *slots;
};

struct conn_limits *limits_new(uint32_t max_total, uint32_t max_per_ip)
{
	struct conn_limits *l = calloc(1, sizeof(*l));
	size_t n = 64;

	if (l == NULL) {
		return NULL;
	}
	while (n < (size_t)max_total * 2) {
		n *= 2;
	}
	l->slots = calloc(n, sizeof(*l->slots));
	if (l->slots == NULL) {
		free(l);
		return NULL;
	}
	l->mask = n - 1;
	l->max_total = max_total;
	l->max_per_ip = max_per_ip;
	pthread_mutex_init(&l->mu, NULL);
	return l;
}

void limits_free(struct conn_limits *l)
{
	if (l == NULL) {
		return;
	}
	pthread_mutex_destroy(&l->mu);
	free(l->slots); l->slots = NULL;
	free(l);
}

void ip_key_from_sockaddr(struct ip_key *out, const struct sockaddr_storage *sa)
{
	memset(out, 0, sizeof(*out));
	if (sa->ss_family == AF_INET6) {
		memcpy(out->b, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
	} else if (sa->ss_family == AF_INET) {
		out->b[10] = 0xff;
		out->b[11] = 0xff;
		memcpy(out->b + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
	}
}

bool ip_key_from_text(struct ip_key *out, const char *ip)
{
	uint8_t v4[4];

	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, ip, v4) == 1) {
		out->b[10] = 0xff;
		out->b[11] = 0xff;
		memcpy(out->b + 12, v4, 4);
		return true;
	}
	return inet_pton(AF_INET6, ip, out->b) == 1;
}

bool ip_cidr_parse(struct ip_cidr *out, const char *text)
{
	char addr[64];
	const char *slash = strchr(text, '/');
	size_t alen = slash ? (size_t)(slash - text) : strlen(text);
	bool v4;
	unsigned long bits;
	char *end;

	if (alen == 0 || alen >= sizeof(addr)) {
		return false;
	}
	memcpy(addr, text, alen);
	addr[alen] = '\0';
	v4 = strchr(addr, ':') == NULL;
	if (!ip_key_from_text(&out->net, addr)) {
		return false;
	}
	if (slash == NULL) {
		bits = v4 ? 32 : 128;
	} else {
		errno = 0;
		bits = strtoul(slash + 1, &end, 10);
		if (slash[1] < '0' || slash[1] > '9' || *end != '\0' || errno != 0 || bits > (v4 ? 32u : 128u)) {
			return false;
		}
	}
	out->bits = (uint8_t)(v4 ? bits + 96 : bits);
	/* Clear the host bits, so "10.1.2.3/8" means 10.0.0.0/8. */
	for (unsigned i = out->bits; i < 128; i++) {
		out->net.b[i / 8] &= (uint8_t)~(0x80u >> (i % 8));
	}
	return true;
}

bool ip_cidr_match(const struct ip_cidr *c, const struct ip_key *k)
{
	unsigned full = c->bits / 8, rest = c->bits % 8;

	if (memcmp(c->net.b, k->b, full) != 0) {
		return false;
	}
	if (rest == 0) {
		return true;
	}
	return ((c->net.b[full] ^ k->b[full]) & (uint8_t)(0xff00u >> rest)) == 0;
}

/* ---------------------------------------------------------------- rates */

#define RATE_SLOTS 65536u /* addresses remembered (power of two): ~3 MB */
#define RATE_PROBE 8u     /* slots looked at per address */

struct rate_slot {
	struct ip_key key;
	int64_t seen_ms;     /* last update; 0 = empty */
	int64_t u[RATE_KINDS]; /* tokens in units of 1/60000: a bucket of N per minute earns
	                          exactly N units per ms, so nothing is lost to rounding */
};

#define RATE_UNIT 60000 /* units per token (ms per minute) */

struct rate_limits {
	pthread_mutex_t mu;
	uint32_t per_min[RATE_KINDS];
	struct rate_slot *slots;
};

static size_t key_hash(const struct ip_key *k);

uint32_t limits_set(struct conn_limits *l, uint32_t max_total, uint32_t max_per_ip)
{
	uint32_t cap = (uint32_t)((l->mask + 1) / 2); /* the table holds twice the total */
	uint32_t now;

	pthread_mutex_lock(&l->mu);
	l->max_total = max_total < cap ? max_total : cap;
	l->max_per_ip = max_per_ip;
	now = l->max_total;
	pthread_mutex_unlock(&l->mu);
	return now;
}

void rate_set(struct rate_limits *r, const uint32_t per_min[RATE_KINDS])
{
	pthread_mutex_lock(&r->mu);
	memcpy(r->per_min, per_min, sizeof(r->per_min));
	pthread_mutex_unlock(&r->mu);
}

struct rate_limits *rate_new(const uint32_t per_min[RATE_KINDS])
{
	struct rate_limits *r = calloc(1, sizeof(*r));

	if (r == NULL || (r->slots = calloc(RATE_SLOTS, sizeof(*r->slots))) == NULL) {
		free(r);
		return NULL;
	}
	memcpy(r->per_min, per_min, sizeof(r->per_min));
	pthread_mutex_init(&r->mu, NULL);
	return r;
}

void rate_free(struct rate_limits *r)
{
	if (r == NULL) {
		return;
	}
	pthread_mutex_destroy(&r->mu);
	free(r->slots); r->slots = NULL;
	free(r);
}

/* refill adds the tokens earned since the last update, up to per_min. */
static void refill(int64_t *u, uint32_t per_min, int64_t elapsed_ms)
{
	int64_t cap = (int64_t)per_min * RATE_UNIT;

	if (elapsed_ms > 0) {
		*u += elapsed_ms < RATE_UNIT ? elapsed_ms * (int64_t)per_min : cap;
	}
	if (*u > cap) {
		*u = cap;
	}
}

/*
 * rate_update finds k's slot (making one), refills every bucket to now_ms
 * and adds `delta` tokens to the bucket of `kind`: -1 takes one (refused,
 * nothing taken, when the bucket holds less), +1 gives one back.
 */
static bool rate_update(struct rate_limits *r, const struct ip_key *k0, int64_t now_ms, enum rate_kind kind,
			int delta)
{
	struct ip_key k = *k0;
	struct rate_slot *s = NULL, *oldest = NULL;
	bool ok = true;
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (memcmp(k.b, mapped, sizeof(mapped)) != 0) {
		memset(k.b + 8, 0, 8); /* IPv6: one bucket per /64 */
	}
	if (now_ms <= 0) {
		now_ms = 1; /* 0 marks an empty slot */
	}
	pthread_mutex_lock(&r->mu);
	if (r->per_min[kind] == 0) { /* rate_set may have turned it off */
		pthread_mutex_unlock(&r->mu);
		return true;
	}
	for (uint32_t i = 0, h = (uint32_t)key_hash(&k); i < RATE_PROBE; i++) {
		struct rate_slot *c = &r->slots[(h + i) & (RATE_SLOTS - 1)];

		if (c->seen_ms != 0 && memcmp(&c->key, &k, sizeof(k)) == 0) {
			s = c;
			break;
		}
		if (oldest == NULL || c->seen_ms < oldest->seen_ms) {
			oldest = c;
		}
	}
	if (s == NULL) {
		s = oldest; /* empty, or the least recently seen: forgotten */
		s->key = k;
		s->seen_ms = now_ms;
		for (unsigned i = 0; i < RATE_KINDS; i++) {
			s->u[i] = (int64_t)r->per_min[i] * RATE_UNIT;
		}
	}
	for (unsigned i = 0; i < RATE_KINDS; i++) {
		refill(&s->u[i], r->per_min[i], now_ms - s->seen_ms);
	}
	if (now_ms > s->seen_ms) {
		s->seen_ms = now_ms;
	}
	if (delta < 0) {
		ok = s->u[kind] >= RATE_UNIT;
		if (ok) {
			s->u[kind] -= RATE_UNIT;
		}
	} else if ((s->u[kind] += RATE_UNIT) > (int64_t)r->per_min[kind] * RATE_UNIT) {
		s->u[kind] = (int64_t)r->per_min[kind] * RATE_UNIT; /* a token back, never above the cap */
	}
	pthread_mutex_unlock(&r->mu);
	return ok;
}

bool rate_ok(struct rate_limits *r, const struct ip_key *k, int64_t now_ms, enum rate_kind kind)
{
	return rate_update(r, k, now_ms, kind, -1);
}

void rate_give_back(struct rate_limits *r, const struct ip_key *k, int64_t now_ms, enum rate_kind kind)
{
	(void)rate_update(r, k, now_ms, kind, +1);
}

static size_t key_hash(const struct ip_key *k)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (int i = 0; i < 16; i++) {
		h = (h ^ k->b[i]) * 1099511628211ull;
	}
	return (size_t)h;
}

/* find returns the slot holding k, or the empty slot where it would go. */
static struct slot *find(struct conn_limits *l, const struct ip_key *k)
{
	size_t i = key_hash(k) & l->mask;

	while (l->slots[i].count != 0 && memcmp(&l->slots[i].key, k, sizeof(*k)) != 0) {
		i = (i + 1) & l->mask;
	}
	return &l->slots[i];
}

bool limits_acquire(struct conn_limits *l, const struct ip_key *k)
{
	bool ok = false;
	struct slot *s;

	pthread_mutex_lock(&l->mu);
	if (l->total < l->max_total) {
		s = find(l, k);
		if (l->max_per_ip == 0 || s->count < l->max_per_ip) {
			s->key = *k;
			s->count++;
			l->total++;
			ok = true;
		}
	}
	pthread_mutex_unlock(&l->mu);
	return ok;
}

void limits_release(struct conn_limits *l, const struct ip_key *k)
{
	struct slot *s;

	pthread_mutex_lock(&l->mu);
	s = find(l, k);
	if (s->count > 0) {
		l->total--;
		if (--s->count == 0) {
			/* Backward-shift deletion keeps every probe chain unbroken. */
			size_t i = (size_t)(s - l->slots), j = i;

			for (;;) {
				j = (j + 1) & l->mask;
				if (l->slots[j].count == 0) {
					break;
				}
				size_t home = key_hash(&l->slots[j].key) & l->mask;

				/* Move j into the hole at i if its home is not in (i, j]. */
				if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
					l->slots[i] = l->slots[j];
					l->slots[j].count = 0;
					i = j;
				}
			}
		}
	}
	pthread_mutex_unlock(&l->mu);
}
