/*
 * cmd_verify.c - "oceanmx verify [FILE|-]": verify the DKIM signatures and
 * the ARC chain of one message offline (and SPF, DMARC) and print the
 * Authentication-Results field we would prepend, then the results as JSON
 * ({"spf", "dmarc", "arc", "dkim":[...]}, the auth objects of docs/json.md).
 *
 * The message is streamed: header fields go to the DKIM verifier and the
 * ARC validator as they are complete, so each key lookup starts as soon as
 * its DKIM-Signature, ARC-Seal or ARC-Message-Signature field has been
 * read (DNS overlaps reading the body), body bytes are hashed in 64 KiB
 * chunks. A file with bare LF line ends is read as CRLF (RFC 5322
 * messages on disk often are). Exit: 0 verified (whatever the results),
 * 1 input or output error, 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/bb.h"
#include "../proto/json.h"
#include "../verify/arc.h"
#include "../verify/auth_json.h"
#include "../verify/authres.h"
#include "../verify/dkim.h"
#include "../verify/dmarc.h"
#include "../verify/dns.h"
#include "../verify/hdrsplit.h"
#include "../verify/psl.h"
#include "../verify/spf.h"

int cmd_verify(int argc, char **argv);

#define VERIFY_CHUNK 65536

static int usage(void)
{
	fprintf(stderr, "usage: oceanmx verify [--dns ADDR[:PORT]] [--dns-timeout MS] [--hostname NAME]\n"
			"                      [--now UNIXTIME] [--max-signatures N]\n"
			"                      [--client-ip IP [--mail-from ADDR] [--helo NAME] [--spf-only]]\n"
			"                      [--psl PUBLIC_SUFFIX_LIST] [FILE|-]\n"
			"Checks DKIM and the ARC chain (and SPF with --client-ip, DMARC with a From\n"
			"field); prints the Authentication-Results field, then the results as JSON.\n");
	return 2;
}

struct keyq {
	struct dkim_msg *m;
	unsigned sig;
};

struct arcq {
	struct arc_msg *m;
	unsigned key;
};

struct vctx {
	struct dkim_msg *m;
	struct arc_msg *arc;
	struct arcq aq[ARC_KEYS_HARD_MAX];
	struct dns_resolver *dns;
	struct dns_opts dopts;
	bool dns_failed;
	struct keyq q[DKIM_SIGS_HARD_MAX];
	struct hdrsplit split; /* header fields, bounded: a huge field is skipped, never an end */
	bool in_body;
	bool prev_cr;       /* LF normalisation across chunks */
	struct dmarc_from_seen from; /* the From fields (RFC 7489 §6.6.1 wants exactly one) */
	void (*headers_done)(struct vctx *v);
	void *hd_arg;
};

static void key_done(void *arg, const struct dns_txt_answer *a)
{
	struct keyq *q = arg;

	dkim_msg_key_answer(q->m, q->sig, a);
}

static struct dns_resolver *ensure_dns(struct vctx *v);

static void arc_key_done(void *arg, const struct dns_txt_answer *a)
{
	struct arcq *q = arg;

	arc_msg_key_answer(q->m, q->key, a);
}

static void start_arc_lookup(struct vctx *v, unsigned key)
{
	static struct dns_txt_answer fail; /* status DNS_ERROR, no records */
	struct dns_resolver *r = ensure_dns(v);
	uint64_t id;

	v->aq[key].m = v->arc;
	v->aq[key].key = key;
	if (r == NULL || dns_txt(r, arc_msg_key_name(v->arc, key), 0, arc_key_done, &v->aq[key], &id) != 0) {
		fail.status = DNS_ERROR;
		arc_msg_key_answer(v->arc, key, &fail);
	}
}

static void start_lookup(struct vctx *v, unsigned sig)
{
	static struct dns_txt_answer fail; /* status DNS_ERROR, no records */
	uint64_t id;
	char *err = NULL;

	v->q[sig].m = v->m;
	v->q[sig].sig = sig;
	if (v->dns == NULL && !v->dns_failed) {
		v->dns = dns_unbound_new(&v->dopts, &err);
		if (v->dns == NULL) {
			fprintf(stderr, "oceanmx verify: %s\n", err ? err : "dns: cannot start the resolver");
			free(err);
			v->dns_failed = true;
		}
	}
	if (v->dns == NULL || dns_txt(v->dns, dkim_msg_key_name(v->m, sig), 0, key_done, &v->q[sig], &id) != 0) {
		fail.status = DNS_ERROR;
		dkim_msg_key_answer(v->m, sig, &fail);
	}
}

