/*
 * auth.c - names of the sender-authentication results.
 */
#include "auth.h"

const char *auth_res_name(enum auth_res r)
{
	static const char *const names[AUTH_RES_COUNT] = {
		[AUTH_NONE] = "none",
		[AUTH_PASS] = "pass",
		[AUTH_FAIL] = "fail",
		[AUTH_NEUTRAL] = "neutral",
		[AUTH_SOFTFAIL] = "softfail",
		[AUTH_TEMPERROR] = "temperror",
		[AUTH_PERMERROR] = "permerror",
		[AUTH_POLICY] = "policy",
	};

	if ((unsigned)r >= AUTH_RES_COUNT) {
		return "permerror";
	}
	return names[r];
}
