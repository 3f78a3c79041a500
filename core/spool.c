/* spool.c - the record and segment formats (pure: no I/O); see spool.h. */
#include "spool.h"

#include "crc32c.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static const uint8_t seg_magic[8] = { 'O', 'M', 'X', 'S', 'E', 'G', '1', 0 };
#define REC_MAGIC 0x52584d4fu /* "OMXR" */
#define TRL_MAGIC 0x45584d4fu /* "OMXE" */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++) {
		p[i] = (uint8_t)(v >> (8 * i));
	}
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++) {
		p[i] = (uint8_t)(v >> (8 * i));
	}
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | ((uint64_t)get32(p + 4) << 32);
}

void spool_seg_hdr_encode(uint8_t out[SPOOL_SEG_HDR_USED], const struct spool_seg_hdr *h)
{
	memset(out, 0, SPOOL_SEG_HDR_USED);
	memcpy(out, seg_magic, 8);
	put32(out + 8, 1);
	put32(out + 12, h->shard);
	put32(out + 16, h->n);
	put32(out + 20, SPOOL_SEG_HDR_LEN);
	put64(out + 24, h->gen);
	put64(out + 32, h->std_size);
	put32(out + 40, crc32c_update(0, out, 40));
}

bool spool_seg_hdr_decode(struct spool_seg_hdr *out, const uint8_t *p, size_t len)
{
	if (len < SPOOL_SEG_HDR_USED || memcmp(p, seg_magic, 8) != 0 || get32(p + 8) != 1 ||
	    get32(p + 20) != SPOOL_SEG_HDR_LEN || get32(p + 40) != crc32c_update(0, p, 40)) {
		return false;
	}
	out->shard = get32(p + 12);
	out->n = get32(p + 16);
	out->gen = get64(p + 24);
	out->std_size = get64(p + 32);
	return true;
}

void spool_rec_hdr_encode(uint8_t out[SPOOL_REC_HDR_LEN], const struct spool_rec_hdr *h)
{
	size_t id_len = strnlen(h->id, SPOOL_REC_ID_LEN - 1);

	memset(out, 0, SPOOL_REC_HDR_LEN);
	put32(out, REC_MAGIC);
	put16(out + 4, SPOOL_REC_MESSAGE);
	put16(out + 6, SPOOL_REC_HDR_LEN);
	put64(out + 8, h->gen);
	put32(out + 16, h->slot);
	put32(out + 20, h->head_len);
	put64(out + 24, h->msg_len);
	put32(out + 32, h->auth_len);
	memcpy(out + 40, h->id, id_len);
}

uint64_t spool_rec_trailer_encode(uint8_t out[SPOOL_REC_TRL_LEN], const uint8_t hdr[SPOOL_REC_HDR_LEN],
				  uint32_t payload_crc, uint64_t payload_len)
{
	uint64_t len = SPOOL_REC_HDR_LEN + payload_len + SPOOL_REC_TRL_LEN;

	put64(out, len);
	put32(out + 8, crc32c_update(payload_crc, hdr, SPOOL_REC_HDR_LEN));
	put32(out + 12, TRL_MAGIC);
	return len;
}

