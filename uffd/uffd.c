/* SPDX-License-Identifier: MIT
 * uffd.c — userfaultfd(2) syscall and ioctl wrappers; see uffd.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "common/macro.h"
#include "uffd/uffd.h"

int uffd_open(int *ret_fd)
{
	int fd = -1;
#if HAVE_DECL_USERFAULTFD_IOC_NEW
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		safe_close(dev);
	}
#endif
	if (fd < 0)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return negative_errno();
	*ret_fd = fd;
	return 0;
}

int uffd_api(int uffd, uint64_t features, uint64_t *ret_features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };

	if (ioctl(uffd, UFFDIO_API, &api) < 0)
		return negative_errno();
	if (ret_features)
		*ret_features = api.features;
	return 0;
}

int uffd_register(int uffd, uint64_t start, uint64_t len, uint64_t mode)
{
	struct uffdio_register reg = { .range = { .start = start, .len = len }, .mode = mode };

	return ioctl(uffd, UFFDIO_REGISTER, &reg) < 0 ? negative_errno() : 0;
}

int uffd_wp_range(int uffd, uint64_t start, uint64_t len, bool protect, bool dontwake)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = start, .len = len },
		.mode = (protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0) |
			(dontwake ? UFFDIO_WRITEPROTECT_MODE_DONTWAKE : 0),
	};

	for (;;) {
		if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) >= 0)
			return 0;
		/* EAGAIN: the mm is changing under a non-cooperative event; try again. */
		if (errno != EAGAIN && errno != EINTR)
			return negative_errno();
	}
}

int uffd_wake(int uffd, uint64_t start, uint64_t len)
{
	struct uffdio_range range = { .start = start, .len = len };

	return ioctl(uffd, UFFDIO_WAKE, &range) < 0 ? negative_errno() : 0;
}

int uffd_read_msgs(int uffd, struct uffd_msg *msgs, size_t max)
{
	ssize_t n;

	do
		n = read(uffd, msgs, max * sizeof(*msgs));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? 0 : negative_errno();
	if (n % (ssize_t)sizeof(*msgs))
		return -EIO;
	return (int)(n / (ssize_t)sizeof(*msgs));
}
