/* SPDX-License-Identifier: MIT
 * fc-client.c — the Firecracker client against the real forkfs-minivm ($MINIVM
 * booting $GUEST_IMG on KVM or minivm's emulated CPU; needs root): instance info, machine
 * config, boot, pause/resume, the capability probe on a default and a --stock
 * VMM, Full and VmstateOnly snapshots, a restore, API errors, and the
 * transport's failure modes: a VMM that never answers (SIGSTOP), one that dies
 * idle or in the middle of a call (SIGKILL), one replaced on the same socket.
 *
 * Two failure modes a real VMM cannot be made to produce on demand use a plain
 * socket this test opens itself: a listener that never accepts (timeout) and a
 * peer that closes in the middle of an answer (-ECONNRESET, then reconnect).
 *
 * Also prints round-trip latencies of GET / and PATCH /vm (diagnostics only).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include "common/macro.h"
#include "common/util.h"
#include "fc/fc.h"
#include "tests/tap.h"

#define MAX_VMMS 8

DEFINE_TRIVIAL_CLEANUP_FUNC(struct fc_client *, fc_client_free);

static char tmpd[64];
static const char *minivm, *guest_img;
static pid_t vmms[MAX_VMMS];

struct vmm {
	pid_t pid;
	char sock[108];
};

static void cleanup(void)
{
	char cmd[128];

	for (size_t i = 0; i < MAX_VMMS; i++)
		if (vmms[i] > 0) {
			kill(vmms[i], SIGCONT);
			kill(vmms[i], SIGKILL);
			waitpid(vmms[i], NULL, 0);
			vmms[i] = 0;
		}
	if (tmpd[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpd);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmpd);
	}
}

/* A hung client must fail the test, not the suite: a watchdog, and clean-up on
 * SIGTERM/SIGINT too (exit() runs the atexit handler). */
static void on_signal(int sig)
{
	if (sig == SIGALRM)
		tap_ok(false, "watchdog: the test did not finish in 60 s");
	exit(1);
}

static bool can_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	return fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
}

/* Start minivm on tmpd/NAME.sock (extra: NULL or "--stock"); its output goes to NAME.log. */
static int vmm_start(const char *name, const char *extra, struct vmm *v)
{
	char log[128];
	uint64_t t0;
	pid_t pid;

	snprintf(v->sock, sizeof(v->sock), "%s/%s.sock", tmpd, name);
	snprintf(log, sizeof(log), "%s/%s.log", tmpd, name);
	unlink(v->sock);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		execl(minivm, minivm, "--api-sock", v->sock, "--id", name, extra, (char *)NULL);
		_exit(127);
	}
	v->pid = pid;
	for (size_t i = 0; i < MAX_VMMS; i++)
		if (vmms[i] <= 0) {
			vmms[i] = pid;
			break;
		}
	t0 = now_usec();
	while (!can_connect(v->sock)) {
		if (now_usec() - t0 > 5 * USEC_PER_SEC || waitpid(pid, NULL, WNOHANG) == pid)
			return -ETIMEDOUT;
		usleep(10000);
	}
	return 0;
}

static void vmm_kill(struct vmm *v)
{
	kill(v->pid, SIGKILL);
	waitpid(v->pid, NULL, 0);
	for (size_t i = 0; i < MAX_VMMS; i++)
		if (vmms[i] == v->pid)
			vmms[i] = 0;
	v->pid = 0;
}

static bool has(const struct fc_client *c, const char *text)
{
	const char *e = fc_client_last_error(c);

	if (strstr(e, text))
		return true;
	tap_diag("last error \"%s\" lacks \"%s\"", e, text);
	return false;
}

static enum fc_vm_state state_of(struct fc_client *c)
{
	struct fc_instance_info info;

