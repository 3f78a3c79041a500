/*
 * dns.c - resolver helpers shared by every backend: the deadline clock and
 * the blocking wait for the offline tools.
 */
#include <errno.h>
#include <poll.h>
#include <time.h>

#include "dns.h"

uint64_t dns_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int dns_wait(struct dns_resolver *r)
{
	while (r->ops->pending(r) > 0) {
		uint64_t now = dns_now_ms(), dl = dns_next_deadline(r);
		int fd = dns_fd(r), timeout = 100;
		struct pollfd pfd = { .fd = fd, .events = POLLIN };

		if (dl != UINT64_MAX) {
			timeout = dl <= now ? 0 : (int)(dl - now > 60000 ? 60000 : dl - now);
		}
		if (fd >= 0 && poll(&pfd, 1, timeout) < 0 && errno != EINTR) {
			return -errno;
		}
		int rc = dns_process(r, dns_now_ms());

		if (rc < 0) {
			return rc;
		}
	}
	return 0;
}
