/* SPDX-License-Identifier: MIT
 * wp.c — the write-protect userfaultfd hand-off (protocol doc §2), step for
 * step as the fork's persist::setup_wp_uffd does it:
 *
 *  1. create the uffd: /dev/userfaultfd + USERFAULTFD_IOC_NEW, falling back to
 *     userfaultfd(2); O_CLOEXEC|O_NONBLOCK, kernel faults included; UFFDIO_API
 *     asking for UFFD_FEATURE_PAGEFAULT_FLAG_WP only;
 *  2. UFFDIO_REGISTER each region, ascending GPA, mode WP only;
 *  3. do NOT arm (no UFFDIO_WRITEPROTECT): the receiver arms while paused;
 *  4. connect (blocking) to the listener, one sendmsg(MSG_NOSIGNAL) with the
 *     JSON array and exactly one SCM_RIGHTS fd;
 *  5. close our socket and our uffd: the registration then lives as long as
 *     the receiver keeps its copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#define LOG_PREFIX "wp: "
#include "common/error.h"
#include "common/fdpass.h"
#include "common/log.h"
#include "contrib/minivm/vm.h"
#include "contrib/minivm/wp.h"

#if !HAVE_DECL_USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

static int uffd_create(void)
{
	int dev, fd;

	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		fd = fd < 0 ? -errno : fd;
		safe_close(dev);
		return fd;
	}
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

static int uffd_api_wp(int fd)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_PAGEFAULT_FLAG_WP,
	};

	if (ioctl(fd, UFFDIO_API, &api) < 0)
		return -errno;
	if (!(api.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP))
		return -EOPNOTSUPP;
	return 0;
}

int wp_format_regions(struct vm *vm, char *buf, size_t len)
{
	const struct vm_region *regions;
	size_t n = vm_get_regions(vm, &regions), off = 0;

	off += (size_t)snprintf(buf, len, "[");
	for (size_t i = 0; i < n && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off,
					"%s{\"base_host_virt_addr\":%" PRIu64 ",\"size\":%" PRIu64
					",\"offset\":%" PRIu64 ",\"page_size\":%llu,\"page_size_kib\":%llu}",
					i ? "," : "", (uint64_t)(uintptr_t)regions[i].host,
					regions[i].size, regions[i].file_offset, PAGE_4K,
					PAGE_4K);
	if (off < len)
		off += (size_t)snprintf(buf + off, len - off, "]");
	return off < len ? (int)off : -ENOBUFS;
}

/* Rust's io::Error display: "No such file or directory (os error 2)". */
static int wp_fail(struct error *err, const char *what, int r)
{
	return error_set(err, r, "Setup WP uffd error: %s: %s (os error %d)", what, strerror(-r),
			 -r);
}

int wp_setup(struct vm *vm, const char *socket_path, struct error *err)
{
	const struct vm_region *regions;
	size_t n = vm_get_regions(vm, &regions);
	_cleanup_close_ int uffd = -1, sock = -1;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char json[1024];
	ssize_t sent;
	int r;

	uffd = uffd_create();
	if (uffd < 0)
		return wp_fail(err, "Failed to create userfaultfd", uffd);
	r = uffd_api_wp(uffd);
	if (r < 0)
		return wp_fail(err, "Failed to create userfaultfd", r);

	for (size_t i = 0; i < n; i++) {
		struct uffdio_register reg = {
			.range = { .start = (uint64_t)(uintptr_t)regions[i].host,
				   .len = regions[i].size },
			.mode = UFFDIO_REGISTER_MODE_WP,
		};

		if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
			return wp_fail(
			    err, "Failed to register guest memory region with userfaultfd", -errno);
	}

	r = wp_format_regions(vm, json, sizeof(json));
	if (r < 0)
		return wp_fail(err, "Failed to serialize region descriptors", r);

	if (strlen(socket_path) >= sizeof(sa.sun_path))
		return wp_fail(err, "Failed to connect to listener UDS", -ENAMETOOLONG);
	strcpy(sa.sun_path, socket_path);
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return wp_fail(err, "Failed to connect to listener UDS", -errno);
	if (connect(sock, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return wp_fail(err, "Failed to connect to listener UDS", -errno);

	sent = fdpass_send(sock, json, strlen(json), &uffd, 1);
	if (sent < 0)
		return wp_fail(err, "Failed to send file descriptor", (int)sent);
	log_info("sent WP uffd over %zu region(s) to %s", n, socket_path);
	return 0;
}
