/*
 * mail_reply.c - the reply without its history (see mail_reply.h).
 *
 * Text: every line gets one kind (text, empty, quote, splitter, forward);
 * a splitter is the first line of the quoted history: an attribution ("On
 * <date>, <name> wrote:" in the languages below, over up to
 * MAIL_REPLY_ATTR_LINES lines, or after the reply on the same line), an
 * Outlook header block (From:/Sent:/To:/Subject: and their translations),
 * an "-----Original Message-----" line or a mobile "---- X wrote ----".
 * Then, on the sequence of kinds (talon's convention for what is removed,
 * our own code):
 *   - a message whose first marker is a forwarded-message line is kept whole
 *     (what was forwarded is the content);
 *   - inline replies (quote, text, quote) keep everything but the last
 *     quoted block (email_reply_parser's visible text);
 *   - else from the first splitter: followed by text, everything to the
 *     end goes; followed by quotes, the splitter and the quotes go and what
 *     follows the last quote (a signature below the history) stays;
 *   - else a block of at least two quote lines goes.
 * The signature is then looked for in the last MAIL_REPLY_SIG_LINES lines
 * of what is left: the topmost of "--"/"-- "/"__", "-Name", "Sent from my
 * ...", a valediction block, or a short name/contact block.
 *
 * HTML: one pass over the tags; the first element that marks a client's
 * quote (Gmail div.gmail_quote, Apple/Thunderbird blockquote type=cite,
 * moz-cite-prefix, yahoo_quoted, protonmail_quote) is removed with its
 * content, and an Outlook separator (divRplyFwdMsg with its <hr>,
 * appendonsend, a border-top header div) removes everything to </body>.
 *
 * Invariants: work is linear in the input (each line is classified once,
 * look-ahead is bounded by constants, spans never rescan the body); the
 * output text is made of whole input lines in order, one of them possibly
 * cut before a same-line attribution.
 */
#include "mail_reply.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum mr_kind {
	MR_TEXT = 0, /* ordinary text */
	MR_EMPTY,    /* whitespace only */
	MR_QUOTE,    /* starts with '>' */
	MR_SPLIT,    /* first line(s) of the quoted history */
	MR_FWD,      /* a forwarded-message marker */
	MR_KIND_COUNT /* sentinel */
};

#define MR_CUT 0x80 /* flag on kind: the line is removed */

struct mr_line {
	uint32_t off;   /* first byte in the body */
	uint32_t len;   /* bytes without the line ending */
	uint32_t toff;  /* the line without white space at either end: from off + toff ... */
	uint32_t tlen;  /* ... for tlen bytes (computed once: no later call rescans a long line) */
	uint16_t col;   /* MR_SPLIT after the reply on the same line: where the attribution starts */
	uint8_t kind;   /* enum mr_kind, | MR_CUT */
};

struct mr {
	const uint8_t *p;   /* the body (borrowed) */
	size_t n;
	struct mr_line *l;
	size_t num;
	uint64_t *work;
};

/* ------------------------------------------------------------------ bytes */

static bool is_ws(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

static uint8_t lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
}

static bool is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

/* trim drops ASCII white space and U+00A0 at both ends. */
static struct span trim(struct span s)
{
	for (;;) {
		if (s.len > 0 && is_ws(s.p[0])) {
			s.p++;
			s.len--;
		} else if (s.len > 1 && s.p[0] == 0xc2 && s.p[1] == 0xa0) {
			s.p += 2;
			s.len -= 2;
		} else {
			break;
		}
	}
	for (;;) {
		if (s.len > 0 && is_ws(s.p[s.len - 1])) {
			s.len--;
		} else if (s.len > 1 && s.p[s.len - 2] == 0xc2 && s.p[s.len - 1] == 0xa0) {
			s.len -= 2;
		} else {
			break;
		}
	}
	return s;
}

/* trim_chars drops the bytes of `set` (ASCII) and white space at both ends. */
static struct span trim_chars(struct span s, const char *set)
{
	while (s.len > 0 && (is_ws(s.p[0]) || strchr(set, s.p[0]) != NULL)) {
		s.p++;
		s.len--;
	}
	while (s.len > 0 && (is_ws(s.p[s.len - 1]) || strchr(set, s.p[s.len - 1]) != NULL)) {
		s.len--;
	}
	return s;
}

/* eq_ci: ASCII letters compare without case, other bytes exactly. */
static bool eq_ci(const uint8_t *a, const char *lit, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (lower(a[i]) != lower((uint8_t)lit[i])) {
			return false;
		}
	}
	return true;
}

static bool starts_ci(struct span s, const char *lit)
{
	size_t n = strlen(lit);

	return s.len >= n && eq_ci(s.p, lit, n);
}

static bool ends_ci(struct span s, const char *lit)
{
	size_t n = strlen(lit);

	return s.len >= n && eq_ci(s.p + s.len - n, lit, n);
}

/* find_ci: offset of lit in s, or SIZE_MAX. Callers bound s by a constant. */
static size_t find_ci(struct span s, const char *lit)
{
	size_t n = strlen(lit);

	for (size_t i = 0; n > 0 && i + n <= s.len; i++) {
		if (lower(s.p[i]) == lower((uint8_t)lit[0]) && eq_ci(s.p + i, lit, n)) {
			return i;
		}
	}
	return SIZE_MAX;
}

static bool has_any_ci(struct span s, const char *const *list)
{
	for (size_t i = 0; list[i] != NULL; i++) {
		if (find_ci(s, list[i]) != SIZE_MAX) {
			return true;
		}
	}
	return false;
}

static bool has_digit(struct span s)
{
	for (size_t i = 0; i < s.len; i++) {
		if (is_digit(s.p[i])) {
			return true;
		}
	}
	return false;
}

/* has_email: a '@' with a non-space before and a '.' after in the same token. */
static bool has_email(struct span s)
{
	for (size_t i = 1; i + 1 < s.len; i++) {
		if (s.p[i] != '@' || is_ws(s.p[i - 1]) || is_ws(s.p[i + 1])) {
			continue;
		}
		for (size_t k = i + 1; k < s.len && !is_ws(s.p[k]) && s.p[k] != '>'; k++) {
			if (s.p[k] == '.') {
				return true;
			}
		}
	}
	return false;
}

/* has_datetime: a time (1:23) or a date (1/2/3, 1.2.3, 1-2-3, 2018年). */
static bool has_datetime(struct span s)
{
	for (size_t i = 0; i < s.len; i++) {
		if (!is_digit(s.p[i])) {
			if (i + 3 <= s.len && memcmp(s.p + i, "\xe5\xb9\xb4", 3) == 0 && i > 0 && is_digit(s.p[i - 1])) {
				return true; /* 年 after a digit */
			}
			continue;
		}
		size_t k = i;

		while (k < s.len && is_digit(s.p[k])) {
			k++;
		}
		if (k + 2 < s.len && s.p[k] == ':' && is_digit(s.p[k + 1]) && is_digit(s.p[k + 2])) {
			return true;
		}
		if (k + 1 < s.len && (s.p[k] == '/' || s.p[k] == '.' || s.p[k] == '-') && is_digit(s.p[k + 1])) {
			size_t m = k + 1;

			while (m < s.len && is_digit(s.p[m])) {
				m++;
			}
			if (m + 1 < s.len && s.p[m] == s.p[k] && is_digit(s.p[m + 1])) {
				return true;
			}
		}
		i = k;
	}
	return false;
}

/* ------------------------------------------------------------------ words */

/* Attribution openers, at the start of the line (case as written). */
static const char *const openers[] = {
	"On ", "Le ", "Am ", "El ", "Il ", "Op ", "Em ", "Den ", "P\xc3\xa5 ", "W dniu ", "Dnia ", "V\xc3\xa0o ",
	"Dne ", "Pe ", "I dag ", "Op ", NULL,
};

