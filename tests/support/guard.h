/*
 * guard.h - test inputs that end at a PROT_NONE page, so that reading one
 * byte past the end faults even without ASan (after picohttpparser's test.c).
 */
#ifndef OMX_TEST_GUARD_H
#define OMX_TEST_GUARD_H

#include <stddef.h>
#include <stdint.h>

/* guard_copy returns a copy of p[0..len) whose last byte abuts an unmapped page. */
const uint8_t *guard_copy(const void *p, size_t len);
/* guard_release unmaps the copy returned by guard_copy. */
void guard_release(const uint8_t *g, size_t len);

#endif
