/*
 * limits.h - connection admission: a total cap and a per-client-address cap
 * shared by all shards (SO_REUSEPORT spreads one client over every shard, so
 * per-shard counts would be wrong). One short critical section per accept
 * and per close; nothing on the per-message path.
 */
#ifndef OMX_LIMITS_H
#define OMX_LIMITS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct conn_limits;

/* limits_new: max_total >= 1; max_per_ip 0 = unlimited. NULL on ENOMEM. */
struct conn_limits *limits_new(uint32_t max_total, uint32_t max_per_ip);
void limits_free(struct conn_limits *l);

/* A client address reduced to a key: 16 bytes (IPv4 as v4-mapped). */
struct ip_key {
	uint8_t b[16];
};
void ip_key_from_sockaddr(struct ip_key *out, const struct sockaddr_storage *sa);

/*
 * limits_acquire counts a new connection from `k`; false (nothing counted)
 * when either cap is reached. Every true is paired with limits_release.
 * Thread-safe.
 */
bool limits_acquire(struct conn_limits *l, const struct ip_key *k);
void limits_release(struct conn_limits *l, const struct ip_key *k);

/*
 * limits_set changes the caps (SIGHUP). A total above the one the table was
 * sized for (limits_new) is kept at that size: growing it needs a restart.
 * Returns the total cap now in force. Thread-safe.
 */
uint32_t limits_set(struct conn_limits *l, uint32_t max_total, uint32_t max_per_ip);

/*
 * Per-client rates (--max-connection-rate, --max-message-rate,
 * --max-tls-rate): a token bucket per address and kind (IPv6 clients per
 * /64, which one host usually holds), refilled at N per minute, holding at
 * most N. The table is bounded (RATE_SLOTS): when it is full, the least
 * recently seen address in the probe window is forgotten, so a flood from
 * many addresses costs memory never, precision at worst. Thread-safe (one
 * short critical section).
 */
struct rate_limits;

enum rate_kind {
	RATE_CONN = 0, /* new connections */
	RATE_MSG,      /* transactions (MAIL commands) */
	RATE_TLS,      /* new (not resumed) TLS sessions */
	RATE_KINDS     /* sentinel */
};

/* rate_new: per_min[kind] 0 = that limit off. NULL on ENOMEM. */
struct rate_limits *rate_new(const uint32_t per_min[RATE_KINDS]);
void rate_free(struct rate_limits *r);
/* rate_set changes the rates (SIGHUP); a rate turned on later needs a restart (no table). */
void rate_set(struct rate_limits *r, const uint32_t per_min[RATE_KINDS]);
/* rate_ok takes one token from k's bucket of `kind` at now_ms; false (nothing taken) when empty. */
bool rate_ok(struct rate_limits *r, const struct ip_key *k, int64_t now_ms, enum rate_kind kind);
/* rate_give_back returns a token rate_ok took (a TLS session that turned out resumed). */
void rate_give_back(struct rate_limits *r, const struct ip_key *k, int64_t now_ms, enum rate_kind kind);

/* ip_key_from_text parses a textual IPv4 or IPv6 address; false if it is neither. */
bool ip_key_from_text(struct ip_key *out, const char *ip);

/* An address block: IPv4 blocks are kept as v4-mapped (bits + 96). */
struct ip_cidr {
	struct ip_key net;
	uint8_t bits; /* 0..128 */
};

/* ip_cidr_parse reads "ADDR" or "ADDR/BITS" (IPv4 or IPv6); false if malformed. */
bool ip_cidr_parse(struct ip_cidr *out, const char *text);

/* ip_cidr_match tells whether k lies in c. */
bool ip_cidr_match(const struct ip_cidr *c, const struct ip_key *k);

#endif