/* Attribution verbs ("wrote"), ASCII letters without case. */
static const char *const verbs[] = {
	"wrote", "writes", "sent", "schrieb", "geschrieben", "\xc3\xa9" "crit", "escribi\xc3\xb3", "escribio",
	"scritto", "scrisse", "schreef", "geschreven", "escreveu", "skrev", "napisa\xc5\x82",
	"\xd0\xbd\xd0\xb0\xd0\xbf\xd0\xb8\xd1\x81\xd0\xb0\xd0\xbb", /* написал */
	"\xd0\xbf\xd0\xb8\xd1\x88\xd0\xb5\xd1\x82",                 /* пишет */
	"\xe5\x86\x99\xe9\x81\x93",                                 /* 写道 */
	"\xe5\xaf\xab\xe9\x81\x93",                                 /* 寫道 */
	"\xe3\x81\xae\xe3\x83\xa1\xe3\x83\xbc\xe3\x83\xab",         /* のメール */
	"\xe6\x9b\xb8\xe3\x81\x8d\xe3\x81\xbe\xe3\x81\x97\xe3\x81\x9f", /* 書きました */
	"\xec\x9e\x91\xec\x84\xb1",                                 /* 작성 */
	"vi\xe1\xba\xbft",                                          /* viết */
	"kirjoitti", "\xc3\xadrta", "yazd\xc4\xb1", "napsal", "scris",
	NULL,
};

/* Forwarded-message markers (inside a dashed line, or a line start for "Begin forwarded message"). */
static const char *const fwd_words[] = {
	"forwarded message", "weitergeleitete nachricht", "message transf\xc3\xa9r\xc3\xa9", "mensaje reenviado",
	"messaggio inoltrato", "doorgestuurd bericht", "mensagem encaminhada", "vidarebefordrat",
	"videresendt", "wiadomo\xc5\x9b\xc4\x87 przekazana",
	"\xd0\x9f\xd0\xb5\xd1\x80\xd0\xb5\xd1\x81\xd1\x8b\xd0\xbb\xd0\xb0\xd0\xb5\xd0\xbc\xd0\xbe\xd0\xb5", /* Пересылаемое */
	"\xd0\xbf\xd0\xb5\xd1\x80\xd0\xb5\xd1\x81\xd1\x8b\xd0\xbb\xd0\xb0\xd0\xb5\xd0\xbc\xd0\xbe\xd0\xb5", /* пересылаемое */
	"\xe8\xbb\xa2\xe9\x80\x81",                                 /* 転送 */
	"\xe8\xbd\xac\xe5\x8f\x91",                                 /* 转发 */
	NULL,
};

static const char *const fwd_starts[] = {
	"Begin forwarded message", "Anfang der weitergeleiteten", "D\xc3\xa9" "but du message r\xc3\xa9" "exp\xc3\xa9" "di",
	"Inicio del mensaje reenviado", "Inizio messaggio inoltrato", "Begin doorgestuurd bericht",
	"In\xc3\xad" "cio da mensagem reencaminhada", "Vidarebefordrat brev", NULL,
};

/* Original-message markers inside a dashed line. */
static const char *const orig_words[] = {
	"original message", "original nachricht", "urspr\xc3\xbcngliche nachricht", "message d'origine",
	"message original", "mensaje original", "messaggio originale", "oorspronkelijk bericht",
	"mensagem original", "ursprungligt meddelande", "oprindelig meddelelse", "opprinnelig melding",
	"wiadomo\xc5\x9b\xc4\x87 oryginalna", "oryginalna wiadomo\xc5\x9b\xc4\x87",
	"\xd0\x98\xd1\x81\xd1\x85\xd0\xbe\xd0\xb4\xd0\xbd\xd0\xbe\xd0\xb5", /* Исходное */
	"\xd0\xb8\xd1\x81\xd1\x85\xd0\xbe\xd0\xb4\xd0\xbd\xd0\xbe\xd0\xb5", /* исходное */
	"\xe5\x8e\x9f\xe5\xa7\x8b\xe9\x82\xae\xe4\xbb\xb6",         /* 原始邮件 */
	"\xe5\x85\x83\xe3\x81\xae\xe3\x83\xa1\xe3\x83\x83\xe3\x82\xbb\xe3\x83\xbc\xe3\x82\xb8", /* 元のメッセージ */
	"reply message", NULL,
};

/* Header labels of a quoted header block; the first group may start one. */
static const char *const label_start[] = {
	"From", "Von", "De", "Da", "Van", "Fr\xc3\xa5n", "Fra", "Od",
	"\xd0\x9e\xd1\x82",                                         /* От */
	"\xe5\x8f\x91\xe4\xbb\xb6\xe4\xba\xba",                     /* 发件人 */
	"\xe5\xaf\x84\xe4\xbb\xb6\xe8\x80\x85",                     /* 寄件者 */
	"\xe5\xb7\xae\xe5\x87\xba\xe4\xba\xba",                     /* 差出人 */
	"\xe9\x80\x81\xe4\xbf\xa1\xe8\x80\x85",                     /* 送信者 */
	"Kimden", "Felad\xc3\xb3", "L\xc3\xa4hett\xc3\xa4j\xc3\xa4",
	"Date", "Sent", "Gesendet", "Datum", "Envoy\xc3\xa9", "Enviado", "Enviada", "Inviato", "Data",
	"Verzonden", "Skickat", "Sendt", "Wys\xc5\x82" "ano", "Fecha",
	"\xd0\x9e\xd1\x82\xd0\xbf\xd1\x80\xd0\xb0\xd0\xb2\xd0\xbb\xd0\xb5\xd0\xbd\xd0\xbe", /* Отправлено */
	"\xd0\x94\xd0\xb0\xd1\x82\xd0\xb0",                         /* Дата */
	"\xe5\x8f\x91\xe9\x80\x81\xe6\x97\xb6\xe9\x97\xb4",         /* 发送时间 */
	"\xe6\x97\xa5\xe6\x9c\x9f",                                 /* 日期 */
	"\xe9\x80\x81\xe4\xbf\xa1\xe6\x97\xa5\xe6\x99\x82",         /* 送信日時 */
	NULL,
};

static const char *const label_other[] = {
	"To", "An", "\xc3\x80", "A", "Para", "Aan", "Till", "Til", "Do", "Cc", "Bcc", "Kopie", "Copie", "CC",
	"\xd0\x9a\xd0\xbe\xd0\xbc\xd1\x83",                         /* Кому */
	"\xe6\x94\xb6\xe4\xbb\xb6\xe4\xba\xba",                     /* 收件人 */
	"\xe5\xae\x9b\xe5\x85\x88",                                 /* 宛先 */
	"Subject", "Betreff", "Objet", "Asunto", "Oggetto", "Onderwerp", "Assunto", "\xc3\x84mne", "Emne",
	"Temat", "Aihe", "Konu", "Reply-To",
	"\xd0\xa2\xd0\xb5\xd0\xbc\xd0\xb0",                         /* Тема */
	"\xe4\xb8\xbb\xe9\xa2\x98",                                 /* 主题 */
	"\xe4\xbb\xb6\xe5\x90\x8d",                                 /* 件名 */
	NULL,
};

/* Device and webmail signatures, matched as a whole short line. */
static const char *const mobile_starts[] = {
	"Sent from my ", "Sent from Outlook", "Sent from Mail for Windows", "Sent from Yahoo Mail",
	"Sent from Samsung", "Sent from Gmail", "Sent from ProtonMail", "Sent from Proton Mail",
	"Sent from the all new AOL app", "Sent via ", "Get Outlook for ", "Sent from iCloud",
	"Von meinem ", "Gesendet von ", "Gesendet mit ", "Envoy\xc3\xa9 de mon ", "Envoy\xc3\xa9 depuis ",
	"Enviado desde mi ", "Enviado desde Yahoo", "Enviado de mi ", "Enviado do meu ", "Enviado a partir do ", "Inviato da ",
	"Verzonden vanaf ", "Verstuurd vanaf ", "Skickat fr\xc3\xa5n ", "Sendt fra ", "Wys\xc5\x82" "ane z ",
	"\xd0\x9e\xd1\x82\xd0\xbf\xd1\x80\xd0\xb0\xd0\xb2\xd0\xbb\xd0\xb5\xd0\xbd\xd0\xbe \xd1\x81 ", /* Отправлено с */
	"\xe5\x8f\x91\xe8\x87\xaa\xe6\x88\x91\xe7\x9a\x84",         /* 发自我的 */
	NULL,
};

