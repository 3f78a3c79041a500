/*
 * message.h - a parsed message for plugins and embedders (the C heir of
 * OceanMail's Envelope object): headers by name, address lists, the part
 * tree, the text and HTML bodies in UTF-8, attachments and defects.
 *
 * Built incrementally from the MIME events (proto/mime.h) while bytes
 * stream in: message_new, message_feed* (any split), message_end. The
 * message owns every string and span it returns; they stay valid until
 * message_free. No string or text body holds a NUL byte: one in the input
 * (or decoded from it) becomes U+FFFD and is a defect (header_nul,
 * body_nul), so C string readers see the whole text. Not thread-safe; one message per thread at a time, but
 * distinct messages are independent.
 *
 * Memory: the parser state is bounded (struct mime); headers are bounded by
 * MESSAGE_HEADERS_MAX; decoded bodies of text parts are kept up to
 * opts.text_max and of other leaf parts up to opts.keep_max (beyond that
 * only size and SHA-256 are kept, and opts.part_data may stream them).
 */
#ifndef OMX_MESSAGE_H
#define OMX_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/span.h"

#define MESSAGE_HEADERS_MAX (1u << 20) /* decoded header bytes kept per message */

struct message;
struct message_part;

/*
 * message_part_data_fn sees every decoded chunk of every leaf part, in
 * order, before the message keeps it; `size_before` is the part's size so
 * far. Returns 0, or -errno to fail the parse (message_feed returns it).
 */
typedef int message_part_data_fn(void *arg, const struct message_part *part, uint64_t size_before,
				 struct span data);

struct message_opts {
	size_t keep_max;   /* decoded bytes kept per non-text leaf (default SIZE_MAX) */
	size_t text_max;   /* decoded bytes kept per text/plain or text/html leaf (default 32 MiB) */
	message_part_data_fn *part_data; /* optional */
	void *arg;
};

enum message_kind {
	MESSAGE_KIND_LEAF = 0,
	MESSAGE_KIND_MULTIPART,
	MESSAGE_KIND_MESSAGE,  /* message/rfc822: its child is the encapsulated message */
	MESSAGE_KIND_COUNT     /* sentinel */
};

enum message_addr_field {
	MESSAGE_FROM = 0,
	MESSAGE_SENDER,
	MESSAGE_REPLY_TO,
	MESSAGE_TO,
	MESSAGE_CC,
	MESSAGE_BCC,
	MESSAGE_ADDR_FIELD_COUNT /* sentinel */
};

struct message_header {
	const char *name;   /* as written */
	const char *value;  /* unfolded, RFC 2047-decoded, UTF-8; a NUL byte (written or decoded) is U+FFFD */
	const char *raw;    /* unfolded, undecoded bytes, NUL-terminated; may hold NUL bytes: see raw_len */
	uint32_t part;      /* index of the part whose header block holds it */
	size_t raw_len;     /* bytes of raw */
};

struct message_addr {
	const char *name;   /* display name, "" if none */
	const char *email;  /* local@domain */
	const char *local;
	const char *domain;
	const char *detail; /* "+tag" sub-address without '+', NULL if none */
	const char *group;  /* group name, NULL outside a group */
	bool invalid;
};

struct message_defect {
	const char *code;   /* stable snake_case name, see docs/json.md */
	uint32_t part;      /* part index */
};

/* message_new: NULL on allocation failure. `opts` is copied; may be NULL. */
struct message *message_new(const struct message_opts *opts);
/* message_feed: any split of the input. 0 or -ENOMEM / the part_data error. */
int message_feed(struct message *m, const void *p, size_t len);
/* message_end: input done; resolves bodies, attachments, addresses. 0 or -ENOMEM. */
int message_end(struct message *m);
void message_free(struct message *m);
/* message_parse: new + feed + end in one; NULL on allocation failure. */
struct message *message_parse(const void *p, size_t len, const struct message_opts *opts);

/* Headers of the message (the root part), in order, duplicates kept. */
size_t message_num_headers(const struct message *m);
const struct message_header *message_header_at(const struct message *m, size_t i);
/* message_header: the first field named `name` (ASCII case-insensitive), decoded; NULL if absent. */
const char *message_header(const struct message *m, const char *name);
/* message_header_nth: the n-th (0-based) field of that name, or NULL. */
const char *message_header_nth(const struct message *m, const char *name, size_t n);

/* Address lists, parsed at message_end; *out borrows the message's array. */
size_t message_addrs(const struct message *m, enum message_addr_field f, const struct message_addr **out);

const char *message_subject(const struct message *m);     /* decoded; NULL if absent */
const char *message_date(const struct message *m);        /* ISO 8601 UTC; NULL if absent/invalid */
const char *message_id(const struct message *m);          /* Message-ID without <>; NULL */
size_t message_in_reply_to(const struct message *m, const char *const **out); /* ids without <> */
size_t message_references(const struct message *m, const char *const **out);

/* Structure. */
bool message_is_multipart(const struct message *m);
size_t message_num_parts(const struct message *m);
const struct message_part *message_part(const struct message *m, size_t index); /* 0 = root */
const struct message_part *message_root(const struct message *m);

/* Bodies: UTF-8, converted from the part's charset; empty span if none. */
struct span message_text(const struct message *m);
struct span message_html(const struct message *m);
const struct message_part *message_text_part(const struct message *m); /* NULL if none */
const struct message_part *message_html_part(const struct message *m);

size_t message_num_attachments(const struct message *m);
const struct message_part *message_attachment(const struct message *m, size_t i);

size_t message_num_defects(const struct message *m);
const struct message_defect *message_defect(const struct message *m, size_t i);
/* message_size: input bytes fed. */
uint64_t message_size(const struct message *m);

/* Part accessors; strings are NULL when absent. */
uint32_t message_part_index(const struct message_part *p);
const char *message_part_id(const struct message_part *p);        /* IMAP section, e.g. "2.1" (docs/json.md) */
enum message_kind message_part_kind(const struct message_part *p);
const char *message_part_type(const struct message_part *p);      /* "text/plain", lower case */
const char *message_part_charset(const struct message_part *p);   /* as given, or NULL */
const char *message_part_encoding(const struct message_part *p);  /* "base64", ... */
const char *message_part_filename(const struct message_part *p);  /* decoded (RFC 2231/2047) */
const char *message_part_disposition(const struct message_part *p);/* "inline", "attachment", NULL */
const char *message_part_content_id(const struct message_part *p);/* without <> */
const char *message_part_description(const struct message_part *p);
uint64_t message_part_size(const struct message_part *p);         /* decoded bytes */
const char *message_part_sha256(const struct message_part *p);    /* hex, leaves only, after message_end */
/* message_part_content: decoded bytes if all were kept (see keep_max), else false. */
bool message_part_content(const struct message_part *p, struct span *out);
size_t message_part_num_children(const struct message_part *p);
const struct message_part *message_part_child(const struct message_part *p, size_t i);
const struct message_part *message_part_parent(const struct message_part *p);
/* The header block of one part, in order (for the root: message_header_at). */
size_t message_part_num_headers(const struct message_part *p);
const struct message_header *message_part_header_at(const struct message_part *p, size_t i);
/* message_part_header: first field of that name in this part's header block. */
const char *message_part_header(const struct message_part *p, const char *name);
bool message_part_is_attachment(const struct message_part *p);

const char *message_kind_name(enum message_kind k);

#endif
