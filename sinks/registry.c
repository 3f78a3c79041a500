/*
 * registry.c - the table of sink implementations (after OpenSMTPD's
 * backends[]). Adding a sink is one line here and one file beside it.
 */
#include "sink.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const struct sink_ops sink_maildir_ops;
extern const struct sink_ops sink_json_ops;
extern const struct sink_ops sink_unix_ops;
extern const struct sink_ops sink_tcp_ops;
extern const struct sink_ops sink_http_ops;
extern const struct sink_ops sink_https_ops;
extern const struct sink_ops sink_exec_ops;
extern const struct sink_ops sink_lmtp_ops;
extern const struct sink_ops sink_plugin_ops;

static const struct sink_ops *const registry[] = {
	&sink_maildir_ops,
	&sink_json_ops,
	&sink_unix_ops,
	&sink_tcp_ops,
	&sink_http_ops,
	&sink_https_ops,
	&sink_exec_ops,
	&sink_lmtp_ops,
	&sink_plugin_ops,
};

const struct sink_ops *sink_lookup(const char *name, size_t name_len)
{
	for (size_t i = 0; i < sizeof(registry) / sizeof(registry[0]); i++) {
		if (strlen(registry[i]->name) == name_len && memcmp(registry[i]->name, name, name_len) == 0) {
			return registry[i]->abi == SINK_ABI_VERSION ? registry[i] : NULL;
		}
	}
	return NULL;
}

int sink_configure(struct sink *out, const struct sink_ctx *ctx, const char *spec, char **out_err)
{
	const char *colon = strchr(spec, ':');
	size_t name_len = colon ? (size_t)(colon - spec) : strlen(spec);
	const struct sink_ops *ops = sink_lookup(spec, name_len);

	memset(out, 0, sizeof(*out));
	if (ops == NULL) {
		if (asprintf(out_err, "sink \"%s\": unknown sink type \"%.*s\" (known: maildir, json, unix, tcp, http, https, exec, lmtp, plugin)", spec, (int)name_len,
			     spec) < 0) {
			*out_err = NULL;
		}
		return -1;
	}
	if (ops->configure(ctx, colon ? colon + 1 : "", &out->conf, out_err) != 0) {
		return -1;
	}
	out->ops = ops;
	out->spec = strdup(spec);
	return 0;
}

void sink_unconfigure(struct sink *s)
{
	if (s->ops != NULL && s->conf != NULL) {
		s->ops->unconfigure(s->conf);
	}
	s->conf = NULL;
	free(s->spec); s->spec = NULL;
}

const char *sink_rc_name(enum sink_rc rc)
{
	switch (rc) {
	case SINK_OK: return "ok";
	case SINK_TEMPFAIL: return "tempfail";
	case SINK_PERMFAIL: return "permfail";
	case SINK_RC_COUNT: break;
	}
	return "?";
}
