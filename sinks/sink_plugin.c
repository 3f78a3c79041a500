/*
 * sink_plugin.c - "plugin:PATH.so[?ARGS]": hands each message to a C plugin
 * loaded with dlopen (interface and life cycle: sinks/plugin.h).
 *
 * configure (main thread, at start-up and in check-config) loads the file
 * and checks its omx_plugin symbol and ABI version, so a bad plugin is a
 * configuration error. Each delivery worker calls the plugin's init for its
 * own state. Per message the sink keeps the raw bytes and feeds them to the
 * incremental message parser (proto/message.h) as tx_write streams them;
 * tx_commit finishes the parse, builds the view (envelope, the verdicts of
 * our Authentication-Results field read by msgdoc_authres, the parsed
 * message, the raw bytes), calls deliver and then done(). The view and the
 * message are freed right after: the plugin borrows them for the call only.
 *
 * The plugin's functions are resolved from the binary: CMake exports the
 * message_* symbols of the oceanmx executable (sinks/plugin.syms).
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/bb.h"
#include "../core/log.h"
#include "../proto/message.h"
#include "../proto/msgdoc.h"
#include "plugin.h"
#include "sink.h"

#define PLUGIN_ERR_MAX 512
#define PLUGIN_WHY_MAX 512

struct plugin_conf {
	char *path;
	char *args;                /* after '?', "" if none */
	char *authserv_id;         /* our hostname: which A-R field is ours */
	void *dl;                  /* dlopen handle */
	const struct omx_plugin *p;
};

struct plugin_state {
	const struct plugin_conf *conf;
	void *pstate;              /* the plugin's, from init */
	struct msgdoc_ar_entry *ar; /* MSGDOC_AR_ENTRIES_MAX, reused per message */
};

struct sink_tx {
	struct plugin_state *st;
	const struct msg_env *env;
	struct message *msg;
	struct bb raw;
	int err;                   /* first tx_write failure, reported at commit */
};

static void plugin_unconfigure(void *conf)
{
	struct plugin_conf *c = conf;

	if (c == NULL) {
		return;
	}
	if (c->dl != NULL) {
		dlclose(c->dl);
	}
	c->dl = NULL;
	free(c->path); c->path = NULL;
	free(c->args); c->args = NULL;
	free(c->authserv_id); c->authserv_id = NULL;
	free(c);
}

static int plugin_configure(const struct sink_ctx *ctx, const char *arg, void **out_conf, char **out_err)
{
	struct plugin_conf *c = calloc(1, sizeof(*c));
	const char *q = strchr(arg, '?');
	size_t plen = q ? (size_t)(q - arg) : strlen(arg);
	const char *e;

	if (c == NULL || (c->path = strndup(arg, plen)) == NULL || (c->args = strdup(q ? q + 1 : "")) == NULL ||
	    (c->authserv_id = strdup(ctx->hostname ? ctx->hostname : "localhost")) == NULL) {
		plugin_unconfigure(c);
		return sink_err(out_err, "plugin: out of memory");
	}
	if (plen == 0) {
		plugin_unconfigure(c);
		return sink_err(out_err, "plugin: missing path (plugin:PATH.so[?ARGS])");
	}
	/* RTLD_NOW: a missing symbol is an error now, not a crash at the first message. */
	c->dl = dlopen(c->path, RTLD_NOW | RTLD_LOCAL);
	if (c->dl == NULL) {
		e = dlerror();
		sink_err(out_err, "plugin %s: cannot load: %s", c->path, e ? e : "unknown error");
		plugin_unconfigure(c);
		return -1;
	}
	c->p = dlsym(c->dl, OMX_PLUGIN_SYMBOL);
	if (c->p == NULL) {
		sink_err(out_err, "plugin %s: no \"%s\" symbol (see sinks/plugin.h)", c->path, OMX_PLUGIN_SYMBOL);
		plugin_unconfigure(c);
		return -1;
	}
	if (c->p->abi != OMX_PLUGIN_ABI_VERSION) {
		sink_err(out_err, "plugin %s: built for plugin ABI %u, this oceanmx has ABI %u: rebuild it against this "
			"sinks/plugin.h", c->path, c->p->abi, OMX_PLUGIN_ABI_VERSION);
		plugin_unconfigure(c);
		return -1;
	}
	if (c->p->init == NULL || c->p->deliver == NULL) {
		sink_err(out_err, "plugin %s: init and deliver are required", c->path);
		plugin_unconfigure(c);
		return -1;
	}
	*out_conf = c;
	return 0;
}

