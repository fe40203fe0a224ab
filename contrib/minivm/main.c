/* SPDX-License-Identifier: MIT
 * main.c — forkfs-minivm: command line, the API socket and its poll loop.
 *
 * Like Firecracker, one thread serves the API: it accepts connections on the
 * AF_UNIX socket given by --api-sock (at most 10 at a time), reads requests,
 * answers them strictly in order, one at a time, and keeps connections open.
 * The vCPU threads are started by the VM core (vm.c) on InstanceStart or
 * snapshot load. The seccomp filter is loaded once set-up is done and
 * before any vCPU thread exists, so every thread inherits it.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define LOG_PREFIX ""
#include "common/log.h"
#include "common/util.h"
#include "contrib/minivm/api.h"
#include "contrib/minivm/http.h"
#include "contrib/minivm/seccomp.h"
#include "contrib/minivm/vm.h"

#define MAX_CONNECTIONS 10
#define CONN_BUF (HTTP_MAX_HEAD + HTTP_MAX_BODY)

/* micro_http's answer when all connection slots are taken. */
static const char server_full[] =
	"HTTP/1.1 503\r\nServer: Firecracker API\r\nConnection: close\r\n"
	"Content-Length: 40\r\n\r\n{ \"error\": \"Too many open connections\" }";

struct conn {
	int fd;
	size_t len;
	char *buf;
};

struct server {
	struct api *api;
	int listen_fd, signal_fd;
	struct conn conns[MAX_CONNECTIONS];
	bool done;
	int exit_code;
};

static void help(void)
{
	printf("Usage: forkfs-minivm --api-sock PATH [OPTIONS]\n"
	       "A small KVM virtual machine monitor speaking the Firecracker 1.12 API.\n\n"
	       "  --api-sock PATH        serve the API on this AF_UNIX socket (required)\n"
	       "  --id ID                instance id reported by GET / (anonymous-instance)\n"
	       "  --stock                behave as stock Firecracker 1.12: no /uffd/wp,\n"
	       "                         no VmstateOnly, no mem_backend.shared\n"
	       "  --anon                 private anonymous guest memory instead of a memfd\n"
	       "  --mem-split-mib N      put guest memory above N MiB in a second region\n"
	       "                         (default %llu, as Firecracker on x86_64)\n"
	       "  --cpu auto|kvm|emulated\n"
	       "                         where the vCPUs run (default auto, or\n"
	       "                         $FORKFS_MINIVM_CPU): KVM, the emulated CPU\n"
	       "                         (no /dev/kvm needed, slower), or KVM when usable\n"
	       "  --cpu-mips N           the emulated CPU's pace per vCPU in million\n"
	       "                         instructions/s (default %u, 0: unlimited)\n"
	       "  --no-seccomp           do not install the seccomp filter\n"
	       "  --help                 show this help\n"
	       "  --version              show the version\n",
	       VM_DEFAULT_SPLIT_MIB, VM_EMULATED_MIPS_DEFAULT);
}

static void conn_close(struct conn *c)
{
	c->fd = safe_close(c->fd);
	free(c->buf);
	c->buf = NULL;
	c->len = 0;
}

static int send_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

static void accept_conn(struct server *s)
{
	struct timeval tv = { .tv_sec = 5 };
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0) {
		log_warning_errno(-errno, "accept");
		return;
	}
	for (size_t i = 0; i < MAX_CONNECTIONS; i++) {
		struct conn *c = &s->conns[i];

		if (c->fd >= 0)
			continue;
		c->buf = malloc(CONN_BUF);
		if (!c->buf)
			break;
		c->fd = fd;
		c->len = 0;
		/* A client that stops reading must not block the API forever. */
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		return;
	}
	(void)send_all(fd, server_full, sizeof(server_full) - 1);
	safe_close(fd);
}