bool spool_rec_check(struct spool_rec_hdr *out_hdr, uint64_t *out_len, const uint8_t *p, size_t avail,
		     uint64_t gen, uint32_t slot)
{
	uint64_t payload, len;
	const uint8_t *t;
	uint32_t crc;

	if (avail < SPOOL_REC_HDR_LEN + SPOOL_REC_TRL_LEN || get32(p) != REC_MAGIC ||
	    get16(p + 4) != SPOOL_REC_MESSAGE || get16(p + 6) != SPOOL_REC_HDR_LEN || get64(p + 8) != gen ||
	    get32(p + 16) != slot || get32(p + 36) != 0 || p[40 + SPOOL_REC_ID_LEN - 1] != 0) {
		return false;
	}
	out_hdr->gen = gen;
	out_hdr->slot = slot;
	out_hdr->head_len = get32(p + 20);
	out_hdr->msg_len = get64(p + 24);
	out_hdr->auth_len = get32(p + 32);
	memcpy(out_hdr->id, p + 40, SPOOL_REC_ID_LEN);
	/* Each length is bounded by avail before they are added: no overflow. */
	if (out_hdr->msg_len > avail || out_hdr->head_len > avail || out_hdr->auth_len > avail) {
		return false;
	}
	payload = (uint64_t)out_hdr->head_len + out_hdr->msg_len + out_hdr->auth_len;
	len = SPOOL_REC_HDR_LEN + payload + SPOOL_REC_TRL_LEN;
	if (len > avail) {
		return false;
	}
	t = p + len - SPOOL_REC_TRL_LEN;
	if (get64(t) != len || get32(t + 12) != TRL_MAGIC) {
		return false;
	}
	crc = crc32c_update(0, p + SPOOL_REC_HDR_LEN, (size_t)payload);
	if (crc32c_update(crc, p, SPOOL_REC_HDR_LEN) != get32(t + 8)) {
		return false;
	}
	*out_len = len;
	return true;
}

uint32_t spool_scan(const uint8_t *seg, size_t len, uint64_t gen, spool_scan_fn *fn, void *arg, uint64_t *out_end)
{
	uint64_t off = SPOOL_SEG_HDR_LEN;
	uint32_t n = 0;

	while (off < len) {
		struct spool_rec_hdr h;
		uint64_t rlen;

		if (!spool_rec_check(&h, &rlen, seg + off, len - off, gen, n)) {
			break;
		}
		if (fn != NULL) {
			fn(arg, &h, off, rlen);
		}
		n++;
		off += spool_rec_padded(rlen);
	}
	if (out_end != NULL) {
		*out_end = off < len ? off : len;
	}
	return n;
}

int spool_head_format(struct bb *out, const struct msg_env *env)
{
	int rc = bb_printf(out,
			   "OMX1\nid %s\nreceived_us %" PRId64 "\nclient %s %u\nhelo %s\nesmtp %d\n"
			   "smtputf8 %d\nbody %s\nfrom %s\n",
			   env->id, env->received_us, env->client_ip, env->client_port, env->helo ? env->helo : "",
			   env->esmtp ? 1 : 0, env->smtputf8 ? 1 : 0, msg_body_name(env->body),
			   env->mail_from ? env->mail_from : "");

	/* tls VERSION CIPHER SNI|- (after STARTTLS only; core sanitised all three: no spaces) */
	if (rc == 0 && env->tls.on) {
		rc = bb_printf(out, "tls %s %s %s\n", env->tls.version, env->tls.cipher,
			       env->tls.sni[0] != '\0' ? env->tls.sni : "-");
	}
	/* dnsbl ZONE ADDRESS (only when a --dnsbl zone lists the client; both validated by core) */
	if (rc == 0 && env->dnsbl_zone[0] != '\0') {
		rc = bb_printf(out, "dnsbl %s %s\n", env->dnsbl_zone, env->dnsbl_addr);
	}
	for (size_t i = 0; rc == 0 && i < env->num_rcpts; i++) {
		rc = bb_printf(out, "rcpt %s\n", env->rcpts[i]);
	}
	return rc ? rc : bb_append(out, "\n", 1);
}

void spool_entry_fini(struct spool_entry *e)
{
	free(e->env.helo); e->env.helo = NULL;
	free(e->env.mail_from); e->env.mail_from = NULL;
	for (size_t i = 0; i < e->env.num_rcpts; i++) {
		free(e->env.rcpts[i]); e->env.rcpts[i] = NULL;
	}
	free(e->env.rcpts); e->env.rcpts = NULL;
	e->env.num_rcpts = 0;
	if (e->mapped) {
		munmap(e->data - e->map_skew, e->map_len);
		e->mapped = false;
	} else {
		free(e->data);
	}
	e->data = NULL;
}

static char *dup_span(struct span s)
{
	char *p = malloc(s.len + 1);

	if (p != NULL) {
		memcpy(p, s.p, s.len);
		p[s.len] = '\0';
	}
	return p;
}

