/* SPDX-License-Identifier: MIT
 * wp-copy.c — a live branch of a running minivm, done by the test itself
 * through the fork's PUT /uffd/wp, without any forkfs code:
 *
 *   wp-copy API_SOCKET PID OUT_DIR [--corrupt]
 *
 *  1. listen on OUT_DIR/wp.sock, PUT /uffd/wp, accept, recvmsg the uffd and
 *     the region table (JSON);
 *  2. read every guest page once through process_vm_readv (this populates
 *     never-touched anonymous pages, which WP would otherwise skip);
 *  3. PATCH /vm Paused, UFFDIO_WRITEPROTECT each region, PUT /snapshot/create
 *     VmstateOnly into OUT_DIR/vmstate, PATCH /vm Resumed;
 *  4. copy every page into OUT_DIR/memory.bin at offset + (addr - base),
 *     serving write-protect faults first (copy the page, then un-protect it,
 *     which wakes the vCPU), in chunks that are un-protected once copied;
 *  5. close the uffd. With --corrupt, flip one bit of a stamped page of the
 *     image afterwards so that a restore must report "verify FAIL".
 * Prints "pause_us=P faulted=F pages=N bytes=B" on success.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <json-c/json.h>
#include <linux/userfaultfd.h>

#include "common/macro.h"
#include "contrib/minivm/guest/abi.h"

#define CHUNK_PAGES 256
#define MAX_REGIONS 4

struct region {
	uint64_t base, size, offset;
};

static struct region regions[MAX_REGIONS];
static size_t nr_regions;
static pid_t pid;
static int uffd = -1, out_fd = -1;
static uint8_t *copied;		/* one byte per page of the image */
static uint64_t faulted;

static void die(const char *what)
{
	fprintf(stderr, "wp-copy: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000;
}

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect to the API socket");
	return fd;
}

/* One request on the API connection; returns the HTTP status. */
static int api(int fd, const char *method, const char *path, const char *body)
{
	char req[2048], resp[4096];
	size_t len = 0;
	int n = snprintf(req, sizeof(req),
			 "%s %s HTTP/1.1\r\nContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\n\r\n%s",
			 method, path, strlen(body), body);

	if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
		die("send");
	for (;;) {
		const char *end, *cl;
		size_t body_len = 0;
		ssize_t r = read(fd, resp + len, sizeof(resp) - 1 - len);

		if (r <= 0)
			die("read response");
		len += (size_t)r;
		resp[len] = '\0';
		end = strstr(resp, "\r\n\r\n");
		if (!end)
			continue;
		cl = strcasestr(resp, "Content-Length:");
		if (cl && cl < end)
			body_len = strtoul(cl + 15, NULL, 10);
		if (len >= (size_t)(end - resp) + 4 + body_len)
			break;
	}
	if (strncmp(resp, "HTTP/1.1 204", 12))
		fprintf(stderr, "wp-copy: %s %s: %s\n", method, path, resp);
	return atoi(resp + 9);
}

static void parse_regions(const char *json)
{
	struct json_object *arr = json_tokener_parse(json);

	if (!arr || !json_object_is_type(arr, json_type_array))
		die("region table is not a JSON array");
	nr_regions = json_object_array_length(arr);
	if (nr_regions == 0 || nr_regions > MAX_REGIONS)
		die("region count");
	for (size_t i = 0; i < nr_regions; i++) {
		struct json_object *o = json_object_array_get_idx(arr, i), *v;

		json_object_object_get_ex(o, "base_host_virt_addr", &v);
		regions[i].base = json_object_get_uint64(v);
		json_object_object_get_ex(o, "size", &v);
		regions[i].size = json_object_get_uint64(v);
		json_object_object_get_ex(o, "offset", &v);
		regions[i].offset = json_object_get_uint64(v);
		if (!json_object_object_get_ex(o, "page_size", &v) ||
		    json_object_get_uint64(v) != PAGE_4K ||
		    !json_object_object_get_ex(o, "page_size_kib", &v) ||
		    json_object_get_uint64(v) != PAGE_4K) {
			fprintf(stderr, "wp-copy: page_size/page_size_kib are not 4096\n");
			exit(1);
		}
	}
	json_object_put(arr);
}

static void receive_uffd(int lfd)
{
	char data[4096], cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { .iov_base = data, .iov_len = sizeof(data) - 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			      .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	ssize_t n;

	if (conn < 0)
		die("accept");
	n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
	if (n <= 0 || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
		die("recvmsg");
	data[n] = '\0';
	c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
	    c->cmsg_len != CMSG_LEN(sizeof(int))) {
		fprintf(stderr, "wp-copy: expected exactly one SCM_RIGHTS fd\n");
		exit(1);
	}
	memcpy(&uffd, CMSG_DATA(c), sizeof(int));
	/* The sender closed its end: the next read sees EOF. */
	if (read(conn, data + n, 1) != 0) {
		fprintf(stderr, "wp-copy: more than one message on the handshake socket\n");
		exit(1);
	}
	close(conn);
	parse_regions(data);
}

static void wp_range(uint64_t start, uint64_t len, bool protect)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = start, .len = len },
		.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) < 0)
		die("UFFDIO_WRITEPROTECT");
}

/* Copy pages [first, first+count) of region r that are not copied yet. */
static void copy_pages(const struct region *r, uint64_t first, uint64_t count, char *buf)
{
	struct iovec local = { .iov_base = buf, .iov_len = count * PAGE_4K };
	struct iovec remote = { .iov_base = (void *)(uintptr_t)(r->base + first * PAGE_4K),
				.iov_len = count * PAGE_4K };

	if (process_vm_readv(pid, &local, 1, &remote, 1, 0) != (ssize_t)(count * PAGE_4K))
		die("process_vm_readv");
	for (uint64_t i = 0; i < count; i++) {
		uint64_t idx = (r->offset / PAGE_4K) + first + i;

		if (copied[idx])
			continue;
		if (pwrite(out_fd, buf + i * PAGE_4K, PAGE_4K, (off_t)(idx * PAGE_4K)) != (ssize_t)PAGE_4K)
			die("pwrite");
		copied[idx] = 1;
	}
}