/* Answer every complete request in the buffer, in order. */
static void serve_buffer(struct server *s, struct conn *c)
{
	while (c->len > 0 && c->fd >= 0) {
		struct http_request req = { 0 };
		struct api_response resp;
		char err[512], *out = NULL;
		size_t out_len = 0;
		ssize_t used;

		used = http_parse_request(c->buf, c->len, &req, err, sizeof(err));
		if (used == 0)
			return;
		if (used < 0) {
			/* micro_http drops whatever was pending on a parse error. */
			log_warning("request parse error: %s", err);
			c->len = 0;
			if (http_format_parse_error(err, &out, &out_len) == 0 &&
			    send_all(c->fd, out, out_len) < 0)
				conn_close(c);
			free(out);
			return;
		}

		api_handle(s->api, &req, &resp);
		if (http_format_response(resp.status, resp.deprecation, resp.body, &out,
					 &out_len) == 0 &&
		    send_all(c->fd, out, out_len) < 0)
			conn_close(c);
		free(out);
		api_response_done(&resp);
		if (resp.fatal) {
			log_error("snapshot load failed: ending the process, as Firecracker does");
			s->done = true;
			s->exit_code = 1;
			return;
		}
		if (c->fd >= 0) {
			memmove(c->buf, c->buf + used, c->len - (size_t)used);
			c->len -= (size_t)used;
		}
	}
}

static void read_conn(struct server *s, struct conn *c)
{
	ssize_t n = read(c->fd, c->buf + c->len, CONN_BUF - c->len);

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		conn_close(c);
		return;
	}
	c->len += (size_t)n;
	serve_buffer(s, c);
}

static int run(struct server *s)
{
	while (!s->done) {
		struct pollfd pfd[MAX_CONNECTIONS + 2];
		size_t map[MAX_CONNECTIONS], n = 2;

		pfd[0] = (struct pollfd){ .fd = s->listen_fd, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = s->signal_fd, .events = POLLIN };
		for (size_t i = 0; i < MAX_CONNECTIONS; i++)
			if (s->conns[i].fd >= 0) {
				map[n - 2] = i;
				pfd[n++] = (struct pollfd){ .fd = s->conns[i].fd, .events = POLLIN };
			}
		/* While a VM exists, look every 200 ms whether it stopped. */
		if (api_vm_stopped(s->api)) {
			log_error("the VM stopped: exiting");
			s->exit_code = 1;
			break;
		}
		if (poll(pfd, n, 200) < 0) {
			if (errno == EINTR)
				continue;
			return log_error_errno(-errno, "poll");
		}
		if (pfd[1].revents) {
			struct signalfd_siginfo si;

			if (read(s->signal_fd, &si, sizeof(si)) == sizeof(si))
				log_info("signal %u: exiting", si.ssi_signo);
			s->done = true;
			break;
		}
		for (size_t k = 2; k < n && !s->done; k++)
			if (pfd[k].revents)
				read_conn(s, &s->conns[map[k - 2]]);
		if (pfd[0].revents & POLLIN)
			accept_conn(s);
	}
	return 0;
}

static int listen_on(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0)
		return -errno;
	return TAKE_FD(fd);
}

