/* SPDX-License-Identifier: MIT
 * supervisor.c — VMM processes forkfs launches: spawn, output into the
 * sandbox log, exit notice, stop (SIGTERM, then SIGKILL after a timeout).
 *
 * Everything here runs on the loop thread. A VMM is spawned with libuv in its
 * own session (so a terminal's ^C does not hit it and it survives forkfs
 * dying, SPEC §5), stdin from /dev/null and stdout/stderr on pipes that the
 * loop reads line by line into the log. The struct vmm_proc outlives the
 * process until its three handles are closed; the sandbox forgets it at exit.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_PREFIX ""
#include "common/log.h"
#include "fusefs/forkfs.h"

#define STOP_TIMEOUT_MS 3000
#define LINE_MAX_BYTES 1024

struct linebuf {
	char buf[LINE_MAX_BYTES];
	size_t len;
};

struct vmm_proc {
	uv_process_t proc;
	uv_pipe_t out, err;
	uv_timer_t kill_timer;
	struct linebuf out_lb, err_lb;
	struct sandbox *sb;	/* a reference, dropped when the handles are closed */
	unsigned open_handles;
	bool exited;
	bool stop_requested;
};

bool vmm_proc_alive(struct vmm_proc *p)
{
	return p && !p->exited;
}

pid_t vmm_proc_pid(struct vmm_proc *p)
{
	return p->proc.pid;
}

static void on_handle_closed(uv_handle_t *h)
{
	struct vmm_proc *p = h->data;

	if (--p->open_handles > 0)
		return;
	forkfs_job_end(p->sb->fs);
	sandbox_unref(p->sb);
	free(p);
}

static void close_handle(uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, on_handle_closed);
}

/* VMM output: one log line per output line, timestamped by sb_log's format. */
static void emit_line(struct vmm_proc *p, const char *s, size_t n)
{
	char line[LINE_MAX_BYTES + 96];
	struct timespec ts;
	struct tm tm;
	int k;

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	k = snprintf(line, sizeof(line), "%04d-%02d-%02d %02d:%02d:%02d.%03ld vmm: %.*s\n",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		     tm.tm_sec, ts.tv_nsec / 1000000, (int)n, s);
	if (k > (int)sizeof(line))
		k = sizeof(line);
	if (write(p->sb->log_fd, line, (size_t)k) < 0) {
		/* Store full: nothing better to do with VMM chatter. */
	}
	if (p->sb->fs->foreground)
		log_debug("%s: vmm: %.*s", p->sb->name, (int)n, s);
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

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct vmm_proc *p = s->data;
	struct linebuf *lb = s == (uv_stream_t *)&p->out ? &p->out_lb : &p->err_lb;

	if (n > 0) {
		linebuf_feed(p, lb, buf->base, (size_t)n);
		return;
	}
	if (n < 0) {	/* EOF or error: flush a last partial line and stop */
		if (lb->len) {
			emit_line(p, lb->buf, lb->len);
			lb->len = 0;
		}
		close_handle((uv_handle_t *)s);
	}
}

static void on_exit_cb(uv_process_t *h, int64_t status, int signo)
{
	struct vmm_proc *p = h->data;
	struct sandbox *sb = p->sb;
	bool clean = p->stop_requested || (status == 0 && signo == 0);

	p->exited = true;
	uv_timer_stop(&p->kill_timer);
	if (signo)
		sb_log(sb, "VMM pid %d exited on signal %d%s", (int)h->pid, signo,
		       p->stop_requested ? " (stop)" : "");
	else
		sb_log(sb, "VMM pid %d exited with status %lld%s", (int)h->pid, (long long)status,
		       p->stop_requested ? " (stop)" : "");
	/* The pipes stay open until EOF so that the VMM's last words reach the log. */
	close_handle((uv_handle_t *)&p->proc);
	close_handle((uv_handle_t *)&p->kill_timer);

	if (sb->proc == p) {
		void (*done)(struct sandbox *, void *) = sb->stop_done;
		void *ud = sb->stop_userdata;

		sb->proc = NULL;
		if (sb->vmm) {
			vmm_set_dead(sb->vmm);
			sb->vmm = vmm_unref(sb->vmm);
		}
		if (sb->state == SB_RUNNING || sb->state == SB_PAUSED || p->stop_requested)
			sb->state = clean ? SB_STOPPED : SB_FAILED;
		sb->stop_done = NULL;
		sb->stop_userdata = NULL;
		if (sb->run_dir) {
			char sock[256];

			snprintf(sock, sizeof(sock), "%s/api.sock", sb->run_dir);
			unlink(sock);
			if (rmdir(sb->run_dir) < 0 && errno != ENOENT)
				sb_log(sb, "cannot remove run directory %s: %s", sb->run_dir,
				       strerror(errno));
			free(sb->run_dir);
			sb->run_dir = NULL;
		}
		if (done)
			done(sb, ud);
	}
}

static void on_kill_timer(uv_timer_t *t)
{
	struct vmm_proc *p = t->data;

	if (p->exited)
		return;
	sb_log(p->sb, "VMM pid %d ignored SIGTERM for %d ms: SIGKILL", (int)p->proc.pid,
	       STOP_TIMEOUT_MS);
	uv_process_kill(&p->proc, SIGKILL);
}

void vmm_proc_terminate(struct vmm_proc *p)
{
	if (!p || p->exited)
		return;
	p->stop_requested = true;
	uv_process_kill(&p->proc, SIGTERM);
	uv_timer_start(&p->kill_timer, on_kill_timer, STOP_TIMEOUT_MS, 0);
}

int vmm_proc_spawn(struct sandbox *sb, const char *api_socket)
{
	struct forkfs *fs = sb->fs;
	char *args[] = { fs->vmm_path, (char *)"--api-sock", (char *)api_socket, NULL };
	uv_stdio_container_t stdio[3];
	uv_process_options_t opts = { 0 };
	struct vmm_proc *p;
	int r;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->sb = sandbox_ref(sb);
	uv_pipe_init(&fs->loop, &p->out, 0);
	uv_pipe_init(&fs->loop, &p->err, 0);
	uv_timer_init(&fs->loop, &p->kill_timer);
	p->out.data = p->err.data = p->kill_timer.data = p->proc.data = p;
	p->open_handles = 3;
	forkfs_job_begin(fs);

	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[1].data.stream = (uv_stream_t *)&p->out;
	stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[2].data.stream = (uv_stream_t *)&p->err;
	opts.file = fs->vmm_path;
	opts.args = args;
	opts.exit_cb = on_exit_cb;
	opts.stdio = stdio;
	opts.stdio_count = 3;
	opts.flags = UV_PROCESS_DETACHED;

	r = uv_spawn(&fs->loop, &p->proc, &opts);
	if (r < 0) {
		sb_log(sb, "cannot launch VMM %s: %s", fs->vmm_path, uv_strerror(r));
		/* uv_spawn failed: the process handle still needs closing. */
		p->exited = true;
		p->open_handles = 4;
		close_handle((uv_handle_t *)&p->proc);
		close_handle((uv_handle_t *)&p->kill_timer);
		close_handle((uv_handle_t *)&p->out);
		close_handle((uv_handle_t *)&p->err);
		return r;
	}
	p->open_handles = 4;
	uv_read_start((uv_stream_t *)&p->out, on_alloc, on_read);
	uv_read_start((uv_stream_t *)&p->err, on_alloc, on_read);
	sb->proc = p;
	sb_log(sb, "launched VMM %s, pid %d, API socket %s", fs->vmm_path, (int)p->proc.pid,
	       api_socket);
	return 0;
}
