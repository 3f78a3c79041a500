/*
 * thread.h - names for the server's threads ("omx-shard0", "omx-deliver1",
 * "omx-verify0", "omx-dns", "omx-sync0", "omx-log"), so top -H, perf and
 * /proc/PID/task/N/comm tell them apart.
 */
#ifndef OMX_THREAD_H
#define OMX_THREAD_H

#include <pthread.h>
#include <stdio.h>

/* thread_name names t "<base><idx>", or "<base>" when idx < 0; best effort (15 characters kept). */
static inline void thread_name(pthread_t t, const char *base, int idx)
{
	char name[32]; /* the kernel keeps 15 characters: cut here, not by pthread_setname_np's ERANGE */

	if (idx < 0) {
		snprintf(name, sizeof(name), "%s", base);
	} else {
		snprintf(name, sizeof(name), "%s%d", base, idx);
	}
	name[15] = '\0';
	(void)pthread_setname_np(t, name);
}

#endif
