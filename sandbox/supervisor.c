/* SPDX-License-Identifier: MIT
 * supervisor.c — VMM processes forkfs launches: spawn, output into the
 * sandbox log, exit notice, stop (SIGTERM, then SIGKILL after a timeout).
 *
 * Everything here runs on the loop thread. A VMM is launched by the spawner
 * process (spawner.c, forked before the seccomp filter was loaded, so the VMM
 * does not inherit it) in its own session (so a terminal's ^C does not hit it
 * and it survives forkfs dying, SPEC §5), stdin from /dev/null and
 * stdout/stderr on pipes that the loop reads line by line into the log.
 *
 * The spawner hands back a pidfd. Its readability says the process exited;
 * the spawner, which is the parent and reaps it, sends the wait status, and
 * the exit is handled once both have arrived (or after STATUS_WAIT_MS if the
 * spawner has gone). Signals go through the pidfd. The struct vmm_proc
 * outlives the process until its handles are closed; its owner (a sandbox,
 * through struct vmm_proc_owner) is told of the exit once and released when
 * the last handle is closed. Nothing here knows what a sandbox is.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define LOG_PREFIX ""
#include "common/log.h"
#include "common/util.h"
#include "sandbox/jail.h"
#include "sandbox/spawner.h"
#include "sandbox/supervisor.h"

#define STOP_TIMEOUT_MS 3000
#define LINE_MAX_BYTES 1024
#define UNMOUNT_WAIT_MS 10000
#define STATUS_WAIT_MS 1000	/* pidfd said "exited"; the spawner's wait status is due */
#define DRAIN_MS 1000		/* after the exit, for the pipes' EOF (see finish()) */

struct linebuf {
	char buf[LINE_MAX_BYTES];
	size_t len;
};

struct vmm_proc {
	uv_poll_t pidfd_poll;	/* readable once the process has exited */
	uv_pipe_t out, err;
	uv_timer_t timer;	/* SIGKILL after a stop timeout; the wait for the status;
				 * then the wait for the pipes' EOF */
	struct linebuf out_lb, err_lb;
	struct vmm_proc_owner owner;	/* released when the handles are closed */
	struct vmm_proc *next;	/* in the list of processes awaiting their exit notice */
	pid_t pid;
	int pidfd;
	int wstatus;
	unsigned open_handles;
	bool dead;		/* the pidfd said so */
	bool have_status;	/* the spawner reaped it and sent the wait status */
	bool exited;		/* the exit is handled: the sandbox has forgotten us */
	bool stop_requested;
};

/* The spawner (see spawner.c) and the processes it launched for us. */
static struct {
	int fd;
	pid_t pid;
	uv_poll_t poll;
	bool watching;
	struct vmm_proc *procs;
} spawner = { .fd = -1 };

/* A line about the process, into its owner's log. */
static void proc_log(struct vmm_proc *p, const char *fmt, ...) _printf_(2, 3);
static void proc_log(struct vmm_proc *p, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p->owner.log(p->owner.ctx, "forkfs", msg, (size_t)MIN(MAX(n, 0), (int)sizeof(msg) - 1));
}

bool vmm_proc_alive(struct vmm_proc *p)
{
	return p && !p->exited;
}

pid_t vmm_proc_pid(struct vmm_proc *p)
{
	return p->pid;
}

/* Signal through the pidfd: never a recycled pid. */
static void send_signal(struct vmm_proc *p, int sig)
{
	if (syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0) < 0 && errno != ESRCH)
		proc_log(p, "cannot signal VMM pid %d: %s", (int)p->pid, strerror(errno));
}

static void on_handle_closed(uv_handle_t *h)
{
	struct vmm_proc *p = h->data;

	if (--p->open_handles > 0)
		return;
	safe_close(p->pidfd);	/* a uv_poll_t does not own its fd */
	p->owner.release(p->owner.ctx);
	free(p);
}

static void close_handle(uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, on_handle_closed);
}

/* VMM output: one log line per output line. */
static void emit_line(struct vmm_proc *p, const char *s, size_t n)
{
	p->owner.log(p->owner.ctx, "vmm", s, n);
}

