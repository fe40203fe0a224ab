/* SPDX-License-Identifier: MIT
 * spawner.c — the process that launches VMMs for forkfs, and the daemon's side
 * of its protocol.
 *
 * forkfs confines itself with seccomp once it is set up, and children inherit
 * seccomp filters. So before the filter is loaded (and before any thread
 * exists, so fork() is safe) forkfs forks this small helper, which keeps no
 * fd but its end of a SOCK_SEQPACKET socketpair and serves two messages:
 *
 *   daemon -> spawner  launch: a struct jail_spec (flags 0: no jail), then
 *                      the argv strings, each NUL-terminated, one after the
 *                      other; SCM_RIGHTS carries the stdout and stderr fds,
 *                      then the jail's fds (jail.h).
 *   spawner -> daemon  struct spawn_msg STARTED: pid, or -errno in value (the
 *                      exec's errno if exec failed, or a jail step's, named
 *                      in what); SCM_RIGHTS carries a pidfd of the child on
 *                      success.
 *                      struct spawn_msg EXITED: pid and wait status, sent when
 *                      the spawner reaps a child (it is their parent, so it
 *                      reaps them all: no zombies are left).
 *
 * A pidfd is opened by the spawner before it could ever reap that child, so
 * it always names the right process; the daemon polls it for the exit and
 * signals through it. The spawner exits when the daemon's end is closed; its
 * children, the VMMs, keep running (SPEC §5) and are re-parented.
 *
 * A jailed VMM is cloned into new PID, IPC, UTS (and network) namespaces and
 * its cgroup, made here and removed when the child is reaped; the child then
 * enters the jail (jail.c) and execs the VMM from an fd opened before.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define LOG_PREFIX "spawner: "
#include "common/error.h"
#include "common/fdpass.h"
#include "common/log.h"
#include "common/util.h"
#include "sandbox/cgroup.h"
#include "sandbox/jail.h"
#include "sandbox/spawner.h"

#define SPAWN_REQ_MAX 8192	/* bytes of argv strings in one request */
#define SPAWN_ARGS_MAX 64
#define SPAWN_ANSWER_MS 10000	/* fork+exec of one VMM, even on a loaded machine */
#define SPAWNER_FD 3		/* the spawner's socket, once it has tidied its fds */

enum { SPAWN_MSG_STARTED = 1, SPAWN_MSG_EXITED = 2 };

struct spawn_msg {
	int32_t type;
	int32_t pid;
	int32_t value;	/* STARTED: 0 or -errno; EXITED: wait status */
	char what[160];	/* STARTED: the step that failed, a warning on success, or "" */
};

/* What a child that could not exec writes to its CLOEXEC pipe. */
struct exec_failure {
	int e;
	char what[160];
};

/* The cgroups of the jailed children, removed when each is reaped. */
#define CGROUPS_MAX 1024
static struct {
	pid_t pid;
	char name[64];
} cgroups[CGROUPS_MAX];

/* ---- the spawner process ---- */

