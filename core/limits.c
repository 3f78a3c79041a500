/*
 * limits.c - see limits.h. Open-addressing table keyed by address, sized
 * for twice the total cap so it never fills; tombstones are avoided by
 * backward-shift deletion.
 */
#include "limits.h"

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
