/*
 * msgdoc.c - JSON document writer. Field order follows docs/json.md.
 */
#include "msgdoc.h"
#include "milter.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "date.h"
#include "json.h"
#include "mail_reply.h"

static void addr_obj(struct json *j, const struct message_addr *a)
{
	json_obj(j);
	json_key(j, "name");
	json_cstr(j, a->name);
	json_key(j, "email");
	json_cstr(j, a->email);
	json_key(j, "local");
	json_cstr(j, a->local);
	json_key(j, "domain");
	json_cstr(j, a->domain);
	json_key(j, "detail");
	json_cstr(j, a->detail);
	if (a->group != NULL) {
		json_key(j, "group");
		json_cstr(j, a->group);
	}
	if (a->invalid) {
		json_key(j, "invalid");
		json_bool(j, true);
	}
	json_obj_end(j);
}

static void addr_list(struct json *j, const char *key, const struct message *m, enum message_addr_field f)
{
	const struct message_addr *a;
	size_t n = message_addrs(m, f, &a);

	json_key(j, key);
	json_arr(j);
	for (size_t i = 0; i < n; i++) {
		addr_obj(j, &a[i]);
	}
	json_arr_end(j);
}

static void env_path(struct json *j, const char *path)
{
	struct addr_item it;

	if (addr_split(&it, span_cstr(path)) != 0) {
		j->err = -ENOMEM;
		return;
	}
	struct message_addr a = { "", it.email, it.local, it.domain, it.detail, NULL, false };

	json_obj(j);
	json_key(j, "email");
	json_cstr(j, a.email);
	json_key(j, "local");
	json_cstr(j, a.local);
	json_key(j, "domain");
	json_cstr(j, a.domain);
	json_key(j, "detail");
	json_cstr(j, a.detail);
	json_obj_end(j);
	addr_item_fini(&it);
}

static void envelope(struct json *j, const struct msg_env *env)
{
	char iso[DATE_ISO_LEN], ts[40];
	int64_t s = env->received_us >= 0 ? env->received_us / 1000000 : 0;

	json_obj(j);
	json_key(j, "id");
	json_cstr(j, env->id);
	date_iso(iso, s);
	snprintf(ts, sizeof(ts), "%.19s.%06lldZ", iso, (long long)(env->received_us - s * 1000000));
	json_key(j, "received_at");
	json_cstr(j, ts);
	json_key(j, "size");
	json_u64(j, env->size);
	json_key(j, "helo");
	json_cstr(j, env->helo);
	json_key(j, "esmtp");
	json_bool(j, env->esmtp);
	json_key(j, "client");
	json_obj(j);
	json_key(j, "ip");
	json_cstr(j, env->client_ip);
	json_key(j, "port");
	json_u64(j, env->client_port);
	json_obj_end(j);
	json_key(j, "mail_from");
	if (env->mail_from == NULL || env->mail_from[0] == '\0') {
		json_null(j); /* the null reverse-path <> */
	} else {
		env_path(j, env->mail_from);
	}
	json_key(j, "rcpt_to");
	json_arr(j);
	for (size_t i = 0; i < env->num_rcpts; i++) {
		env_path(j, env->rcpts[i]);
	}
	json_arr_end(j);
	json_key(j, "body");
	json_cstr(j, msg_body_name(env->body));
	json_key(j, "smtputf8");
	json_bool(j, env->smtputf8);
	json_key(j, "tls");
	if (!env->tls.on) {
		json_null(j); /* clear text */
	} else {
		json_obj(j);
		json_key(j, "version");
		json_cstr(j, env->tls.version);
		json_key(j, "cipher");
		json_cstr(j, env->tls.cipher);
		json_key(j, "sni");
		if (env->tls.sni[0] == '\0') {
			json_null(j);
		} else {
			json_cstr(j, env->tls.sni);
		}
		json_obj_end(j);
	}
	json_key(j, "dnsbl");
	if (env->dnsbl_zone[0] == '\0') {
		json_null(j); /* not listed, or no --dnsbl */
	} else {
		json_obj(j);
		json_key(j, "zone");
		json_cstr(j, env->dnsbl_zone);
		json_key(j, "address");
		json_cstr(j, env->dnsbl_addr);
		json_obj_end(j);
	}
	json_obj_end(j);
}