static void reset_signals(void)
{
	struct sigaction sa = { .sa_handler = SIG_DFL };
	sigset_t none;

	for (int s = 1; s < NSIG; s++)
		sigaction(s, &sa, NULL);	/* fails harmlessly for SIGKILL, SIGSTOP, 32, 33 */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Mark (or close) every fd from "from" up. */
static void fds_from(int from, bool close_them)
{
	long max;

	if (close_range(from, ~0U, close_them ? 0 : CLOSE_RANGE_CLOEXEC) == 0)
		return;
	max = sysconf(_SC_OPEN_MAX);
	for (int fd = from; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
		if (close_them)
			close(fd);
		else
			fcntl(fd, F_SETFD, FD_CLOEXEC);
}

static int open_exe(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

/* A script cannot run in a jail: its interpreter and the host paths it uses
 * are not there (and execveat of a CLOEXEC fd fails for it with ENOENT). */
static bool is_script(int fd)
{
	char magic[2];

	return pread(fd, magic, sizeof(magic), 0) == 2 && magic[0] == '#' && magic[1] == '!';
}

/* The child: set up its fds, enter the jail if there is one, exec. Only
 * returns on failure, with the errno and step in *f. */
static void child(const struct jail_spec *jail, bool cg, struct jail_trees *trees,
		  char *const argv[], const int *fds, struct exec_failure *f)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC), exe = -1;
	const int *jail_fds = fds + 2;
	struct error err = ERROR_INIT;

	setsid();
	reset_signals();
	if (null < 0) {
		f->e = errno;
		return;
	}
	if (jail->flags & JAIL_ON) {
		int r = cg ? cgroup_enter(jail->cgroup) : 0;

		if (r < 0) {
			f->e = -r;
			snprintf(f->what, sizeof(f->what), "entering cgroup %s: %s", jail->cgroup,
				 strerror(-r));
			return;
		}
		exe = open_exe(argv[0]);
		if (exe < 0) {
			f->e = -exe;
			return;
		}
		if (is_script(exe)) {
			f->e = ENOEXEC;
			snprintf(f->what, sizeof(f->what), "%s is a script, which cannot run in a "
				 "jail (give the VMM's options with -o vmm_args, or -o jail=off)",
				 argv[0]);
			return;
		}
		r = jail_enter(jail, trees, &err);
		if (r < 0) {
			f->e = -r;
			snprintf(f->what, sizeof(f->what), "%s", error_msg(&err));
			return;
		}
	}
	if (dup2(null, 0) < 0 || dup2(fds[0], 1) < 0 || dup2(fds[1], 2) < 0 ||
	    (jail->inherit >= 0 && dup2(jail_fds[0], JAIL_INHERIT_FD) < 0)) {
		f->e = errno;
		return;
	}
	fds_from(jail->inherit >= 0 ? JAIL_INHERIT_FD + 1 : 3, false);	/* the pipe stays open until exec */
	if (exe >= 0)
		syscall(SYS_execveat, exe, "", argv, environ, AT_EMPTY_PATH);
	else
		execvp(argv[0], argv);
	f->e = errno;
}

static pid_t clone_child(const struct jail_spec *jail)
{
	struct clone_args a = { .exit_signal = SIGCHLD };

	if (!(jail->flags & JAIL_ON))
		return fork();
	a.flags = CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS |
		  (jail->flags & JAIL_HOST_NET ? 0 : CLONE_NEWNET);
	return (pid_t)syscall(SYS_clone3, &a, sizeof(a));
}

static void cgroup_track(pid_t pid, const char *name)
{
	for (size_t i = 0; i < CGROUPS_MAX; i++)
		if (cgroups[i].pid == 0) {
			cgroups[i].pid = pid;
			snprintf(cgroups[i].name, sizeof(cgroups[i].name), "%s", name);
			return;
		}
	/* Full: the group stays behind, empty, until the daemon's cgroup goes. */
}

static void cgroup_reaped(pid_t pid)
{
	for (size_t i = 0; i < CGROUPS_MAX; i++)
		if (cgroups[i].pid == pid) {
			cgroup_remove(cgroups[i].name);
			cgroups[i].pid = 0;
			return;
		}
}

/* Fork (or clone into the jail's namespaces) and exec; the child's exec
 * errno comes back through a CLOEXEC pipe (no data = exec succeeded), as
 * libuv's process.c does. */
static int launch(const struct jail_spec *jail, char *const argv[], const int *fds,
		  pid_t *ret_pid, int *ret_pidfd, char *what, size_t what_len)
{
	struct exec_failure f = { 0 };
	bool cg = (jail->flags & JAIL_ON) && jail->cgroup[0];
	struct jail_trees trees;
	int ep[2], e = 0, pidfd;
	pid_t pid;
	ssize_t n;

	if (jail->flags & JAIL_ON) {
		struct error err = ERROR_INIT;
		int r = jail_trees_make(jail, fds + 2, &trees, &err);

		if (r < 0) {
			jail_trees_close(&trees);
			snprintf(what, what_len, "%s", error_msg(&err));
			return r;
		}
	}
	if (cg) {
		struct error err = ERROR_INIT;
		int r = cgroup_create(jail->cgroup, jail->mem_max, jail->pids_max, jail->cpu_weight,
				      &err);

		/* Not fatal: the rest of the jail holds; the daemon logs why. */
		if (r < 0) {
			snprintf(what, what_len, "without a cgroup: %s", error_msg(&err));
			cg = false;
		}
	}
	if (pipe2(ep, O_CLOEXEC) < 0) {
		e = errno;
		goto fail;
	}
	pid = clone_child(jail);
	if (pid < 0) {
		e = errno;
		if (jail->flags & JAIL_ON)
			snprintf(what, what_len, "clone3 into new namespaces: %s", strerror(e));
		close(ep[0]);
		close(ep[1]);
		goto fail;
	}
	if (pid == 0) {
		child(jail, cg, &trees, argv, fds, &f);
		if (!f.e)
			f.e = EIO;
		if (write(ep[1], &f, sizeof(f)) < 0) {
			/* the spawner sees EOF and takes it for success; nothing better to do */
		}
		_exit(127);
	}
	close(ep[1]);
	if (jail->flags & JAIL_ON)
		jail_trees_close(&trees);
	do
		n = read(ep[0], &f, sizeof(f));
	while (n < 0 && errno == EINTR);
	close(ep[0]);
	if (n == sizeof(f)) {
		waitpid(pid, NULL, 0);
		snprintf(what, what_len, "%s", f.what);
		e = f.e;
		goto fail;
	}
	/* Not reaped yet (SIGCHLD waits in the signalfd), so the pid is the child's. */
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		e = errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		goto fail;
	}
	if (cg)
		cgroup_track(pid, jail->cgroup);
	*ret_pid = pid;
	*ret_pidfd = pidfd;
	return 0;
fail:
	if (jail->flags & JAIL_ON)
		jail_trees_close(&trees);
	if (cg)
		cgroup_remove(jail->cgroup);
	return -(e ? e : EIO);
}

