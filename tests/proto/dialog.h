/*
 * dialog.h - drive a whole SMTP session over a byte string, the way core
 * would, and render everything observable into one transcript: the replies,
 * the events (with how much output was queued when each was returned) and
 * the body of each completed message. Used to check that every split of
 * the input gives the same transcript (STYLE §9 "split everywhere").
 *
 * Header-only (static functions) so that CMake's tests/proto/test_*.c glob
 * needs no change. Each input segment is copied next to a guard page.
 */
#ifndef OMX_TEST_DIALOG_H
#define OMX_TEST_DIALOG_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_sess.h"
#include "tests/support/guard.h"

struct dialog_opts {
	bool no_greet;            /* feed before smtp_sess_greet() (early talker) */
	enum smtp_commit commit;  /* outcome given to smtp_sess_tx_done() */
};

struct dialog {
	struct bb out;  /* replies */
	struct bb log;  /* events and message bodies */
	struct bb body; /* body of the message in progress */
	int tx_seq;
	bool mail_open; /* a MAIL event came and no TX_BEGIN yet */
	bool closed;
};

static void dialog_log_escaped(struct bb *b, const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		uint8_t c = p[i];

		if (c == '\r') {
			cr_assert(bb_append_str(b, "\\r") == 0);
		} else if (c == '\n') {
			cr_assert(bb_append_str(b, "\\n") == 0);
		} else if (c < 0x20 || c >= 0x7f || c == '\\') {
			cr_assert(bb_printf(b, "\\x%02x", c) == 0);
		} else {
			cr_assert(bb_append(b, &c, 1) == 0);
		}
	}
}

/* dialog_feed runs the session over one segment, as core's loop does. */
static void dialog_feed(struct dialog *d, struct smtp_sess *s, const struct dialog_opts *o, struct span in,
			size_t base)
{
	size_t seg_len = in.len;

	struct span body;

	while (!d->closed) {
		enum smtp_ev ev = smtp_sess_next(s, &in, &d->out, &body);

		switch (ev) {
		case SMTP_EV_NEED_INPUT:
			cr_assert_eq(in.len, 0, "NEED_INPUT with %zu octets unconsumed", in.len);
			return;
		case SMTP_EV_BODY:
			cr_assert(body.len > 0, "empty BODY event");
			cr_assert(bb_append_span(&d->body, body) == 0);
			continue;
		case SMTP_EV_MAIL: {
			/* Not logged (the 250 in the transcript shows it); checked instead. */
			const struct msg_env *env = smtp_sess_env(s);

			cr_assert(env->mail_from != NULL && smtp_sess_in_tx(s), "MAIL event without a sender");
			cr_assert_eq(env->num_rcpts, 0, "MAIL event after RCPT");
			d->mail_open = true;
			continue;
		}
		case SMTP_EV_TX_BEGIN: {
			struct msg_env *env = smtp_sess_env(s);

			cr_assert(d->mail_open, "TX_BEGIN without a MAIL event before it");
			d->mail_open = false;
			snprintf(env->id, sizeof(env->id), "ID%d", ++d->tx_seq);
			env->received_us = 1700000000000000LL;
			cr_assert(bb_printf(&d->log, "TX_BEGIN@%zu from=<%s> rcpts=%zu body=%s utf8=%d\n", d->out.len,
					    env->mail_from, env->num_rcpts, msg_body_name(env->body),
					    env->smtputf8) == 0);
			bb_reset(&d->body, 0);
			continue;
		}
		case SMTP_EV_TX_ABORT:
			cr_assert(bb_printf(&d->log, "TX_ABORT@%zu\n", d->out.len) == 0);
			bb_reset(&d->body, 0); /* the prefix before an abort is unspecified */
			continue;
		case SMTP_EV_TX_END: {
			const struct msg_env *env = smtp_sess_env(s);

			cr_assert_eq(env->size, d->body.len, "env->size %llu != body %zu",
				     (unsigned long long)env->size, d->body.len);
			cr_assert(bb_printf(&d->log, "TX_END@%zu size=%llu body=", d->out.len,
					    (unsigned long long)env->size) == 0);
			dialog_log_escaped(&d->log, d->body.p, d->body.len);
			cr_assert(bb_append_str(&d->log, "\n") == 0);
			bb_reset(&d->body, 0);
			/* paused until tx_done: no input is consumed */
			{
				struct span again = in, b2;
				size_t before = in.len;

				cr_assert_eq(smtp_sess_next(s, &again, &d->out, &b2), SMTP_EV_NEED_INPUT);
				cr_assert_eq(again.len, before);
				cr_assert_eq(smtp_sess_phase(s), SMTP_PHASE_COMMIT);
			}
			cr_assert(smtp_sess_tx_done(s, o->commit, &d->out) == 0);
			continue;
		}
		case SMTP_EV_STARTTLS:
			/* Core would now hand the socket to TLS; the session drops the rest. */
			cr_assert_eq(smtp_sess_phase(s), SMTP_PHASE_TLS);
			cr_assert(bb_printf(&d->log, "STARTTLS@%zu\n", d->out.len) == 0);
			continue;
		case SMTP_EV_CLOSE:
			cr_assert(bb_printf(&d->log, "CLOSE@%zu consumed=%zu\n", d->out.len, base + seg_len - in.len) == 0);
			d->closed = true;
			/* after CLOSE nothing is consumed */
			{
				struct span again = in, b2;

				cr_assert_eq(smtp_sess_next(s, &again, &d->out, &b2), SMTP_EV_CLOSE);
				cr_assert_eq(again.len, in.len);
			}
			return;
		default:
			cr_assert_fail("bad event %d", (int)ev);
		}
	}
}