static void headers(struct json *j, const struct message_part *p)
{
	json_arr(j);
	for (size_t i = 0; i < message_part_num_headers(p); i++) {
		const struct message_header *h = message_part_header_at(p, i);

		json_obj(j);
		json_key(j, "name");
		json_cstr(j, h->name);
		json_key(j, "value");
		json_cstr(j, h->value);
		json_obj_end(j);
	}
	json_arr_end(j);
}

static void body(struct json *j, const char *key, struct span text, const struct message_part *p)
{
	json_key(j, key);
	if (p == NULL) {
		json_null(j);
		return;
	}
	json_obj(j);
	json_key(j, "part_id");
	json_cstr(j, message_part_id(p));
	json_key(j, "charset");
	json_cstr(j, message_part_charset(p) ? message_part_charset(p) : "us-ascii");
	json_key(j, "content");
	json_str(j, text);
	json_obj_end(j);
}

/*
 * reply_section writes "reply": the first text body without its quoted
 * history (proto/mail_reply.h), its signature, and the HTML body without
 * the quoted part; null when the message has neither body.
 */
static void reply_section(struct json *j, const struct message *m)
{
	struct span t = message_text(m), h = message_html(m);
	const struct span *tp = message_text_part(m) != NULL ? &t : NULL;
	const struct span *hp = message_html_part(m) != NULL ? &h : NULL;
	struct mail_reply r;

	json_key(j, "reply");
	if (tp == NULL && hp == NULL) {
		json_null(j);
		return;
	}
	mail_reply_init(&r);
	if (mail_reply_extract(&r, tp, hp) != 0) {
		j->err = j->err != 0 ? j->err : -ENOMEM;
		json_null(j);
		mail_reply_fini(&r);
		return;
	}
	json_obj(j);
	json_key(j, "text");
	json_str(j, r.text);
	json_key(j, "signature");
	if (r.has_sig) {
		json_str(j, r.signature);
	} else {
		json_null(j);
	}
	json_key(j, "quoted");
	json_bool(j, r.quoted);
	json_key(j, "html");
	if (r.has_html) {
		json_str(j, r.html);
	} else {
		json_null(j);
	}
	json_obj_end(j);
	mail_reply_fini(&r);
}

static void part_common(struct json *j, const struct message_part *p)
{
	json_key(j, "part_id");
	json_cstr(j, message_part_id(p));
	json_key(j, "content_type");
	json_cstr(j, message_part_type(p));
	json_key(j, "filename");
	json_cstr(j, message_part_filename(p));
	json_key(j, "disposition");
	json_cstr(j, message_part_disposition(p));
	json_key(j, "content_id");
	json_cstr(j, message_part_content_id(p));
}

static void tree(struct json *j, const struct message *m, const struct message_part *p, bool root)
{
	json_obj(j);
	part_common(j, p);
	json_key(j, "kind");
	json_cstr(j, message_kind_name(message_part_kind(p)));
	json_key(j, "charset");
	json_cstr(j, message_part_charset(p));
	json_key(j, "encoding");
	json_cstr(j, message_part_encoding(p));
	json_key(j, "description");
	json_cstr(j, message_part_description(p));
	if (message_part_kind(p) == MESSAGE_KIND_LEAF) {
		json_key(j, "size");
		json_u64(j, message_part_size(p));
		json_key(j, "sha256");
		json_cstr(j, message_part_sha256(p));
	}
	if (!root) {
		json_key(j, "headers");
		headers(j, p);
	}
	if (message_part_kind(p) != MESSAGE_KIND_LEAF) {
		json_key(j, "parts");
		json_arr(j);
		for (size_t i = 0; i < message_part_num_children(p); i++) {
			tree(j, m, message_part_child(p, i), false);
		}
		json_arr_end(j);
	}
	json_obj_end(j);
}

