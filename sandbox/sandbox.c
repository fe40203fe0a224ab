/* SPDX-License-Identifier: MIT
 * sandbox.c — the sandbox object, its states and transitions, its log, the
 * VMM process it launched (as that process's owner), stop, pause and resume.
 * See sandbox.h for the state machine; start.c drives the start.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOG_PREFIX ""
#include "common/error.h"
#include "common/log.h"
#include "common/nolinks.h"
#include "fc/fc.h"
#include "sandbox/template.h"
#include "sandbox/confine.h"
#include "sandbox/sandbox.h"
#include "sandbox/store.h"
#include "sandbox/supervisor.h"

#define LOG_LINE_MAX 1024
#define VMM_LINES_PER_SEC 200
#define VMM_LINES_BURST 2000

static const char *const sb_state_names[_SB_STATE_MAX] = {
	[SB_CREATED] = "created", [SB_RUNNING] = "running", [SB_PAUSED] = "paused",
	[SB_STOPPED] = "stopped", [SB_FAILED] = "failed",
};

const char *sb_state_to_string(enum sb_state s)
{
	return s < _SB_STATE_MAX ? sb_state_names[s] : "?";
}

bool sandbox_is_started(const struct sandbox *sb)
{
	return sb->state == SB_RUNNING || sb->state == SB_PAUSED;
}

/* ---- the object ---- */

int sandbox_new(struct sbenv *env, const char *name, const char *dir, enum sb_state state,
		unsigned seq, struct sandbox **ret)
{
	struct sandbox *sb = calloc(1, sizeof(*sb));
	struct stat st;
	int r;

	if (!sb || !(sb->dir = strdup(dir))) {
		free(sb);
		return -ENOMEM;
	}
	sb->refs = 1;
	sb->env = env;
	sb->state = state;
	sb->seq = seq;
	snprintf(sb->name, sizeof(sb->name), "%s", name);
	clock_gettime(CLOCK_REALTIME, &sb->ctime);
	sb->log_fd = store_open_log(dir);
	if (sb->log_fd < 0) {
		r = log_error_errno(sb->log_fd, "cannot open %s/%s", dir, STORE_LOG);
		sandbox_unref(sb);
		return r;
	}
	if (fstat(sb->log_fd, &st) == 0)
		sb->log_size = (uint64_t)st.st_size;
	sb->vmm_tokens = VMM_LINES_BURST;
	sb->vmm_tokens_at = now_usec();
	sb->linked = true;
	*ret = sb;
	return 0;
}

struct sandbox *sandbox_ref(struct sandbox *sb)
{
	if (sb)
		sb->refs++;
	return sb;
}

struct sandbox *sandbox_unref(struct sandbox *sb)
{
	if (!sb || --sb->refs > 0)
		return NULL;
	vmm_unref(sb->vmm);
	template_unref(sb->tmpl);
	safe_close(sb->log_fd);
	free(sb->config);
	free(sb->dir);
	free(sb->run_dir);
	free(sb);
	return NULL;
}

/* ---- the log ---- */

size_t sandbox_log_fd(int fd, const char *who, const char *msg, size_t n)
{
	char line[LOG_LINE_MAX + 96], stamp[TIMESTAMP_MAX];
	ssize_t w;
	int k;

	format_timestamp(stamp);
	k = snprintf(line, sizeof(line), "%s %s: ", stamp, who);
	if (k < 0 || (size_t)k >= sizeof(line) - 1)
		return 0;
	n = MIN(n, sizeof(line) - 1 - (size_t)k);
	memcpy(line + k, msg, n);
	mem_sanitize(line + k, n);
	line[k + n] = '\n';
	if (fd < 0)
		return 0;
	w = write(fd, line, (size_t)k + n + 1);
	/* < 0: the store is full or gone; stderr still has forkfs's lines. */
	return w > 0 ? (size_t)w : 0;
}

/* The log outgrew its cap: it becomes log.1 (replacing an older one) and a
 * new log is opened on the same fd number (sb->log_fd stays valid). Should
 * the new one not open, lines go on into log.1 until the cap comes round
 * again: a store that cannot take a file is not retried at every line. */
static void rotate_log(struct sandbox *sb)
{
	_cleanup_free_ char *path = store_path(sb->dir, STORE_LOG);
	_cleanup_free_ char *old = store_path(sb->dir, STORE_LOG ".1");
	int fd;

	sb->log_size = 0;
	if (!path || !old || rename_nolinks(path, old) < 0)
		return;
	fd = store_open_log(sb->dir);
	if (fd < 0)
		return;
	dup3(fd, sb->log_fd, O_CLOEXEC);
	safe_close(fd);
}

