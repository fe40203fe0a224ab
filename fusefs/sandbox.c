/* SPDX-License-Identifier: MIT
 * sandbox.c — the ctl commands of a sandbox: start (boot, restore, attach),
 * pause, resume, stop.
 *
 * A command's FUSE write is answered when the command has finished, so
 * "echo start > ctl; cat state" shows "running". Anything that talks to a
 * VMM or copies memory runs on a worker (uv_queue_work); spawning and state
 * changes happen on the loop. Start has up to three steps:
 *
 *   1. worker (restore only): create a memfd and fill it from the memory image
 *      (a source branch still copying first completes its image on demand);
 *   2. loop: launch the VMM on a private API socket (not for attach);
 *   3. worker: wait for the socket, configure (boot: PUT every resource, then
 *      InstanceStart; restore: PUT /snapshot/load with the memfd's
 *      /proc/<forkfs pid>/fd/<n> path, shared, resume_vm — or, on a stock
 *      VMM, the image file mapped privately), then vmm_new().
 *
 * While a command runs, sb->busy names it and other commands get EBUSY.
 * A command the state does not allow gets EINVAL. Both leave a log line.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LOG_PREFIX ""
#include "common/log.h"
#include "common/util.h"
#include "fc/fc.h"
#include "fusefs/forkfs.h"
#include "fusefs/sbconfig.h"

#define SOCKET_WAIT_MS 5000
#define LOAD_TIMEOUT_MS 30000

struct start_job {
	uv_work_t work;
	struct sandbox *sb;	/* a reference */
	fuse_req_t req;
	size_t size;		/* the write's size, returned on success */
	struct config *cfg;
	char api_socket[108];
	char snapshot_path[4096];
	char mem_path[4096];
	struct branch *source;	/* a reference: a source branch still copying */
	int memfd;
	pid_t pid;
	struct vmm *vmm;	/* result */
	enum fc_vm_state vm_state;
	int r;
	char err[512];
};

struct cmd_job {
	uv_work_t work;
	struct sandbox *sb;
	struct vmm *vmm;
	fuse_req_t req;
	size_t size;
	bool pause;
	int r;
	char err[256];
};

static void start_job_free(struct start_job *j)
{
	config_free(j->cfg);
	branch_unref(j->source);
	safe_close(j->memfd);
	vmm_unref(j->vmm);
	sandbox_unref(j->sb);
	free(j);
}

/* ---- step 1: the memfd of a restore ---- */

static int fill_memfd(const char *path, int *ret_fd, char *err, size_t errlen)
{
	_cleanup_close_ int src = open(path, O_RDONLY | O_CLOEXEC);
	_cleanup_close_ int mfd = -1;
	struct stat st;
	off_t off = 0;

	int r;

	if (src < 0 || fstat(src, &st) < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot open memory image %.300s: %s", path, strerror(-r));
		return r;
	}
	mfd = memfd_create("forkfs-guest-mem", MFD_CLOEXEC);
	if (mfd < 0 || ftruncate(mfd, st.st_size) < 0) {
		r = -errno;
		snprintf(err, errlen, "memfd for %.300s: %s", path, strerror(-r));
		return r;
	}
	while (off < st.st_size) {
		ssize_t n = sendfile(mfd, src, &off, (size_t)MIN(st.st_size - off, 1 << 30));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			snprintf(err, errlen, "copying %.300s into the memfd: %s", path, strerror(-r));
			return r;
		}
	}
	*ret_fd = TAKE_FD(mfd);
	return 0;
}

static void prepare_run(uv_work_t *w)
{
	struct start_job *j = w->data;

	/* A source still copying: its image is copied first, then read. */
	if (j->source && (j->r = branch_complete_image(j->source)) < 0) {
		snprintf(j->err, sizeof(j->err), "the source branch failed while it copied");
		return;
	}
	j->r = fill_memfd(j->mem_path, &j->memfd, j->err, sizeof(j->err));
}

/* ---- step 3: configure the VMM ---- */

static int wait_for_socket(struct start_job *j)
{
	uint64_t end = now_usec() + SOCKET_WAIT_MS * USEC_PER_MSEC;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", j->api_socket);
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int r = fd < 0 ? -errno : RET_NERRNO(connect(fd, (struct sockaddr *)&sa, sizeof(sa)));

		safe_close(fd);
		if (r == 0)
			return 0;
		if (j->pid > 0 && kill(j->pid, 0) < 0 && errno == ESRCH) {
			snprintf(j->err, sizeof(j->err), "the VMM exited before its API socket appeared");
			return -ECHILD;
		}
		if (now_usec() > end) {
			snprintf(j->err, sizeof(j->err), "no API socket at %s after %d ms",
				 j->api_socket, SOCKET_WAIT_MS);
			return -ETIMEDOUT;
		}
		usleep(5000);
	}
}