static int plugin_worker_init(const void *conf, void **out_state)
{
	const struct plugin_conf *c = conf;
	struct plugin_state *st = calloc(1, sizeof(*st));
	char err[PLUGIN_ERR_MAX] = "";

	if (st == NULL || (st->ar = calloc(MSGDOC_AR_ENTRIES_MAX, sizeof(*st->ar))) == NULL) {
		free(st);
		return -ENOMEM;
	}
	st->conf = c;
	if (c->p->init(c->args, &st->pstate, err, sizeof(err)) != 0) {
		err[sizeof(err) - 1] = '\0';
		log_line(LOG_ERR, "plugin", "plugin.init plugin=%s path=%s error=\"%s\"", c->p->name ? c->p->name : "?",
			 c->path, err);
		free(st->ar);
		free(st);
		return -EINVAL;
	}
	*out_state = st;
	return 0;
}

static void plugin_worker_fini(void *state)
{
	struct plugin_state *st = state;

	if (st->conf->p->fini != NULL) {
		st->conf->p->fini(st->pstate);
	}
	free(st->ar); st->ar = NULL;
	free(st);
}

static int plugin_tx_begin(void *state, struct sink_tx **out_tx, const struct msg_env *env)
{
	struct sink_tx *tx = calloc(1, sizeof(*tx));

	if (tx == NULL) {
		return -ENOMEM;
	}
	tx->st = state;
	tx->env = env;
	bb_init(&tx->raw, 0);
	if ((tx->msg = message_new(NULL)) == NULL) {
		bb_fini(&tx->raw);
		free(tx);
		return -ENOMEM;
	}
	*out_tx = tx;
	return 0;
}

static int plugin_tx_write(struct sink_tx *tx, struct span bytes)
{
	int rc = bb_append_span(&tx->raw, bytes);

	return rc != 0 ? rc : message_feed(tx->msg, bytes.p, bytes.len);
}

static void tx_free(struct sink_tx *tx)
{
	message_free(tx->msg);
	bb_fini(&tx->raw);
	free(tx);
}

static void plugin_tx_abort(struct sink_tx *tx)
{
	tx_free(tx);
}

/* auth_view fills the verdicts from our Authentication-Results field (as the document's "auth"). */
static void auth_view(struct plugin_state *st, const struct message *m, struct omx_plugin_auth *a,
		      struct omx_plugin_dkim *dkim)
{
	unsigned n = msgdoc_authres(st->ar, m, st->conf->authserv_id);

	memset(a, 0, sizeof(*a));
	a->spf = a->spf_helo = a->dmarc = a->arc = "none";
	a->dkim = dkim;
	if (n > 0) {
		a->header = message_header_at(m, 0)->value;
	}
	for (unsigned i = 0; i < n; i++) {
		const struct msgdoc_ar_entry *e = &st->ar[i];

		if (strcasecmp(e->method, "dkim") == 0 && strcasecmp(e->result, "none") != 0 &&
		    a->num_dkim < MSGDOC_AR_ENTRIES_MAX) {
			dkim[a->num_dkim++] = (struct omx_plugin_dkim){
				.result = e->result, .domain = msgdoc_ar_prop(e, "header.d"),
				.selector = msgdoc_ar_prop(e, "header.s"), .algorithm = msgdoc_ar_prop(e, "header.a"),
				.identity = msgdoc_ar_prop(e, "header.i"), .reason = msgdoc_ar_prop(e, "reason"),
			};
		} else if (strcasecmp(e->method, "spf") == 0) {
			if (msgdoc_ar_prop(e, "smtp.helo") != NULL) {
				a->spf_helo = e->result;
			} else {
				a->spf = e->result;
			}
		} else if (strcasecmp(e->method, "dmarc") == 0) {
			a->dmarc = e->result;
			a->dmarc_policy = msgdoc_ar_prop(e, "policy.dmarc");
			a->dmarc_from = msgdoc_ar_prop(e, "header.from");
		} else if (strcasecmp(e->method, "arc") == 0) {
			a->arc = e->result;
		}
	}
}

