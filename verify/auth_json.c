/*
 * auth_json.c - JSON auth sections for SPF, DMARC and ARC.
 */
#include "auth_json.h"

static void spf_obj(struct json *j, const struct spf_result *r)
{
	json_obj(j);
	json_key(j, "result");
	json_cstr(j, auth_res_name(r->res));
	json_key(j, "identity");
	json_cstr(j, spf_identity_name(r->identity));
	json_key(j, "sender");
	json_cstr(j, r->sender);
	json_key(j, "domain");
	json_cstr(j, r->domain);
	json_key(j, "reason");
	json_cstr(j, r->reason);
	json_key(j, "mechanism");
	json_cstr(j, r->mechanism[0] ? r->mechanism : NULL);
	json_key(j, "explanation");
	json_cstr(j, r->exp[0] ? r->exp : NULL);
	json_key(j, "lookups");
	json_u64(j, r->num_lookups);
	json_key(j, "void_lookups");
	json_u64(j, r->num_void);
}

void auth_json_spf(struct json *j, const struct spf_result *mfrom, const struct spf_result *helo)
{
	if (mfrom == NULL) {
		json_obj(j);
		json_key(j, "result");
		json_cstr(j, "none");
		json_key(j, "helo");
		if (helo != NULL) {
			spf_obj(j, helo);
			json_obj_end(j);
		} else {
			json_null(j);
		}
		json_obj_end(j);
		return;
	}
	spf_obj(j, mfrom);
	json_key(j, "helo");
	if (helo != NULL) {
		spf_obj(j, helo);
		json_obj_end(j);
	} else {
		json_null(j);
	}
	json_obj_end(j);
}

static void none_obj(struct json *j)
{
	json_obj(j);
	json_key(j, "result");
	json_cstr(j, "none");
	json_obj_end(j);
}

void auth_json_dmarc(struct json *j, const struct dmarc_result *d)
{
	(void)d;
	none_obj(j);
}

void auth_json_arc(struct json *j, const struct arc_result *a)
{
	(void)a;
	none_obj(j);
}
