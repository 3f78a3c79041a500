/*
 * uring_compat.h - what Debian's liburing 2.3 lacks for this kernel (6.x):
 * constants and tiny helpers, set as raw fields (IO_URING.md §2). When
 * liburing is upgraded, prefer its own helpers.
 */
#ifndef OMX_URING_COMPAT_H
#define OMX_URING_COMPAT_H

#include <liburing.h>

#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1U << 4) /* incremental buffer: more data will land in this buffer */
#endif
#ifndef IOU_PBUF_RING_INC
#define IOU_PBUF_RING_INC 2 /* register flag; 2.3 calls the field `pad` */
#endif

#endif
