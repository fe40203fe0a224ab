/* SPDX-License-Identifier: MIT
 * test-handshake.c — the uffd hand-off receiver over a real Unix socket, the
 * region-table parser, and the engine's behaviour when the VMM process (here
 * a forked child that sent its uffd exactly as Firecracker does) dies mid-copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "common/error.h"
#include "common/fdpass.h"
#include "common/log.h"
#include "common/util.h"
#include "tests/fds.h"
#include "tests/tap.h"
#include "tests/uffd/guest.h"
#include "uffd/engine.h"
#include "uffd/handshake.h"
#include "uffd/uffd.h"

static char tmpdir[] = "/tmp/uffd-hs.XXXXXX";
static char sock_path[128];

/* Parse; a failure must come with its reason, a success with none. */
static int parse(const char *json, uint64_t expect_total, size_t *n)
{
	struct uffd_region regs[UFFD_MAX_REGIONS];
	struct error e = ERROR_INIT;
	int r = uffd_parse_regions(json, strlen(json), expect_total, regs, UFFD_MAX_REGIONS, n, &e);

	if (r < 0 && (e.code != r || !*error_msg(&e)))
		return tap_diag("parse: %d without a reason", r), -EPROTO;
	if (r == 0 && error_is_set(&e))
		return tap_diag("parse: success with a reason: %s", error_msg(&e)), -EPROTO;
	if (r < 0)
		tap_diag("rejected: %s", error_msg(&e));
	return r;
}

static void parser_cases(void)
{
	static const struct {
		const char *json;
		int expect;
	} cases[] = {
		{ "[{\"base_host_virt_addr\":139896748507136,\"size\":1073741824,\"offset\":0,"
		  "\"page_size\":4096,\"page_size_kib\":4096}]", 0 },
		{ "[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size_kib\":4096}]", 0 },
		{ "[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size\":4096,"
		  "\"page_size_kib\":4}]", 0 },
		{ " [ {\"size\":8192,\"offset\":0,\"page_size\":4096,\"base_host_virt_addr\":4096,"
		  "\"extra\":[1,2]} ] ", 0 },
		{ "[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size_kib\":4}]",
		  -EOPNOTSUPP },
		{ "[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size\":2097152}]",
		  -EOPNOTSUPP },
		{ "[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0}]", -EINVAL },
		{ "[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":4096,\"page_size\":4096}]",
		  -EINVAL },
		{ "[{\"base_host_virt_addr\":4096,\"size\":0,\"offset\":0,\"page_size\":4096}]", -EINVAL },
		{ "[{\"base_host_virt_addr\":4096,\"size\":100,\"offset\":0,\"page_size\":4096}]", -EINVAL },
		{ "[{\"base_host_virt_addr\":4097,\"size\":4096,\"offset\":0,\"page_size\":4096}]", -EINVAL },
		{ "[{\"base_host_virt_addr\":-4096,\"size\":4096,\"offset\":0,\"page_size\":4096}]", -EINVAL },
		{ "[{\"base_host_virt_addr\":4096.0,\"size\":4096,\"offset\":0,\"page_size\":4096}]", -EINVAL },
		{ "[{\"base_host_virt_addr\":\"4096\",\"size\":4096,\"offset\":0,\"page_size\":4096}]", -EINVAL },
		{ "[{\"base_host_virt_addr\":18446744073709547520,\"size\":8192,\"offset\":0,"
		  "\"page_size\":4096}]", -EINVAL },
		{ "[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size\":4096},"
		  "{\"base_host_virt_addr\":8192,\"size\":4096,\"offset\":8192,\"page_size\":4096}]", -EINVAL },
		{ "[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size\":4096},"
		  "{\"base_host_virt_addr\":1048576,\"size\":4096,\"offset\":8192,\"page_size\":4096}]", 0 },
		{ "{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size\":4096}", -EINVAL },
		{ "[]", -EINVAL },
		{ "[1]", -EINVAL },
		{ "[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size\":4096}] x", -EINVAL },
		{ "[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size\":4096}", -EINVAL },
		{ "", -EINVAL },
	};
	char big[4096];
	size_t n = 0, len;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int r = parse(cases[i].json, 0, &n);
		tap_ok(r == cases[i].expect, "parse case %zu: %d (want %d)", i, r, cases[i].expect);
	}
	TAP_CHECK(parse(cases[0].json, 1073741824, &n) == 0 && n == 1);
	TAP_CHECK(parse(cases[0].json, 1073741824 + 4096, &n) == -EINVAL);
	TAP_CHECK(parse(cases[16].json, 12288, &n) == 0 && n == 2);

	/* 17 regions: more than UFFD_MAX_REGIONS. */
	len = (size_t)snprintf(big, sizeof(big), "[");
	for (int i = 0; i < 17; i++)
		len += (size_t)snprintf(big + len, sizeof(big) - len,
					"%s{\"base_host_virt_addr\":%d,\"size\":4096,\"offset\":%d,"
					"\"page_size\":4096}", i ? "," : "", (i + 1) * 8192, i * 4096);
	snprintf(big + len, sizeof(big) - len, "]");
	TAP_CHECK(parse(big, 0, &n) == -EINVAL);
}

