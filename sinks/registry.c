/*
 * registry.c - the table of sink implementations (after OpenSMTPD's
 * backends[]). Adding a sink is one line here and one file beside it.
 */
#include "sink.h"

#include "../core/bb.h"
#include "sink_query.h"

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

int sink_err(char **out_err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(out_err, fmt, ap) < 0) {
		*out_err = NULL;
	}
	va_end(ap);
	return -1;
}

/*
 * generic_options takes the options every sink accepts (sync=) out of the
 * query string of `arg` (after its first '?', up to a '#'), so no sink has to
 * know them. *out_arg is a malloc'd copy of arg without them; 0, or -1 with
 * *out_err set.
 */
static int generic_options(struct sink *out, const char *spec, const char *arg, char **out_arg, char **out_err)
{
	const char *q = strchr(arg, '?');
	size_t q_end, len = strlen(arg);
	struct span cur, key, val;
	bool has_val;
	struct bb keep;
	int rc = 0;

	*out_arg = NULL;
	if (q == NULL) {
		*out_arg = strdup(arg);
		return *out_arg ? 0 : sink_err(out_err, "out of memory");
	}
	q++;
	q_end = strcspn(q, "#");
	bb_init(&keep, len + 1);
	if (bb_append(&keep, arg, (size_t)(q - arg)) != 0) {
		rc = -1;
	}
	cur = span_make((const uint8_t *)q, q_end);
	while (rc == 0 && sink_query_next(&cur, &key, &val, &has_val)) {
		if (key.len == 4 && memcmp(key.p, "sync", 4) == 0) {
			if (!has_val || !sink_query_bool(val, &out->sync)) {
				sink_err(out_err, "sink \"%s\": sync: yes or no", spec);
				bb_fini(&keep);
				return -1;
			}
			continue;
		}
		/* Not ours: the sink's. Kept as written. */
		if ((keep.p[keep.len - 1] != '?' && bb_append(&keep, "&", 1) != 0) ||
		    bb_append(&keep, key.p, has_val ? (size_t)(val.p + val.len - key.p) : key.len) != 0) {
			rc = -1;
		}
	}
	if (rc == 0 && keep.p[keep.len - 1] == '?') {
		keep.len--; /* nothing left for the sink: no '?' either */
	}
	if (rc != 0 || bb_append_str(&keep, q + q_end) != 0 || bb_append(&keep, "", 1) != 0) {
		sink_err(out_err, "out of memory");
		bb_fini(&keep);
		return -1;
	}
	*out_arg = (char *)keep.p; /* keep's buffer passes to the caller */
	return 0;
}

int sink_configure(struct sink *out, const struct sink_ctx *ctx, const char *spec, char **out_err)
{
	const char *colon = strchr(spec, ':');
	size_t name_len = colon ? (size_t)(colon - spec) : strlen(spec);
	const struct sink_ops *ops = sink_lookup(spec, name_len);
	char *arg = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if (ops == NULL) {
		sink_err(out_err, "sink \"%s\": unknown sink type \"%.*s\" (known: maildir, json, unix, tcp, http, https, exec, lmtp, plugin)",
			spec, (int)name_len, spec);
		return -1;
	}
	if (generic_options(out, spec, colon ? colon + 1 : "", &arg, out_err) != 0) {
		return -1;
	}
	rc = ops->configure(ctx, arg, &out->conf, out_err);
	free(arg); arg = NULL;
	if (rc != 0) {
		out->sync = false;
		return -1;
	}
	out->ops = ops;
	out->spec = strdup(spec);
	return 0;
}

const char *sink_why_said(const char *why)
{
	static const char *const marks[] = { ": REJECT ", ": RETRY " };
	const char *p;

	if (why == NULL) {
		return NULL;
	}
	for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
		if ((p = strstr(why, marks[i])) != NULL) {
			p += strlen(marks[i]);
			return strcmp(p, "(no reason given)") == 0 ? NULL : p;
		}
	}
	if (strncmp(why, "exec: exit ", 11) == 0 && (p = strstr(why + 11, ": ")) != NULL) {
		return p + 2;
	}
	return NULL;
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