/*
 * ar_token takes the next token of an Authentication-Results value: a
 * quoted-string (unquoted into out), or a run up to space, ';' or '='.
 * Comments in parentheses are skipped. Returns false at the end.
 */
static bool ar_token(const char **pp, char *out, size_t out_len, char *out_delim)
{
	const char *p = *pp;
	size_t n = 0;

	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
			p++;
		}
		if (*p != '(') {
			break;
		}
		for (int depth = 0; *p != '\0'; p++) {
			depth += *p == '(' ? 1 : *p == ')' ? -1 : 0;
			if (depth == 0) {
				p++;
				break;
			}
		}
	}
	if (*p == '\0') {
		return false;
	}
	if (*p == '"') {
		for (p++; *p != '\0' && *p != '"'; p++) {
			if (*p == '\\' && p[1] != '\0') {
				p++;
			}
			if (n + 1 < out_len) {
				out[n++] = *p;
			}
		}
		if (*p == '"') {
			p++;
		}
	} else {
		while (*p != '\0' && *p != ' ' && *p != '\t' && *p != ';' && *p != '=' && *p != '\r' &&
		       *p != '\n' && *p != '(') {
			if (n + 1 < out_len) {
				out[n++] = *p;
			}
			p++;
		}
	}
	out[n] = '\0';
	while (*p == ' ' || *p == '\t') {
		p++;
	}
	*out_delim = *p;
	if (*p == ';' || *p == '=') {
		p++;
	}
	*pp = p;
	return true;
}

#define AR_ENTRIES_MAX MSGDOC_AR_ENTRIES_MAX
#define AR_PROPS_MAX MSGDOC_AR_PROPS_MAX

/*
 * authres_parse splits our Authentication-Results value (RFC 8601 §2.2:
 * authserv-id, then ";"-separated method=result with ptype.property=value
 * and reason=) into entries. Returns how many; 0 when the authserv-id is
 * not ours. Comments are skipped, quoted values unquoted.
 */
static unsigned authres_parse(struct msgdoc_ar_entry *e, const char *v, const char *authserv_id)
{
	char tok[256], key[64], delim;
	unsigned n = 0;
	bool open = false;

	if (!ar_token(&v, tok, sizeof(tok), &delim) || strcasecmp(tok, authserv_id) != 0) {
		return 0;
	}
	while (delim != ';' && ar_token(&v, tok, sizeof(tok), &delim)) {
		/* a version after the authserv-id */
	}
	while (ar_token(&v, key, sizeof(key), &delim)) {
		if (delim != '=') {
			continue;
		}
		if (!ar_token(&v, tok, sizeof(tok), &delim)) {
			break;
		}
		if (!open || strchr(key, '.') == NULL) {
			if (!open && n < AR_ENTRIES_MAX) {
				memset(&e[n], 0, sizeof(e[n]));
				snprintf(e[n].method, sizeof(e[n].method), "%.31s", key);
				snprintf(e[n].result, sizeof(e[n].result), "%.31s", tok);
				n++;
				open = true;
			} else if (open && e[n - 1].num_props < AR_PROPS_MAX) {
				struct msgdoc_ar_entry *x = &e[n - 1]; /* reason= */

				snprintf(x->key[x->num_props], sizeof(x->key[0]), "%.31s", key);
				snprintf(x->val[x->num_props], sizeof(x->val[0]), "%.255s", tok);
				x->num_props++;
			}
		} else if (e[n - 1].num_props < AR_PROPS_MAX) {
			struct msgdoc_ar_entry *x = &e[n - 1];

			snprintf(x->key[x->num_props], sizeof(x->key[0]), "%.31s", key);
			snprintf(x->val[x->num_props], sizeof(x->val[0]), "%.255s", tok);
			x->num_props++;
		}
		if (delim == ';') {
			open = false;
		}
	}
	return n;
}

