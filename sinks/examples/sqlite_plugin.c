/*
 * sqlite_plugin.c - an example oceanmx plugin (sinks/plugin.h): every
 * message into an SQLite database, the "store incoming mail in a database"
 * of OceanMail's README.
 *
 *     oceanmx serve --sink plugin:/usr/local/lib/oceanmx/sqlite_plugin.so?/var/lib/mail.db
 *
 * ARGS is the database file, created with this schema when new:
 *
 *   CREATE TABLE messages (
 *     id          TEXT PRIMARY KEY,   -- queue id: stable across redeliveries
 *     received_us INTEGER NOT NULL,   -- accepted at, microseconds since the epoch
 *     client_ip   TEXT NOT NULL,
 *     helo        TEXT,
 *     mail_from   TEXT NOT NULL,      -- '' for the null sender
 *     subject     TEXT,               -- decoded, UTF-8
 *     text        TEXT,               -- the text/plain body, UTF-8
 *     dkim        TEXT NOT NULL,      -- first signature's result, 'none' if unsigned
 *     spf         TEXT NOT NULL,
 *     dmarc       TEXT NOT NULL,
 *     size        INTEGER NOT NULL    -- bytes as spooled (our Received: + the client's)
 *   );
 *   CREATE TABLE recipients (           -- the envelope (RCPT TO), in order
 *     message_id TEXT NOT NULL REFERENCES messages(id), pos INTEGER NOT NULL, rcpt TEXT NOT NULL
 *   );
 *   CREATE TABLE addresses (            -- From:, To:, Cc: of the header
 *     message_id TEXT NOT NULL REFERENCES messages(id), field TEXT NOT NULL,  -- 'from', 'to', 'cc'
 *     name TEXT NOT NULL, email TEXT NOT NULL
 *   );
 *   CREATE TABLE attachments (
 *     message_id TEXT NOT NULL REFERENCES messages(id), filename TEXT, content_type TEXT,
 *     size INTEGER NOT NULL, sha256 TEXT NOT NULL
 *   );
 *
 * A message is one SQLite transaction: a redelivery (same id) replaces its
 * rows, so the database holds each message once. Each delivery worker has
 * its own connection (init runs per worker); WAL lets them write in turn
 * and readers read meanwhile, synchronous=FULL makes a commit durable before
 * deliver returns OK. A busy or failing database is a temporary failure.
 */
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sinks/plugin.h"

static const char schema[] =
	"PRAGMA journal_mode=WAL;"
	"PRAGMA synchronous=FULL;"
	"CREATE TABLE IF NOT EXISTS messages (id TEXT PRIMARY KEY, received_us INTEGER NOT NULL,"
	" client_ip TEXT NOT NULL, helo TEXT, mail_from TEXT NOT NULL, subject TEXT, text TEXT,"
	" dkim TEXT NOT NULL, spf TEXT NOT NULL, dmarc TEXT NOT NULL, size INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS recipients (message_id TEXT NOT NULL REFERENCES messages(id),"
	" pos INTEGER NOT NULL, rcpt TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS addresses (message_id TEXT NOT NULL REFERENCES messages(id),"
	" field TEXT NOT NULL, name TEXT NOT NULL, email TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS attachments (message_id TEXT NOT NULL REFERENCES messages(id),"
	" filename TEXT, content_type TEXT, size INTEGER NOT NULL, sha256 TEXT NOT NULL);"
	"CREATE INDEX IF NOT EXISTS recipients_id ON recipients(message_id);"
	"CREATE INDEX IF NOT EXISTS addresses_id ON addresses(message_id);"
	"CREATE INDEX IF NOT EXISTS attachments_id ON attachments(message_id);";

enum stmt { S_BEGIN, S_DEL_R, S_DEL_A, S_DEL_T, S_MSG, S_RCPT, S_ADDR, S_ATT, S_COMMIT, S_ROLLBACK, S_COUNT };

static const char *const sql[S_COUNT] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_DEL_R] = "DELETE FROM recipients WHERE message_id = ?1",
	[S_DEL_A] = "DELETE FROM addresses WHERE message_id = ?1",
	[S_DEL_T] = "DELETE FROM attachments WHERE message_id = ?1",
	[S_MSG] = "INSERT OR REPLACE INTO messages VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
	[S_RCPT] = "INSERT INTO recipients VALUES (?1, ?2, ?3)",
	[S_ADDR] = "INSERT INTO addresses VALUES (?1, ?2, ?3, ?4)",
	[S_ATT] = "INSERT INTO attachments VALUES (?1, ?2, ?3, ?4, ?5)",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
};

struct db {
	sqlite3 *db;
	sqlite3_stmt *st[S_COUNT];
};