struct spawn_req {
	struct jail_spec jail;
	char argv[SPAWN_REQ_MAX];
};

/* One launch request. Returns 1 to go on, 0 at EOF, -errno to give up. */
static int serve_request(int sock)
{
	static struct spawn_req req;
	char *argv[SPAWN_ARGS_MAX + 1];
	struct spawn_msg m = { .type = SPAWN_MSG_STARTED };
	int fds[FDPASS_MAX_FDS], pidfd = -1;
	size_t argc = 0, nfds, len;
	ssize_t n;

	n = fdpass_recv(sock, &req, sizeof(req), fds, &nfds, FDPASS_MAX_FDS, 0);
	if (n == 0)
		return 0;
	if (n == -EAGAIN)
		return 1;
	if (n < 0 && n != -EMSGSIZE)
		return (int)n;
	len = n > 0 ? (size_t)n - MIN((size_t)n, sizeof(req.jail)) : 0;
	if (n < 0)
		m.value = -E2BIG;
	else if (len == 0 || req.argv[len - 1] != '\0' || req.jail.nfiles > JAIL_MAX_FILES ||
		 req.jail.inherit < -1 || req.jail.inherit > 0 ||
		 nfds != 2 + jail_nfds(&req.jail))
		m.value = -EINVAL;
	for (char *s = req.argv; m.value == 0 && s < req.argv + len; s += strlen(s) + 1) {
		if (argc == SPAWN_ARGS_MAX)
			m.value = -E2BIG;
		else
			argv[argc++] = s;
	}
	argv[argc] = NULL;
	if (m.value == 0) {
		req.jail.root[sizeof(req.jail.root) - 1] = '\0';
		req.jail.cgroup[sizeof(req.jail.cgroup) - 1] = '\0';
		for (uint32_t i = 0; i < req.jail.nfiles; i++)
			req.jail.files[i].name[sizeof(req.jail.files[i].name) - 1] = '\0';
		m.value = launch(&req.jail, argv, fds, &m.pid, &pidfd, m.what, sizeof(m.what));
	}
	for (size_t i = 0; i < nfds; i++)
		safe_close(fds[i]);
	n = fdpass_send(sock, &m, sizeof(m), &pidfd, pidfd >= 0 ? 1 : 0);
	safe_close(pidfd);
	return n < 0 ? (int)n : 1;
}

/* Reap every child that has exited and tell the daemon. */
static void reap(int sock)
{
	struct spawn_msg m = { .type = SPAWN_MSG_EXITED };
	int st;
	pid_t pid;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		cgroup_reaped(pid);
		m.pid = pid;
		m.value = st;
		fdpass_send(sock, &m, sizeof(m), NULL, 0);	/* daemon gone: EOF ends us */
	}
}

static _noreturn_ void spawner_main(int sock)
{
	struct signalfd_siginfo si;
	sigset_t chld;
	int sfd;

	prctl(PR_SET_NAME, "forkfs-spawner");
	setsid();	/* a terminal's ^C is for the daemon, which stops the VMMs */
	reset_signals();
	signal(SIGPIPE, SIG_IGN);
	if (sock != SPAWNER_FD) {
		if (dup3(sock, SPAWNER_FD, O_CLOEXEC) < 0)
			_exit(1);
		sock = SPAWNER_FD;
	}
	fds_from(SPAWNER_FD + 1, true);	/* /dev/fuse, the store, the log fds ... */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		log_error_errno(errno, "signalfd");
		_exit(1);
	}
	for (;;) {
		struct pollfd p[2] = { { .fd = sock, .events = POLLIN }, { .fd = sfd, .events = POLLIN } };
		int r;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error_errno(errno, "poll");
			break;
		}
		if (p[1].revents) {
			while (read(sfd, &si, sizeof(si)) > 0)
				;
			reap(sock);
		}
		if (p[0].revents & POLLIN) {
			r = serve_request(sock);
			if (r <= 0) {
				if (r < 0)
					log_error_errno(r, "socket");
				break;
			}
		} else if (p[0].revents & (POLLHUP | POLLERR)) {
			break;
		}
	}
	_exit(0);
}

int spawner_fork(int *ret_fd, pid_t *ret_pid)
{
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return log_error_errno(errno, "socketpair");
	pid = fork();
	if (pid < 0) {
		int r = log_error_errno(errno, "fork");

		close(sv[0]);
		close(sv[1]);
		return r;
	}
	if (pid == 0) {
		close(sv[0]);
		spawner_main(sv[1]);
	}
	close(sv[1]);
	*ret_fd = sv[0];
	*ret_pid = pid;
	return 0;
}