static void linebuf_feed(struct vmm_proc *p, struct linebuf *lb, const char *data, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (data[i] == '\n' || lb->len == sizeof(lb->buf)) {
			emit_line(p, lb->buf, lb->len);
			lb->len = 0;
			if (data[i] == '\n')
				continue;
		}
		lb->buf[lb->len++] = data[i];
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static char chunk[16384];	/* the loop reads one pipe at a time */

	buf->base = chunk;
	buf->len = sizeof(chunk);
}

static bool pipes_closed(struct vmm_proc *p)
{
	return uv_is_closing((uv_handle_t *)&p->out) && uv_is_closing((uv_handle_t *)&p->err);
}

/* Flush a last partial line and stop reading the pipe. */
static void end_pipe(struct vmm_proc *p, uv_pipe_t *pipe, struct linebuf *lb)
{
	if (lb->len) {
		emit_line(p, lb->buf, lb->len);
		lb->len = 0;
	}
	close_handle((uv_handle_t *)pipe);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct vmm_proc *p = s->data;
	struct linebuf *lb = s == (uv_stream_t *)&p->out ? &p->out_lb : &p->err_lb;

	if (n > 0) {
		linebuf_feed(p, lb, buf->base, (size_t)n);
		return;
	}
	if (n < 0) {	/* EOF or error */
		end_pipe(p, (uv_pipe_t *)s, lb);
		if (p->exited && pipes_closed(p))
			close_handle((uv_handle_t *)&p->timer);
	}
}

/* Read what is already in an open pipe (the loop may have been busy when the
 * drain timer fired), then close it. */
static void read_rest_and_close(struct vmm_proc *p, uv_pipe_t *pipe, struct linebuf *lb)
{
	char buf[4096];
	uv_os_fd_t fd;
	ssize_t n;

	if (uv_is_closing((uv_handle_t *)pipe))
		return;
	/* Non-blocking (libuv's); at most 64 KiB, should a child keep writing. */
	if (uv_fileno((uv_handle_t *)pipe, &fd) == 0)
		for (int i = 0; i < 16 && (n = read(fd, buf, sizeof(buf))) > 0; i++)
			linebuf_feed(p, lb, buf, (size_t)n);
	end_pipe(p, pipe, lb);
}

static void on_drain_timer(uv_timer_t *t)
{
	struct vmm_proc *p = t->data;
	bool held = !pipes_closed(p);

	read_rest_and_close(p, &p->out, &p->out_lb);
	read_rest_and_close(p, &p->err, &p->err_lb);
	if (held)
		proc_log(p, "VMM pid %d has exited but its output is still held open (by a process"
		       " it started?): no longer reading it", (int)p->pid);
	close_handle((uv_handle_t *)&p->timer);
}

/* The process is gone and its wait status is known (or will never be): tell
 * the sandbox, close the pidfd and the timer; the pipes close at their EOF. */
