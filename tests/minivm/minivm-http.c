/* SPDX-License-Identifier: MIT
 * minivm-http.c — a raw HTTP client for the minivm protocol tests.
 *
 *   minivm-http SOCKET [-n N] [-w MS] < request-bytes
 *       sends stdin verbatim over ONE connection and prints exactly the bytes
 *       that came back, stopping after N complete responses (framed by
 *       Content-Length, or by the end of the headers when there is none), when
 *       the server closes, or after MS milliseconds of silence (default 2000).
 *   minivm-http SOCKET --bench-pause N
 *       PATCH /vm Paused then Resumed N times on one connection and prints the
 *       round-trip p50/p99 of each, in microseconds.
 * Exit status: 0 when the expected number of responses arrived, 1 otherwise.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || strlen(path) >= sizeof(sa.sun_path))
		return -1;
	strcpy(sa.sun_path, path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Length of the complete responses at the start of buf, counting them. */
static size_t complete_responses(const char *buf, size_t len, int *count)
{
	size_t off = 0;

	*count = 0;
	for (;;) {
		const char *end = memmem(buf + off, len - off, "\r\n\r\n", 4), *cl;
		size_t head, body = 0;

		if (!end)
			return off;
		head = (size_t)(end - (buf + off)) + 4;
		for (cl = buf + off; cl && cl < end; cl = memchr(cl, '\n', (size_t)(end - cl))) {
			if (*cl == '\n')
				cl++;
			if (!strncasecmp(cl, "Content-Length:", 15))
				body = strtoul(cl + 15, NULL, 10);
		}
		if (len - off < head + body)
			return off;
		off += head + body;
		(*count)++;
	}
}

static int raw_mode(const char *sock, int want, int wait_ms)
{
	static char in[1 << 20], out[1 << 20];
	size_t in_len = 0, out_len = 0;
	ssize_t n;
	int fd, got = 0;

	while ((n = read(STDIN_FILENO, in + in_len, sizeof(in) - in_len)) > 0)
		in_len += (size_t)n;
	fd = connect_to(sock);
	if (fd < 0) {
		perror("connect");
		return 1;
	}
	if (send(fd, in, in_len, MSG_NOSIGNAL) != (ssize_t)in_len) {
		perror("send");
		return 1;
	}
	while (got < want) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, wait_ms) <= 0)
			break;
		n = read(fd, out + out_len, sizeof(out) - out_len);
		if (n <= 0)
			break;
		out_len += (size_t)n;
		complete_responses(out, out_len, &got);
	}
	fwrite(out, 1, out_len, stdout);
	close(fd);
	return got >= want ? 0 : 1;
}

static unsigned long long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000;
}

/* One request, one response: returns the round trip in µs, or 0 on error. */
static unsigned long long round_trip(int fd, const char *req)
{
	char buf[4096];
	size_t len = 0;
	unsigned long long t0 = now_us();
	int got = 0;

	if (send(fd, req, strlen(req), MSG_NOSIGNAL) < 0)
		return 0;
	while (got == 0) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);

		if (n <= 0)
			return 0;
		len += (size_t)n;
		complete_responses(buf, len, &got);
	}
	if (strncmp(buf, "HTTP/1.1 204 ", 13))
		return 0;
	return now_us() - t0 ?: 1;
}

static int cmp_ull(const void *a, const void *b)
{
	unsigned long long x = *(const unsigned long long *)a, y = *(const unsigned long long *)b;

	return x < y ? -1 : x > y;
}

static int bench_mode(const char *sock, int n)
{
	static const char pause_req[] = "PATCH /vm HTTP/1.1\r\nContent-Type: application/json\r\n"
					"Content-Length: 18\r\n\r\n{\"state\":\"Paused\"}";
	static const char resume_req[] = "PATCH /vm HTTP/1.1\r\nContent-Type: application/json\r\n"
					 "Content-Length: 19\r\n\r\n{\"state\":\"Resumed\"}";
	unsigned long long *p = calloc((size_t)n, sizeof(*p)), *r = calloc((size_t)n, sizeof(*r));
	int fd = connect_to(sock);

	if (fd < 0 || !p || !r || n <= 0)
		return 1;
	for (int i = 0; i < n; i++) {
		p[i] = round_trip(fd, pause_req);
		r[i] = round_trip(fd, resume_req);
		if (!p[i] || !r[i]) {
			fprintf(stderr, "PATCH /vm failed at iteration %d\n", i);
			return 1;
		}
		usleep(2000);
	}
	qsort(p, (size_t)n, sizeof(*p), cmp_ull);
	qsort(r, (size_t)n, sizeof(*r), cmp_ull);
	printf("pause_p50_us=%llu pause_p99_us=%llu resume_p50_us=%llu resume_p99_us=%llu n=%d\n",
	       p[n / 2], p[(n * 99) / 100], r[n / 2], r[(n * 99) / 100], n);
	close(fd);
	free(p);
	free(r);
	return 0;
}

int main(int argc, char **argv)
{
	int want = 1, wait_ms = 2000;

	if (argc >= 4 && !strcmp(argv[2], "--bench-pause"))
		return bench_mode(argv[1], atoi(argv[3]));
	if (argc < 2) {
		fprintf(stderr, "usage: %s SOCKET [-n N] [-w MS] < request\n", argv[0]);
		return 2;
	}
	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "-n"))
			want = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "-w"))
			wait_ms = atoi(argv[i + 1]);
	}
	return raw_mode(argv[1], want, wait_ms);
}