/* Every line of the sandbox's own fd goes through here: the size cap. */
static void log_write(struct sandbox *sb, const char *who, const char *msg, size_t n)
{
	uint64_t max = sb->env->log_max;

	assert_on_loop(sb->env);	/* log_size, and the fd rotation */
	/* The line is the message plus the stamp and "who: " (< 64 bytes). */
	if (max && sb->log_size + n + 64 > max)
		rotate_log(sb);
	sb->log_size += sandbox_log_fd(sb->log_fd, who, msg, n);
}

void sb_log(struct sandbox *sb, const char *fmt, ...)
{
	char msg[LOG_LINE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	string_sanitize(msg);
	log_write(sb, "forkfs", msg, strlen(msg));
	log_info("%s: %s", sb->name, msg);
}

/* A VMM's output (its guest's console) is rate-limited: a token bucket of
 * VMM_LINES_BURST lines refilled at VMM_LINES_PER_SEC; what does not fit is
 * counted and reported in one line, at most once a second (and when the VMM
 * exits), so that the report is not a flood of its own. */
static void vmm_lines_dropped_report(struct sandbox *sb)
{
	if (!sb->vmm_lines_dropped)
		return;
	sb_log(sb, "%llu lines of VMM output dropped (more than %d a second)",
	       (unsigned long long)sb->vmm_lines_dropped, VMM_LINES_PER_SEC);
	sb->vmm_lines_dropped = 0;
	sb->vmm_dropped_reported_at = now_usec();
}

static bool vmm_line_admitted(struct sandbox *sb)
{
	uint64_t now = now_usec();

	sb->vmm_tokens += (double)(now - sb->vmm_tokens_at) * VMM_LINES_PER_SEC / USEC_PER_SEC;
	sb->vmm_tokens = MIN(sb->vmm_tokens, (double)VMM_LINES_BURST);
	sb->vmm_tokens_at = now;
	if (sb->vmm_tokens < 1) {
		sb->vmm_lines_dropped++;
		return false;
	}
	sb->vmm_tokens -= 1;
	if (now - sb->vmm_dropped_reported_at >= USEC_PER_SEC)
		vmm_lines_dropped_report(sb);
	return true;
}

/* ---- the busy guard ---- */

int sandbox_begin(struct sandbox *sb, const char *op, const char *what, ...)
{
	char subject[160];
	va_list ap;

	assert_on_loop(sb->env);
	if (!sb->busy) {
		sb->busy = op;
		return 0;
	}
	va_start(ap, what);
	vsnprintf(subject, sizeof(subject), what, ap);
	va_end(ap);
	sb_log(sb, "%s refused: %s in progress", subject, sb->busy);
	return -EBUSY;
}

void sandbox_end(struct sandbox *sb)
{
	sb->busy = NULL;
}

int sandbox_set_config(struct sandbox *sb, const char *text, size_t len)
{
	char *copy = malloc(len + 1);
	int r;

	if (!copy)
		return -ENOMEM;
	memcpy(copy, text, len);
	copy[len] = 0;
	r = store_write_config(sb->dir, text, len);
	if (r < 0) {
		free(copy);
		return r;
	}
	free(sb->config);
	sb->config = copy;
	sb->config_len = len;
	return 0;
}

/* ---- the run directory ---- */

int sandbox_make_run_dir(struct sandbox *sb)
{
	free(sb->run_dir);
	if (asprintf(&sb->run_dir, "%s/%u", sb->env->run_dir, sb->seq) < 0) {
		sb->run_dir = NULL;
		return -ENOMEM;
	}
	if (mkdir(sb->run_dir, 0700) < 0 && errno != EEXIST) {
		int r = -errno;

		sb_log(sb, "start: cannot create %s: %s", sb->run_dir, strerror(-r));
		return r;
	}
	return 0;
}

/* The VMM is gone (or let go of): its socket and directory with it. */
static void drop_run_dir(struct sandbox *sb)
{
	char p[PATH_MAX];

	if (!sb->run_dir)
		return;
	if (!sb->attached) {
		snprintf(p, sizeof(p), "%s/api.sock", sb->run_dir);
		unlink(p);
		/* A jail's root (the VMM's files there are its own) and its
		 * snapshots directory in the store. */
		snprintf(p, sizeof(p), "%s/root", sb->run_dir);
		rm_rf(p);
		snprintf(p, sizeof(p), "%s/.snapshots", sb->dir);
		rm_rf(p);
	}
	if (rmdir(sb->run_dir) < 0 && errno != ENOENT)
		sb_log(sb, "cannot remove run directory %s: %s", sb->run_dir, strerror(errno));
	free(sb->run_dir);
	sb->run_dir = NULL;
}

/* ---- start's transitions ---- */

void sandbox_started(struct sandbox *sb, struct vmm *vmm, bool attached, bool paused)
{
	sb->vmm = vmm;
	sb->attached = attached;
	sb->state = paused ? SB_PAUSED : SB_RUNNING;
}

void sandbox_set_template(struct sandbox *sb, struct template *t)
{
	template_unref(sb->tmpl);
	sb->tmpl = t;
}

void sandbox_start_failed(struct sandbox *sb, const char *reason)
{
	sb_log(sb, "start failed: %s", reason);
	sb->state = SB_FAILED;
	if (sb->proc)
		vmm_proc_terminate(sb->proc);	/* its exit drops the run directory */
	else
		drop_run_dir(sb);
}

/* ---- the VMM process, as its owner ---- */

static void proc_log(void *ctx, const char *who, const char *msg, size_t n)
{
	struct sandbox *sb = ctx;

	if (!strcmp(who, "forkfs")) {
		log_write(sb, who, msg, n);
		log_info("%s: %.*s", sb->name, (int)n, msg);
		return;
	}
	if (!vmm_line_admitted(sb))
		return;
	log_write(sb, who, msg, n);
	if (sb->env->vmm_output_to_stderr)
		log_debug("%s: vmm: %.*s", sb->name, (int)n, msg);
}

static void proc_exited(void *ctx, struct vmm_proc *p, bool clean, bool stopped)
{
	struct sandbox *sb = ctx;
	sb_done_fn done = sb->stop_done;
	void *done_ctx = sb->stop_ctx;

	if (sb->proc != p)
		return;
	vmm_lines_dropped_report(sb);
	sb->proc = NULL;
	sb->tmpl = template_unref(sb->tmpl);
	if (sb->vmm) {
		vmm_set_dead(sb->vmm);
		sb->vmm = vmm_unref(sb->vmm);
	}
	/* A start that failed terminated its VMM itself: it stays failed. */
	if (sandbox_is_started(sb) || (stopped && sb->state != SB_FAILED))
		sb->state = clean ? SB_STOPPED : SB_FAILED;
	sb->stop_done = NULL;
	sb->stop_ctx = NULL;
	drop_run_dir(sb);
	if (done)
		done(done_ctx, 0);
}

static void proc_release(void *ctx)
{
	struct sandbox *sb = ctx;

	env_job_end(sb->env);
	sandbox_unref(sb);
}

int sandbox_launch(struct sandbox *sb, const char *api_socket, const struct jail_spec *jail,
		   const int *jail_fds, struct error *err)
{
	char *argv[4 + VMM_ARGS_MAX] = { sb->env->vmm_path, (char *)"--api-sock",
					 jail ? (char *)CONFINE_API_SOCKET : (char *)api_socket };
	const struct vmm_proc_owner owner = {
		.log = proc_log, .exited = proc_exited, .release = proc_release, .ctx = sb,
	};
	int r;

	for (size_t i = 0; i < sb->env->n_vmm_args && i < VMM_ARGS_MAX; i++)
		argv[3 + i] = sb->env->vmm_args[i];
	sandbox_ref(sb);	/* the process's, until proc_release (even if it fails) */
	env_job_begin(sb->env);
	r = vmm_proc_spawn(sb->env->loop, jail, jail_fds, argv, &owner, &sb->proc, err);
	if (r < 0)
		return r;
	sb_log(sb, "launched VMM %s, pid %d, API socket %s", sb->env->vmm_path,
	       (int)vmm_proc_pid(sb->proc), api_socket);
	if (jail)
		sb_log(sb, "jail: root %s, uid %u, cgroup %s, %u file(s) bound, %s network",
		       jail->root, (unsigned)jail->uid, jail->cgroup, jail->nfiles,
		       jail->flags & JAIL_HOST_NET ? "host" : "no");
	return 0;
}

/* ---- stop ---- */

struct detach_job {
	uv_work_t work;
	struct sandbox *sb;
	struct vmm *vmm;
	sb_done_fn done;
	void *ctx;
};

/* Off the loop: letting go of the WP uffd joins the engine's fault thread and
 * unmaps guest memory. Once it returns, the VM can be branched again. */
static void detach_run(uv_work_t *w)
{
	struct detach_job *j = w->data;

	vmm_detach(j->vmm);
	j->vmm = vmm_unref(j->vmm);
}

static void detach_done(uv_work_t *w, int status)
{
	struct detach_job *j = w->data;
	struct sandbox *sb = j->sb;
	struct sbenv *env = sb->env;

	sb_log(sb, "detached; the VM keeps running");
	if (j->done)
		j->done(j->ctx, 0);
	sandbox_unref(sb);
	free(j);
	env_job_end(env);
}

/* Let go of an attached VMM. Its WP uffd too: branches keep the vmm alive, and
 * its registration would keep the VM from being branched again. The sandbox
 * is stopped at once; done runs once the uffd is let go (or, while a copy
 * runs, handed to the copy to let go at its end). */
static void detach(struct sandbox *sb, sb_done_fn done, void *ctx)
{
	struct detach_job *j = calloc(1, sizeof(*j));
	struct vmm *v = TAKE_PTR(sb->vmm);

	sb->state = SB_STOPPED;
	drop_run_dir(sb);
	sb->attached = false;
	if (!j) {
		/* Out of memory: let go here, on the loop, rather than not at all. */
		vmm_detach(v);
		vmm_unref(v);
		sb_log(sb, "detached; the VM keeps running");
		if (done)
			done(ctx, 0);
		return;
	}
	j->work.data = j;
	j->sb = sandbox_ref(sb);
	j->vmm = v;
	j->done = done;
	j->ctx = ctx;
	env_queue_job(sb->env, &j->work, detach_run, detach_done);
}

int sandbox_stop(struct sandbox *sb, sb_done_fn done, void *ctx)
{
	assert_on_loop(sb->env);
	if (sb->attached && sb->vmm) {
		detach(sb, done, ctx);
		return 0;
	}
	if (!vmm_proc_alive(sb->proc))
		return -EINVAL;
	if (done || !sb->stop_done) {
		sb->stop_done = done;
		sb->stop_ctx = ctx;
	}
	sb_log(sb, "stopping VMM pid %d", (int)vmm_proc_pid(sb->proc));
	vmm_proc_terminate(sb->proc);
	return 0;
}

/* ---- pause, resume ---- */

struct pause_job {
	uv_work_t work;
	struct sandbox *sb;
	struct vmm *vmm;
	bool pause;
	sb_done_fn done;
	void *ctx;
	int r;
	struct error err;
};

static void pause_run(uv_work_t *w)
{
	struct pause_job *j = w->data;
	struct fc_client *c = vmm_client(j->vmm);

	j->r = j->pause ? fc_pause(c) : fc_resume(c);
	if (j->r < 0)
		fc_error(c, j->r, &j->err, j->pause ? "PATCH /vm Paused" : "PATCH /vm Resumed");
}

static void pause_done(uv_work_t *w, int status)
{
	struct pause_job *j = w->data;
	struct sandbox *sb = j->sb;
	struct sbenv *env = sb->env;

	sandbox_end(sb);
	if (j->r < 0) {
		sb_log(sb, "%s failed: %s", j->pause ? "pause" : "resume", error_msg(&j->err));
	} else {
		if (sandbox_is_started(sb))
			sb->state = j->pause ? SB_PAUSED : SB_RUNNING;
		sb_log(sb, "%s", j->pause ? "paused" : "resumed");
	}
	j->done(j->ctx, j->r);
	vmm_unref(j->vmm);
	sandbox_unref(sb);
	free(j);
	env_job_end(env);
}

int sandbox_pause(struct sandbox *sb, bool pause, sb_done_fn done, void *ctx)
{
	enum sb_state need = pause ? SB_RUNNING : SB_PAUSED;
	const char *op = pause ? "pause" : "resume";
	struct pause_job *j;

	if (sb->state != need || !sb->vmm) {
		sb_log(sb, "%s refused: the sandbox is %s", op, sb_state_to_string(sb->state));
		return -EINVAL;
	}
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->work.data = j;
	j->sb = sandbox_ref(sb);
	j->vmm = vmm_ref(sb->vmm);
	j->pause = pause;
	j->done = done;
	j->ctx = ctx;
	env_queue_job(sb->env, &j->work, pause_run, pause_done);
	return 0;
}