static const char *const mobile_ends[] = {
	"\xe3\x81\x8b\xe3\x82\x89\xe9\x80\x81\xe4\xbf\xa1",         /* から送信 (iPhoneから送信) */
	NULL,
};

static const char *const valedictions[] = {
	"thanks", "thank you", "thx", "regards", "best regards", "kind regards", "warm regards", "best",
	"cheers", "sincerely", "yours", "yours truly", "all the best", "br", "mit freundlichen gr\xc3\xbc\xc3\x9f" "en",
	"viele gr\xc3\xbc\xc3\x9f" "e", "beste gr\xc3\xbc\xc3\x9f" "e", "liebe gr\xc3\xbc\xc3\x9f" "e", "gru\xc3\x9f", "lg",
	"cordialement", "bien \xc3\xa0 vous", "bien cordialement", "salutations", "merci", "saludos", "un saludo",
	"atentamente", "gracias", "cordiali saluti", "distinti saluti", "saluti", "grazie",
	"met vriendelijke groet", "vriendelijke groet", "groeten", "groet", "atenciosamente", "abra\xc3\xa7os",
	"obrigado", "med v\xc3\xa4nlig h\xc3\xa4lsning", "v\xc3\xa4nliga h\xc3\xa4lsningar", "mvh", "h\xc3\xa4lsningar",
	"pozdrawiam", "z powa\xc5\xbc" "aniem",
	"\xd0\xa1 \xd1\x83\xd0\xb2\xd0\xb0\xd0\xb6\xd0\xb5\xd0\xbd\xd0\xb8\xd0\xb5\xd0\xbc", /* С уважением */
	"\xd0\xa1\xd0\xbf\xd0\xb0\xd1\x81\xd0\xb8\xd0\xb1\xd0\xbe", /* Спасибо */
	"\xe3\x82\x88\xe3\x82\x8d\xe3\x81\x97\xe3\x81\x8f\xe3\x81\x8a\xe9\xa1\x98\xe3\x81\x84\xe3\x81\x97\xe3\x81\xbe\xe3\x81\x99", /* よろしくお願いします */
	"\xe8\xb0\xa2\xe8\xb0\xa2",                                 /* 谢谢 */
	NULL,
};

/* ------------------------------------------------------------------ lines */

static struct span line_of(const struct mr *m, size_t i)
{
	return span_make(m->p + m->l[i].off, m->l[i].len);
}

/* tline: line i without white space at either end. */
static struct span tline(const struct mr *m, size_t i)
{
	return span_make(m->p + m->l[i].off + m->l[i].toff, m->l[i].tlen);
}

static bool starts_with_opener(struct span t)
{
	if (t.len == 0 || strchr("OLAEIDPWV", t.p[0]) == NULL) {
		return false; /* the first letters of the openers below */
	}
	for (size_t i = 0; openers[i] != NULL; i++) {
		size_t n = strlen(openers[i]);

		if (t.len >= n && memcmp(t.p, openers[i], n) == 0) {
			return true;
		}
	}
	return false;
}

/* verb_end: t ends with a verb, optionally followed by "(a)", spaces and dashes. */
static bool verb_end(struct span t)
{
	t = trim_chars(t, "-");
	if (ends_ci(t, "(a)")) {
		t.len -= 3;
	}
	for (size_t i = 0; verbs[i] != NULL; i++) {
		if (ends_ci(t, verbs[i])) {
			return true;
		}
	}
	return false;
}

/* colon_end: t ends with ':' or '：' (after trailing spaces and dashes); *out_body is t without it. */
static bool colon_end(struct span t, struct span *out_body)
{
	t = trim_chars(t, "-*");
	if (t.len >= 1 && t.p[t.len - 1] == ':') {
		*out_body = trim(span_make(t.p, t.len - 1));
		return true;
	}
	if (t.len >= 3 && memcmp(t.p + t.len - 3, "\xef\xbc\x9a", 3) == 0) {
		*out_body = trim(span_make(t.p, t.len - 3));
		return true;
	}
	return false;
}

/* dated_start: a date-like line start: a digit, or "Xxx, 1" (a weekday and a comma). */
static bool dated_start(struct span t)
{
	if (t.len > 0 && is_digit(t.p[0])) {
		return true;
	}
	for (size_t i = 1; i < t.len && i < 14; i++) {
		if (is_ws(t.p[i])) {
			return false;
		}
		if (t.p[i] == ',') {
			return i + 2 < t.len && t.p[i + 1] == ' ' && is_digit(t.p[i + 2]);
		}
	}
	return false;
}

/*
 * match_label: t (after '*' bold markers) starts with a header label of the
 * list and ':' (French puts a space before it). *out_start: the label may
 * start a block.
 */
static bool match_label(struct span t, bool *out_start)
{
	size_t head = t.len < 32 ? t.len : 32;

	/* most lines hold no colon near their start: reject them before the label lists */
	if (memchr(t.p, ':', head) == NULL && memmem(t.p, head, "\xef\xbc\x9a", 3) == NULL) {
		return false;
	}
	while (t.len > 0 && t.p[0] == '*') {
		t.p++;
		t.len--;
	}
	for (int g = 0; g < 2; g++) {
		const char *const *list = g == 0 ? label_start : label_other;

		for (size_t i = 0; list[i] != NULL; i++) {
			size_t n = strlen(list[i]);

			if (t.len <= n || !eq_ci(t.p, list[i], n)) {
				continue;
			}
			struct span r = span_make(t.p + n, t.len - n);

			while (r.len > 0 && (r.p[0] == '*' || r.p[0] == ' ')) {
				r.p++;
				r.len--;
			}
			if (r.len > 1 && r.p[0] == 0xc2 && r.p[1] == 0xa0) {
				r.p += 2;
				r.len -= 2;
			}
			if ((r.len > 0 && r.p[0] == ':') || (r.len >= 3 && memcmp(r.p, "\xef\xbc\x9a", 3) == 0)) {
				*out_start = g == 0;
				return true;
			}
		}
	}
	return false;
}

/* dash_marker: "-----Original Message-----", "---- X wrote ----", "Begin forwarded message:". */
static bool dash_marker(struct span t, enum mr_kind *out_kind)
{
	for (size_t i = 0; t.len > 0 && t.p[t.len - 1] == ':' && fwd_starts[i] != NULL; i++) {
		if (starts_ci(t, fwd_starts[i])) {
			*out_kind = MR_FWD;
			return true;
		}
	}
	if (t.len < 5 || t.p[0] != '-' || t.p[1] != '-' || t.p[t.len - 1] != '-' || t.p[t.len - 2] != '-') {
		return false;
	}
	struct span in = trim_chars(t, "-");

	if (in.len == 0 || in.len > 120) {
		return false;
	}
	if (has_any_ci(in, fwd_words)) {
		*out_kind = MR_FWD;
		return true;
	}
	if (has_any_ci(in, orig_words) || has_any_ci(in, verbs)) {
		*out_kind = MR_SPLIT;
		return true;
	}
	return false;
}

/* is_sep_line: a separator drawn with '-', '_' or '=' (at least 5). */
static bool is_sep_line(struct span t)
{
	if (t.len < 5) {
		return false;
	}
	for (size_t i = 0; i < t.len; i++) {
		if (t.p[i] != '-' && t.p[i] != '_' && t.p[i] != '=' && t.p[i] != ' ') {
			return false;
		}
	}
	return true;
}