/*
 * take_field hands one header field to the verifiers, as the server's
 * verify pool does (core/vpool.c): a field too large to keep whole goes in
 * as "big", so it keeps its place and fails what needs it. 0 or -ENOMEM.
 */
static int take_field(struct vctx *v, const struct hdrsplit_field *f)
{
	int sig = -1, key = -1, rc;

	rc = dmarc_from_seen_field(&v->from, f->bytes, f->whole, f->len, f->max_line, f->offset);
	if (rc == 0 && !f->whole) {
		rc = dkim_msg_header_big(v->m, f->bytes, &sig);
		if (rc == 0) {
			rc = arc_msg_header_big(v->arc, f->bytes);
		}
		return rc;
	}
	if (rc == 0 && f->bytes.len > 0) {
		rc = dkim_msg_header(v->m, f->bytes, &sig);
		if (rc == 0) {
			rc = arc_msg_header(v->arc, f->bytes, &key);
		}
	}
	if (rc != 0) {
		return rc;
	}
	if (sig >= 0) {
		start_lookup(v, (unsigned)sig);
	}
	if (key >= 0) {
		start_arc_lookup(v, (unsigned)key);
	}
	return 0;
}

/* end_headers: the header section is complete. */
static void end_headers(struct vctx *v)
{
	dkim_msg_headers_end(v->m);
	arc_msg_headers_end(v->arc);
	v->in_body = true;
	if (v->headers_done != NULL) {
		v->headers_done(v);
	}
}

/* feed takes normalised (CRLF) message bytes. */
static int feed(struct vctx *v, const uint8_t *p, size_t len)
{
	struct span in = span_make(p, len);

	while (!v->in_body && in.len > 0) {
		struct hdrsplit_field f;
		enum hdrsplit_ev ev = hdrsplit_next(&v->split, &f, &in);
		int rc;

		if (ev == HDRSPLIT_FIELD) {
			if ((rc = take_field(v, &f)) != 0) {
				return rc;
			}
		} else if (ev == HDRSPLIT_END) {
			end_headers(v);
		} else {
			break;
		}
	}
	if (in.len > 0) {
		dkim_msg_body(v->m, in.p, in.len);
		arc_msg_body(v->arc, in.p, in.len);
	}
	return 0;
}

/* feed_raw turns bare LF into CRLF, then feeds. */
static int feed_raw(struct vctx *v, const uint8_t *p, size_t len)
{
	static uint8_t out[2 * VERIFY_CHUNK];
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\n' && !v->prev_cr) {
			out[n++] = '\r';
		}
		out[n++] = p[i];
		v->prev_cr = p[i] == '\r';
	}
	return feed(v, out, n);
}

struct spfq {
	struct spf_check *mfrom, *helo;
	bool spf_only;
};

static void write_json(struct bb *out, const struct dkim_result *r, size_t n, const struct spfq *sq,
		       const struct dmarc_result *dres, const struct arc_result *ares)
{
	struct json j;

	json_init(&j, out);
	json_obj(&j);
	if (sq->mfrom != NULL || sq->helo != NULL) {
		json_key(&j, "spf");
		auth_json_spf(&j, sq->mfrom ? spf_check_result(sq->mfrom) : NULL,
			      sq->helo ? spf_check_result(sq->helo) : NULL);
	}
	if (sq->spf_only) {
		goto end;
	}
	json_key(&j, "dmarc");
	auth_json_dmarc(&j, dres);
	json_key(&j, "arc");
	auth_json_arc(&j, ares);
	json_key(&j, "dkim");
	json_arr(&j);
	for (size_t i = 0; i < n; i++) {
		json_obj(&j);
		json_key(&j, "result");
		json_cstr(&j, auth_res_name(r[i].res));
		json_key(&j, "reason");
		json_cstr(&j, r[i].reason);
		json_key(&j, "domain");
		json_cstr(&j, r[i].domain);
		json_key(&j, "selector");
		json_cstr(&j, r[i].selector);
		json_key(&j, "algorithm");
		json_cstr(&j, r[i].algorithm);
		json_key(&j, "identity");
		json_cstr(&j, r[i].identity[0] ? r[i].identity : NULL);
		json_key(&j, "b");
		json_cstr(&j, r[i].b);
		json_key(&j, "testing");
		json_bool(&j, r[i].testing);
		json_key(&j, "key_bits");
		json_u64(&j, r[i].key_bits);
		json_obj_end(&j);
	}
	json_arr_end(&j);
end:
	json_obj_end(&j);
	if (j.err == 0 && bb_append(out, "\n", 1) != 0) {
		j.err = -ENOMEM;
	}
}