/* ---- the daemon's side ---- */

/* One message from the spawner. Returns 1 for a message, 0 at EOF, -errno. */
static int read_msg(int fd, struct spawn_msg *m, int *pidfd)
{
	int fds[2];
	size_t nfds;
	ssize_t n = fdpass_recv(fd, m, sizeof(*m), fds, &nfds, 2, MSG_DONTWAIT);

	safe_close(fds[1]);
	*pidfd = fds[0];
	if (n < 0)
		return (int)n;
	if (n == 0)
		return 0;
	if (n != sizeof(*m) || (m->type != SPAWN_MSG_STARTED && m->type != SPAWN_MSG_EXITED)) {
		*pidfd = safe_close(*pidfd);
		return -EBADMSG;
	}
	return 1;
}

/* Answers arrive in request order. A launch that gave up waiting leaves its
 * answer in flight: the next STARTED is that one, whose VMM nobody
 * supervises, so it is killed rather than taken for the next launch's. */
static unsigned stale_answers;

static bool drop_stale_answer(const struct spawn_msg *m, int pidfd)
{
	if (m->type != SPAWN_MSG_STARTED || stale_answers == 0)
		return false;
	stale_answers--;
	if (pidfd >= 0) {
		(void)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
		log_warning("killed VMM pid %d: it started after its launch had timed out",
			    (int)m->pid);
	}
	safe_close(pidfd);
	return true;
}

int spawner_dispatch(int fd, spawner_exit_fn on_exit, void *userdata)
{
	for (;;) {
		struct spawn_msg m;
		int pidfd, r = read_msg(fd, &m, &pidfd);

		if (r == -EAGAIN)
			return 0;
		if (r == 0)
			return -ECONNRESET;
		if (r < 0)
			return r;
		if (m.type == SPAWN_MSG_EXITED)
			on_exit(m.pid, m.value, userdata);
		else if (!drop_stale_answer(&m, pidfd))
			safe_close(pidfd);	/* nobody waits for it: cannot happen */
	}
}

int spawner_launch(int fd, const struct jail_spec *jail, char *const argv[], const int *fds,
		   spawner_exit_fn on_exit, void *userdata, pid_t *ret_pid, int *ret_pidfd,
		   char *what, size_t what_len)
{
	static const struct jail_spec no_jail = { .inherit = -1 };
	uint64_t deadline = now_usec() + SPAWN_ANSWER_MS * USEC_PER_MSEC;
	struct spawn_req *req;
	size_t len = 0;
	ssize_t n;

	if (what_len)
		what[0] = '\0';
	if (fd < 0)
		return -ECONNRESET;
	jail = jail ?: &no_jail;
	req = malloc(sizeof(*req));
	if (!req)
		return -ENOMEM;
	req->jail = *jail;
	for (size_t i = 0; argv[i]; i++) {
		size_t l = strlen(argv[i]) + 1;

		if (i == SPAWN_ARGS_MAX || len + l > sizeof(req->argv)) {
			free(req);
			return -E2BIG;
		}
		memcpy(req->argv + len, argv[i], l);
		len += l;
	}
	n = fdpass_send(fd, req, sizeof(req->jail) + len, fds, 2 + jail_nfds(jail));
	free(req);
	if (n < 0)
		return n == -EPIPE ? -ECONNRESET : (int)n;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t now = now_usec();
		struct spawn_msg m;
		int pidfd, r;

		if (now >= deadline) {
			stale_answers++;
			return -ETIMEDOUT;
		}
		r = poll(&p, 1, (int)((deadline - now) / USEC_PER_MSEC) + 1);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r <= 0)
			continue;
		r = read_msg(fd, &m, &pidfd);
		if (r == -EAGAIN)
			continue;
		if (r == 0)
			return -ECONNRESET;
		if (r < 0)
			return r;
		if (m.type == SPAWN_MSG_EXITED) {
			on_exit(m.pid, m.value, userdata);
			continue;
		}
		if (drop_stale_answer(&m, pidfd))
			continue;
		if (m.value < 0 || m.pid <= 0 || pidfd < 0) {
			safe_close(pidfd);
			m.what[sizeof(m.what) - 1] = '\0';
			if (what_len)
				snprintf(what, what_len, "%s", m.what);
			return m.value < 0 ? m.value : -EBADMSG;
		}
		m.what[sizeof(m.what) - 1] = '\0';
		if (what_len)
			snprintf(what, what_len, "%s", m.what);	/* a warning, or "" */
		*ret_pid = m.pid;
		*ret_pidfd = pidfd;
		return 0;
	}
}
