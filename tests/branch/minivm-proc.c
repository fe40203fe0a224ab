/* SPDX-License-Identifier: MIT
 * minivm-proc.c — see minivm-proc.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common/util.h"
#include "fc/fc.h"
#include "tests/branch/minivm-proc.h"
#include "tests/tap.h"

static bool can_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

int minivm_spawn(const char *dir, const char *name, const char *const *extra,
		 struct minivm_proc *ret)
{
	const char *minivm = getenv("MINIVM");
	const char *argv[32];
	uint64_t end;
	int n = 0, fd;

	if (!minivm)
		return -ENOENT;
	snprintf(ret->sock, sizeof(ret->sock), "%s/%s.sock", dir, name);
	snprintf(ret->out, sizeof(ret->out), "%s/%s.out", dir, name);
	unlink(ret->sock);
	argv[n++] = minivm;
	argv[n++] = "--api-sock";
	argv[n++] = ret->sock;
	argv[n++] = "--id";
	argv[n++] = name;
	while (extra && *extra && n < 30)
		argv[n++] = *extra++;
	argv[n] = NULL;
	fd = open(ret->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	ret->pid = fork();
	if (ret->pid < 0) {
		close(fd);
		return -errno;
	}
	if (ret->pid == 0) {
		/* A test that dies (a timeout, a crash) must not leave guests
		 * spinning on the machine's two cores. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(minivm, (char *const *)argv);
		_exit(127);
	}
	close(fd);
	end = now_usec() + 5 * USEC_PER_SEC;
	/* The socket file appears at bind(), before listen(): wait for a connect. */
	while (!can_connect(ret->sock)) {
		if (now_usec() > end || waitpid(ret->pid, NULL, WNOHANG) == ret->pid)
			return -ETIMEDOUT;
		usleep(5000);
	}
	return 0;
}

int minivm_boot(struct minivm_proc *p, unsigned vcpus, unsigned mem_mib)
{
	struct fc_machine_config mc = { .vcpu_count = vcpus, .mem_size_mib = mem_mib };
	struct fc_client *c;
	int r;

	r = fc_client_new(p->sock, &c);
	if (r < 0)
		return r;
	r = fc_put_machine_config(c, &mc);
	if (r == 0)
		r = fc_put_boot_source(c, getenv("GUEST_IMG"), NULL, NULL);
	if (r == 0)
		r = fc_instance_start(c);
	if (r < 0)
		tap_diag("boot %s: %s", p->sock, fc_client_last_error(c));
	fc_client_free(c);
	return r;
}

int minivm_count_lines(const struct minivm_proc *p, const char *needle)
{
	char line[1024];
	FILE *f = fopen(p->out, "re");
	int n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, needle))
			n++;
	fclose(f);
	return n;
}

int minivm_wait_lines(const struct minivm_proc *p, const char *needle, int count, int timeout_ms)
{
	uint64_t end = now_usec() + (uint64_t)timeout_ms * 1000;

	while (minivm_count_lines(p, needle) < count) {
		if (now_usec() > end)
			return -ETIMEDOUT;
		usleep(20000);
	}
	return 0;
}

void minivm_kill(struct minivm_proc *p)
{
	if (p->pid > 0) {
		kill(p->pid, SIGKILL);
		waitpid(p->pid, NULL, 0);
		p->pid = 0;
	}
	unlink(p->sock);
}

void minivm_dump(const struct minivm_proc *p)
{
	char line[1024];
	FILE *f = fopen(p->out, "re");
	int n = 0;

	if (!f)
		return;
	while (fgets(line, sizeof(line), f) && n++ < 40) {
		line[strcspn(line, "\n")] = 0;
		tap_diag("  %s: %s", p->out, line);
	}
	fclose(f);
}
