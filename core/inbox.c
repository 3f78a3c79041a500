/* inbox.c - MPSC hand-off into a shard; see inbox.h. */
#include "inbox.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"

int inbox_init(struct inbox *in)
{
	atomic_init(&in->head, NULL);
	in->efd = eventfd(0, EFD_CLOEXEC);
	return in->efd < 0 ? -errno : 0;
}

void inbox_fini(struct inbox *in)
{
	if (in->efd >= 0) {
		close(in->efd);
	}
	in->efd = -1;
}

void inbox_push(struct inbox *in, struct inbox_node *n)
{
	struct inbox_node *old = atomic_load(&in->head);
	uint64_t one = 1;

	do {
		n->next = old;
	} while (!atomic_compare_exchange_weak(&in->head, &old, n));
	/* Only the push that made it non-empty wakes: the consumer takes all. */
	if (old == NULL && write(in->efd, &one, sizeof(one)) != sizeof(one)) {
		log_line(LOG_ERR, "inbox", "inbox.wake error=\"%s\"", strerror(errno));
	}
}

struct inbox_node *inbox_take(struct inbox *in)
{
	struct inbox_node *n = atomic_exchange(&in->head, NULL), *rev = NULL;

	while (n != NULL) { /* pushed newest first: reverse into arrival order */
		struct inbox_node *next = n->next;

		n->next = rev;
		rev = n;
		n = next;
	}
	return rev;
}