	return fc_get_instance_info(c, &info) < 0 ? FC_STATE_UNKNOWN : info.state;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void latency(const char *what, uint64_t *us, size_t n)
{
	qsort(us, n, sizeof(*us), cmp_u64);
	tap_diag("latency %s: n=%zu p50=%llu us p99=%llu us max=%llu us", what, n,
		 (unsigned long long)us[n / 2], (unsigned long long)us[n * 99 / 100],
		 (unsigned long long)us[n - 1]);
}

static void measure(struct fc_client *c)
{
	uint64_t get[1000], pause[200], resume[200], t;
	bool good = true;

	for (size_t i = 0; i < ARRAY_SIZE(get); i++) {
		struct fc_instance_info info;

		t = now_usec();
		good &= fc_get_instance_info(c, &info) == 0;
		get[i] = now_usec() - t;
	}
	for (size_t i = 0; i < ARRAY_SIZE(pause); i++) {
		t = now_usec();
		good &= fc_pause(c) == 0;
		pause[i] = now_usec() - t;
		t = now_usec();
		good &= fc_resume(c) == 0;
		resume[i] = now_usec() - t;
	}
	tap_ok(good, "1000 GET / and 200 pause/resume pairs on one kept connection");
	latency("GET /", get, ARRAY_SIZE(get));
	latency("PATCH /vm Paused", pause, ARRAY_SIZE(pause));
	latency("PATCH /vm Resumed", resume, ARRAY_SIZE(resume));
}

static int count_fds(void)
{
	char path[64];
	int n = 0;

	for (int fd = 0; fd < 1024; fd++) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		n += access(path, F_OK) == 0;
	}
	return n;
}

static off_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) < 0 ? -1 : st.st_size;
}

/* Boot-time calls, the probe before and after boot, errors, snapshots. */
static void test_lifecycle(struct fc_client *c, char *full_vmstate, char *full_mem, size_t n)
{
	struct fc_machine_config mc = { 0 }, bad = { .vcpu_count = 0, .mem_size_mib = 64 };
	struct fc_instance_info info;
	struct fc_caps caps = { 0 };
	char path[128], mem[128];

	TAP_CHECK(fc_get_instance_info(c, &info) == 0);
	TAP_CHECK(strcmp(info.id, "vmm-a") == 0 && info.state == FC_STATE_NOT_STARTED);
	TAP_CHECK(strcmp(info.app_name, "Firecracker") == 0 && info.vmm_version[0]);
	TAP_CHECK(fc_get_machine_config(c, &mc) == 0 && mc.vcpu_count == 1 &&
		  mc.mem_size_mib == 128 && !mc.smt && strcmp(mc.huge_pages, "None") == 0);
	TAP_CHECK(fc_probe_caps(c, &caps) == 0 && caps.uffd_wp && caps.vmstate_only);

	TAP_CHECK(fc_put_machine_config(c, &bad) == -EREMOTEIO && has(c, "vCPU number is invalid"));
	TAP_CHECK(fc_pause(c) == -EREMOTEIO && has(c, "not supported before starting"));
	mc = (struct fc_machine_config){ .vcpu_count = 1, .mem_size_mib = 64 };
	TAP_CHECK(fc_put_machine_config(c, &mc) == 0);
	mc = (struct fc_machine_config){ 0 };
	TAP_CHECK(fc_get_machine_config(c, &mc) == 0 && mc.vcpu_count == 1 && mc.mem_size_mib == 64);
	TAP_CHECK(fc_put_boot_source(c, "/nonexistent/kernel", NULL, NULL) == -EREMOTEIO &&
		  has(c, "kernel file cannot be opened"));
	TAP_CHECK(fc_put_boot_source(c, guest_img, NULL, NULL) == 0);
	TAP_CHECK(fc_instance_start(c) == 0);
	TAP_CHECK(state_of(c) == FC_STATE_RUNNING);
	TAP_CHECK(fc_probe_caps(c, &caps) == 0 && caps.uffd_wp && caps.vmstate_only);
	TAP_CHECK(fc_put_machine_config(c, &mc) == -EREMOTEIO && has(c, "after starting"));

	snprintf(path, sizeof(path), "%s/running.vmstate", tmpd);
	TAP_CHECK(fc_snapshot_create(c, FC_SNAPSHOT_VMSTATE_ONLY, path, NULL, 0) == -EREMOTEIO &&
		  has(c, "while running"));
	/* micro_http's non-JSON error body: the message, without the trailer. */
	TAP_CHECK(fc_call(c, "POST", "/vm", "{}", 0, NULL) == -EREMOTEIO &&
		  strcmp(fc_client_last_error(c), "Invalid HTTP Method: Unsupported HTTP method.") == 0);

	TAP_CHECK(fc_pause(c) == 0 && state_of(c) == FC_STATE_PAUSED);
	TAP_CHECK(fc_pause(c) == 0); /* idempotent, as Firecracker */
	snprintf(full_vmstate, n, "%s/full.vmstate", tmpd);
	snprintf(full_mem, n, "%s/full.mem", tmpd);
	TAP_CHECK(fc_snapshot_create(c, FC_SNAPSHOT_FULL, full_vmstate, full_mem, 30000) == 0);
	TAP_CHECK(file_size(full_mem) == 64 << 20 && file_size(full_vmstate) > 0);
	TAP_CHECK(fc_snapshot_create(c, FC_SNAPSHOT_FULL, full_vmstate, NULL, 0) == -EINVAL);
	snprintf(path, sizeof(path), "%s/only.vmstate", tmpd);
	snprintf(mem, sizeof(mem), "%s/only.mem", tmpd);
	TAP_CHECK(fc_snapshot_create(c, FC_SNAPSHOT_VMSTATE_ONLY, path, NULL, 0) == 0);
	TAP_CHECK(file_size(path) > 0);
	TAP_CHECK(fc_snapshot_create(c, FC_SNAPSHOT_VMSTATE_ONLY, path, mem, 0) == 0 &&
		  file_size(mem) == -1); /* VmstateOnly never touches mem_file_path */
	TAP_CHECK(fc_snapshot_create(c, FC_SNAPSHOT_DIFF, path, mem, 0) == -EREMOTEIO &&
		  has(c, "Diff snapshots are not allowed"));
	TAP_CHECK(fc_resume(c) == 0 && state_of(c) == FC_STATE_RUNNING);
}

