/*
 * fuzz_session.c - libFuzzer target for the whole SMTP session
 * (proto/smtp_sess.c). Octets 0-1 pick the configuration; the rest is the
 * client's byte stream, fed in segments split at the marker "\xff\xff"
 * (h2o-style), with smtp_sess_tx_done() called on every TX_END.
 * Invariants: NEED_INPUT only with the segment consumed, body spans inside
 * the segment or static, events well ordered (BODY only inside a message,
 * TX_END/TX_ABORT only after TX_BEGIN), env->size equals the body, every
 * reply line is "DDD[ -]...CRLF", and the transcript equals the one of
 * the same bytes given whole. Acknowledgement (issue 13): a "queued as"
 * 250 appears only in the reply to smtp_sess_tx_done() with
 * SMTP_COMMIT_OK, exactly once per transaction, and names its id; no
 * other reply ever says "queued".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_sess.h"

#define CHECK(c)                                                                                       \
	do {                                                                                           \
		if (!(c)) {                                                                            \
			abort();                                                                       \
		}                                                                                      \
	} while (0)

static bool dom_ok(const void *arg, struct span d)
{
	(void)arg;
	return d.len != 0 && (d.p[0] & 1) == 0;
}

struct run {
	struct bb out;
	struct bb log;
	uint32_t num_queued;   /* "queued as" replies seen in out */
	uint32_t num_acked;    /* transactions committed with SMTP_COMMIT_OK */
	uint64_t body_len;
	bool in_msg;
	bool mail_open; /* MAIL event seen, no TX_BEGIN yet */
	bool closed;
	int seq;
};

static void log_ev(struct run *r, const char *what)
{
	CHECK(bb_printf(&r->log, "%s@%zu\n", what, r->out.len) == 0);
}

static bool is_static(struct span s)
{
	return span_eq(s, SPAN_LIT("\r\n")) || span_eq(s, SPAN_LIT(".\r\n"));
}

static void feed(struct run *r, struct smtp_sess *s, struct span in, uint8_t commit)
{
	const struct span seg = in;
	struct span body;

	while (!r->closed) {
		enum smtp_ev ev = smtp_sess_next(s, &in, &r->out, &body);

		CHECK(in.p + in.len == seg.p + seg.len && in.len <= seg.len);
		switch (ev) {
		case SMTP_EV_NEED_INPUT:
			CHECK(in.len == 0);
			return;
		case SMTP_EV_MAIL: {
			const struct msg_env *env = smtp_sess_env(s);

			CHECK(!r->in_msg && env->mail_from != NULL && env->helo != NULL && env->num_rcpts == 0);
			r->mail_open = true;
			log_ev(r, "mail");
			break;
		}
		case SMTP_EV_TX_BEGIN: {
			struct msg_env *env = smtp_sess_env(s);

			CHECK(!r->in_msg && r->mail_open && env->num_rcpts > 0 && env->mail_from != NULL &&
			      env->helo != NULL);
			r->mail_open = false;
			snprintf(env->id, sizeof(env->id), "M%d", ++r->seq);
			r->in_msg = true;
			r->body_len = 0;
			log_ev(r, "begin");
			break;
		}
		case SMTP_EV_BODY:
			CHECK(r->in_msg && body.len > 0);
			CHECK((body.p >= seg.p && body.p + body.len <= seg.p + seg.len) || is_static(body));
			r->body_len += body.len;
			break;
		case SMTP_EV_TX_ABORT:
			CHECK(r->in_msg);
			r->in_msg = false;
			log_ev(r, "abort");
			break;
		case SMTP_EV_TX_END: {
			struct span again = in;

			CHECK(r->in_msg);
			CHECK(smtp_sess_env(s)->size == r->body_len);
			r->in_msg = false;
			CHECK(bb_printf(&r->log, "end@%zu size=%llu\n", r->out.len, (unsigned long long)r->body_len) == 0);
			CHECK(smtp_sess_next(s, &again, &r->out, &body) == SMTP_EV_NEED_INPUT && again.len == in.len);
			{
				enum smtp_commit rc = (enum smtp_commit)((commit + r->seq) % SMTP_COMMIT_COUNT);
				size_t mark = r->out.len;
				char id[sizeof(smtp_sess_env(s)->id)];

				/* A copy: tx_done clears the envelope, id included. */
				memcpy(id, smtp_sess_env(s)->id, sizeof(id));

				CHECK(smtp_sess_tx_done(s, rc, &r->out) == 0);
				/* The commit's reply: one "queued as <id>" for OK, none otherwise. */
				if (rc == SMTP_COMMIT_OK) {
					char want[64];
					int n = snprintf(want, sizeof(want), "250 2.0.0 Ok: queued as %s\r\n", id);

					CHECK(r->out.len - mark >= (size_t)n && memcmp(r->out.p + mark, want, (size_t)n) == 0);
					r->num_acked++;
				} else {
					CHECK(r->out.len > mark && r->out.p[mark] >= '4');
				}
				/* A second tx_done for the same transaction is refused. */
				CHECK(smtp_sess_tx_done(s, SMTP_COMMIT_OK, &r->out) != 0);
			}
			break;
		}
		case SMTP_EV_STARTTLS:
			/* The clear input behind STARTTLS is dropped (CVE-2011-0411). */
			CHECK(!r->in_msg && smtp_sess_phase(s) == SMTP_PHASE_TLS);
			CHECK(bb_printf(&r->log, "starttls@%zu\n", r->out.len) == 0);
			break;
		case SMTP_EV_CLOSE:
			CHECK(!r->in_msg);
			CHECK(bb_printf(&r->log, "close@%zu left=%zu\n", r->out.len, in.len) == 0);
			r->closed = true;
			return;
		default:
			abort();
		}
	}
}