/* The VMM's side: connect, one sendmsg with the JSON and nfds copies of fd. */
static int send_handshake(const char *json, size_t len, int fd, int nfds)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fds[FDPASS_MAX_FDS];
	ssize_t n = 0;
	int s;

	if (nfds < 0 || nfds > FDPASS_MAX_FDS)
		return -EINVAL;
	for (int i = 0; i < nfds; i++)
		fds[i] = fd;
	strcpy(sa.sun_path, sock_path);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		safe_close(s);
		return -errno;
	}
	if (len > 0)
		n = fdpass_send(s, json, len, fds, (size_t)nfds);
	safe_close(s);
	return n < 0 ? (int)n : 0;
}

/* uffd_receive() fails with want, for a reason that contains why. */
static void receive_fails(int lfd, uint64_t expect_total, int timeout_ms, int want, const char *why)
{
	struct uffd_handshake hs;
	struct error e = ERROR_INIT;
	int r = uffd_receive(lfd, expect_total, timeout_ms, &hs, &e);

	tap_ok(r == want && e.code == want && strstr(error_msg(&e), why),
	       "receive refused: %d (want %d): %s", r, want, error_msg(&e));
	if (r == 0)
		safe_close(hs.uffd);
}

static const char good_json[] =
	"[{\"base_host_virt_addr\":139896748507136,\"size\":1073741824,\"offset\":0,"
	"\"page_size\":4096,\"page_size_kib\":4096}]";