/* PUT /uffd/wp hands a uffd to a listener; the listen backlog keeps the
 * connection (and its fd) until we close it. */
static void test_uffd_wp(struct fc_client *c)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/wp.sock", tmpd);
	if (!TAP_CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
		       listen(fd, 1) == 0))
		return;
	TAP_CHECK(fc_uffd_wp(c, sa.sun_path) == 0);
	TAP_CHECK(fc_uffd_wp(c, "/dev/null/nothing.sock") == -EREMOTEIO &&
		  has(c, "Setup WP uffd error"));
}

static void test_stopped_vmm(struct fc_client *c, struct vmm *v)
{
	uint64_t t0, ms;
	int r;

	kill(v->pid, SIGSTOP);
	t0 = now_usec();
	r = fc_request(c, "GET", "/", NULL, 300, NULL);
	ms = (now_usec() - t0) / 1000;
	TAP_CHECK(r == -ETIMEDOUT);
	tap_ok(ms >= 290 && ms < 2000, "timeout after %llu ms (asked for 300)",
	       (unsigned long long)ms);
	TAP_CHECK(has(c, "timed out after 300 ms waiting for GET /"));
	kill(v->pid, SIGCONT);
	TAP_CHECK(state_of(c) == FC_STATE_RUNNING); /* a new connection after the timeout */
}

struct killer {
	pid_t pid;
	unsigned delay_ms;
};

static void *kill_later(void *p)
{
	struct killer *k = p;

	usleep(k->delay_ms * 1000);
	kill(k->pid, SIGKILL);
	return NULL;
}

/* The VMM dies in the middle of a call, then stays dead. */
static void test_vmm_dies(struct fc_client *c, struct vmm *v)
{
	struct killer k = { .pid = v->pid, .delay_ms = 200 };
	pthread_t t;
	uint64_t t0, ms;
	int r;

	kill(v->pid, SIGSTOP);
	pthread_create(&t, NULL, kill_later, &k);
	t0 = now_usec();
	r = fc_pause(c); /* sent, never read: the kernel holds it for the stopped VMM */
	ms = (now_usec() - t0) / 1000;
	pthread_join(t, NULL);
	tap_ok(r == -ECONNRESET && ms < 2000, "VMM killed during PATCH /vm: %s after %llu ms (%s)",
	       strerror(-r), (unsigned long long)ms, fc_client_last_error(c));
	vmm_kill(v);
	t0 = now_usec();
	r = fc_resume(c);
	ms = (now_usec() - t0) / 1000;
	tap_ok((r == -ECONNREFUSED || r == -ENOENT || r == -ECONNRESET || r == -EPIPE) && ms < 1000,
	       "call to a dead VMM: %s after %llu ms (%s)", strerror(-r), (unsigned long long)ms,
	       fc_client_last_error(c));
}

/* A VMM replaced on the same socket: the kept connection is dead and the next
 * call reconnects without the caller noticing. */
static void test_replaced_vmm(void)
{
	_cleanup_(fc_client_freep) struct fc_client *c = NULL;
	struct fc_instance_info info;
	struct vmm v;

	if (!TAP_CHECK(vmm_start("vmm-r", NULL, &v) == 0))
		return;
	TAP_CHECK(fc_client_new(v.sock, &c) == 0 && fc_get_instance_info(c, &info) == 0);
	vmm_kill(&v);
	if (!TAP_CHECK(vmm_start("vmm-r", NULL, &v) == 0))
		return;
	TAP_CHECK(fc_get_instance_info(c, &info) == 0 && info.state == FC_STATE_NOT_STARTED);
	TAP_CHECK(fc_get_instance_info(c, &info) == 0);
	vmm_kill(&v);
}