/*
 * dialog_run feeds input[0..len) split at `cuts` (ascending positions) and
 * returns the malloc'ed transcript.
 */
static char *dialog_run(const struct smtp_cfg *cfg, const struct dialog_opts *o, const void *input, size_t len,
			const size_t *cuts, size_t num_cuts)
{
	struct smtp_sess *s = smtp_sess_new(cfg, "192.0.2.7", 40000);
	struct dialog d;
	size_t pos = 0;
	char *res;

	cr_assert_not_null(s);
	memset(&d, 0, sizeof(d));
	bb_init(&d.out, 0);
	bb_init(&d.log, 0);
	bb_init(&d.body, 0);
	if (!o->no_greet) {
		cr_assert(smtp_sess_greet(s, &d.out) == 0);
	}
	for (size_t i = 0; i <= num_cuts && !d.closed; i++) {
		size_t end = i < num_cuts ? cuts[i] : len;
		const uint8_t *g = guard_copy((const uint8_t *)input + pos, end - pos);

		dialog_feed(&d, s, o, span_make(g, end - pos), pos);
		guard_release(g, end - pos);
		pos = end;
	}
	{
		const struct smtp_sess_stats *st = smtp_sess_stats(s);

		cr_assert(bb_printf(&d.log, "EOF phase=%s in_tx=%d bad=%u msgs=%u rej=%u\n",
				    smtp_phase_name(smtp_sess_phase(s)), smtp_sess_in_tx(s), st->bad_cmds,
				    st->messages, st->rejected) == 0);
	}
	smtp_sess_free(s);
	res = malloc(d.out.len + d.log.len + 32);
	cr_assert_not_null(res);
	sprintf(res, "REPLIES:\n%.*s\nEVENTS:\n%.*s", (int)d.out.len, d.out.p ? (char *)d.out.p : "",
		(int)d.log.len, d.log.p ? (char *)d.log.p : "");
	bb_fini(&d.out);
	bb_fini(&d.log);
	bb_fini(&d.body);
	return res;
}

/*
 * dialog_check returns the transcript of the whole input after asserting
 * that byte-by-byte feeding and every two-way split give the same one.
 */
static char *dialog_check(const struct smtp_cfg *cfg, const struct dialog_opts *o, const void *input, size_t len)
{
	char *whole = dialog_run(cfg, o, input, len, NULL, 0);
	size_t *cuts = malloc((len + 1) * sizeof(*cuts));

	cr_assert_not_null(cuts);
	for (size_t i = 0; i < len; i++) {
		cuts[i] = i + 1;
	}
	{
		char *bytes = dialog_run(cfg, o, input, len, cuts, len ? len - 1 : 0);

		cr_assert_str_eq(bytes, whole, "byte-by-byte differs:\n%s\n----- whole:\n%s", bytes, whole);
		free(bytes);
	}
	for (size_t i = 0; i <= len; i++) {
		size_t cut = i;
		char *two = dialog_run(cfg, o, input, len, &cut, 1);

		cr_assert_str_eq(two, whole, "split at %zu differs:\n%s\n----- whole:\n%s", i, two, whole);
		free(two);
	}
	free(cuts);
	return whole;
}

static const struct dialog_opts dialog_default = { false, SMTP_COMMIT_OK };

#endif