/* check_replies: every line is DDD SP|- text CRLF; counts "queued" replies. */
static void check_replies(struct run *r, const struct bb *out)
{
	size_t i = 0;

	while (i < out->len) {
		const uint8_t *lf = memchr(out->p + i, '\n', out->len - i);
		size_t n;

		CHECK(lf != NULL);
		n = (size_t)(lf - (out->p + i)) + 1;
		CHECK(n >= 6 && out->p[i + n - 2] == '\r');
		CHECK(out->p[i] >= '2' && out->p[i] <= '5' && (out->p[i + 3] == ' ' || out->p[i + 3] == '-'));
		if (memmem(out->p + i, n, "queued", 6) != NULL) {
			r->num_queued++;
		}
		for (size_t k = 0; k + 2 < n; k++) {
			CHECK(out->p[i + k] != '\r' && out->p[i + k] != '\n' && out->p[i + k] != 0);
		}
		i += n;
	}
}

static void run_all(struct run *r, const struct smtp_cfg *cfg, uint8_t flags, const uint8_t *data, size_t size,
		    bool split)
{
	struct smtp_sess *s = smtp_sess_new(cfg, "192.0.2.1", 2525);
	size_t pos = 0;

	CHECK(s != NULL);
	memset(r, 0, sizeof(*r));
	bb_init(&r->out, 1 << 20);
	bb_init(&r->log, 0);
	if (!(flags & 0x80)) {
		CHECK(smtp_sess_greet(s, &r->out) == 0);
	}
	for (int n = 0; !r->closed; n++) {
		const uint8_t *m = NULL;
		size_t seg;

		if (split) {
			for (size_t i = pos; i + 1 < size; i++) {
				if (data[i] == 0xff && data[i + 1] == 0xff) {
					m = data + i;
					break;
				}
			}
		}
		seg = m ? (size_t)(m - data) - pos : size - pos;
		feed(r, s, span_make(data + pos, seg), flags);
		if ((flags & 0x40) && n == 0 && !r->closed) {
			if (smtp_sess_shutdown(s, &r->out)) {
				struct span none = { NULL, 0 }, body;

				CHECK(smtp_sess_next(s, &none, &r->out, &body) == SMTP_EV_CLOSE);
				r->closed = true;
			}
		}
		pos += seg + (m ? 2 : 0);
		if (m == NULL) {
			break;
		}
	}
	if (flags & 0x20) {
		(void)smtp_sess_abort(s, SMTP_ABORT_TIMEOUT, &r->out);
	}
	check_replies(r, &r->out);
	/* Never two 250s for one transaction, never one without a commit. */
	CHECK(r->num_queued == r->num_acked);
	smtp_sess_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_cfg cfg;
	struct run a, b;
	uint8_t flags, lim;
	uint8_t *joined;
	size_t jn = 0;

	if (size < 2) {
		return 0;
	}
	flags = data[0];
	lim = data[1];
	data += 2;
	size -= 2;
	memset(&cfg, 0, sizeof(cfg));
	cfg.hostname = "mx.fuzz";
	cfg.max_msg_size = (lim & 1) ? 64 : 100000;
	cfg.max_rcpts = 1 + (lim >> 1 & 3);
	cfg.max_bad_cmds = (lim & 8) ? 0 : 10;
	cfg.max_cmd_line = (lim & 16) ? 40 : 512;
	cfg.max_text_line = (lim & 32) ? 20 : 1000;
	cfg.bare_lf = (lim & 64) ? SMTP_BARE_NORMALISE : SMTP_BARE_REJECT;
	cfg.domain_ok = (lim & 128) ? dom_ok : NULL;

	run_all(&a, &cfg, flags, data, size, true);
	if (!(flags & 0x40)) {
		/* whole-input differential: the same transcript */
		joined = malloc(size + 1);
		CHECK(joined != NULL);
		for (size_t i = 0; i < size; i++) {
			if (i + 1 < size && data[i] == 0xff && data[i + 1] == 0xff) {
				i++;
				continue;
			}
			joined[jn++] = data[i];
		}
		run_all(&b, &cfg, flags, joined, jn, false);
		CHECK(a.out.len == b.out.len && (a.out.len == 0 || memcmp(a.out.p, b.out.p, a.out.len) == 0));
		/* "left" differs by design; compare the logs up to it */
		{
			const uint8_t *ca = a.log.len ? memmem(a.log.p, a.log.len, "left=", 5) : NULL;
			const uint8_t *cb = b.log.len ? memmem(b.log.p, b.log.len, "left=", 5) : NULL;
			size_t la = ca ? (size_t)(ca - a.log.p) : a.log.len;
			size_t lb = cb ? (size_t)(cb - b.log.p) : b.log.len;

			CHECK(la == lb && (la == 0 || memcmp(a.log.p, b.log.p, la) == 0));
		}
		free(joined);
		bb_fini(&b.out);
		bb_fini(&b.log);
	}
	bb_fini(&a.out);
	bb_fini(&a.log);
	return 0;
}
