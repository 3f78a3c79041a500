/* bench_sign.h - see bench_sign.c. */
#ifndef OMX_BENCH_SIGN_H
#define OMX_BENCH_SIGN_H

#include "../../core/bb.h"

/* bs_make: a fresh key; hdr gets the DKIM-Signature field then the signed fields, body the body, txt the key record. */
int bs_make(int ed25519, struct bb *hdr, struct bb *body, struct bb *txt);
/* bs_raw_verify: one bare signature check with that key; 1 when it verifies. */
int bs_raw_verify(int ed25519);
void bs_free(void);

#endif