/*
 * header_block: line i starts an Outlook-style block of quoted header
 * fields: a From/Date/Sent label, then another label within two lines,
 * and so on. *out_last: its last label line.
 */
static bool header_block(struct mr *m, size_t i, size_t *out_last)
{
	bool start;
	size_t last = i;

	if (!match_label(tline(m, i), &start) || !start) {
		return false;
	}
	for (size_t k = i + 1; k < m->num && k <= last + 2; k++) {
		struct span t = tline(m, k);

		(*m->work)++;
		if (t.len == 0 || m->l[k].len > MAIL_REPLY_ATTR_LINE_MAX) {
			break;
		}
		if (match_label(t, &start)) {
			last = k;
		}
	}
	*out_last = last;
	return last > i;
}

/* next_nonempty_is_quote: the first non-empty line after j starts with '>'. */
static bool next_nonempty_is_quote(struct mr *m, size_t j)
{
	for (size_t k = j + 1; k < m->num && k <= j + MAIL_REPLY_ATTR_LINES; k++) {
		struct span t = tline(m, k);

		(*m->work)++;
		if (t.len > 0) {
			return t.p[0] == '>';
		}
	}
	return false;
}

/*
 * attribution: line i (with up to MAIL_REPLY_ATTR_LINES - 1 more) is an
 * attribution. Forms:
 *   A1 an opener ("On", "Le", "Am", ...), a digit, a verb, ending in ':' or
 *      the verb ("On 1 May 2024, Ann <a@x> wrote:", "Am 1.5.2024 schrieb Ann:");
 *   A2 one line ending in verb ':' with a date/time or an address before it
 *      ("Ann <a@x> wrote:", "12.04.2018 10:00, Ann пишет:", "... 写道：");
 *   A3 a dated start with an address and a date/time, ending in ':' or in
 *      '>' above a quote ("2014-10-17 11:28 GMT+03:00 Ann <a@x>:").
 * Also A1 after the reply on the same line ("reply On ... wrote:"): then
 * *out_col is where the attribution starts. *out_last: its last line.
 */
static bool attribution(struct mr *m, size_t i, size_t *out_last, size_t *out_col)
{
	struct span t0 = tline(m, i);
	struct span s0 = trim_chars(t0, "-");
	bool opener = starts_with_opener(s0), dated = dated_start(s0);
	uint8_t w[MAIL_REPLY_ATTR_LINES * (MAIL_REPLY_ATTR_LINE_MAX + 1)];
	size_t wl = 0;
	struct span body;

	*out_col = 0;
	if (opener || dated) {
		for (size_t j = i; j < m->num && j < i + MAIL_REPLY_ATTR_LINES; j++) {
			struct span t = j == i ? s0 : tline(m, j);
			bool end;

			(*m->work)++;
			if (m->l[j].len > MAIL_REPLY_ATTR_LINE_MAX) {
				break;
			}
			if (wl > 0 && t.len > 0) {
				w[wl++] = ' ';
			}
			memcpy(w + wl, t.p, t.len);
			wl += t.len;
			end = colon_end(t, &body) || (opener && verb_end(t));
			if (!end && dated && t.len > 0 && t.p[t.len - 1] == '>' && next_nonempty_is_quote(m, j)) {
				end = true;
			}
			if (!end) {
				continue;
			}
			struct span ws = span_make(w, wl);

			*m->work += wl; /* the window is searched a constant number of times */

			if (opener && has_digit(span_make(s0.p, s0.len)) && has_any_ci(ws, verbs)) {
				*out_last = j;
				return true;
			}
			if (dated && has_email(ws) && has_datetime(ws)) {
				*out_last = j;
				return true;
			}
			break;
		}
	}
	/* A2 and the same-line form: one line ending in verb ':'. */
	if (!colon_end(t0, &body) || !verb_end(body)) {
		return false;
	}
	/* "reply On <date>, Ann wrote:": an opener after a space or dash, a digit after it. */
	struct span raw = line_of(m, i);

	for (size_t p = 1; p < raw.len; p++) {
		if (raw.p[p - 1] != ' ' && raw.p[p - 1] != '-') {
			continue;
		}
		struct span rest = span_make(raw.p + p, raw.len - p);

		if (starts_with_opener(rest) && has_digit(rest) && has_any_ci(rest, verbs)) {
			struct span before = trim(span_make(raw.p, p));

			if (before.len == 0) {
				break; /* only dashes before it: not a reply on the same line */
			}
			*out_col = p;
			*out_last = i;
			return true;
		}
	}
	if (!ends_ci(trim_chars(body, "-"), "sent")) {
		struct span b = trim_chars(body, "-");
		size_t k = b.len;

		/* the byte before the verb (skipping spaces) */
		for (size_t v = 0; verbs[v] != NULL; v++) {
			if (ends_ci(b, verbs[v])) {
				k = b.len - strlen(verbs[v]);
				break;
			}
		}
		while (k > 0 && b.p[k - 1] == ' ') {
			k--;
		}
		if (has_datetime(body) || (k > 0 && b.p[k - 1] == '>' && has_email(body))) {
			*out_last = i;
			return true;
		}
	}
	return false;
}

/* classify gives every line its kind. */
static void classify(struct mr *m)
{
	for (size_t i = 0; i < m->num; i++) {
		struct span t = tline(m, i);
		enum mr_kind k = MR_TEXT;
		size_t last = i, col = 0;

		(*m->work)++;
		if (t.len == 0) {
			k = MR_EMPTY;
		} else if (t.p[0] == '>') {
			k = MR_QUOTE;
		} else if (m->l[i].len <= MAIL_REPLY_ATTR_LINE_MAX) {
			if (dash_marker(t, &k)) {
				/* k set */
			} else if (header_block(m, i, &last) || attribution(m, i, &last, &col)) {
				k = MR_SPLIT;
			}
		}
		m->l[i].kind = (uint8_t)k;
		m->l[i].col = (uint16_t)col;
		for (size_t j = i + 1; j <= last; j++) {
			m->l[j].kind = MR_SPLIT;
			m->l[j].col = 0;
		}
		i = last;
	}
}

static bool has_link_start(struct span t)
{
	return starts_ci(t, "(http") || starts_ci(t, "<http");
}

/*
 * is_inline: a quote, then text, then a quote again: the text answers the
 * quotes in between. A text run right after a quoted line that opens a
 * link, or starting with one, is a wrapped link, not an answer.
 */
static bool is_inline(struct mr *m)
{
	bool seen_q = false, run = false, in_run = false;
	size_t prev_q = 0;

	for (size_t i = 0; i < m->num; i++) {
		(*m->work)++;
		switch (m->l[i].kind) {
		case MR_QUOTE:
			if (seen_q && run) {
				return true;
			}
			seen_q = true;
			run = in_run = false;
			prev_q = i;
			break;
		case MR_TEXT:
			if (seen_q && !in_run) {
				struct span q = line_of(m, prev_q);

				*m->work += q.len; /* each quoted line is looked at for one text run at most */
				in_run = true;
				run = !(find_ci(q, "(http") != SIZE_MAX || find_ci(q, "<http") != SIZE_MAX ||
					has_link_start(tline(m, i)));
			}
			break;
		case MR_EMPTY:
			break;
		default:
			run = in_run = false;
			break;
		}
	}
	return false;
}

static void cut(struct mr *m, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++) {
		m->l[i].kind |= MR_CUT;
	}
}

static enum mr_kind kind(const struct mr *m, size_t i)
{
	return (enum mr_kind)(m->l[i].kind & ~MR_CUT);
}

