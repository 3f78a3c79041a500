/*
 * inbox.h - a multi-producer, single-consumer hand-off into a shard: any
 * thread pushes a node (lock-free, a CAS on the head), the shard takes the
 * whole list at once. An eventfd, read by the shard's ring, wakes it when
 * the inbox goes from empty to non-empty, so the shard never blocks or
 * polls. The pattern of the verify pool's inbox (core/vpool.c), made
 * generic: the node is embedded in the producer's item (intrusive), and
 * whoever takes an item owns it from then on.
 *
 * The inbox must outlive every producer that may still push to it.
 */
#ifndef OMX_INBOX_H
#define OMX_INBOX_H

#include <stdatomic.h>

struct inbox_node {
	struct inbox_node *next;
};

struct inbox {
	_Atomic(struct inbox_node *) head;
	int efd; /* eventfd: readable once something was pushed since the last take */
};

/* inbox_init makes an empty inbox and its eventfd. 0 or -errno. */
int inbox_init(struct inbox *in);

/* inbox_fini closes the eventfd; nodes still in the inbox are the caller's (take them first). */
void inbox_fini(struct inbox *in);

/* inbox_push hands `n` to the consumer; `n` is the consumer's from here on. Any thread. */
void inbox_push(struct inbox *in, struct inbox_node *n);

/*
 * inbox_take takes every node pushed so far, oldest first (linked by next);
 * NULL when empty. Consumer thread only.
 */
struct inbox_node *inbox_take(struct inbox *in);

#endif