struct dmctx {
	struct psl *psl;
	struct dmarc_check **dm;
	enum dmarc_from_rc *from_rc;
};

/* start_dmarc runs at the end of the header: the From domain is known, its record lookup starts. */
static void start_dmarc(struct vctx *v)
{
	struct dmctx *d = v->hd_arg;
	char dom[PSL_NAME_MAX + 1];
	struct dmarc_opts o = { .timeout_ms = v->dopts.timeout_ms };
	struct dns_resolver *r;

	*d->from_rc = dmarc_from_seen_domain(&v->from, dom, sizeof(dom));
	if (*d->from_rc != DMARC_FROM_OK || d->psl == NULL || (r = ensure_dns(v)) == NULL) {
		return; /* no record discovery: reported at the end */
	}
	*d->dm = dmarc_check_new(d->psl, dom, &o);
	if (*d->dm != NULL) {
		dmarc_check_start(*d->dm, r, NULL, NULL);
	}
}

/* spf_dns makes the resolver on first use; NULL (and a message) if it cannot. */
static struct dns_resolver *ensure_dns(struct vctx *v)
{
	char *err = NULL;

	if (v->dns == NULL && !v->dns_failed) {
		v->dns = dns_unbound_new(&v->dopts, &err);
		if (v->dns == NULL) {
			fprintf(stderr, "oceanmx verify: %s\n", err ? err : "dns: cannot start the resolver");
			free(err);
			v->dns_failed = true;
		}
	}
	return v->dns;
}

/*
 * start_spf starts the MAIL FROM check (and, unless --spf-only, the HELO
 * check when a HELO name was given). 0, or -1 after a message.
 */
static int start_spf(struct vctx *v, struct spfq *sq, const char *ip, const char *mail_from, const char *helo,
		     const char *hostname, uint64_t now)
{
	struct spf_params p = {
		.identity = SPF_ID_MAILFROM,
		.client_ip = ip,
		.mail_from = mail_from ? mail_from : "",
		.helo = helo ? helo : "",
		.receiver = hostname,
		.now = now,
		.timeout_ms = v->dopts.timeout_ms,
	};
	char mf[SPF_SENDER_MAX + 3];
	size_t n = strlen(p.mail_from);
	struct dns_resolver *r;

	if (n >= 2 && p.mail_from[0] == '<' && p.mail_from[n - 1] == '>' && n - 2 < sizeof(mf)) {
		memcpy(mf, p.mail_from + 1, n - 2); /* "<a@b>" as written in MAIL FROM */
		mf[n - 2] = '\0';
		p.mail_from = mf;
	}
	sq->mfrom = spf_check_new(&p);
	if (sq->mfrom == NULL) {
		fprintf(stderr, "oceanmx verify: out of memory\n");
		return -1;
	}
	if (!sq->spf_only && helo != NULL && helo[0] != '\0') {
		p.identity = SPF_ID_HELO;
		sq->helo = spf_check_new(&p);
		if (sq->helo == NULL) {
			fprintf(stderr, "oceanmx verify: out of memory\n");
			return -1;
		}
	}
	r = ensure_dns(v);
	if (r == NULL) {
		return -1;
	}
	spf_check_start(sq->mfrom, r, NULL, NULL);
	if (sq->helo != NULL) {
		spf_check_start(sq->helo, r, NULL, NULL);
	}
	return 0;
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno == 0 && end != s && *end == '\0' && s[0] != '-';
}