static void test_stock(void)
{
	_cleanup_(fc_client_freep) struct fc_client *c = NULL;
	struct fc_machine_config mc = { .vcpu_count = 1, .mem_size_mib = 64 };
	struct fc_caps caps = { .uffd_wp = true, .vmstate_only = true };
	struct vmm v;

	if (!TAP_CHECK(vmm_start("vmm-stock", "--stock", &v) == 0))
		return;
	TAP_CHECK(fc_client_new(v.sock, &c) == 0);
	TAP_CHECK(fc_probe_caps(c, &caps) == 0 && !caps.uffd_wp && !caps.vmstate_only);
	TAP_CHECK(fc_put_machine_config(c, &mc) == 0 && fc_put_boot_source(c, guest_img, NULL, NULL) == 0 &&
		  fc_instance_start(c) == 0);
	caps = (struct fc_caps){ .uffd_wp = true, .vmstate_only = true };
	TAP_CHECK(fc_probe_caps(c, &caps) == 0 && !caps.uffd_wp && !caps.vmstate_only);
	TAP_CHECK(fc_uffd_wp(c, "/dev/null/x.sock") == -EREMOTEIO &&
		  strcmp(fc_client_last_error(c), "Invalid request method and/or path: PUT uffd.") == 0);
	TAP_CHECK(fc_pause(c) == 0);
	TAP_CHECK(fc_snapshot_create(c, FC_SNAPSHOT_VMSTATE_ONLY, "/dev/null/x", NULL, 0) ==
			  -EREMOTEIO &&
		  has(c, "unknown variant"));
	vmm_kill(&v);
}

/* A fresh VMM restores the Full snapshot from the shared file. */
static void test_load(const char *vmstate, const char *mem)
{
	_cleanup_(fc_client_freep) struct fc_client *c = NULL;
	struct vmm v;

	if (!TAP_CHECK(vmm_start("vmm-load", NULL, &v) == 0))
		return;
	TAP_CHECK(fc_client_new(v.sock, &c) == 0);
	TAP_CHECK(fc_snapshot_load(c, vmstate, mem, true, false, 30000) == 0);
	TAP_CHECK(state_of(c) == FC_STATE_PAUSED);
	TAP_CHECK(fc_resume(c) == 0 && state_of(c) == FC_STATE_RUNNING);
	vmm_kill(&v);
}

/* A listener this test opens and never accepts on: the call must time out. */
static void test_silent_socket(void)
{
	_cleanup_(fc_client_freep) struct fc_client *c = NULL;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	uint64_t t0, ms;
	int r;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/silent.sock", tmpd);
	if (!TAP_CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
		       listen(fd, 4) == 0))
		return;
	TAP_CHECK(fc_client_new(sa.sun_path, &c) == 0);
	fc_client_set_timeout(c, 250);
	t0 = now_usec();
	r = fc_pause(c);
	ms = (now_usec() - t0) / 1000;
	tap_ok(r == -ETIMEDOUT && ms >= 240 && ms < 2000, "silent listener: %s after %llu ms",
	       strerror(-r), (unsigned long long)ms);
	TAP_CHECK(has(c, "timed out after 250 ms waiting for PATCH /vm"));
}

/* A peer that cuts its answer short, then answers properly on a new connection. */
static void *half_server(void *p)
{
	int lfd = *(int *)p;
	static const char part[] = "HTTP/1.1 200 \r\nContent-Length: 10\r\n\r\nabc";
	static const char full[] = "HTTP/1.1 204 \r\nServer: Firecracker API\r\n\r\n";
	char buf[4096];

	for (int i = 0; i < 2; i++) {
		struct pollfd pfd = { .fd = lfd, .events = POLLIN };
		int fd = poll(&pfd, 1, 3000) > 0 ? accept4(lfd, NULL, NULL, SOCK_CLOEXEC) : -1;

		if (fd < 0)
			return NULL;
		if (read(fd, buf, sizeof(buf)) > 0) {
			const char *a = i == 0 ? part : full;
			if (write(fd, a, strlen(a)) < 0)
				tap_diag("half_server: write failed");
		}
		close(fd);
	}
	return NULL;
}