static int api_fail(struct start_job *j, struct fc_client *c, int r, const char *what)
{
	snprintf(j->err, sizeof(j->err), "%s: %s", what,
		 c && fc_client_last_error(c) && *fc_client_last_error(c) ? fc_client_last_error(c)
									   : strerror(-r));
	return r;
}

static int put(struct fc_client *c, const char *path, json_object *o)
{
	return fc_put_json(c, path, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
}

static int configure_boot(struct start_job *j, struct fc_client *c)
{
	char path[160], what[200];
	int r;

	for (size_t i = 0; i < config_resources_count; i++) {
		const struct config_resource *res = &config_resources[i];
		json_object *v;

		if (!json_object_object_get_ex(j->cfg->root, res->key, &v))
			continue;
		if (!res->id_key) {
			snprintf(what, sizeof(what), "PUT %s", res->path);
			r = put(c, res->path, v);
			if (r < 0)
				return api_fail(j, c, r, what);
			continue;
		}
		for (size_t k = 0; k < json_object_array_length(v); k++) {
			json_object *item = json_object_array_get_idx(v, k), *id;

			json_object_object_get_ex(item, res->id_key, &id);
			snprintf(path, sizeof(path), "%s/%s", res->path, json_object_get_string(id));
			snprintf(what, sizeof(what), "PUT %s", path);
			r = put(c, path, item);
			if (r < 0)
				return api_fail(j, c, r, what);
		}
	}
	r = fc_instance_start(c);
	return r < 0 ? api_fail(j, c, r, "InstanceStart") : 0;
}

/* A forkd VMM maps forkfs's memfd shared (so live branches of the restored VM
 * work, and each restore has its own memory). Stock Firecracker refuses the
 * "shared" key: it gets the image file itself, mapped privately (its writes
 * never reach the file), and the memfd is dropped. The probe has no side
 * effects before boot (fc_probe_caps). */
static int configure_restore(struct start_job *j, struct fc_client *c)
{
	char backend[sizeof(j->mem_path)];
	struct fc_caps caps;
	bool shared;
	int r;

	r = fc_probe_caps(c, &caps);
	if (r < 0)
		return api_fail(j, c, r, "probing the VMM");
	shared = caps.uffd_wp && caps.vmstate_only;
	if (shared) {
		snprintf(backend, sizeof(backend), "/proc/%d/fd/%d", (int)getpid(), j->memfd);
	} else {
		snprintf(backend, sizeof(backend), "%s", j->mem_path);
		j->memfd = safe_close(j->memfd);
		sb_log(j->sb, "restore: the VMM lacks the forkd extensions; mapping %s privately",
		       j->mem_path);
	}
	r = fc_snapshot_load(c, j->snapshot_path, backend, shared, true, LOAD_TIMEOUT_MS);
	return r < 0 ? api_fail(j, c, r, "PUT /snapshot/load") : 0;
}

static void configure_run(uv_work_t *w)
{
	struct start_job *j = w->data;
	struct fc_client *c = NULL;
	struct fc_instance_info info;
	int r;

	if (j->cfg->kind != CONFIG_ATTACH) {
		r = wait_for_socket(j);
		if (r < 0)
			goto out;
	}
	r = fc_client_new(j->api_socket, &c);
	if (r < 0) {
		snprintf(j->err, sizeof(j->err), "API client for %s: %s", j->api_socket, strerror(-r));
		goto out;
	}
	if (j->cfg->kind == CONFIG_BOOT)
		r = configure_boot(j, c);
	else if (j->cfg->kind == CONFIG_RESTORE)
		r = configure_restore(j, c);
	if (r < 0)
		goto out;
	r = fc_get_instance_info(c, &info);
	if (r < 0) {
		api_fail(j, c, r, "GET /");
		goto out;
	}
	j->vm_state = info.state;
	if (info.state != FC_STATE_RUNNING && info.state != FC_STATE_PAUSED) {
		snprintf(j->err, sizeof(j->err), "the VM is \"%s\", not started",
			 fc_vm_state_to_string(info.state));
		r = -EINVAL;
		goto out;
	}
	r = vmm_new(j->api_socket, j->pid, j->memfd, j->sb->run_dir, &j->vmm);
	if (r < 0)
		snprintf(j->err, sizeof(j->err), "vmm_new: %s", strerror(-r));
	else
		vmm_set_copy_rate(j->vmm, j->sb->fs->copy_rate);
out:
	fc_client_free(c);
	j->r = r;
}

/* ---- the loop side of start ---- */

static void start_finish(struct start_job *j)
{
	struct sandbox *sb = j->sb;
	struct forkfs *fs = sb->fs;
	int r = j->r;

	sb->busy = NULL;
	if (r >= 0 && j->cfg->kind != CONFIG_ATTACH && !vmm_proc_alive(sb->proc)) {
		snprintf(j->err, sizeof(j->err), "the VMM exited during start");
		r = -ECHILD;
	}
	if (r < 0) {
		sb_log(sb, "start failed: %s", j->err[0] ? j->err : strerror(-r));
		sb->state = SB_FAILED;
		if (sb->proc)
			vmm_proc_terminate(sb->proc);
		else if (sb->run_dir && rmdir(sb->run_dir) == 0)
			sb->run_dir = (free(sb->run_dir), NULL);
		fuse_reply_err(j->req, forkfs_errno(r));
	} else {
		sb->vmm = TAKE_PTR(j->vmm);
		sb->attached = j->cfg->kind == CONFIG_ATTACH;
		sb->state = j->vm_state == FC_STATE_PAUSED ? SB_PAUSED : SB_RUNNING;
		sb_log(sb, "started (%s): %s", j->cfg->kind == CONFIG_BOOT ? "boot" :
		       j->cfg->kind == CONFIG_RESTORE ? "restore" : "attach",
		       sb_state_to_string(sb->state));
		fuse_reply_write(j->req, j->size);
		if (fs->shutting_down)
			sandbox_stop(sb, NULL, NULL);
	}
	start_job_free(j);
	forkfs_job_end(fs);
}

static void configure_done(uv_work_t *w, int status)
{
	start_finish(w->data);
}

static void launch_and_configure(struct start_job *j)
{
	struct sandbox *sb = j->sb;
	int r;

	if (j->cfg->kind != CONFIG_ATTACH) {
		r = vmm_proc_spawn(sb, j->api_socket);
		if (r < 0) {
			j->r = r == UV_ENOENT ? -ENOENT : -EIO;
			snprintf(j->err, sizeof(j->err), "cannot launch %s: %s", sb->fs->vmm_path,
				 uv_strerror(r));
			start_finish(j);
			return;
		}
		j->pid = vmm_proc_pid(sb->proc);
	}
	if (uv_queue_work(&sb->fs->loop, &j->work, configure_run, configure_done) < 0) {
		j->r = -EIO;
		start_finish(j);
	}
}

static void prepare_done(uv_work_t *w, int status)
{
	struct start_job *j = w->data;

	if (j->r < 0 || j->sb->fs->shutting_down) {
		if (j->r >= 0)
			j->r = -ESHUTDOWN;
		start_finish(j);
		return;
	}
	launch_and_configure(j);
}

/* Resolve {"restore":{"branch":"S/T"}}: a ready branch of this forkfs. */
static int resolve_branch(struct sandbox *sb, struct start_job *j)
{
	struct sandbox *src = tree_find_sandbox(sb->fs, j->cfg->branch_sandbox);
	struct sbranch *br = src ? tree_find_branch(src, j->cfg->branch_tag, true) : NULL;
	struct branch_status st;

	if (!br) {
		sb_log(sb, "start: restore source branch %s/%s does not exist",
		       j->cfg->branch_sandbox, j->cfg->branch_tag);
		return -ENOENT;
	}
	if (!br->b) {
		sb_log(sb, "start: restore source branch %s/%s is unusable", src->name, br->tag);
		return -EINVAL;
	}
	branch_get_status(br->b, &st);
	if (st.state == BRANCH_FAILED) {
		sb_log(sb, "start: restore source branch %s/%s failed: %s", src->name, br->tag,
		       st.error);
		return -EINVAL;
	}
	if (st.state == BRANCH_COPYING) {
		sb_log(sb, "start: restore source branch %s/%s is still copying: copying the rest"
		       " of its image first", src->name, br->tag);
		j->source = branch_ref(br->b);
	}
	snprintf(j->snapshot_path, sizeof(j->snapshot_path), "%s/vmstate", br->dir);
	snprintf(j->mem_path, sizeof(j->mem_path), "%s/memory.bin", br->dir);
	return 0;
}

static int cmd_start(struct sandbox *sb, fuse_req_t req, size_t size)
{
	struct forkfs *fs = sb->fs;
	struct start_job *j;
	char err[256] = "";
	int r;

	if (sb->state == SB_RUNNING || sb->state == SB_PAUSED) {
		sb_log(sb, "start refused: the sandbox is already %s", sb_state_to_string(sb->state));
		return -EINVAL;
	}
	if (!sb->config || sb->config_len == 0) {
		sb_log(sb, "start refused: config.json is empty");
		return -EINVAL;
	}
	if (sb->proc) {
		/* The VMM of a failed start is still exiting; it would unlink the
		 * API socket of the new one, which lives in the same run directory. */
		sb_log(sb, "start refused: the previous VMM (pid %d) is still exiting",
		       (int)vmm_proc_pid(sb->proc));
		return -EBUSY;
	}
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->work.data = j;
	j->memfd = -1;
	j->req = req;
	j->size = size;
	j->sb = sandbox_ref(sb);
	r = config_parse(sb->config, sb->config_len, &j->cfg, err, sizeof(err));
	if (r < 0) {
		sb_log(sb, "start refused: config.json: %s", err);
		start_job_free(j);
		return r == -EFBIG ? -EINVAL : r;
	}
	if (j->cfg->kind == CONFIG_RESTORE) {
		if (j->cfg->snapshot_path) {
			snprintf(j->snapshot_path, sizeof(j->snapshot_path), "%s", j->cfg->snapshot_path);
			snprintf(j->mem_path, sizeof(j->mem_path), "%s", j->cfg->mem_file_path);
		} else if ((r = resolve_branch(sb, j)) < 0) {
			start_job_free(j);
			return r;
		}
	}
	free(sb->run_dir);
	if (asprintf(&sb->run_dir, "%s/%u", fs->run_dir, sb->seq) < 0) {
		sb->run_dir = NULL;
		start_job_free(j);
		return -ENOMEM;
	}
	if (mkdir(sb->run_dir, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		sb_log(sb, "start: cannot create %s: %s", sb->run_dir, strerror(errno));
		start_job_free(j);
		return r;
	}
	if (j->cfg->kind == CONFIG_ATTACH) {
		snprintf(j->api_socket, sizeof(j->api_socket), "%s", j->cfg->api_socket);
	} else {
		snprintf(j->api_socket, sizeof(j->api_socket), "%s/api.sock", sb->run_dir);
		unlink(j->api_socket);	/* a stale one from a VMM that died */
	}

	sb->busy = "start";
	sb_log(sb, "starting (%s)", j->cfg->kind == CONFIG_BOOT ? "boot" :
	       j->cfg->kind == CONFIG_RESTORE ? "restore" : "attach");
	forkfs_job_begin(fs);
	if (j->cfg->kind == CONFIG_RESTORE) {
		if (uv_queue_work(&fs->loop, &j->work, prepare_run, prepare_done) < 0) {
			j->r = -EIO;
			start_finish(j);
		}
		return 0;
	}
	launch_and_configure(j);
	return 0;
}

/* ---- pause, resume ---- */

static void pause_run(uv_work_t *w)
{
	struct cmd_job *j = w->data;
	struct fc_client *c = vmm_client(j->vmm);

	j->r = j->pause ? fc_pause(c) : fc_resume(c);
	if (j->r < 0)
		snprintf(j->err, sizeof(j->err), "%s", fc_client_last_error(c) ?: strerror(-j->r));
}

static void pause_done(uv_work_t *w, int status)
{
	struct cmd_job *j = w->data;
	struct sandbox *sb = j->sb;
	struct forkfs *fs = sb->fs;

	sb->busy = NULL;
	if (j->r < 0) {
		sb_log(sb, "%s failed: %s", j->pause ? "pause" : "resume", j->err);
		fuse_reply_err(j->req, forkfs_errno(j->r));
	} else {
		if (sb->state == SB_RUNNING || sb->state == SB_PAUSED)
			sb->state = j->pause ? SB_PAUSED : SB_RUNNING;
		sb_log(sb, "%s", j->pause ? "paused" : "resumed");
		fuse_reply_write(j->req, j->size);
	}
	vmm_unref(j->vmm);
	sandbox_unref(sb);
	free(j);
	forkfs_job_end(fs);
}

static int cmd_pause(struct sandbox *sb, fuse_req_t req, size_t size, bool pause)
{
	enum sb_state need = pause ? SB_RUNNING : SB_PAUSED;
	struct cmd_job *j;

	if (sb->state != need || !sb->vmm) {
		sb_log(sb, "%s refused: the sandbox is %s", pause ? "pause" : "resume",
		       sb_state_to_string(sb->state));
		return -EINVAL;
	}
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->work.data = j;
	j->sb = sandbox_ref(sb);
	j->vmm = vmm_ref(sb->vmm);
	j->req = req;
	j->size = size;
	j->pause = pause;
	sb->busy = pause ? "pause" : "resume";
	forkfs_queue_job(sb->fs, &j->work, pause_run, pause_done);
	return 0;
}

/* ---- stop ---- */

struct detach_job {
	uv_work_t work;
	struct sandbox *sb;
	struct vmm *vmm;
	void (*done)(struct sandbox *, void *);
	void *userdata;
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
	struct forkfs *fs = sb->fs;

	sb_log(sb, "detached; the VM keeps running");
	if (j->done)
		j->done(sb, j->userdata);
	sandbox_unref(sb);
	free(j);
	forkfs_job_end(fs);
}

int sandbox_stop(struct sandbox *sb, void (*done)(struct sandbox *, void *), void *userdata)
{
	if (sb->attached && sb->vmm) {
		/* Let go of the WP uffd too: branches keep the vmm alive, and its
		 * registration would keep the VM from being branched again. The
		 * sandbox is stopped at once; done runs once the uffd is let go
		 * (or, while a copy runs, handed to the copy to let go at its end). */
		struct detach_job *j = calloc(1, sizeof(*j));
		struct vmm *v = TAKE_PTR(sb->vmm);

		sb->attached = false;
		sb->state = SB_STOPPED;
		if (sb->run_dir) {
			rmdir(sb->run_dir);
			free(sb->run_dir);
			sb->run_dir = NULL;
		}
		if (!j) {
			/* Out of memory: let go here, on the loop, rather than not at all. */
			vmm_detach(v);
			vmm_unref(v);
			sb_log(sb, "detached; the VM keeps running");
			if (done)
				done(sb, userdata);
			return 0;
		}
		j->work.data = j;
		j->sb = sandbox_ref(sb);
		j->vmm = v;
		j->done = done;
		j->userdata = userdata;
		forkfs_queue_job(sb->fs, &j->work, detach_run, detach_done);
		return 0;
	}
	if (!vmm_proc_alive(sb->proc))
		return -EINVAL;
	if (done || !sb->stop_done) {
		sb->stop_done = done;
		sb->stop_userdata = userdata;
	}
	sb_log(sb, "stopping VMM pid %d", (int)vmm_proc_pid(sb->proc));
	vmm_proc_terminate(sb->proc);
	return 0;
}

struct stop_req {
	fuse_req_t req;
	size_t size;
};

static void stop_done(struct sandbox *sb, void *userdata)
{
	struct stop_req *s = userdata;

	sb->busy = NULL;
	fuse_reply_write(s->req, s->size);
	free(s);
}

static int cmd_stop(struct sandbox *sb, fuse_req_t req, size_t size)
{
	struct stop_req *s;

	if (sb->state != SB_RUNNING && sb->state != SB_PAUSED) {
		sb_log(sb, "stop refused: the sandbox is %s", sb_state_to_string(sb->state));
		return -EINVAL;
	}
	s = malloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->req = req;
	s->size = size;
	sb->busy = "stop";
	if (sandbox_stop(sb, stop_done, s) < 0) {
		sb->busy = NULL;
		free(s);
		sb_log(sb, "stop: no VMM to stop");
		return -EINVAL;
	}
	return 0;
}

void sandbox_ctl(struct sandbox *sb, fuse_req_t req, const char *data, size_t size)
{
	char cmd[16];
	size_t n = size;
	int r;

	if (n > 0 && data[n - 1] == '\n')
		n--;
	if (n == 0 || n >= sizeof(cmd) || memchr(data, 0, n)) {
		sb_log(sb, "ctl: invalid command (expected start, pause, resume or stop)");
		fuse_reply_err(req, EINVAL);
		return;
	}
	memcpy(cmd, data, n);
	cmd[n] = 0;
	if (strcmp(cmd, "start") && strcmp(cmd, "pause") && strcmp(cmd, "resume") &&
	    strcmp(cmd, "stop")) {
		sb_log(sb, "ctl: unknown command \"%s\" (expected start, pause, resume or stop)",
		       cmd);
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (sb->fs->shutting_down) {
		fuse_reply_err(req, ESHUTDOWN);
		return;
	}
	if (!sb->linked) {	/* written through an fd opened before rmdir */
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (sb->busy) {
		sb_log(sb, "ctl %s refused: %s in progress", cmd, sb->busy);
		fuse_reply_err(req, EBUSY);
		return;
	}
	if (!strcmp(cmd, "start"))
		r = cmd_start(sb, req, size);
	else if (!strcmp(cmd, "stop"))
		r = cmd_stop(sb, req, size);
	else
		r = cmd_pause(sb, req, size, !strcmp(cmd, "pause"));
	if (r < 0)
		fuse_reply_err(req, -r);
}
