/* sink_fs.c - see sink_fs.h. */
#include "sink_fs.h"

#include <errno.h>
#include <stdint.h>
#include <unistd.h>

int sink_write_all(int fd, const void *buf, size_t len)
{
	struct iovec iov = { (void *)(uintptr_t)buf, len };

	return sink_writev_all(fd, &iov, 1);
}

int sink_writev_all(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t w;

		if (iov->iov_len == 0) {
			iov++;
			n--;
			continue;
		}
		if ((w = writev(fd, iov, n)) < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -errno;
		}
		for (; n > 0 && (size_t)w >= iov->iov_len; iov++, n--) {
			w -= (ssize_t)iov->iov_len;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}
