/*
 * auth_json.h - the JSON `auth` sections (docs/json.md) for SPF, DMARC and
 * ARC results, written with proto/json.h, shared by `oceanmx verify` and
 * the sinks' documents. Pure; borrows everything.
 */
#ifndef OMX_AUTH_JSON_H
#define OMX_AUTH_JSON_H

#include "../proto/json.h"
#include "spf.h"

struct dmarc_result;
struct arc_result;

/*
 * auth_json_spf writes the value of auth.spf: the MAIL FROM result's
 * fields ({"result", "identity", "sender", "domain", "reason",
 * "mechanism", "explanation", "lookups", "void_lookups"}) plus "helo":
 * the same object for the HELO identity, or null. With mfrom NULL it
 * writes {"result": "none"}.
 */
void auth_json_spf(struct json *j, const struct spf_result *mfrom, const struct spf_result *helo);

/* auth_json_dmarc writes auth.dmarc ({"result": "none"} for NULL). */
void auth_json_dmarc(struct json *j, const struct dmarc_result *d);

/*
 * auth_json_arc writes auth.arc: {"result", "reason" (what failed, with
 * the field and instance; null unless fail), "sets" (ARC sets seen),
 * "oldest_pass" (pass only, else null; 0: every AMS verifies)};
 * {"result": "none"} for NULL.
 */
void auth_json_arc(struct json *j, const struct arc_result *a);

#endif