/* cut_from_split applies the splitter rule from the splitter at s on. */
static void cut_from_split(struct mr *m, size_t s, size_t last_q)
{
	while (s < m->num) {
		size_t b = s, j = s, e;

		if (m->l[s].col == 0) {
			size_t k = s;

			while (k > 0 && kind(m, k - 1) == MR_EMPTY) {
				k--;
			}
			if (k > 0 && kind(m, k - 1) == MR_TEXT && is_sep_line(tline(m, k - 1))) {
				b = k - 1;
			}
		}
		while (j < m->num && (kind(m, j) == MR_SPLIT || kind(m, j) == MR_EMPTY)) {
			(*m->work)++;
			j++;
		}
		if (j == m->num || kind(m, j) != MR_QUOTE || last_q < j) {
			cut(m, b, m->num);
			return;
		}
		e = last_q + 1;
		while (e < m->num && kind(m, e) == MR_EMPTY) {
			e++;
		}
		cut(m, b, e);
		for (s = e; s < m->num && kind(m, s) != MR_SPLIT; s++) {
			(*m->work)++;
		}
	}
}

/* strip_quotes marks the removed lines (MR_CUT); true if any. */
static bool strip_quotes(struct mr *m)
{
	size_t first = m->num, first_split = m->num, first_q = m->num, last_q = m->num, num_q = 0;

	for (size_t i = 0; i < m->num; i++) {
		enum mr_kind k = kind(m, i);

		(*m->work)++;
		if (k != MR_TEXT && k != MR_EMPTY && first == m->num) {
			first = i;
		}
		if (k == MR_SPLIT && first_split == m->num) {
			first_split = i;
		}
		if (k == MR_QUOTE) {
			first_q = first_q == m->num ? i : first_q;
			last_q = i;
			num_q++;
		}
	}
	if (first == m->num || kind(m, first) == MR_FWD) {
		return false; /* nothing quoted, or a forward: kept whole */
	}
	if (num_q > 0 && is_inline(m)) {
		size_t b = last_q, e = last_q + 1;

		while (b > 0 && (kind(m, b - 1) == MR_QUOTE || kind(m, b - 1) == MR_EMPTY || kind(m, b - 1) == MR_SPLIT)) {
			(*m->work)++;
			b--;
		}
		while (b < last_q && kind(m, b) == MR_EMPTY) {
			b++;
		}
		while (e < m->num && kind(m, e) == MR_EMPTY) {
			e++;
		}
		cut(m, b, e);
		for (size_t s = e; s < m->num; s++) {
			if (kind(m, s) == MR_SPLIT) {
				cut_from_split(m, s, last_q);
				break;
			}
		}
		return true;
	}
	if (first_split < m->num) {
		cut_from_split(m, first_split, last_q == m->num ? 0 : last_q);
		return true;
	}
	if (num_q >= 2) {
		size_t e = last_q + 1;

		while (e < m->num && kind(m, e) == MR_EMPTY) {
			e++;
		}
		cut(m, first_q, e);
		return true;
	}
	return false;
}

/* ------------------------------------------------------------------ signature */

static size_t count_words(struct span t)
{
	size_t n = 0;
	bool in = false;

	for (size_t i = 0; i < t.len; i++) {
		if (is_ws(t.p[i])) {
			in = false;
		} else if (!in) {
			in = true;
			n++;
		}
	}
	return n;
}

static bool is_mobile(struct span t)
{
	if (t.len > 60 || t.len == 0 || count_words(t) > 7 || memchr(t.p, ',', t.len) != NULL ||
	    t.p[t.len - 1] == '.' || t.p[t.len - 1] == '!' || t.p[t.len - 1] == '?') {
		return false;
	}
	if (starts_ci(t, "Sent from my ")) {
		/* 1 to 4 words of letters and digits, as email_reply_parser has it */
		struct span r = span_make(t.p + 13, t.len - 13);

		if (count_words(r) < 1 || count_words(r) > 4) {
			return false;
		}
		for (size_t i = 0; i < r.len; i++) {
			uint8_t c = r.p[i];

			if (!(c >= 0x80 || is_digit(c) || (lower(c) >= 'a' && lower(c) <= 'z') || c == ' ' || c == '_' ||
			      c == '-' || c == '\'')) {
				return false;
			}
		}
		return true;
	}
	for (size_t i = 0; (t.p[0] >= 0x80 || strchr("SGVEIW", t.p[0]) != NULL) && mobile_starts[i] != NULL; i++) {
		if (starts_ci(t, mobile_starts[i])) {
			return true;
		}
	}
	for (size_t i = 0; mobile_ends[i] != NULL; i++) {
		if (ends_ci(t, mobile_ends[i])) {
			return true;
		}
	}
	return false;
}

static bool is_valediction(struct span t)
{
	t = trim_chars(t, ",.!");
	if (t.len == 0 || t.len > 40) {
		return false;
	}
	for (size_t i = 0; valedictions[i] != NULL; i++) {
		if (t.len == strlen(valedictions[i]) && eq_ci(t.p, valedictions[i], t.len)) {
			return true;
		}
	}
	return false;
}

/* has_phone: seven or more digits written with only " +-().". */
static bool has_phone(struct span t)
{
	size_t digits = 0;

	for (size_t i = 0; i < t.len; i++) {
		uint8_t c = t.p[i];

		if (is_digit(c)) {
			digits++;
		} else if (c != ' ' && c != '+' && c != '-' && c != '(' && c != ')' && c != '.') {
			if (digits >= 7) {
				return true;
			}
			digits = 0;
		}
	}
	return digits >= 7;
}

/* name_line: a short line that reads like a name: 1 to 5 words, capitalised, no sentence end. */
static bool name_line(struct span t)
{
	uint8_t c, e;

	if (t.len == 0 || t.len > 60) {
		return false;
	}
	c = t.p[0];
	e = t.p[t.len - 1];
	return (c >= 0x80 || (c >= 'A' && c <= 'Z')) && count_words(t) <= 5 && e != '.' && e != '?' && e != '!' &&
	       e != ':' && e != ';';
}

/*
 * sig_line: kept line i opens a signature. `after_empty`: the kept line
 * before it is empty; `last`: the last non-empty kept line.
 */
static bool sig_line(struct mr *m, size_t i, bool after_empty, size_t last)
{
	struct span raw = line_of(m, i), t = trim(raw);
	struct span lt = raw;
	size_t rest = 0;
	bool rest_empty = false;

	for (size_t k = i; after_empty && k <= last; k++) {
		if (!(m->l[k].kind & MR_CUT)) {
			(*m->work)++;
			rest++;
			rest_empty = rest_empty || tline(m, k).len == 0;
		}
	}

	while (lt.len > 0 && (lt.p[0] == ' ' || lt.p[0] == '\t')) {
		lt.p++;
		lt.len--;
	}
	if (lt.len >= 2 && lt.len <= 80 && lt.p[0] == '-' && lt.p[1] == '-') {
		struct span r = span_make(lt.p + 2, lt.len - 2);
		bool dashes = true;

		for (size_t k = 0; k < r.len; k++) {
			dashes = dashes && (r.p[k] == '-' || is_ws(r.p[k]));
		}
		if (raw.len >= 3 && memcmp(raw.p, "-- ", 3) == 0 && trim(r).len == 0) {
			return true; /* the RFC 3676 §4.3 delimiter */
		}
		if (after_empty && (dashes || (r.p[0] == ' ' && t.len <= 60))) {
			return true;
		}
		return false;
	}
	if (after_empty && t.len >= 2 && t.p[0] == '_' && t.p[1] == '_') {
		for (size_t k = 0; k < t.len; k++) {
			if (t.p[k] != '_') {
				return false;
			}
		}
		return true;
	}
	if (after_empty && t.len >= 2 && t.len <= 40 && t.p[0] == '-' &&
	    (t.p[1] >= 0x80 || (lower(t.p[1]) >= 'a' && lower(t.p[1]) <= 'z')) && count_words(t) <= 4) {
		return true; /* -Name */
	}
	if (is_mobile(t)) {
		return true;
	}
	if (after_empty && rest <= 6 && is_valediction(t)) {
		return true;
	}
	if (after_empty && rest >= 2 && rest <= 5 && !rest_empty && name_line(t)) {
		/* a short name/contact block to the end, with a phone number or an address */
		for (size_t k = i; k <= last; k++) {
			if (m->l[k].kind & MR_CUT) {
				continue;
			}
			struct span c = tline(m, k);

			if (c.len > 60) {
				return false;
			}
			if (has_phone(c) || has_email(c)) {
				return true;
			}
		}
	}
	return false;
}

