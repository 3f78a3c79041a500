/*
 * fixture_plugin.c - a plugin for tests/sinks/test_sink_plugin.c, built
 * twice: test_plugin_ok.so and test_plugin_badabi.so (-DFIXTURE_BAD_ABI).
 * init's ARGS picks the answer: "ok", "temp", "perm" or "fail" (init
 * fails). deliver writes what it saw into a summary the test reads through
 * fixture_last().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sinks/plugin.h"

static char last[4096];

const char *fixture_last(void);
const char *fixture_last(void)
{
	return last;
}

static int fx_init(const char *args, void **out_state, char *err, size_t err_len)
{
	if (strcmp(args, "fail") == 0) {
		snprintf(err, err_len, "fixture refuses to start");
		return -1;
	}
	*out_state = strdup(args);
	return *out_state ? 0 : -1;
}

static enum omx_plugin_rc fx_deliver(void *state, const struct omx_plugin_message *m, char *why, size_t why_len)
{
	const struct omx_plugin_envelope *e = m->envelope;
	const struct omx_plugin_auth *a = m->auth;
	const struct message_addr *from;
	size_t n = message_addrs(m->doc, MESSAGE_FROM, &from), off;
	struct span text = message_text(m->doc);

	off = (size_t)snprintf(last, sizeof(last), "id=%s ip=%s helo=%s from=%s rcpts=%zu:%s,%s body=%s subject=%s "
			       "hfrom=%s text=%.*s dkim=%zu:%s:%s spf=%s helo_spf=%s dmarc=%s:%s arc=%s raw=%zu size=%zu",
			       e->id, e->client_ip, e->helo, e->mail_from, e->num_rcpts, e->rcpts[0],
			       e->num_rcpts > 1 ? e->rcpts[1] : "-", e->body, message_subject(m->doc),
			       n ? from[0].email : "-", (int)text.len, (const char *)text.p, a->num_dkim,
			       a->num_dkim ? a->dkim[0].result : "-", a->num_dkim ? a->dkim[0].domain : "-", a->spf,
			       a->spf_helo, a->dmarc, a->dmarc_policy ? a->dmarc_policy : "-", a->arc, m->raw_len,
			       m->struct_size);
	for (size_t i = 0; i < message_num_attachments(m->doc) && off < sizeof(last); i++) {
		const struct message_part *p = message_attachment(m->doc, i);

		off += (size_t)snprintf(last + off, sizeof(last) - off, " att=%s:%llu:%s", message_part_filename(p),
					(unsigned long long)message_part_size(p), message_part_sha256(p));
	}
	if (strcmp(state, "temp") == 0) {
		snprintf(why, why_len, "busy, \"later\"");
		return OMX_PLUGIN_TEMPFAIL;
	}
	if (strcmp(state, "perm") == 0) {
		snprintf(why, why_len, "no thanks\nsecond line");
		return OMX_PLUGIN_PERMFAIL;
	}
	return OMX_PLUGIN_OK;
}

static void fx_fini(void *state)
{
	free(state);
}

const struct omx_plugin omx_plugin = {
#ifdef FIXTURE_BAD_ABI
	.abi = 999,
#else
	.abi = OMX_PLUGIN_ABI_VERSION,
#endif
	.name = "fixture",
	.init = fx_init,
	.deliver = fx_deliver,
	.fini = fx_fini,
};