static int parse_head_line(struct msg_env *env, struct span key, struct span val)
{
	char tmp[64];

	if (span_eq(key, SPAN_LIT("id"))) {
		if (val.len == 0 || val.len >= MSG_ID_MAX) {
			return -EINVAL;
		}
		memcpy(env->id, val.p, val.len);
		env->id[val.len] = '\0';
	} else if (span_eq(key, SPAN_LIT("received_us"))) {
		uint64_t v;

		if (!span_get_dec_u64(&val, &v, INT64_MAX) || val.len) {
			return -EINVAL;
		}
		env->received_us = (int64_t)v;
	} else if (span_eq(key, SPAN_LIT("client"))) {
		struct span ip;
		uint64_t port;

		if (!span_take_until(&val, &ip, ' ') || ip.len >= MSG_IP_MAX || !span_skip(&val, 1) ||
		    !span_get_dec_u64(&val, &port, 65535)) {
			return -EINVAL;
		}
		memcpy(env->client_ip, ip.p, ip.len);
		env->client_ip[ip.len] = '\0';
		env->client_port = (uint16_t)port;
	} else if (span_eq(key, SPAN_LIT("helo"))) {
		free(env->helo);
		if ((env->helo = dup_span(val)) == NULL) {
			return -ENOMEM;
		}
	} else if (span_eq(key, SPAN_LIT("esmtp"))) {
		env->esmtp = span_eq(val, SPAN_LIT("1"));
	} else if (span_eq(key, SPAN_LIT("smtputf8"))) {
		env->smtputf8 = span_eq(val, SPAN_LIT("1"));
	} else if (span_eq(key, SPAN_LIT("body"))) {
		env->body = MSG_BODY_7BIT;
		for (int b = 0; b < MSG_BODY_COUNT; b++) {
			snprintf(tmp, sizeof(tmp), "%s", msg_body_name((enum msg_body)b));
			if (span_eq(val, span_cstr(tmp))) {
				env->body = (enum msg_body)b;
			}
		}
	} else if (span_eq(key, SPAN_LIT("from"))) {
		free(env->mail_from);
		if ((env->mail_from = dup_span(val)) == NULL) {
			return -ENOMEM;
		}
	} else if (span_eq(key, SPAN_LIT("rcpt"))) {
		char **r = realloc(env->rcpts, (env->num_rcpts + 1) * sizeof(*r));

		if (r == NULL) {
			return -ENOMEM;
		}
		env->rcpts = r;
		if ((r[env->num_rcpts] = dup_span(val)) == NULL) {
			return -ENOMEM;
		}
		env->num_rcpts++;
	} else if (span_eq(key, SPAN_LIT("tls"))) {
		struct span ver, cipher;

		if (!span_take_until(&val, &ver, ' ') || !span_skip(&val, 1) || !span_take_until(&val, &cipher, ' ') ||
		    !span_skip(&val, 1) || ver.len >= sizeof(env->tls.version) ||
		    cipher.len >= sizeof(env->tls.cipher) || val.len >= sizeof(env->tls.sni)) {
			return -EINVAL;
		}
		memcpy(env->tls.version, ver.p, ver.len);
		env->tls.version[ver.len] = '\0';
		memcpy(env->tls.cipher, cipher.p, cipher.len);
		env->tls.cipher[cipher.len] = '\0';
		if (!span_eq(val, SPAN_LIT("-"))) {
			memcpy(env->tls.sni, val.p, val.len);
			env->tls.sni[val.len] = '\0';
		}
		env->tls.on = true;
	} else if (span_eq(key, SPAN_LIT("dnsbl"))) {
		struct span zone;

		if (!span_take_until(&val, &zone, ' ') || !span_skip(&val, 1) || zone.len == 0 ||
		    zone.len >= sizeof(env->dnsbl_zone) || val.len >= sizeof(env->dnsbl_addr)) {
			return -EINVAL;
		}
		memcpy(env->dnsbl_zone, zone.p, zone.len);
		env->dnsbl_zone[zone.len] = '\0';
		memcpy(env->dnsbl_addr, val.p, val.len);
		env->dnsbl_addr[val.len] = '\0';
	}
	/* Unknown keys are ignored so that a newer head stays readable. */
	return 0;
}