/*
 * find_sig: the kept line where the signature starts (the topmost opener
 * within the last MAIL_REPLY_SIG_LINES kept lines, below some reply text),
 * or SIZE_MAX.
 */
static size_t find_sig(struct mr *m)
{
	size_t last = SIZE_MAX, first = SIZE_MAX, from = 0, kept = 0;
	bool prev_empty = false;

	for (size_t i = m->num; i-- > 0;) {
		if (m->l[i].kind & MR_CUT) {
			continue;
		}
		(*m->work)++;
		if (last == SIZE_MAX) {
			if (tline(m, i).len == 0) {
				continue;
			}
			last = i;
		}
		from = i;
		if (++kept == MAIL_REPLY_SIG_LINES) {
			break;
		}
	}
	if (last == SIZE_MAX) {
		return SIZE_MAX;
	}
	for (size_t i = 0; i <= last; i++) {
		(*m->work)++;
		if (!(m->l[i].kind & MR_CUT) && tline(m, i).len > 0) {
			first = i;
			break;
		}
	}
	for (size_t i = from; i-- > 0;) {
		(*m->work)++;
		if (!(m->l[i].kind & MR_CUT)) {
			prev_empty = tline(m, i).len == 0;
			break;
		}
	}
	for (size_t i = from; i <= last; i++) {
		if (m->l[i].kind & MR_CUT) {
			continue;
		}
		bool empty = tline(m, i).len == 0;

		(*m->work)++;
		if (!empty && i > first && sig_line(m, i, prev_empty, last)) {
			return i;
		}
		prev_empty = empty;
	}
	return SIZE_MAX;
}

/* ------------------------------------------------------------------ text */

static int text_reply(struct bb *out, struct span body, bool *out_quoted, size_t *out_text_off,
		      size_t *out_text_len, size_t *out_sig_off, bool *out_has_sig, uint64_t *work)
{
	struct mr m = { body.p, body.len, NULL, 0, work };
	size_t base = out->len, cap = 64, sig_line_idx = SIZE_MAX, sig_out = SIZE_MAX;
	int rc = 0;

	*out_quoted = false;
	*out_has_sig = false;
	if (body.len > MAIL_REPLY_BYTES_MAX) {
		goto whole;
	}
	m.l = malloc(cap * sizeof(*m.l));
	if (m.l == NULL) {
		return -ENOMEM;
	}
	for (size_t off = 0; off < body.len || (off == body.len && m.num == 0);) {
		const uint8_t *nl = memchr(body.p + off, '\n', body.len - off);
		size_t end = nl ? (size_t)(nl - body.p) : body.len, len = end - off;

		if (m.num == MAIL_REPLY_LINES_MAX) {
			free(m.l);
			m.l = NULL;
			goto whole;
		}
		if (m.num == cap) {
			struct mr_line *g = realloc(m.l, 2 * cap * sizeof(*m.l));

			if (g == NULL) {
				free(m.l);
				return -ENOMEM;
			}
			m.l = g;
			cap *= 2;
		}
		if (len > 0 && body.p[end - 1] == '\r') {
			len--;
		}
		struct span t = trim(span_make(body.p + off, len));

		m.l[m.num].off = (uint32_t)off;
		m.l[m.num].len = (uint32_t)len;
		m.l[m.num].toff = (uint32_t)(t.p - (body.p + off));
		m.l[m.num].tlen = (uint32_t)t.len;
		m.l[m.num].col = 0;
		m.l[m.num].kind = MR_TEXT;
		m.num++;
		*work += 1 + len; /* memchr and trim visit the line's bytes */
		off = nl ? end + 1 : body.len + 1;
	}
	classify(&m);
	*out_quoted = strip_quotes(&m);

	sig_line_idx = find_sig(&m);

	/* Output: kept lines in order; a same-line attribution leaves the reply before it. */
	if ((rc = bb_reserve(out, body.len + 1)) != 0) {
		free(m.l);
		return rc;
	}
	for (size_t i = 0; i < m.num && rc == 0; i++) {
		size_t end = i + 1 < m.num ? m.l[i + 1].off : body.len;

		if (m.l[i].kind & MR_CUT) {
			if (m.l[i].col > 0 && !(i > 0 && (m.l[i - 1].kind & MR_CUT))) {
				struct span pre = trim_chars(span_make(body.p + m.l[i].off, m.l[i].col), "-");

				pre = span_make(body.p + m.l[i].off, (size_t)(pre.p + pre.len - (body.p + m.l[i].off)));
				rc = bb_append_span(out, pre);
				if (rc == 0) {
					rc = bb_append(out, "\n", 1);
				}
			}
			continue;
		}
		if (i == sig_line_idx) {
			sig_out = out->len;
		}
		rc = bb_append(out, body.p + m.l[i].off, end - m.l[i].off);
	}
	free(m.l);
	if (rc != 0) {
		return rc;
	}
	goto trim_out;

whole:
	if ((rc = bb_append_span(out, body)) != 0) {
		return rc;
	}
trim_out: {
	size_t s = base, e = out->len;

	/* leading blank lines, trailing white space */
	for (size_t k = base; k < e; k++) {
		if (out->p[k] == '\n') {
			s = k + 1;
		} else if (!is_ws(out->p[k])) {
			break;
		}
	}
	if (s > e) {
		s = e;
	}
	while (e > s && is_ws(out->p[e - 1])) {
		e--;
	}
	*out_text_off = s;
	*out_text_len = e - s;
	if (sig_out != SIZE_MAX && sig_out > s && sig_out < e) {
		*out_has_sig = true;
		*out_sig_off = sig_out;
	}
}
	return 0;
}

/* ------------------------------------------------------------------ HTML */

struct tag {
	size_t start, end;       /* [start, end): from '<' to after '>' */
	struct span name;        /* lower or mixed case, as written */
	struct span attrs;       /* after the name, before '>' */
	bool closing;            /* </name> */
	bool element;            /* false: a comment, doctype or processing instruction */
};

/* next_tag finds the next tag from *pos; false when none is left. */
static bool next_tag(struct span h, size_t *pos, struct tag *t, uint64_t *work)
{
	size_t i = *pos;

	for (;;) {
		const uint8_t *lt = i < h.len ? memchr(h.p + i, '<', h.len - i) : NULL;

		if (lt == NULL) {
			*work += h.len - *pos;
			*pos = h.len;
			return false;
		}
		i = (size_t)(lt - h.p);
		t->start = i;
		if (i + 4 <= h.len && memcmp(h.p + i, "<!--", 4) == 0) {
			size_t k = i + 4;

			while (k + 3 <= h.len && memcmp(h.p + k, "-->", 3) != 0) {
				k++;
			}
			t->end = k + 3 <= h.len ? k + 3 : h.len;
			t->element = false;
			t->name = span_make(h.p + i, 0);
			t->attrs = t->name;
			t->closing = false;
			*work += t->end - *pos;
			*pos = t->end;
			return true;
		}
		size_t k = i + 1;
		bool closing = false;

		if (k < h.len && h.p[k] == '/') {
			closing = true;
			k++;
		}
		if (k < h.len && (h.p[k] == '!' || h.p[k] == '?' ||
				  (lower(h.p[k]) >= 'a' && lower(h.p[k]) <= 'z'))) {
			size_t ns = k;
			uint8_t q = 0;

			while (k < h.len && ((lower(h.p[k]) >= 'a' && lower(h.p[k]) <= 'z') || is_digit(h.p[k]) ||
					     h.p[k] == '-' || h.p[k] == ':' || h.p[k] == '!' || h.p[k] == '?')) {
				k++;
			}
			t->name = span_make(h.p + ns, k - ns);
			size_t as = k;

			for (; k < h.len; k++) {
				if (q != 0) {
					q = h.p[k] == q ? 0 : q;
				} else if (h.p[k] == '"' || h.p[k] == '\'') {
					q = h.p[k];
				} else if (h.p[k] == '>') {
					break;
				}
			}
			if (k >= h.len) {
				*work += h.len - *pos;
				*pos = h.len;
				return false; /* an unclosed tag: the rest is text */
			}
			t->attrs = span_make(h.p + as, k - as);
			t->end = k + 1;
			t->closing = closing;
			t->element = h.p[ns] != '!' && h.p[ns] != '?';
			*work += t->end - *pos;
			*pos = t->end;
			return true;
		}
		i++;
	}
}