static void test_broken_answer(void)
{
	_cleanup_(fc_client_freep) struct fc_client *c = NULL;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	pthread_t t;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/half.sock", tmpd);
	if (!TAP_CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
		       listen(fd, 4) == 0))
		return;
	pthread_create(&t, NULL, half_server, &fd);
	TAP_CHECK(fc_client_new(sa.sun_path, &c) == 0);
	TAP_CHECK(fc_request(c, "GET", "/", NULL, 2000, NULL) == -ECONNRESET &&
		  has(c, "in the middle of its answer"));
	TAP_CHECK(fc_pause(c) == 0); /* the next call reconnects */
	pthread_join(t, NULL);
}

/* Scripted peers for the reconnect rules. SHUT_RD: answer the first request,
 * then refuse to read more on that connection (our next send fails with EPIPE
 * before one byte is delivered); answer the second connection. DROP: read one
 * request and close without answering, then count any further connection. */
enum peer_mode { PEER_SHUT_RD, PEER_DROP };

struct peer {
	int lfd;
	enum peer_mode mode;
	int conns, requests;
};

static bool peer_read_request(int fd, struct peer *p)
{
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof(buf));

	if (n > 0)
		p->requests++;
	return n > 0;
}

/* accept within ms, so that a failing client never hangs the test */
static int peer_accept(struct peer *p, int ms)
{
	struct pollfd pfd = { .fd = p->lfd, .events = POLLIN };
	int fd;

	if (poll(&pfd, 1, ms) <= 0)
		return -1;
	fd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd >= 0)
		p->conns++;
	return fd;
}

static void *peer_main(void *arg)
{
	static const char ok204[] = "HTTP/1.1 204 \r\nServer: Firecracker API\r\n\r\n";
	struct peer *p = arg;
	int fd1, fd2 = -1;

	fd1 = peer_accept(p, 3000);
	if (fd1 < 0)
		return NULL;
	if (p->mode == PEER_SHUT_RD) {
		/* Shut reading before answering: when the client has the answer,
		 * this connection already refuses its next request. */
		if (peer_read_request(fd1, p) && shutdown(fd1, SHUT_RD) == 0 &&
		    write(fd1, ok204, strlen(ok204)) < 0)
			tap_diag("peer: write failed");
		fd2 = peer_accept(p, 3000);
		if (fd2 >= 0 && peer_read_request(fd2, p) && write(fd2, ok204, strlen(ok204)) < 0)
			tap_diag("peer: write failed");
	} else {
		peer_read_request(fd1, p);
		fd1 = safe_close(fd1);
		fd2 = peer_accept(p, 500); /* a resend would come at once */
		if (fd2 >= 0)
			peer_read_request(fd2, p);
	}
	safe_close(fd1);
	safe_close(fd2);
	return NULL;
}

static void test_peer(enum peer_mode mode)
{
	_cleanup_(fc_client_freep) struct fc_client *c = NULL;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct peer p = { .mode = mode };
	pthread_t t;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/peer%d.sock", tmpd, mode);
	if (!TAP_CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
		       listen(fd, 4) == 0))
		return;
	p.lfd = fd;
	pthread_create(&t, NULL, peer_main, &p);
	TAP_CHECK(fc_client_new(sa.sun_path, &c) == 0);
	if (mode == PEER_SHUT_RD) {
		TAP_CHECK(fc_pause(c) == 0);
		/* The kept connection takes no more bytes: reconnect, send once. */
		TAP_CHECK(fc_resume(c) == 0);
		pthread_join(t, NULL);
		tap_ok(p.conns == 2 && p.requests == 2,
		       "EPIPE before any byte: one reconnect (%d connections, %d requests)",
		       p.conns, p.requests);
	} else {
		TAP_CHECK(fc_pause(c) == -ECONNRESET && has(c, "before answering"));
		pthread_join(t, NULL);
		tap_ok(p.conns == 1 && p.requests == 1,
		       "a delivered request is never sent again (%d connections, %d requests)",
		       p.conns, p.requests);
	}
}

/* A VMM that tries to forge log lines through its error texts: a fault_message
 * with a newline, a carriage return and an escape, then a non-JSON body that
 * the client quotes raw. The kept text must hold no control character. */