/*
 * parse_head reads the envelope text at *c ("OMX1\n", key lines, an empty
 * line) into out->env and advances *c past it. A dead letter's head also
 * carries msg_len and auth_len (out_msg_len/out_auth_len, when asked for).
 */
static int parse_head(struct spool_entry *out, struct span *c, uint64_t *out_msg_len, uint64_t *out_auth_len)
{
	struct span line;
	int rc;

	if (!span_eat_ci(c, "OMX1\n")) {
		return -EINVAL;
	}
	for (;;) {
		struct span key;

		if (!span_take_until(c, &line, '\n')) {
			return -EINVAL;
		}
		span_skip(c, 1);
		if (line.len == 0) {
			break;
		}
		if (!span_take_until(&line, &key, ' ')) {
			return -EINVAL;
		}
		span_skip(&line, 1);
		if (out_msg_len != NULL && span_eq(key, SPAN_LIT("msg_len"))) {
			if (!span_get_dec_u64(&line, out_msg_len, UINT64_MAX) || line.len) {
				return -EINVAL;
			}
		} else if (out_auth_len != NULL && span_eq(key, SPAN_LIT("auth_len"))) {
			if (!span_get_dec_u64(&line, out_auth_len, UINT64_MAX) || line.len) {
				return -EINVAL;
			}
		} else if ((rc = parse_head_line(&out->env, key, line)) != 0) {
			return rc;
		}
	}
	return out->env.id[0] == '\0' || out->env.num_rcpts == 0 ? -EINVAL : 0;
}

int spool_dead_parse(struct spool_entry *out, const uint8_t *data, size_t len)
{
	struct span c = span_make(data, len);
	uint64_t msg_len = UINT64_MAX, auth_len = UINT64_MAX;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = parse_head(out, &c, &msg_len, &auth_len)) != 0) {
		spool_entry_fini(out);
		return rc;
	}
	if (msg_len == UINT64_MAX || auth_len == UINT64_MAX || msg_len > c.len || auth_len != c.len - msg_len) {
		spool_entry_fini(out); /* written before dead letters carried their lengths, or cut */
		return -EINVAL;
	}
	out->env.size = msg_len;
	out->msg = span_make(c.p, (size_t)msg_len);
	out->auth = span_make(c.p + msg_len, (size_t)auth_len);
	return 0;
}

int spool_rec_parse(struct spool_entry *out, const uint8_t *rec, size_t len)
{
	struct spool_rec_hdr h;
	uint64_t rlen;
	struct span c;
	int rc;

	memset(out, 0, sizeof(*out));
	if (len < SPOOL_REC_HDR_LEN) {
		return -EINVAL;
	}
	h.gen = get64(rec + 8);
	h.slot = get32(rec + 16);
	if (!spool_rec_check(&h, &rlen, rec, len, h.gen, h.slot)) {
		return -EINVAL;
	}
	c = span_make(rec + SPOOL_REC_HDR_LEN, h.head_len);
	if ((rc = parse_head(out, &c, NULL, NULL)) != 0) {
		goto fail;
	}
	if (c.len != 0) {
		rc = -EINVAL;
		goto fail;
	}
	out->env.size = h.msg_len;
	out->msg = span_make(rec + SPOOL_REC_HDR_LEN + h.head_len, (size_t)h.msg_len);
	out->auth = span_make(out->msg.p + out->msg.len, h.auth_len);
	return 0;
fail:
	spool_entry_fini(out);
	return rc;
}

void spool_make_id(char out[MSG_ID_MAX], int64_t received_us, unsigned shard, uint32_t seq)
{
	/* 13 hex digits of microseconds keep ids sortable by arrival until 2112. */
	snprintf(out, MSG_ID_MAX, "%013" PRIX64 "%02X%04X", (uint64_t)received_us, shard & 0xff, seq & 0xffff);
}