int main(int argc, char **argv)
{
	enum { OPT_API_SOCK = 256, OPT_ID, OPT_STOCK, OPT_ANON, OPT_SPLIT, OPT_NO_SECCOMP, OPT_CPU, OPT_MIPS };
	static const struct option options[] = {
		{ "api-sock", required_argument, NULL, OPT_API_SOCK },
		{ "id", required_argument, NULL, OPT_ID },
		{ "stock", no_argument, NULL, OPT_STOCK },
		{ "anon", no_argument, NULL, OPT_ANON },
		{ "mem-split-mib", required_argument, NULL, OPT_SPLIT },
		{ "no-seccomp", no_argument, NULL, OPT_NO_SECCOMP },
		{ "cpu", required_argument, NULL, OPT_CPU },
		{ "cpu-mips", required_argument, NULL, OPT_MIPS },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	struct api_options ao = { 0 };
	struct server s = { .listen_fd = -1, .signal_fd = -1 };
	const char *sock_path = NULL, *cpu = getenv("FORKFS_MINIVM_CPU");
	bool use_seccomp = true;
	sigset_t mask;
	int c, r;

	log_set_ident("forkfs-minivm");
	while ((c = getopt_long(argc, argv, "hV", options, NULL)) >= 0) {
		switch (c) {
		case OPT_API_SOCK:
			sock_path = optarg;
			break;
		case OPT_ID:
			ao.id = optarg;
			break;
		case OPT_STOCK:
			ao.stock = true;
			break;
		case OPT_ANON:
			ao.anon = true;
			break;
		case OPT_SPLIT:
			if (parse_u64(optarg, &ao.split_mib) < 0 || ao.split_mib == 0) {
				log_error("invalid --mem-split-mib: %s", optarg);
				return 2;
			}
			break;
		case OPT_NO_SECCOMP:
			use_seccomp = false;
			break;
		case OPT_CPU:
			cpu = optarg;
			break;
		case OPT_MIPS: {
			uint64_t m;

			if (parse_u64(optarg, &m) < 0 || m > 100000) {
				log_error("invalid --cpu-mips: %s", optarg);
				return 2;
			}
			vm_emulated_mips = (unsigned)m;
			break;
		}
		case 'h':
			help();
			return 0;
		case 'V':
			printf("forkfs-minivm %s (Firecracker API 1.12.0)\n", PACKAGE_VERSION);
			return 0;
		default:
			return 2;
		}
	}
	if (optind < argc) {
		log_error("unexpected argument: %s", argv[optind]);
		return 2;
	}
	if (!cpu || !*cpu || !strcmp(cpu, "auto")) {
		ao.cpu = VM_CPU_AUTO;
	} else if (!strcmp(cpu, "kvm")) {
		ao.cpu = VM_CPU_KVM;
	} else if (!strcmp(cpu, "emulated")) {
		ao.cpu = VM_CPU_EMULATED;
	} else {
		log_error("invalid --cpu (or FORKFS_MINIVM_CPU): %s; want auto, kvm or emulated", cpu);
		return 2;
	}
	if (!sock_path) {
		log_error("--api-sock PATH is required (see --help)");
		return 2;
	}
	if (ao.id && (strlen(ao.id) == 0 || strlen(ao.id) > 64)) {
		log_error("invalid --id: must be 1 to 64 characters");
		return 2;
	}

	/* Signals arrive through a signalfd; blocked here, they stay blocked in
	 * the vCPU threads created later. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	s.signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (s.signal_fd < 0)
		return log_error_errno(-errno, "signalfd"), 1;
	for (size_t i = 0; i < MAX_CONNECTIONS; i++)
		s.conns[i].fd = -1;

	s.listen_fd = listen_on(sock_path);
	if (s.listen_fd < 0)
		return log_error_errno(s.listen_fd, "cannot listen on %s", sock_path), 1;
	r = api_new(&ao, &s.api);
	if (r < 0)
		return log_error_errno(r, "api"), 1;
	if (use_seccomp) {
		r = minivm_seccomp_install();
		if (r < 0) {
			log_error_errno(r, "cannot install the seccomp filter");
			s.exit_code = 1;
			goto out;
		}
	}
	log_info("API on %s%s%s", sock_path, ao.stock ? " (stock Firecracker mode)" : "",
		 use_seccomp ? "" : " (seccomp off)");

	r = run(&s);
	if (r < 0)
		s.exit_code = 1;
out:
	for (size_t i = 0; i < MAX_CONNECTIONS; i++)
		if (s.conns[i].fd >= 0)
			conn_close(&s.conns[i]);
	api_free(s.api);
	unlink(sock_path);
	safe_close(s.listen_fd);
	safe_close(s.signal_fd);
	return s.exit_code;
}