static void finish(struct vmm_proc *p)
{
	bool clean;

	if (p->exited)
		return;
	p->exited = true;
	for (struct vmm_proc **pp = &spawner.procs; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	uv_timer_stop(&p->timer);
	if (!p->have_status) {
		clean = p->stop_requested;
		proc_log(p, "VMM pid %d exited (status unknown: the spawner is gone)%s", (int)p->pid,
		       p->stop_requested ? " (stop)" : "");
	} else if (WIFSIGNALED(p->wstatus)) {
		clean = p->stop_requested;
		proc_log(p, "VMM pid %d exited on signal %d%s", (int)p->pid, WTERMSIG(p->wstatus),
		       p->stop_requested ? " (stop)" : "");
	} else {
		clean = p->stop_requested || WEXITSTATUS(p->wstatus) == 0;
		proc_log(p, "VMM pid %d exited with status %d%s", (int)p->pid,
		       WEXITSTATUS(p->wstatus), p->stop_requested ? " (stop)" : "");
	}
	/* The pipes stay open until EOF so that the VMM's last words reach the
	 * log, but not for ever: a process the VMM started (a wrapper script's
	 * child) may hold them, and forkfs would never finish its unmount. */
	close_handle((uv_handle_t *)&p->pidfd_poll);
	if (pipes_closed(p))
		close_handle((uv_handle_t *)&p->timer);
	else
		uv_timer_start(&p->timer, on_drain_timer, DRAIN_MS, 0);

	p->owner.exited(p->owner.ctx, p, clean, p->stop_requested);
}

static void on_finish_timer(uv_timer_t *t)
{
	finish(t->data);
}

/* The spawner reaped pid. Only data changes here (this may run inside
 * vmm_proc_spawn); finish() runs from the timer on the next loop turn. */
static void on_exit_notice(pid_t pid, int wstatus, void *userdata)
{
	for (struct vmm_proc *p = spawner.procs; p; p = p->next) {
		if (p->pid != pid)
			continue;
		p->wstatus = wstatus;
		p->have_status = true;
		if (p->dead)
			uv_timer_start(&p->timer, on_finish_timer, 0, 0);
		return;
	}
}

/* The pidfd is readable: the process has exited. The spawner's notice with
 * the wait status follows within microseconds; wait a little for it. */
static void on_pidfd(uv_poll_t *h, int status, int events)
{
	struct vmm_proc *p = h->data;

	if (p->dead)
		return;
	p->dead = true;
	uv_poll_stop(h);
	uv_timer_stop(&p->timer);
	if (p->have_status || spawner.fd < 0)
		finish(p);
	else
		uv_timer_start(&p->timer, on_finish_timer, STATUS_WAIT_MS, 0);
}

static void on_kill_timer(uv_timer_t *t)
{
	struct vmm_proc *p = t->data;

	if (p->dead)
		return;
	proc_log(p, "VMM pid %d ignored SIGTERM for %d ms: SIGKILL", (int)p->pid,
	       STOP_TIMEOUT_MS);
	send_signal(p, SIGKILL);
}

void vmm_proc_terminate(struct vmm_proc *p)
{
	if (!p || p->exited)
		return;
	p->stop_requested = true;
	if (p->dead)
		return;
	send_signal(p, SIGTERM);
	uv_timer_start(&p->timer, on_kill_timer, STOP_TIMEOUT_MS, 0);
}

/* Make a pipe for one of the VMM's output streams: the read end goes into
 * the libuv pipe, the write end is returned for the spawner. */
static int output_pipe(uv_pipe_t *pipe, int *ret_write)
{
	int fds[2], r;

	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	r = uv_pipe_open(pipe, fds[0]);
	if (r < 0) {
		close(fds[0]);
		close(fds[1]);
		return r;
	}
	*ret_write = fds[1];
	return 0;
}

int vmm_proc_spawn(uv_loop_t *loop, const struct jail_spec *jail, const int *jail_fds,
		   char *const argv[], const struct vmm_proc_owner *owner, struct vmm_proc **ret,
		   struct error *err)
{
	int fds[2 + JAIL_MAX_FILES + 1], out_w = -1, err_w = -1, r;
	char what[160] = "";
	struct vmm_proc *p;

	p = calloc(1, sizeof(*p));
	if (!p) {
		owner->release(owner->ctx);	/* as promised: once, whatever happens */
		return error_set(err, -EIO, "cannot launch VMM %s: out of memory", argv[0]);
	}
	p->owner = *owner;
	p->pidfd = -1;
	uv_pipe_init(loop, &p->out, 0);
	uv_pipe_init(loop, &p->err, 0);
	uv_timer_init(loop, &p->timer);
	p->out.data = p->err.data = p->timer.data = p->pidfd_poll.data = p;
	p->open_handles = 3;

	r = output_pipe(&p->out, &out_w);
	if (r >= 0)
		r = output_pipe(&p->err, &err_w);
	if (r >= 0) {
		fds[0] = out_w;
		fds[1] = err_w;
		for (unsigned i = 0; jail && i < jail_nfds(jail); i++)
			fds[2 + i] = jail_fds[i];
		r = spawner_launch(spawner.fd, jail, argv, fds, on_exit_notice, NULL, &p->pid,
				   &p->pidfd, what, sizeof(what));
	}
	safe_close(out_w);
	safe_close(err_w);
	if (r >= 0) {
		r = uv_poll_init(loop, &p->pidfd_poll, p->pidfd);
		if (r < 0) {
			proc_log(p, "cannot watch VMM pid %d: %s; killing it", (int)p->pid,
				 uv_strerror(r));
			syscall(SYS_pidfd_send_signal, p->pidfd, SIGKILL, NULL, 0);
			p->pidfd = safe_close(p->pidfd);
		}
	}
	if (r < 0) {
		if (r == -ECONNRESET)
			error_set(err, -EIO, "cannot launch VMM %s: the spawner process is gone",
				  argv[0]);
		else if (what[0])
			error_set(err, r == -ENOENT ? -ENOENT : -EIO,
				  "cannot launch VMM %s: jail: %s", argv[0], what);
		else
			error_set(err, r == -ENOENT ? -ENOENT : -EIO, "cannot launch VMM %s: %s",
				  argv[0], strerror(-r));
		p->exited = true;
		close_handle((uv_handle_t *)&p->timer);
		close_handle((uv_handle_t *)&p->out);
		close_handle((uv_handle_t *)&p->err);
		return r == -ENOENT ? -ENOENT : -EIO;
	}
	p->open_handles = 4;	/* the pidfd's poll handle owns the pidfd from here */
	if (what[0])
		proc_log(p, "jail: %s", what);
	p->next = spawner.procs;
	spawner.procs = p;
	uv_poll_start(&p->pidfd_poll, UV_READABLE, on_pidfd);
	uv_read_start((uv_stream_t *)&p->out, on_alloc, on_read);
	uv_read_start((uv_stream_t *)&p->err, on_alloc, on_read);
	*ret = p;
	return 0;
}

/* ---- the spawner's lifetime ---- */

int supervisor_fork_spawner(void)
{
	return spawner_fork(&spawner.fd, &spawner.pid);
}

static void end_spawner(void)
{
	int st;

	spawner.fd = safe_close(spawner.fd);
	if (spawner.pid > 0) {
		/* It exits at EOF; daemonized forkfs may not be its parent (ECHILD). */
		while (waitpid(spawner.pid, &st, 0) < 0 && errno == EINTR)
			;
		spawner.pid = 0;
	}
}

static void on_spawner_readable(uv_poll_t *h, int status, int events)
{
	int r = status < 0 ? -EIO : spawner_dispatch(spawner.fd, on_exit_notice, NULL);

	if (r >= 0)
		return;
	log_error_errno(r == -ECONNRESET ? 0 : r, "the VMM spawner process is gone%s",
			r == -ECONNRESET ? "" : " (socket error)");
	supervisor_unwatch();
	end_spawner();
	/* Nobody will send the exit status of the processes still waiting for it. */
	for (struct vmm_proc *p = spawner.procs; p; p = p->next)
		if (p->dead)
			uv_timer_start(&p->timer, on_finish_timer, 0, 0);
}

int supervisor_watch(uv_loop_t *loop)
{
	int r = uv_poll_init(loop, &spawner.poll, spawner.fd);

	if (r < 0)
		return log_error_errno(r, "cannot watch the spawner");
	spawner.watching = true;
	uv_poll_start(&spawner.poll, UV_READABLE, on_spawner_readable);
	return 0;
}

void supervisor_unwatch(void)
{
	if (!spawner.watching)
		return;
	spawner.watching = false;
	uv_poll_stop(&spawner.poll);
	uv_close((uv_handle_t *)&spawner.poll, NULL);
}

void supervisor_end_spawner(void)
{
	end_spawner();
}

int supervisor_unmount(const char *mountpoint)
{
	char *argv[] = { (char *)"fusermount3", (char *)"-u", (char *)"-q", (char *)"-z",
			 (char *)"--", (char *)mountpoint, NULL };
	struct pollfd pfd = { .events = POLLIN };
	pid_t pid;
	int r;

	r = spawner_launch(spawner.fd, NULL, argv, (const int[]){ STDERR_FILENO, STDERR_FILENO },
			   on_exit_notice, NULL, &pid, &pfd.fd, NULL, 0);
	if (r < 0)
		return log_error_errno(r, "cannot run fusermount3 -u %s", mountpoint);
	do
		r = poll(&pfd, 1, UNMOUNT_WAIT_MS);
	while (r < 0 && errno == EINTR);
	close(pfd.fd);
	if (r == 0)
		return log_error_errno(ETIMEDOUT, "fusermount3 -u %s", mountpoint);
	return 0;
}