static void plugin_tx_commit(struct sink_tx *tx, sink_done_fn *done, void *arg)
{
	struct plugin_state *st = tx->st;
	const struct plugin_conf *c = st->conf;
	const struct msg_env *env = tx->env;
	struct omx_plugin_dkim dkim[MSGDOC_AR_ENTRIES_MAX];
	struct omx_plugin_auth auth;
	struct omx_plugin_envelope pe = {
		.id = env->id, .received_us = env->received_us, .client_ip = env->client_ip,
		.client_port = env->client_port, .helo = env->helo, .esmtp = env->esmtp,
		.mail_from = env->mail_from ? env->mail_from : "", .rcpts = (const char *const *)env->rcpts,
		.num_rcpts = env->num_rcpts, .body = msg_body_name(env->body), .smtputf8 = env->smtputf8,
		.size = env->size,
	};
	struct omx_plugin_message pm = { .struct_size = sizeof(pm), .envelope = &pe, .auth = &auth };
	char why[PLUGIN_WHY_MAX], reason[PLUGIN_WHY_MAX + 64];
	enum omx_plugin_rc prc;
	int rc = message_end(tx->msg);

	if (rc != 0) {
		snprintf(reason, sizeof(reason), "plugin %s: parse: %s", c->path, strerror(-rc));
		done(arg, SINK_TEMPFAIL, reason);
		tx_free(tx);
		return;
	}
	auth_view(st, tx->msg, &auth, dkim);
	pm.doc = tx->msg;
	pm.raw = tx->raw.p;
	pm.raw_len = tx->raw.len;
	why[0] = '\0';
	prc = c->p->deliver(st->pstate, &pm, why, sizeof(why));
	why[sizeof(why) - 1] = '\0';
	for (char *p = why; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '"') {
			*p = *p == '"' ? '\'' : ' '; /* one quotable log line */
		}
	}
	switch (prc) {
	case OMX_PLUGIN_OK:
		done(arg, SINK_OK, NULL);
		break;
	case OMX_PLUGIN_PERMFAIL:
		snprintf(reason, sizeof(reason), "plugin %s: %s", c->p->name ? c->p->name : c->path,
			 why[0] ? why : "permanent failure");
		done(arg, SINK_PERMFAIL, reason);
		break;
	case OMX_PLUGIN_TEMPFAIL:
		snprintf(reason, sizeof(reason), "plugin %s: %s", c->p->name ? c->p->name : c->path,
			 why[0] ? why : "temporary failure");
		done(arg, SINK_TEMPFAIL, reason);
		break;
	default:
		snprintf(reason, sizeof(reason), "plugin %s: deliver returned %d (not an omx_plugin_rc)", c->path,
			 (int)prc);
		done(arg, SINK_TEMPFAIL, reason);
		break;
	}
	tx_free(tx);
}

const struct sink_ops sink_plugin_ops = {
	.name = "plugin",
	.abi = SINK_ABI_VERSION,
	.configure = plugin_configure,
	.unconfigure = plugin_unconfigure,
	.worker_init = plugin_worker_init,
	.worker_fini = plugin_worker_fini,
	.tx_begin = plugin_tx_begin,
	.tx_write = plugin_tx_write,
	.tx_commit = plugin_tx_commit,
	.tx_abort = plugin_tx_abort,
	.flush = NULL,
};
