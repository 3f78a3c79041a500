/*
 * auth_json.c - JSON auth sections for SPF, DMARC and ARC.
 */
#include "arc.h"
#include "auth_json.h"
#include "dmarc.h"

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
	if (d == NULL) {
		none_obj(j);
		return;
	}
	json_obj(j);
	json_key(j, "result");
	json_cstr(j, auth_res_name(d->res));
	json_key(j, "reason");
	json_cstr(j, d->reason);
	json_key(j, "from_domain");
	json_cstr(j, d->from_domain[0] ? d->from_domain : NULL);
	json_key(j, "org_domain");
	json_cstr(j, d->org_domain[0] ? d->org_domain : NULL);
	json_key(j, "record_domain");
	json_cstr(j, d->record_domain[0] ? d->record_domain : NULL);
	json_key(j, "policy");
	json_cstr(j, dmarc_policy_name(d->policy));
	json_key(j, "disposition");
	json_cstr(j, dmarc_policy_name(d->disposition));
	json_key(j, "pct");
	json_u64(j, d->pct);
	json_key(j, "sampled_out");
	json_bool(j, d->sampled_out);
	json_key(j, "aligned");
	json_obj(j);
	json_key(j, "dkim");
	json_bool(j, d->dkim_aligned);
	json_key(j, "dkim_domain");
	json_cstr(j, d->dkim_domain[0] ? d->dkim_domain : NULL);
	json_key(j, "adkim");
	json_cstr(j, d->strict_dkim ? "s" : "r");
	json_key(j, "spf");
	json_bool(j, d->spf_aligned);
	json_key(j, "spf_domain");
	json_cstr(j, d->spf_domain[0] ? d->spf_domain : NULL);
	json_key(j, "aspf");
	json_cstr(j, d->strict_spf ? "s" : "r");
	json_obj_end(j);
	json_obj_end(j);
}

void auth_json_arc(struct json *j, const struct arc_result *a)
{
	char why[ARC_REASON_MAX];

	if (a == NULL) {
		none_obj(j);
		return;
	}
	json_obj(j);
	json_key(j, "result");
	json_cstr(j, auth_res_name(a->res));
	json_key(j, "reason");
	json_cstr(j, a->res == AUTH_FAIL ? arc_result_describe(why, sizeof(why), a) : NULL);
	json_key(j, "sets");
	json_u64(j, a->num_sets);
	json_key(j, "oldest_pass");
	if (a->res == AUTH_PASS) {
		json_u64(j, a->oldest_pass);
	} else {
		json_null(j);
	}
	json_obj_end(j);
}