int cmd_verify(int argc, char **argv)
{
	const char *path = "-", *hostname = NULL, *client_ip = NULL, *mail_from = NULL, *helo = NULL;
	struct spfq sq = { 0 };
	const char *psl_path = PSL_DEFAULT_PATH;
	struct psl *psl = NULL;
	struct dmarc_check *dm = NULL;
	struct dmarc_result dres;
	enum dmarc_from_rc from_rc = DMARC_FROM_NONE;
	struct dmctx dmctx = { 0 };
	struct dkim_opts o = { 0 };
	struct dkim_result res[DKIM_SIGS_HARD_MAX];
	struct arc_result ares;
	struct vctx v;
	struct bb out;
	static uint8_t buf[VERIFY_CHUNK];
	char host[256];
	uint64_t u;
	size_t n;
	int fd = 0, rc = 1;

	memset(&v, 0, sizeof(v));
	o.now = (uint64_t)time(NULL);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage();
			return 0;
		} else if (strcmp(a, "--dns") == 0 && i + 1 < argc) {
			v.dopts.upstream = argv[++i];
		} else if (strcmp(a, "--dns-timeout") == 0 && i + 1 < argc) {
			if (!parse_u64(argv[++i], &u) || u == 0 || u > 600000) {
				return usage();
			}
			v.dopts.timeout_ms = (uint32_t)u;
		} else if (strcmp(a, "--hostname") == 0 && i + 1 < argc) {
			hostname = argv[++i];
		} else if (strcmp(a, "--now") == 0 && i + 1 < argc) {
			if (!parse_u64(argv[++i], &o.now)) {
				return usage();
			}
		} else if (strcmp(a, "--max-signatures") == 0 && i + 1 < argc) {
			if (!parse_u64(argv[++i], &u) || u == 0 || u > DKIM_SIGS_HARD_MAX) {
				return usage();
			}
			o.max_sigs = (unsigned)u;
		} else if (strcmp(a, "--client-ip") == 0 && i + 1 < argc) {
			client_ip = argv[++i];
		} else if (strcmp(a, "--mail-from") == 0 && i + 1 < argc) {
			mail_from = argv[++i];
		} else if (strcmp(a, "--helo") == 0 && i + 1 < argc) {
			helo = argv[++i];
		} else if (strcmp(a, "--psl") == 0 && i + 1 < argc) {
			psl_path = argv[++i];
		} else if (strcmp(a, "--spf-only") == 0) {
			sq.spf_only = true;
		} else if (a[0] == '-' && a[1] != '\0') {
			return usage();
		} else {
			path = a;
		}
	}
	if (hostname == NULL) {
		if (gethostname(host, sizeof(host)) != 0) {
			strcpy(host, "localhost");
		}
		host[sizeof(host) - 1] = '\0';
		hostname = host;
	}
	if (v.dopts.upstream != NULL) {
		char *err = NULL;

		/* Check the address now: a typo is a usage error, not a temperror. */
		v.dns = dns_unbound_new(&v.dopts, &err);
		if (v.dns == NULL) {
			fprintf(stderr, "oceanmx verify: %s\n", err ? err : "dns setup failed");
			free(err);
			return 2;
		}
	}
	if (sq.spf_only && client_ip == NULL) {
		fprintf(stderr, "oceanmx verify: --spf-only needs --client-ip\n");
		dns_free(v.dns);
		return 2;
	}
	if (client_ip != NULL && start_spf(&v, &sq, client_ip, mail_from, helo, hostname, o.now) != 0) {
		dns_free(v.dns);
		return 2;
	}
	if (sq.spf_only) {
		fd = -1;
		bb_init(&out, 0);
		hdrsplit_init(&v.split);
		goto results;
	}
	if (strcmp(path, "-") != 0 && (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		fprintf(stderr, "oceanmx verify: %s: %s\n", path, strerror(errno));
		spf_check_free(sq.mfrom);
		spf_check_free(sq.helo);
		dns_free(v.dns);
		return 1;
	}
	bb_init(&out, 0);
	hdrsplit_init(&v.split);
	{
		char *err = NULL;

		psl = psl_load(psl_path, &err);
		if (psl == NULL) {
			fprintf(stderr, "oceanmx verify: %s (DMARC needs the Debian package publicsuffix)\n",
				err ? err : "psl: cannot load");
			free(err);
		}
	}
	dmctx.psl = psl;
	dmctx.dm = &dm;
	dmctx.from_rc = &from_rc;
	v.hd_arg = &dmctx;
	v.headers_done = start_dmarc;
	v.m = dkim_msg_new(&o);
	v.arc = arc_msg_new(NULL);
	if (v.m == NULL || v.arc == NULL) {
		fprintf(stderr, "oceanmx verify: out of memory\n");
		goto out;
	}
	for (;;) {
		ssize_t got = read(fd, buf, sizeof(buf));

		if (got < 0 && errno == EINTR) {
			continue;
		}
		if (got < 0) {
			fprintf(stderr, "oceanmx verify: %s: %s\n", path, strerror(errno));
			goto out;
		}
		if (got == 0) {
			break;
		}
		if (feed_raw(&v, buf, (size_t)got) != 0) {
			fprintf(stderr, "oceanmx verify: out of memory\n");
			goto out;
		}
		if (v.dns != NULL) {
			dns_process(v.dns, dns_now_ms()); /* answers that are already here */
		}
	}
	if (!v.in_body) {
		/* no empty line: the header ends with the message */
		struct hdrsplit_field f;

		while (hdrsplit_finish(&v.split, &f) == HDRSPLIT_FIELD) {
			if (take_field(&v, &f) != 0) {
				fprintf(stderr, "oceanmx verify: out of memory\n");
				goto out;
			}
		}
		end_headers(&v);
	}
	dkim_msg_body_end(v.m);
	arc_msg_body_end(v.arc);
results:
	if (v.dns != NULL && dns_wait(v.dns) != 0) {
		fprintf(stderr, "oceanmx verify: dns: wait failed\n");
	}
	n = v.m != NULL ? dkim_msg_results(v.m, res, DKIM_SIGS_HARD_MAX) : 0;
	memset(&ares, 0, sizeof(ares));
	if (v.arc != NULL) {
		arc_msg_result(v.arc, &ares);
	}
	if (dm != NULL) {
		dmarc_check_eval(dm, &dres, res, n, sq.mfrom ? spf_check_result(sq.mfrom) : NULL);
	} else if (!sq.spf_only && from_rc != DMARC_FROM_OK) {
		dmarc_from_result(&dres, from_rc); /* as the server: core/vpool.c */
	} else if (!sq.spf_only) {
		memset(&dres, 0, sizeof(dres));
		dres.res = AUTH_TEMPERROR;
		dres.reason = psl == NULL ? "no Public Suffix List" : "record discovery could not run";
	}
	{
		struct authres_in ain = {
			.dkim = sq.spf_only ? NULL : res,
			.num_dkim = n,
			.spf_mfrom = sq.mfrom ? spf_check_result(sq.mfrom) : NULL,
			.spf_helo = sq.helo ? spf_check_result(sq.helo) : NULL,
			.dmarc = sq.spf_only ? NULL : &dres,
			.arc = sq.spf_only ? NULL : &ares,
		};

		if (authres_write_all(&out, hostname, &ain) != 0) {
			fprintf(stderr, "oceanmx verify: out of memory\n");
			goto out;
		}
	}
	/* The field is CRLF-folded as it would be stored; print it with LF. */
	n = 0;
	for (size_t i = 0; i < out.len; i++) {
		if (out.p[i] != '\r') {
			out.p[n++] = out.p[i];
		}
	}
	out.len = n;
	write_json(&out, res, v.m != NULL ? dkim_msg_num_sigs(v.m) : 0, &sq, sq.spf_only ? NULL : &dres,
		   sq.spf_only ? NULL : &ares);
	if (fwrite(out.p, 1, out.len, stdout) != out.len || fflush(stdout) != 0) {
		fprintf(stderr, "oceanmx verify: stdout: %s\n", strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (fd > 0) {
		close(fd);
	}
	spf_check_free(sq.mfrom);
	spf_check_free(sq.helo);
	dmarc_check_free(dm);
	psl_free(psl);
	dmarc_from_seen_fini(&v.from);
	dkim_msg_free(v.m);
	arc_msg_free(v.arc);
	dns_free(v.dns);
	hdrsplit_fini(&v.split);
	bb_fini(&out);
	return rc;
}