static void db_fini(void *state)
{
	struct db *d = state;

	for (int i = 0; i < S_COUNT; i++) {
		sqlite3_finalize(d->st[i]);
	}
	sqlite3_close(d->db);
	free(d);
}

static int db_init(const char *args, void **out_state, char *err, size_t err_len)
{
	struct db *d = calloc(1, sizeof(*d));

	if (d == NULL || args[0] == '\0') {
		snprintf(err, err_len, d ? "usage: plugin:sqlite_plugin.so?DATABASE_FILE" : "out of memory");
		free(d);
		return -1;
	}
	if (sqlite3_open(args, &d->db) != SQLITE_OK || sqlite3_busy_timeout(d->db, 10000) != SQLITE_OK ||
	    sqlite3_exec(d->db, schema, NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, err_len, "%s: %s", args, d->db ? sqlite3_errmsg(d->db) : "out of memory");
		db_fini(d);
		return -1;
	}
	for (int i = 0; i < S_COUNT; i++) {
		if (sqlite3_prepare_v2(d->db, sql[i], -1, &d->st[i], NULL) != SQLITE_OK) {
			snprintf(err, err_len, "%s: %s", args, sqlite3_errmsg(d->db));
			db_fini(d);
			return -1;
		}
	}
	*out_state = d;
	return 0;
}

/* run binds text/integer arguments by a tiny format ("t" text or NULL, "i" int64) and steps once. */
static int run(struct db *d, enum stmt s, const char *fmt, ...)
{
	sqlite3_stmt *st = d->st[s];
	va_list ap;
	int rc;

	sqlite3_reset(st);
	va_start(ap, fmt);
	for (int i = 1; fmt[i - 1] != '\0'; i++) {
		if (fmt[i - 1] == 't') {
			sqlite3_bind_text(st, i, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
		} else {
			sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
		}
	}
	va_end(ap);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : rc;
}

static enum omx_plugin_rc db_deliver(void *state, const struct omx_plugin_message *m, char *why, size_t why_len)
{
	static const struct { enum message_addr_field f; const char *name; } fields[] = {
		{ MESSAGE_FROM, "from" }, { MESSAGE_TO, "to" }, { MESSAGE_CC, "cc" },
	};
	struct db *d = state;
	const struct omx_plugin_envelope *e = m->envelope;
	struct span text = message_text(m->doc);
	char *body = strndup((const char *)text.p, text.len); /* the text as UTF-8, NUL-terminated */
	int rc = body == NULL ? SQLITE_NOMEM : run(d, S_BEGIN, "");

	rc = rc ? rc : run(d, S_DEL_R, "t", e->id);
	rc = rc ? rc : run(d, S_DEL_A, "t", e->id);
	rc = rc ? rc : run(d, S_DEL_T, "t", e->id);
	rc = rc ? rc : run(d, S_MSG, "titttttttti", e->id, (int64_t)e->received_us, e->client_ip, e->helo, e->mail_from,
			   message_subject(m->doc), body, m->auth->num_dkim ? m->auth->dkim[0].result : "none",
			   m->auth->spf, m->auth->dmarc, (int64_t)e->size);
	for (size_t i = 0; rc == 0 && i < e->num_rcpts; i++) {
		rc = run(d, S_RCPT, "tit", e->id, (int64_t)i, e->rcpts[i]);
	}
	for (size_t f = 0; rc == 0 && f < sizeof(fields) / sizeof(fields[0]); f++) {
		const struct message_addr *a;
		size_t n = message_addrs(m->doc, fields[f].f, &a);

		for (size_t i = 0; rc == 0 && i < n; i++) {
			rc = run(d, S_ADDR, "tttt", e->id, fields[f].name, a[i].name, a[i].email);
		}
	}
	for (size_t i = 0; rc == 0 && i < message_num_attachments(m->doc); i++) {
		const struct message_part *p = message_attachment(m->doc, i);

		rc = run(d, S_ATT, "tttit", e->id, message_part_filename(p), message_part_type(p),
			 (int64_t)message_part_size(p), message_part_sha256(p));
	}
	rc = rc ? rc : run(d, S_COMMIT, "");
	free(body);
	if (rc == 0) {
		return OMX_PLUGIN_OK;
	}
	snprintf(why, why_len, "sqlite: %s", sqlite3_errstr(rc));
	(void)run(d, S_ROLLBACK, "");
	return OMX_PLUGIN_TEMPFAIL;
}

const struct omx_plugin omx_plugin = {
	.abi = OMX_PLUGIN_ABI_VERSION,
	.name = "sqlite",
	.init = db_init,
	.deliver = db_deliver,
	.fini = db_fini,
};