unsigned msgdoc_authres(struct msgdoc_ar_entry *out, const struct message *m, const char *authserv_id)
{
	if (authserv_id == NULL || message_num_headers(m) == 0 ||
	    strcasecmp(message_header_at(m, 0)->name, "Authentication-Results") != 0) {
		return 0;
	}
	return authres_parse(out, message_header_at(m, 0)->raw, authserv_id);
}

const char *msgdoc_ar_prop(const struct msgdoc_ar_entry *e, const char *key)
{
	for (unsigned i = 0; i < e->num_props; i++) {
		if (strcasecmp(e->key[i], key) == 0) {
			return e->val[i];
		}
	}
	return NULL;
}

/*
 * ar_obj opens {result, and the properties renamed by `map`} for one entry;
 * for NULL (the field names no such result) it opens {"result": "none"}.
 * The caller closes the object.
 */
static void ar_obj(struct json *j, const struct msgdoc_ar_entry *e, const char *const (*map)[2], size_t num_map)
{
	json_obj(j);
	json_key(j, "result");
	json_cstr(j, e != NULL ? e->result : "none");
	for (size_t k = 0; e != NULL && k < num_map; k++) {
		const char *v = msgdoc_ar_prop(e, map[k][0]);

		if (v != NULL) {
			json_key(j, map[k][1]);
			json_cstr(j, v);
		}
	}
}

/*
 * auth_section writes "auth" from our own Authentication-Results field
 * (the first header field, put there by the server): dkim[], spf (MAIL FROM
 * identity, with the HELO identity inside), dmarc, arc; "none" for what the
 * field does not name.
 */
static void auth_section(struct json *j, const struct message *m, const char *authserv_id)
{
	static const char *const dkim_map[][2] = {
		{ "reason", "reason" }, { "header.d", "domain" }, { "header.s", "selector" },
		{ "header.a", "algorithm" }, { "header.i", "identity" }, { "header.b", "b" },
	};
	static const char *const spf_map[][2] = { { "reason", "reason" }, { "smtp.mailfrom", "smtp_mailfrom" } };
	static const char *const helo_map[][2] = { { "reason", "reason" }, { "smtp.helo", "smtp_helo" } };
	static const char *const dmarc_map[][2] = {
		{ "reason", "reason" }, { "header.from", "header_from" }, { "policy.dmarc", "policy" },
	};
	static const char *const arc_map[][2] = { { "reason", "reason" } };
	struct msgdoc_ar_entry *e = calloc(AR_ENTRIES_MAX, sizeof(*e)); /* ~57 KiB: not on the stack */
	unsigned n = 0;
	const struct msgdoc_ar_entry *spf = NULL, *helo = NULL, *dmarc = NULL, *arc = NULL;

	if (e != NULL) {
		n = msgdoc_authres(e, m, authserv_id);
	}
	json_key(j, "auth");
	json_obj(j);
	json_key(j, "dkim");
	json_arr(j);
	for (unsigned i = 0; i < n; i++) {
		if (strcasecmp(e[i].method, "dkim") == 0 && strcasecmp(e[i].result, "none") != 0) {
			ar_obj(j, &e[i], dkim_map, sizeof(dkim_map) / sizeof(dkim_map[0]));
			json_obj_end(j);
		} else if (strcasecmp(e[i].method, "spf") == 0) {
			if (msgdoc_ar_prop(&e[i], "smtp.helo") != NULL) {
				helo = helo ? helo : &e[i];
			} else {
				spf = spf ? spf : &e[i];
			}
		} else if (strcasecmp(e[i].method, "dmarc") == 0) {
			dmarc = dmarc ? dmarc : &e[i];
		} else if (strcasecmp(e[i].method, "arc") == 0) {
			arc = arc ? arc : &e[i];
		}
	}
	json_arr_end(j);
	json_key(j, "spf");
	ar_obj(j, spf, spf_map, sizeof(spf_map) / sizeof(spf_map[0]));
	if (helo != NULL) {
		json_key(j, "helo");
		ar_obj(j, helo, helo_map, sizeof(helo_map) / sizeof(helo_map[0]));
		json_obj_end(j);
	}
	json_obj_end(j);
	json_key(j, "dmarc");
	ar_obj(j, dmarc, dmarc_map, sizeof(dmarc_map) / sizeof(dmarc_map[0]));
	json_obj_end(j);
	json_key(j, "arc");
	ar_obj(j, arc, arc_map, sizeof(arc_map) / sizeof(arc_map[0]));
	json_obj_end(j);
	json_obj_end(j);
	free(e);
}