static void socket_cases(void)
{
	struct uffd_handshake hs;
	struct stat st;
	char big[6000];
	int lfd = -1, fd, uffd = -1, pipefd[2] = { -1, -1 }, before, r;

	{
		struct error e = ERROR_INIT;
		char longp[200];

		memset(longp, 'a', sizeof(longp) - 1);
		longp[sizeof(longp) - 1] = '\0';
		TAP_CHECK(uffd_listen(longp, &lfd, &e) == -ENAMETOOLONG && e.code == -ENAMETOOLONG &&
			  strstr(error_msg(&e), "socket path too long: aaa"));
	}
	TAP_CHECK(uffd_listen(sock_path, &lfd, NULL) == 0);
	TAP_CHECK(stat(sock_path, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0600);
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	/* As the forkd fork does: data and fd queued, sender gone, then we accept. */
	if (uffd_open(&uffd) < 0)
		tap_diag("SKIP receiving a userfaultfd: cannot create one");
	else {
		TAP_CHECK(send_handshake(good_json, strlen(good_json), uffd, 1) == 0);
		memset(&hs, 0, sizeof(hs));
		r = uffd_receive(lfd, 1073741824, 2000, &hs, NULL);
		tap_ok(r == 0 && hs.n_regions == 1 && hs.regions[0].size == 1073741824 &&
		       hs.regions[0].base == 139896748507136ULL && hs.pid == getpid() &&
		       hs.uffd >= 0, "receive: one region, one fd, pid from SO_PEERCRED (%d)", r);
		if (r == 0)
			safe_close(hs.uffd);
		uffd = safe_close(uffd);
	}

	before = count_open_fds();
	/* A well-formed message whose fd is not a userfaultfd. */
	TAP_CHECK(pipe2(pipefd, O_CLOEXEC) == 0);
	TAP_CHECK(send_handshake(good_json, strlen(good_json), pipefd[0], 1) == 0);
	receive_fails(lfd, 0, 2000, -EBADF, "the received fd is not a userfaultfd (pipe:[");
	TAP_CHECK(send_handshake(good_json, strlen(good_json), fd, 1) == 0);
	receive_fails(lfd, 0, 2000, -EBADF, "the received fd is not a userfaultfd (/dev/null)");
	safe_close(pipefd[0]);
	safe_close(pipefd[1]);
	TAP_CHECK(send_handshake(good_json, strlen(good_json), fd, 0) == 0);
	receive_fails(lfd, 0, 2000, -EBADMSG, "0 fds received, expected 1");
	TAP_CHECK(send_handshake(good_json, strlen(good_json), fd, 2) == 0);
	receive_fails(lfd, 0, 2000, -EBADMSG, "2 fds received, expected 1");
	TAP_CHECK(send_handshake(good_json, strlen(good_json), fd, 8) == 0);
	receive_fails(lfd, 0, 2000, -EMSGSIZE, "message or its fds truncated");
	TAP_CHECK(send_handshake("[{\"size\":", 9, fd, 1) == 0);
	receive_fails(lfd, 0, 2000, -EINVAL, "message is not one complete JSON value");
	TAP_CHECK(send_handshake(good_json, strlen(good_json), fd, 1) == 0);
	receive_fails(lfd, 4096, 2000, -EINVAL,
		      "regions hold 1073741824 bytes, guest memory is 4096");
	memset(big, ' ', sizeof(big));
	memcpy(big, good_json, strlen(good_json));
	TAP_CHECK(send_handshake(big, sizeof(big), fd, 1) == 0);
	receive_fails(lfd, 0, 2000, -EMSGSIZE, "message longer than 4096 bytes");
	TAP_CHECK(send_handshake("", 0, fd, 0) == 0);
	receive_fails(lfd, 0, 2000, -ECONNRESET, "peer closed without sending");
	tap_ok(count_open_fds() == before, "rejected messages leak no fd (%d before, %d after)",
	       before, count_open_fds());
	receive_fails(lfd, 0, 100, -ETIMEDOUT, "no connection from the VMM: Connection timed out");
	safe_close(fd);
	safe_close(lfd);
	unlink(sock_path);
}

/* Child: a VMM with 256 MiB of guest memory and busy writers, that hands its
 * uffd over like Firecracker's PUT /uffd/wp and then just runs. */
static _noreturn_ void vmm_child(bool anon)
{
	char json[1024];
	const char *why;
	struct guest g;
	size_t len = 1;

	if (guest_new(&g, anon, 1, 256 * MIB, &why) < 0 || guest_start_writers(&g, 1) < 0)
		_exit(2);
	json[0] = '[';
	for (size_t i = 0; i < g.n_regions; i++)
		len += (size_t)snprintf(json + len, sizeof(json) - len,
					"%s{\"base_host_virt_addr\":%" PRIu64 ",\"size\":%" PRIu64
					",\"offset\":%" PRIu64 ",\"page_size\":4096,"
					"\"page_size_kib\":4096}", i ? "," : "", g.regions[i].base,
					g.regions[i].size, g.regions[i].offset);
	snprintf(json + len, sizeof(json) - len, "]");
	if (send_handshake(json, strlen(json), g.uffd, 1) < 0)
		_exit(3);
	g.uffd = safe_close(g.uffd);
	for (;;)
		pause();
}

static int done_result;
static atomic_int done_calls;

static void on_done(void *userdata, int result, const struct error *why)
{
	done_result = result;
	atomic_fetch_add(&done_calls, 1);
}

static void vmm_dies(bool anon)
{
	const char *kind = anon ? "anon" : "memfd";
	struct uffd_handshake hs = { .uffd = -1 };
	struct engine *e = NULL;
	struct engine_session *s = NULL;
	struct engine_progress pr;
	struct memsrc src;
	char dest_path[160];
	int lfd = -1, dest = -1, status, r;
	pid_t child;
	uint64_t deadline;

	TAP_CHECK(uffd_listen(sock_path, &lfd, NULL) == 0);
	child = fork();
	if (child == 0)
		vmm_child(anon);
	r = uffd_receive(lfd, 256 * MIB, 10000, &hs, NULL);
	tap_ok(r == 0 && hs.pid == child, "%s VMM: handshake from pid %d (%d)", kind, hs.pid, r);
	if (r < 0)
		goto out;
	r = memsrc_open_for_pid(child, hs.regions, hs.n_regions, &src, NULL);
	tap_ok(r == 0 && src.kind == (anon ? MEMSRC_PROCESS : MEMSRC_FD),
	       "%s VMM: memory source via %s", kind, anon ? "/proc/PID/mem" : "map_files");
	if (r < 0)
		goto out;
	r = engine_new(TAKE_FD(hs.uffd), hs.regions, hs.n_regions, &src, &e, NULL);
	TAP_CHECK(r == 0);
	if (r < 0)
		goto out;
	snprintf(dest_path, sizeof(dest_path), "%s/%s.bin", tmpdir, kind);
	dest = open(dest_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	TAP_CHECK(engine_prepare(e, NULL) == 0);
	kill(child, SIGSTOP);	/* the pause */
	TAP_CHECK(engine_arm(e, dest, false, &s, NULL) == 0);
	kill(child, SIGCONT);
	TAP_CHECK(engine_start_copy(s, on_done, NULL, NULL) == 0);
	kill(child, SIGKILL);
	waitpid(child, &status, 0);
	child = 0;
	deadline = now_usec() + 30 * USEC_PER_SEC;
	while (atomic_load(&done_calls) == 0 && now_usec() < deadline)
		usleep(1000);
	engine_get_progress(s, &pr);
	tap_diag("%s VMM killed: %s, result %d, copied %" PRIu64 "/%" PRIu64, kind,
		 engine_state_to_string(pr.state), done_result, pr.bytes_copied, pr.bytes_total);
	if (anon)
		tap_ok(atomic_load(&done_calls) == 1 && done_result == -ESRCH &&
		       pr.state == ENGINE_FAILED, "anon VMM killed mid-copy: fails with ESRCH");
	else
		tap_ok(atomic_load(&done_calls) == 1 && done_result == 0 && pr.state == ENGINE_DONE &&
		       pr.bytes_copied == pr.bytes_total,
		       "memfd VMM killed mid-copy: the copy completes from the memfd");
out:
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, &status, 0);
	}
	atomic_store(&done_calls, 0);
	engine_free(e);
	engine_session_unref(s);
	safe_close(hs.uffd);
	safe_close(dest);
	safe_close(lfd);
	unlink(sock_path);
}

int main(void)
{
	if (!guest_tmpdir(tmpdir))
		tap_skip_all("cannot create a temporary directory");
	snprintf(sock_path, sizeof(sock_path), "%s/wp.sock", tmpdir);
	log_set_max_level(LOG_LEVEL_ERR);
	parser_cases();
	socket_cases();

	if (!guest_wp_available())
		tap_diag("SKIP VMM-death cases: userfaultfd with write-protect is unavailable");
	else if (geteuid() != 0)
		tap_diag("SKIP VMM-death cases: /proc/PID/map_files needs root");
	else {
		vmm_dies(false);
		vmm_dies(true);
	}
	return tap_done();
}