static void *forger_main(void *p)
{
	static const char *const answers[] = {
		"HTTP/1.1 400 \r\nContent-Type: application/json\r\nContent-Length: 56\r\n\r\n"
		"{\"fault_message\":\"no\\nforkfs: branch ok\\r\\u001b[2Kdone\"}",
		"HTTP/1.1 500 \r\nContent-Length: 12\r\n\r\n<a>\n\x1b[2K\rb\x7f\x01",
	};
	int lfd = *(int *)p, fd = -1;
	char buf[4096];

	for (size_t i = 0; i < ARRAY_SIZE(answers); i++) {
		struct pollfd pfd = { .fd = lfd, .events = POLLIN };

		if (fd < 0)
			fd = poll(&pfd, 1, 3000) > 0 ? accept4(lfd, NULL, NULL, SOCK_CLOEXEC) : -1;
		if (fd < 0 || read(fd, buf, sizeof(buf)) <= 0 ||
		    write(fd, answers[i], strlen(answers[i])) < 0)
			break;
	}
	safe_close(fd);
	return NULL;
}

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

static void test_forged_error(void)
{
	_cleanup_(fc_client_freep) struct fc_client *c = NULL;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	const char *e;
	pthread_t t;
	int r;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/forger.sock", tmpd);
	if (!TAP_CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
		       listen(fd, 4) == 0))
		return;
	pthread_create(&t, NULL, forger_main, &fd);
	TAP_CHECK(fc_client_new(sa.sun_path, &c) == 0);
	r = fc_pause(c);
	e = fc_client_last_error(c);
	tap_ok(r == -EREMOTEIO && printable(e) && strcmp(e, "no?forkfs: branch ok??[2Kdone") == 0,
	       "a fault_message's control characters are not kept (%d)", r);
	r = fc_resume(c);
	e = fc_client_last_error(c);
	tap_ok(r == -EREMOTEIO && printable(e) && strstr(e, "HTTP status 500: <a>??[2K?b??"),
	       "nor those of a raw error body (%d)", r);
	pthread_join(t, NULL);
}

static void test_no_vmm(void)
{
	_cleanup_(fc_client_freep) struct fc_client *c = NULL;
	char path[128], want[192];

	snprintf(path, sizeof(path), "%s/nobody.sock", tmpd);
	snprintf(want, sizeof(want), "connect %s: No such file or directory", path);
	TAP_CHECK(fc_client_new(path, &c) == 0);
	TAP_CHECK(fc_pause(c) == -ENOENT && strcmp(fc_client_last_error(c), want) == 0);
	TAP_CHECK(fc_client_new("/tmp/0123456789012345678901234567890123456789012345678901234567"
				"89012345678901234567890123456789012345678901234567890123456789",
				&c) == -ENAMETOOLONG);
}

int main(void)
{
	_cleanup_(fc_client_freep) struct fc_client *c = NULL;
	char vmstate[128], mem[128];
	struct vmm a;
	int fds;

	minivm = getenv("MINIVM");
	guest_img = getenv("GUEST_IMG");
	if (geteuid() != 0)
		tap_skip_all("needs root");
	tap_diag_guest_cpu();
	if (!minivm || access(minivm, X_OK) < 0 || !guest_img || access(guest_img, R_OK) < 0)
		tap_skip_all("needs $MINIVM and $GUEST_IMG (forkfs-minivm and its guest)");
	snprintf(tmpd, sizeof(tmpd), "/tmp/fc-client.XXXXXX");
	if (!mkdtemp(tmpd))
		tap_skip_all("mkdtemp failed");
	atexit(cleanup);
	signal(SIGALRM, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	alarm(60);
	/* libuv opens a process-wide pipe (its signal lock) with the first loop:
	 * count after one client has come and gone. */
	if (fc_client_new("/nonexistent", &c) == 0)
		c = fc_client_free(c);
	fds = count_fds();

	test_no_vmm();
	test_silent_socket();
	test_broken_answer();
	test_peer(PEER_SHUT_RD);
	test_peer(PEER_DROP);
	test_forged_error();
	if (!TAP_CHECK(vmm_start("vmm-a", NULL, &a) == 0) ||
	    !TAP_CHECK(fc_client_new(a.sock, &c) == 0))
		return tap_done();
	TAP_CHECK(strcmp(fc_client_socket(c), a.sock) == 0);
	test_lifecycle(c, vmstate, mem, sizeof(vmstate));
	test_uffd_wp(c);
	measure(c);
	test_stopped_vmm(c, &a);
	test_vmm_dies(c, &a);
	test_replaced_vmm();
	test_stock();
	test_load(vmstate, mem);
	c = fc_client_free(c);
	tap_ok(count_fds() == fds, "no fd left behind by the clients (%d before, %d after)", fds,
	       count_fds());
	return tap_done();
}