#define SPAM_SYMBOLS_MAX 64 /* read back from our X-Spam-Status; verify/rspamd.h writes at most 48 */

static bool spam_ws(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/*
 * spam_symbols writes tests=NAME(score),NAME(score) of our X-Spam-Status
 * as [{name, score}], at most SPAM_SYMBOLS_MAX. `v` points after "tests=".
 */
static void spam_symbols(struct json *j, const char *v)
{
	unsigned n = 0;

	json_arr(j);
	while (*v != '\0' && n < SPAM_SYMBOLS_MAX) {
		const char *name, *open, *close;
		char num[32], *e;
		double score;

		while (spam_ws(*v) || *v == ',') {
			v++;
		}
		name = v;
		while (*v != '\0' && *v != '(' && *v != ',' && !spam_ws(*v)) {
			v++;
		}
		if (*v != '(' || v == name) {
			break;
		}
		open = v;
		close = strchr(open, ')');
		if (close == NULL || (size_t)(close - open - 1) >= sizeof(num)) {
			break;
		}
		memcpy(num, open + 1, (size_t)(close - open - 1));
		num[close - open - 1] = '\0';
		score = strtod(num, &e);
		if (e == num || *e != '\0') {
			break;
		}
		json_obj(j);
		json_key(j, "name");
		json_str(j, span_make(name, (size_t)(open - name)));
		json_key(j, "score");
		json_num2(j, score);
		json_obj_end(j);
		n++;
		v = close + 1;
	}
	json_arr_end(j);
}

/*
 * spam_value reads the value of key `key` in our X-Spam-Status (key=value
 * or key="value" separated by spaces, after the leading "Yes,"/"No,"/
 * "Unknown,") into out; false when absent.
 */
static bool spam_value(const char *v, const char *key, char *out, size_t out_len, const char **out_at)
{
	size_t klen = strlen(key);

	v = strchr(v, ',');
	while (v != NULL && *v != '\0') {
		while (spam_ws(*v) || *v == ',') {
			v++;
		}
		if (strncmp(v, key, klen) == 0 && v[klen] == '=') {
			const char *s = v + klen + 1, *e;
			size_t n;

			if (*s == '"') {
				s++;
				e = strchr(s, '"');
				if (e == NULL) {
					return false;
				}
			} else {
				for (e = s; *e != '\0' && !spam_ws(*e); e++) {
				}
			}
			n = (size_t)(e - s) < out_len - 1 ? (size_t)(e - s) : out_len - 1;
			memcpy(out, s, n);
			out[n] = '\0';
			if (out_at != NULL) {
				*out_at = s;
			}
			return true;
		}
		/* skip this key=value (a quoted value may hold spaces) */
		while (*v != '\0' && *v != '=' && !spam_ws(*v)) {
			v++;
		}
		if (*v == '=' && v[1] == '"') {
			const char *e = strchr(v + 2, '"');

			v = e != NULL ? e + 1 : v + strlen(v);
		} else {
			while (*v != '\0' && !spam_ws(*v)) {
				v++;
			}
		}
	}
	return false;
}

/*
 * spam_section writes "spam" from our X-Spam-Status field (verify/rspamd.h):
 * one of the fields the server put on top with our Authentication-Results
 * (the leading run of those names; the client's were removed at delivery).
 * null when the message was not checked, or from `oceanmx parse`.
 */
static void spam_section(struct json *j, const struct message *m, const char *authserv_id)
{
	const char *status = NULL;
	char buf[128];
	const char *at;

	if (authserv_id != NULL && message_num_headers(m) > 0 &&
	    strcasecmp(message_header_at(m, 0)->name, "Authentication-Results") == 0) {
		for (size_t i = 0; i < message_num_headers(m); i++) {
			const struct message_header *h = message_header_at(m, i);

			if (strcasecmp(h->name, "X-Spam-Status") == 0) {
				status = h->raw;
				break;
			}
			if (strcasecmp(h->name, "Authentication-Results") != 0 && strcasecmp(h->name, "X-Spam-Flag") != 0 &&
			    strcasecmp(h->name, "X-Spam-Score") != 0) {
				break; /* past our fields */
			}
		}
	}
	if (status != NULL && !spam_value(status, "engine", buf, sizeof(buf), NULL)) {
		status = NULL; /* a milter's (SpamAssassin's format, no engine=): stored as is, not ours to read */
	}
	json_key(j, "spam");
	if (status == NULL) {
		json_null(j);
		return;
	}
	json_obj(j);
	json_key(j, "engine");
	json_cstr(j, spam_value(status, "engine", buf, sizeof(buf), NULL) ? buf : NULL);
	json_key(j, "score");
	if (spam_value(status, "score", buf, sizeof(buf), NULL)) {
		json_num2(j, strtod(buf, NULL));
	} else {
		json_null(j);
	}
	json_key(j, "required");
	if (spam_value(status, "required", buf, sizeof(buf), NULL)) {
		json_num2(j, strtod(buf, NULL));
	} else {
		json_null(j);
	}
	json_key(j, "action");
	json_cstr(j, spam_value(status, "action", buf, sizeof(buf), NULL) ? buf : NULL);
	json_key(j, "is_spam");
	if (strncmp(status, "Yes,", 4) == 0 || strncmp(status, "No,", 3) == 0) {
		json_bool(j, status[0] == 'Y');
	} else {
		json_null(j);
	}
	json_key(j, "symbols");
	if (spam_value(status, "tests", buf, sizeof(buf), &at)) {
		spam_symbols(j, at);
	} else {
		json_arr(j);
		json_arr_end(j);
	}
	json_key(j, "error");
	json_cstr(j, spam_value(status, "error", buf, sizeof(buf), NULL) ? buf : NULL);
	json_obj_end(j);
}

/*
 * milter_section writes "milter": {"quarantine": reason} from our
 * X-Milter-Quarantine field (proto/milter.h), found in the run of fields
 * the server put on top (from our Authentication-Results down to our
 * Received:, which starts the client's message); null when no milter held
 * the message, and from `oceanmx parse`.
 */
static void milter_section(struct json *j, const struct message *m, const char *authserv_id)
{
	const char *reason = NULL;

	if (authserv_id != NULL && message_num_headers(m) > 0 &&
	    strcasecmp(message_header_at(m, 0)->name, "Authentication-Results") == 0) {
		for (size_t i = 0; i < message_num_headers(m); i++) {
			const struct message_header *h = message_header_at(m, i);

			if (strcasecmp(h->name, "Received") == 0) {
				break; /* ours: the client's message follows */
			}
			if (strcasecmp(h->name, MILTER_QUARANTINE_FIELD) == 0) {
				reason = h->raw;
				break;
			}
		}
	}
	json_key(j, "milter");
	if (reason == NULL) {
		json_null(j);
		return;
	}
	json_obj(j);
	json_key(j, "quarantine");
	while (*reason == ' ' || *reason == '\t') {
		reason++;
	}
	json_cstr(j, reason);
	json_obj_end(j);
}

int msgdoc_write(struct bb *out, const struct message *m, const struct msg_env *env, const struct msgdoc_opts *o)
{
	struct json j;
	const char *const *ids;
	size_t n;

	json_init(&j, out);
	json_obj(&j);
	json_key(&j, "schema");
	json_cstr(&j, MSGDOC_SCHEMA);
	json_key(&j, "version");
	json_u64(&j, MSGDOC_VERSION);
	json_key(&j, "envelope");
	if (env != NULL) {
		envelope(&j, env);
	} else {
		json_null(&j);
	}
	json_key(&j, "size");
	json_u64(&j, message_size(m));
	json_key(&j, "headers");
	if (message_root(m) != NULL) {
		headers(&j, message_root(m));
	} else {
		json_arr(&j);
		json_arr_end(&j);
	}
	addr_list(&j, "from", m, MESSAGE_FROM);
	addr_list(&j, "sender", m, MESSAGE_SENDER);
	addr_list(&j, "reply_to", m, MESSAGE_REPLY_TO);
	addr_list(&j, "to", m, MESSAGE_TO);
	addr_list(&j, "cc", m, MESSAGE_CC);
	addr_list(&j, "bcc", m, MESSAGE_BCC);
	json_key(&j, "subject");
	json_cstr(&j, message_subject(m));
	json_key(&j, "date");
	json_cstr(&j, message_date(m));
	json_key(&j, "message_id");
	json_cstr(&j, message_id(m));
	json_key(&j, "in_reply_to");
	json_arr(&j);
	n = message_in_reply_to(m, &ids);
	for (size_t i = 0; i < n; i++) {
		json_cstr(&j, ids[i]);
	}
	json_arr_end(&j);
	json_key(&j, "references");
	json_arr(&j);
	n = message_references(m, &ids);
	for (size_t i = 0; i < n; i++) {
		json_cstr(&j, ids[i]);
	}
	json_arr_end(&j);
	body(&j, "text", message_text(m), message_text_part(m));
	body(&j, "html", message_html(m), message_html_part(m));
	reply_section(&j, m);
	json_key(&j, "attachments");
	json_arr(&j);
	for (size_t i = 0; i < message_num_attachments(m); i++) {
		const struct message_part *p = message_attachment(m, i);
		struct span content;
		bool have = message_part_content(p, &content);

		json_obj(&j);
		part_common(&j, p);
		json_key(&j, "size");
		json_u64(&j, message_part_size(p));
		json_key(&j, "sha256");
		json_cstr(&j, message_part_sha256(p));
		if (have && message_part_size(p) <= o->inline_max) {
			json_key(&j, "content");
			json_base64(&j, content);
		} else {
			const char *path = o->att_path ? o->att_path(o->arg, p) : NULL;

			json_key(&j, "path");
			json_cstr(&j, path);
		}
		json_obj_end(&j);
	}
	json_arr_end(&j);
	json_key(&j, "parts");
	if (message_root(m) != NULL) {
		tree(&j, m, message_root(m), true);
	} else {
		json_null(&j);
	}
	auth_section(&j, m, o->authserv_id);
	spam_section(&j, m, o->authserv_id);
	milter_section(&j, m, o->authserv_id);
	json_key(&j, "defects");
	json_arr(&j);
	for (size_t i = 0; i < message_num_defects(m); i++) {
		const struct message_defect *d = message_defect(m, i);
		const struct message_part *p = message_part(m, d->part);

		json_obj(&j);
		json_key(&j, "code");
		json_cstr(&j, d->code);
		json_key(&j, "part_id");
		json_cstr(&j, p ? message_part_id(p) : NULL);
		json_obj_end(&j);
	}
	json_arr_end(&j);
	json_obj_end(&j);
	return j.err;
}

/*
 * msgdoc_spam_field_name: see msgdoc.h.
 */
bool msgdoc_spam_field_name(struct span field)
{
	static const char *const names[] = { "X-Spam-Flag", "X-Spam-Score", "X-Spam-Status" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct span c = field;

		if (span_eat_ci(&c, names[i])) {
			while (c.len > 0 && (c.p[0] == ' ' || c.p[0] == '\t')) {
				span_skip(&c, 1); /* RFC 5322 §4.5: obsolete space before the colon */
			}
			if (c.len > 0 && c.p[0] == ':') {
				return true;
			}
		}
	}
	return false;
}
