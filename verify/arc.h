/*
 * arc.h - ARC (RFC 8617) chain validation results.
 *
 * Only the result type exists so far (Authentication-Results and JSON can
 * report it); chain validation itself is not implemented yet (issue 6).
 */
#ifndef OMX_ARC_H
#define OMX_ARC_H

#include "auth.h"

#define ARC_INSTANCES_MAX 50 /* RFC 8617 §4.2.1 */

struct arc_result {
	enum auth_res res;   /* cv: AUTH_NONE, AUTH_PASS or AUTH_FAIL (RFC 8617 §4.4) */
	const char *reason;  /* static, NULL on pass */
	unsigned num_sets;   /* ARC sets seen (highest instance) */
	unsigned oldest_pass; /* lowest instance whose AMS still verifies, 0 if none */
};

#endif