static bool name_is(const struct tag *t, const char *n)
{
	return t->name.len == strlen(n) && eq_ci(t->name.p, n, t->name.len);
}

/* attr_val: the value of attribute `name` (quoted or not), or false. */
static bool attr_val(struct span a, const char *name, struct span *out)
{
	size_t n = strlen(name);

	for (size_t i = 0; i + n < a.len; i++) {
		if ((i > 0 && !is_ws(a.p[i - 1])) || !eq_ci(a.p + i, name, n)) {
			continue;
		}
		size_t k = i + n;

		while (k < a.len && is_ws(a.p[k])) {
			k++;
		}
		if (k >= a.len || a.p[k] != '=') {
			continue;
		}
		k++;
		while (k < a.len && is_ws(a.p[k])) {
			k++;
		}
		if (k < a.len && (a.p[k] == '"' || a.p[k] == '\'')) {
			uint8_t q = a.p[k];
			size_t s = ++k;

			while (k < a.len && a.p[k] != q) {
				k++;
			}
			*out = span_make(a.p + s, k - s);
		} else {
			size_t s = k;

			while (k < a.len && !is_ws(a.p[k])) {
				k++;
			}
			*out = span_make(a.p + s, k - s);
		}
		return true;
	}
	return false;
}

enum html_quote {
	HQ_NONE = 0,  /* not a quote marker */
	HQ_ELEMENT,   /* the element and its content are the quote */
	HQ_TO_END,    /* the quote runs from here to the end of the body */
	HQ_COUNT      /* sentinel */
};

static enum html_quote quote_marker(const struct tag *t)
{
	struct span v;

	if (!t->element || t->closing) {
		return HQ_NONE;
	}
	if (!name_is(t, "div") && !name_is(t, "blockquote") && !name_is(t, "hr") && !name_is(t, "table")) {
		return HQ_NONE;
	}
	if (attr_val(t->attrs, "class", &v) &&
	    (find_ci(v, "gmail_quote") != SIZE_MAX || find_ci(v, "yahoo_quoted") != SIZE_MAX ||
	     find_ci(v, "protonmail_quote") != SIZE_MAX || find_ci(v, "moz-cite-prefix") != SIZE_MAX ||
	     find_ci(v, "zmail_extra") != SIZE_MAX)) {
		return HQ_ELEMENT;
	}
	if (name_is(t, "blockquote") && attr_val(t->attrs, "type", &v) && v.len == 4 && eq_ci(v.p, "cite", 4)) {
		return HQ_ELEMENT;
	}
	if (attr_val(t->attrs, "id", &v) &&
	    ((v.len == 13 && eq_ci(v.p, "divRplyFwdMsg", 13)) || (v.len == 12 && eq_ci(v.p, "appendonsend", 12)) ||
	     find_ci(v, "OLK_SRC_BODY_SECTION") != SIZE_MAX || find_ci(v, "mail-editor-reference-message") != SIZE_MAX ||
	     (v.len == 12 && eq_ci(v.p, "stopSpelling", 12)))) {
		return HQ_TO_END;
	}
	if (name_is(t, "div") && attr_val(t->attrs, "style", &v) && find_ci(v, "border-top:solid") != SIZE_MAX &&
	    find_ci(v, "padding:3") != SIZE_MAX) {
		return HQ_TO_END; /* Outlook desktop's header block of the quoted message */
	}
	return HQ_NONE;
}

/* body_end: where </body> starts, or the end. */
static size_t body_end(struct span h, size_t from)
{
	for (size_t k = h.len; k-- > from;) {
		if (h.p[k] == '<' && k + 6 <= h.len && eq_ci(h.p + k, "</body", 6)) {
			return k;
		}
	}
	return h.len;
}

/* html_reply appends h without its quoted parts to out; *out_quoted if any was removed. */
static int html_reply(struct bb *out, struct span h, bool *out_quoted, uint64_t *work)
{
	size_t pos = 0, copied = 0, prev_end = SIZE_MAX, prev_start = 0;
	bool prev_hr = false;
	struct tag t;
	int rc;

	*out_quoted = false;
	while (next_tag(h, &pos, &t, work)) {
		enum html_quote q = quote_marker(&t);
		bool hr = t.element && !t.closing && name_is(&t, "hr");

		if (q == HQ_NONE) {
			prev_hr = hr;
			prev_start = t.start;
			prev_end = t.end;
			continue;
		}
		size_t start = t.start;

		/* Outlook: the <hr> right above divRplyFwdMsg belongs to the separator. */
		if (q == HQ_TO_END && prev_hr && prev_end != SIZE_MAX && prev_start >= copied) {
			bool blank = true;

			for (size_t k = prev_end; k < t.start; k++) {
				blank = blank && is_ws(h.p[k]);
			}
			if (blank) {
				start = prev_start;
			}
		}
		if ((rc = bb_append(out, h.p + copied, start - copied)) != 0) {
			return rc;
		}
		*out_quoted = true;
		if (q == HQ_TO_END) {
			copied = body_end(h, t.end);
			*work += h.len - t.end;
			pos = h.len;
			break;
		}
		/* HQ_ELEMENT: skip to the end tag that closes it (same name, nesting counted) */
		{
			struct span nm = t.name;
			unsigned depth = 1;
			struct tag u;

			copied = h.len;
			while (next_tag(h, &pos, &u, work)) {
				if (!u.element || u.name.len != nm.len || !eq_ci(u.name.p, (const char *)nm.p, nm.len)) {
					continue;
				}
				if (u.closing) {
					if (--depth == 0) {
						copied = u.end;
						break;
					}
				} else if (!(u.attrs.len > 0 && u.attrs.p[u.attrs.len - 1] == '/')) {
					depth++;
				}
			}
			if (depth != 0) {
				copied = body_end(h, t.end);
				pos = h.len;
				break;
			}
		}
		prev_hr = false;
		prev_end = SIZE_MAX;
	}
	return bb_append(out, h.p + copied, h.len - copied);
}

/* Named character references decoded for the text view (the rest stay as written). */
static const struct {
	const char *name;
	const char *utf8;
} entities[] = {
	{ "amp", "&" }, { "lt", "<" }, { "gt", ">" }, { "quot", "\"" }, { "apos", "'" }, { "nbsp", " " },
	{ "copy", "\xc2\xa9" }, { "reg", "\xc2\xae" }, { "trade", "\xe2\x84\xa2" }, { "hellip", "\xe2\x80\xa6" },
	{ "mdash", "\xe2\x80\x94" }, { "ndash", "\xe2\x80\x93" }, { "lsquo", "\xe2\x80\x98" },
	{ "rsquo", "\xe2\x80\x99" }, { "ldquo", "\xe2\x80\x9c" }, { "rdquo", "\xe2\x80\x9d" },
	{ "laquo", "\xc2\xab" }, { "raquo", "\xc2\xbb" }, { "euro", "\xe2\x82\xac" }, { "bull", "\xe2\x80\xa2" },
	{ "middot", "\xc2\xb7" }, { "eacute", "\xc3\xa9" }, { "egrave", "\xc3\xa8" }, { "agrave", "\xc3\xa0" },
	{ "ccedil", "\xc3\xa7" }, { "uuml", "\xc3\xbc" }, { "ouml", "\xc3\xb6" }, { "auml", "\xc3\xa4" },
	{ "szlig", "\xc3\x9f" }, { "ntilde", "\xc3\xb1" },
};