/* Serve every pending write-protect fault: copy first, then un-protect. */
static void serve_faults(char *buf)
{
	struct uffd_msg msg;

	while (read(uffd, &msg, sizeof(msg)) == sizeof(msg)) {
		uint64_t addr = msg.arg.pagefault.address & ~(PAGE_4K - 1);

		if (msg.event != UFFD_EVENT_PAGEFAULT ||
		    !(msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP))
			continue;
		for (size_t i = 0; i < nr_regions; i++) {
			const struct region *r = &regions[i];

			if (addr < r->base || addr >= r->base + r->size)
				continue;
			copy_pages(r, (addr - r->base) / PAGE_4K, 1, buf);
			wp_range(addr, PAGE_4K, false);
			faulted++;
		}
	}
	if (errno != EAGAIN)
		die("read uffd");
}

int main(int argc, char **argv)
{
	char path[256], body[512];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint64_t total = 0, t0, pause_us, pages;
	char *buf = malloc(CHUNK_PAGES * PAGE_4K);
	int api_fd, lfd;
	bool corrupt = argc > 4 && !strcmp(argv[4], "--corrupt");

	if (argc < 4) {
		fprintf(stderr, "usage: wp-copy API_SOCKET PID OUT_DIR [--corrupt]\n");
		return 2;
	}
	pid = atoi(argv[2]);
	api_fd = connect_to(argv[1]);

	/* 1. The handshake. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/wp.sock", argv[3]);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1) < 0)
		die("listen");
	snprintf(body, sizeof(body), "{\"socket\":\"%s\"}", sa.sun_path);
	if (api(api_fd, "PUT", "/uffd/wp", body) != 204)
		return 1;
	receive_uffd(lfd);
	close(lfd);
	unlink(sa.sun_path);

	for (size_t i = 0; i < nr_regions; i++)
		total = regions[i].offset + regions[i].size > total ?
				regions[i].offset + regions[i].size : total;
	pages = total / PAGE_4K;
	copied = calloc(pages, 1);
	snprintf(path, sizeof(path), "%s/memory.bin", argv[3]);
	out_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (!copied || !buf || out_fd < 0 || ftruncate(out_fd, (off_t)total) < 0)
		die("memory.bin");

	/* 2. Populate: WP skips pages that were never touched. */
	for (size_t i = 0; i < nr_regions; i++)
		for (uint64_t p = 0; p < regions[i].size / PAGE_4K; p += CHUNK_PAGES) {
			struct iovec l = { buf, CHUNK_PAGES * PAGE_4K };
			struct iovec r = { (void *)(uintptr_t)(regions[i].base + p * PAGE_4K),
					   CHUNK_PAGES * PAGE_4K };

			if (process_vm_readv(pid, &l, 1, &r, 1, 0) < 0)
				die("populate");
		}

	/* 3. Pause, arm every region, vmstate only, resume. */
	t0 = now_us();
	if (api(api_fd, "PATCH", "/vm", "{\"state\":\"Paused\"}") != 204)
		return 1;
	for (size_t i = 0; i < nr_regions; i++)
		wp_range(regions[i].base, regions[i].size, true);
	snprintf(body, sizeof(body),
		 "{\"snapshot_path\":\"%s/vmstate\",\"mem_file_path\":"
		 "\"/dev/null/minivm-vmstate-only\",\"snapshot_type\":\"VmstateOnly\"}",
		 argv[3]);
	if (api(api_fd, "PUT", "/snapshot/create", body) != 204) {
		api(api_fd, "PATCH", "/vm", "{\"state\":\"Resumed\"}");
		return 1;
	}
	if (api(api_fd, "PATCH", "/vm", "{\"state\":\"Resumed\"}") != 204)
		return 1;
	pause_us = now_us() - t0;

	/* 4. Copy, faults first. */
	for (size_t i = 0; i < nr_regions; i++) {
		const struct region *r = &regions[i];

		for (uint64_t p = 0; p < r->size / PAGE_4K; p += CHUNK_PAGES) {
			uint64_t n = r->size / PAGE_4K - p < CHUNK_PAGES ? r->size / PAGE_4K - p : CHUNK_PAGES;

			serve_faults(buf);
			copy_pages(r, p, n, buf);
			wp_range(r->base + p * PAGE_4K, n * PAGE_4K, false);
		}
	}
	serve_faults(buf);
	for (uint64_t i = 0; i < pages; i++)
		if (!copied[i]) {
			fprintf(stderr, "wp-copy: page %" PRIu64 " was never copied\n", i);
			return 1;
		}
	close(uffd);

	/* 5. Optionally damage one stamped page (qword 1 = GPA ^ magic). */
	if (corrupt) {
		uint64_t q;
		off_t off = GUEST_FIRST_PAGE + 8;

		if (pread(out_fd, &q, sizeof(q), off) != sizeof(q))
			die("pread");
		q ^= 1ULL << 40;
		if (pwrite(out_fd, &q, sizeof(q), off) != sizeof(q))
			die("pwrite");
	}
	if (fsync(out_fd) < 0)
		die("fsync");
	close(out_fd);
	close(api_fd);
	free(buf);
	free(copied);
	printf("pause_us=%" PRIu64 " faulted=%" PRIu64 " pages=%" PRIu64 " bytes=%" PRIu64 "\n",
	       pause_us, faulted, pages, total);
	return 0;
}
