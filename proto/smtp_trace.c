/*
 * smtp_trace.c - the Received: trace field (RFC 5321 §4.4, RFC 5322 §3.6.7);
 * see smtp_trace.h. Date names come from fixed tables, not strftime, so the
 * result does not depend on the locale.
 */
#include "smtp_trace.h"

#include <errno.h>
#include <string.h>
#include <time.h>

/* put_token appends s, replacing octets that could break the field's syntax. */
static int put_token(struct bb *out, const char *s)
{
	char buf[256];
	size_t n = 0;
	int rc;

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  (c != 0 && strchr(".-_:[]@+=!#$%&'*/?^`{|}~", c) != NULL) || c >= 0x80;

		buf[n++] = ok ? (char)c : '?';
		if (n == sizeof(buf)) {
			rc = bb_append(out, buf, n);
			if (rc != 0) {
				return rc;
			}
			n = 0;
		}
	}
	return bb_append(out, buf, n);
}

static int put_date(struct bb *out, int64_t us)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	int64_t secs = us / 1000000;
	time_t t;
	struct tm tm;

	if (us < 0 && us % 1000000 != 0) {
		secs--; /* floor */
	}
	t = (time_t)secs;
	if (gmtime_r(&t, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 || tm.tm_mon > 11) {
		return -EINVAL;
	}
	/* RFC 5322 §3.3 date-time, always UTC */
	return bb_printf(out, "%s, %d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
			 months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

int smtp_trace_received(struct bb *out, const struct msg_env *env, const char *hostname)
{
	/* RFC 3848 and RFC 6531 §3.7.3: the trailing S says STARTTLS was used. */
	const char *with = env->smtputf8 ? (env->tls.on ? "UTF8SMTPS" : "UTF8SMTP")
					 : (env->esmtp ? (env->tls.on ? "ESMTPS" : "ESMTP") : "SMTP");
	size_t mark = out->len;
	int rc;

	rc = bb_append_str(out, "Received: from ");
	if (rc == 0) {
		rc = put_token(out, env->helo != NULL && env->helo[0] != '\0' ? env->helo : "unknown");
	}
	if (rc == 0) {
		/* TCP-info = address-literal (RFC 5321 §4.1.3): IPv6 gets its tag. */
		rc = bb_append_str(out, strchr(env->client_ip, ':') != NULL ? " ([IPv6:" : " ([");
	}
	if (rc == 0) {
		rc = put_token(out, env->client_ip);
	}
	if (rc == 0) {
		rc = bb_append_str(out, "])\r\n\tby ");
	}
	if (rc == 0) {
		rc = put_token(out, hostname != NULL ? hostname : "localhost");
	}
	if (rc == 0) {
		rc = bb_printf(out, " (oceanmx) with %s", with);
	}
	if (rc == 0 && env->tls.on) {
		/* A comment (CFWS after the protocol, RFC 5321 §4.4), folded onto a line of its own. */
		rc = bb_append_str(out, "\r\n\t(version=");
		if (rc == 0) {
			rc = put_token(out, env->tls.version);
		}
		if (rc == 0) {
			rc = bb_append_str(out, " cipher=");
		}
		if (rc == 0) {
			rc = put_token(out, env->tls.cipher);
		}
		if (rc == 0) {
			rc = bb_append_str(out, ")");
		}
	}
	if (rc == 0 && env->id[0] != '\0') {
		rc = bb_append_str(out, " id ");
		if (rc == 0) {
			rc = put_token(out, env->id);
		}
	}
	if (rc == 0 && env->num_rcpts == 1 && env->rcpts != NULL && env->rcpts[0] != NULL) {
		rc = bb_append_str(out, "\r\n\tfor <");
		if (rc == 0) {
			rc = bb_append_str(out, env->rcpts[0]); /* validated by proto: no CR/LF */
		}
		if (rc == 0) {
			rc = bb_append_str(out, ">");
		}
	}
	if (rc == 0) {
		rc = bb_append_str(out, ";\r\n\t");
	}
	if (rc == 0) {
		rc = put_date(out, env->received_us);
	}
	if (rc == 0) {
		rc = bb_append(out, "\r\n", 2);
	}
	if (rc != 0) {
		out->len = mark;
	}
	return rc;
}