static int put_cp(struct bb *out, uint32_t cp)
{
	uint8_t b[4];
	size_t n;

	if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
		cp = 0xfffd;
	}
	if (cp == 0xa0) {
		cp = ' ';
	}
	if (cp < 0x80) {
		b[0] = (uint8_t)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (uint8_t)(0xc0 | (cp >> 6));
		b[1] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (uint8_t)(0xe0 | (cp >> 12));
		b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (uint8_t)(0xf0 | (cp >> 18));
		b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return bb_append(out, b, n);
}

/* text_run appends decoded text, collapsing white space; *sp: a space is pending. */
static int text_run(struct bb *out, struct span s, bool *sp)
{
	int rc = 0;

	for (size_t i = 0; i < s.len && rc == 0; i++) {
		uint8_t c = s.p[i];

		if (is_ws(c) || (c == 0xc2 && i + 1 < s.len && s.p[i + 1] == 0xa0)) {
			i += c == 0xc2;
			*sp = true;
			continue;
		}
		if (*sp && out->len > 0 && out->p[out->len - 1] != '\n') {
			rc = bb_append(out, " ", 1);
		}
		*sp = false;
		if (rc != 0) {
			break;
		}
		if (c != '&') {
			rc = bb_append(out, &c, 1);
			continue;
		}
		/* &name; &#N; &#xH; */
		size_t k = i + 1, e;
		uint32_t cp = 0;
		bool ok = false;

		for (e = k; e < s.len && e < k + 10 && s.p[e] != ';'; e++) {
		}
		if (e < s.len && s.p[e] == ';' && e > k) {
			if (s.p[k] == '#') {
				bool hex = k + 1 < e && lower(s.p[k + 1]) == 'x';
				size_t d = k + 1 + hex;

				ok = d < e;
				for (; d < e && ok; d++) {
					uint8_t x = lower(s.p[d]);
					uint32_t v = is_digit(x) ? (uint32_t)(x - '0') :
						     hex && x >= 'a' && x <= 'f' ? (uint32_t)(x - 'a' + 10) : 99;

					ok = v < (hex ? 16u : 10u);
					cp = cp > 0x10ffff ? cp : cp * (hex ? 16 : 10) + v;
				}
				if (ok) {
					rc = put_cp(out, cp);
				}
			} else {
				for (size_t x = 0; x < sizeof(entities) / sizeof(entities[0]); x++) {
					if (e - k == strlen(entities[x].name) && memcmp(s.p + k, entities[x].name, e - k) == 0) {
						rc = bb_append_str(out, entities[x].utf8);
						ok = true;
						break;
					}
				}
			}
		}
		if (ok) {
			i = e;
		} else {
			rc = bb_append(out, &c, 1);
		}
	}
	return rc;
}

static int newline(struct bb *out, unsigned max_blank)
{
	size_t nl = 0;

	while (nl < out->len && out->p[out->len - 1 - nl] == '\n') {
		nl++;
	}
	if (out->len == 0 || nl > max_blank) {
		return 0;
	}
	return bb_append(out, "\n", 1);
}

/* html_text appends the text of h: tags stripped, entities decoded, block elements as line breaks. */
static int html_text(struct bb *out, struct span h, uint64_t *work)
{
	static const char *const blocks[] = { "div", "p", "tr", "li", "ul", "ol", "table", "blockquote", "h1", "h2",
					      "h3", "h4", "h5", "h6", "hr", "pre", "section", "article", "header",
					      "footer", "dl", "dt", "dd", "address", "center", NULL };
	size_t pos = 0, last = 0;
	bool sp = false;
	struct tag t;
	int rc = 0;

	while (rc == 0 && next_tag(h, &pos, &t, work)) {
		rc = text_run(out, span_make(h.p + last, t.start - last), &sp);
		last = t.end;
		if (rc != 0 || !t.element) {
			continue;
		}
		if (!t.closing && (name_is(&t, "style") || name_is(&t, "script") || name_is(&t, "title") ||
				   name_is(&t, "head"))) {
			/* skip to the matching end tag */
			struct span nm = t.name;
			struct tag u;

			while (next_tag(h, &pos, &u, work)) {
				if (u.closing && u.name.len == nm.len && eq_ci(u.name.p, (const char *)nm.p, nm.len)) {
					break;
				}
			}
			last = pos;
			continue;
		}
		if (name_is(&t, "br")) {
			rc = bb_append(out, "\n", 1);
			sp = false;
			continue;
		}
		for (size_t i = 0; blocks[i] != NULL; i++) {
			if (name_is(&t, blocks[i])) {
				rc = newline(out, name_is(&t, "p") && t.closing ? 1 : 0);
				if (rc == 0 && name_is(&t, "p") && t.closing) {
					rc = newline(out, 1);
				}
				sp = false;
				break;
			}
		}
	}
	if (rc == 0 && last < h.len) {
		rc = text_run(out, span_make(h.p + last, h.len - last), &sp);
	}
	return rc;
}

/* ------------------------------------------------------------------ API */

void mail_reply_init(struct mail_reply *r)
{
	memset(r, 0, sizeof(*r));
	bb_init(&r->buf, 0);
}

void mail_reply_fini(struct mail_reply *r)
{
	bb_fini(&r->buf);
	memset(r, 0, sizeof(*r));
}

/* buf_span: bytes [off, off + len) of b; an empty builder holds no buffer at all. */
static struct span buf_span(const struct bb *b, size_t off, size_t len)
{
	return b->p != NULL ? span_make(b->p + off, len) : span_make("", 0);
}

int mail_reply_extract(struct mail_reply *r, const struct span *text_in, const struct span *html_in)
{
	/* an empty span may carry a NULL pointer: no arithmetic on it below */
	struct span tb = text_in && text_in->len > 0 ? *text_in : span_make("", 0);
	struct span hb = html_in && html_in->len > 0 ? *html_in : span_make("", 0);
	const struct span *text = text_in ? &tb : NULL, *html = html_in ? &hb : NULL;
	size_t text_off = 0, text_len = 0, sig_off = 0, html_off = 0, html_len = 0;
	bool tq = false, hq = false;
	int rc;

	if (html != NULL) {
		html_off = r->buf.len;
		if ((rc = html_reply(&r->buf, *html, &hq, &r->work)) != 0) {
			return rc;
		}
		html_len = r->buf.len - html_off;
		r->has_html = true;
	}
	if (text != NULL) {
		rc = text_reply(&r->buf, *text, &tq, &text_off, &text_len, &sig_off, &r->has_sig, &r->work);
		r->has_text = true;
	} else if (html != NULL) {
		struct bb plain;

		bb_init(&plain, 0);
		rc = html_text(&plain, buf_span(&r->buf, html_off, html_len), &r->work);
		if (rc == 0) {
			rc = text_reply(&r->buf, buf_span(&plain, 0, plain.len), &tq, &text_off, &text_len, &sig_off, &r->has_sig,
					&r->work);
		}
		bb_fini(&plain);
		r->has_text = true;
		r->from_html = true;
	} else {
		return 0;
	}
	if (rc != 0) {
		return rc;
	}
	/* The buffer no longer grows: the spans may point into it now. */
	r->quoted = tq || hq;
	r->text = buf_span(&r->buf, text_off, text_len);
	if (r->has_sig) {
		r->signature = buf_span(&r->buf, sig_off, text_off + text_len - sig_off);
	}
	if (r->has_html) {
		r->html = buf_span(&r->buf, html_off, html_len);
	}
	return 0;
}
