/* SPDX-License-Identifier: MIT
 * start.c — a sandbox's start: boot, restore, attach.
 *
 * Anything that talks to a VMM or copies memory runs on a worker; spawning and
 * state changes happen on the loop. The job carries copies of everything its
 * workers read (paths, the run directory, the copy rate): the sandbox itself
 * may change under them (its VMM may exit while it starts). Up to three steps:
 *
 *   1. worker (boot and restore): a restore from a branch gets the branch's
 *      template (template.h: loaded once, shared by every child); one from
 *      files named in config.json gets a memfd of its own filled from the
 *      image (a source branch still copying first completes its image).
 *      config.json's files are opened and checked (confine.h); with the
 *      jail, they become the jail's binds and config.json's paths the names
 *      the VMM sees (/kernel, /vmstate, /proc/self/fd/3 for the memfd ...);
 *   2. loop: launch the VMM on a private API socket (not for attach);
 *   3. worker: wait for the socket, configure (boot: PUT every resource, then
 *      InstanceStart; restore: PUT /snapshot/load with the memfd's
 *      /proc/<forkfs pid>/fd/<n> path and resume_vm: the template mapped
 *      privately (copy-on-write), or the own memfd mapped shared — on a
 *      stock VMM, which has no "shared", the image file mapped privately),
 *      then vmm_new().
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LOG_PREFIX ""
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "fc/fc.h"
#include "sandbox/config.h"
#include "sandbox/confine.h"
#include "sandbox/start.h"
#include "sandbox/supervisor.h"
#include "sandbox/template.h"

#define SOCKET_WAIT_MS 5000
#define LOAD_TIMEOUT_MS 30000

struct start_job {
	uv_work_t work;
	struct sandbox *sb;	/* a reference; the loop's, workers do not touch it */
	sb_done_fn done;
	void *ctx;
	struct config *cfg;
	struct restore_source src;
	/* Copied on the loop for the workers. */
	char api_socket[108];
	char run_dir[PATH_MAX];
	bool jailed;		/* the VMM runs in a jail (jail.h) built by the prepare step */
	bool attached_jail;	/* attach: to a VMM a forkfs jailed (attach_jailed) */
	int jail_out_fd;	/* ... its snapshots directory, until given to the vmm */
	char jail_root[PATH_MAX];
	char jail_out[PATH_MAX];	/* the store directory bound at /snapshots */
	char cgroup[64];
	uid_t jail_uid;
	struct confine conf;
	struct confine_policy policy;	/* the env's (fixed once set up) */
	uint64_t copy_rate;
	bool incremental;
	void (*test_hook)(void *ctx, pid_t pid);
	void *test_ctx;
	pid_t pid;
	bool loads_template;	/* this start fills src.tmpl; others wait for it */
	struct start_job *next_waiting;	/* on src.tmpl->waiting */
	/* Results. */
	int memfd;
	bool mapped_privately;	/* restore on a stock VMM */
	struct vmm *vmm;
	enum fc_vm_state vm_state;
	int r;
	struct error err;
};

static const char *kind_name(enum config_kind k)
{
	return k == CONFIG_BOOT ? "boot" : k == CONFIG_RESTORE ? "restore" : "attach";
}

static void start_job_free(struct start_job *j)
{
	confine_done(&j->conf);
	safe_close(j->jail_out_fd);
	config_free(j->cfg);
	branch_unref(j->src.branch);
	safe_close(j->memfd);
	template_unref(j->src.tmpl);
	vmm_unref(j->vmm);
	sandbox_unref(j->sb);
	free(j);
}

/* ---- step 1: config.json's files, and the memfd of a restore ---- */

/* config.json's files, opened and checked here (confine.h), before forkfs
 * reads any of them; in a jail, its paths become the names the VMM sees. A
 * restore's memory image comes back opened (*ret_mem). */
static int prepare_files(struct start_job *j, int *ret_mem)
{
	int r = confine_init(&j->conf, &j->policy, j->jailed ? j->jail_root : NULL, j->jail_out,
			     j->jail_uid, j->jail_uid, j->cgroup, &j->err);

	if (r < 0)
		return error_prefix(&j->err, r, "jail");
	if (j->cfg->kind == CONFIG_BOOT)
		r = confine_boot(&j->conf, j->cfg->root, &j->err);
	else
		r = confine_restore(&j->conf, j->src.snapshot_path, j->src.mem_path,
				    j->src.in_store, ret_mem, &j->err);
	return r < 0 ? error_prefix(&j->err, r, j->jailed ? "jail" : "config.json") : 0;
}

/* A restore's guest memory: a template filled from the source branch, or a
 * memfd filled from the memory image (mem, checked), which a jailed VMM
 * inherits. */
static int prepare_memory(struct start_job *j, int mem)
{
	int r;

	if (j->src.tmpl)
		r = template_fill(j->src.tmpl, j->src.branch, &j->err);
	else
		r = image_to_memfd(mem, j->src.mem_path, &j->memfd, &j->err);
	if (r >= 0)
		r = confine_inherit(&j->conf, j->src.tmpl ? j->src.tmpl->fd : j->memfd, &j->err);
	return r;
}

static void prepare_run(uv_work_t *w)
{
	struct start_job *j = w->data;
	_cleanup_close_ int mem = -1;
	int fd;

	/* A source still copying: its image is copied first, then read. */
	if (j->cfg->kind == CONFIG_RESTORE && j->src.branch &&
	    (fd = branch_complete_image(j->src.branch)) < 0) {
		j->r = error_set(&j->err, fd, "the source branch failed while it copied");
		return;
	}
	j->r = prepare_files(j, j->cfg->kind == CONFIG_RESTORE ? &mem : NULL);
	if (j->r >= 0 && j->cfg->kind == CONFIG_RESTORE)
		j->r = prepare_memory(j, mem);
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
		if (j->pid > 0 && kill(j->pid, 0) < 0 && errno == ESRCH)
			return error_set(&j->err, -ECHILD,
					 "the VMM exited before its API socket appeared");
		if (now_usec() > end)
			return error_set(&j->err, -ETIMEDOUT, "no API socket at %s after %d ms",
					 j->api_socket, SOCKET_WAIT_MS);
		usleep(5000);
	}
}

/* attach to a VMM a forkfs jailed (one left running by a forkfs that died):
 * its socket is ROOT/run/api.sock, owned by its jail's uid, and it is served
 * by a process whose root directory is ROOT, a directory of root's inside a
 * directory only root may enter (a forkfs run directory). Nobody but root
 * can make that layout, so the socket is as good as root's. The VMM's
 * snapshots directory is reached through /proc/PID/root/snapshots. */
static bool attach_jailed(struct start_job *j, const struct stat *sock, pid_t server)
{
	char root[PATH_MAX], proc_root[64];
	struct stat st, pst, vst;
	char *slash;

	snprintf(root, sizeof(root), "%s", j->api_socket);
	for (int i = 0; i < 2; i++) {	/* ROOT/run/api.sock -> ROOT */
		slash = strrchr(root, '/');
		if (!slash || slash == root)
			return false;
		*slash = '\0';
	}
	if (strcmp(j->api_socket + strlen(root), CONFINE_API_SOCKET) != 0)
		return false;
	snprintf(proc_root, sizeof(proc_root), "/proc/%d/root", (int)server);
	if (lstat(root, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != 0 ||
	    (st.st_mode & (S_IWGRP | S_IWOTH)) || stat(proc_root, &vst) < 0 ||
	    vst.st_dev != st.st_dev || vst.st_ino != st.st_ino)
		return false;
	slash = strrchr(root, '/');
	*slash = '\0';
	if (lstat(root[0] ? root : "/", &pst) < 0 || !S_ISDIR(pst.st_mode) || pst.st_uid != 0 ||
	    (pst.st_mode & 0077))
		return false;
	*slash = '/';
	/* The VMM's snapshots directory, held by an fd: a path through
	 * /proc/PID/root would follow the pid, which may be reused. */
	snprintf(proc_root, sizeof(proc_root), "/proc/%d/root%s", (int)server, CONFINE_SNAPSHOTS);
	j->jail_out_fd = open(proc_root, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (j->jail_out_fd < 0)
		return false;
	snprintf(j->jail_root, sizeof(j->jail_root), "%s", root);
	snprintf(j->jail_out, sizeof(j->jail_out), "/proc/self/fd/%d", j->jail_out_fd);
	j->jail_uid = sock->st_uid;
	j->attached_jail = true;
	return true;
}

/* attach: the API socket must be a socket owned by root or by us, served by
 * a process of root or ours (or a VMM a forkfs jailed: attach_jailed); forkfs
 * would otherwise drive (and protect and copy the memory of) another user's
 * VMM. The server's pid is not taken for the VMM's: a proxy may serve the
 * socket (tests/mount/fault-proxy.pl does); the VMM's pid is learned from the
 * uffd handshake, as before. */
static int check_attach_socket(struct start_job *j)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct stat st;
	uid_t me = geteuid();
	_cleanup_close_ int fd = -1;

	if (lstat(j->api_socket, &st) < 0)
		return error_set_errno(&j->err, -errno, "attach: %s", j->api_socket);
	if (S_ISLNK(st.st_mode))
		return error_set(&j->err, -EINVAL, "attach: %s is a symbolic link (give the socket)",
				 j->api_socket);
	if (!S_ISSOCK(st.st_mode))
		return error_set(&j->err, -EINVAL, "attach: %s is not a socket", j->api_socket);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", j->api_socket);
	/* Non-blocking, as fc/http.c connects: a server that never accepts
	 * (a full backlog) is EAGAIN, not a worker held for ever. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return error_set_errno(&j->err, -errno, "attach: connecting to %s", j->api_socket);
	if ((st.st_uid != 0 && st.st_uid != me) || (cred.uid != 0 && cred.uid != me)) {
		if (st.st_uid == cred.uid && attach_jailed(j, &st, cred.pid))
			return 0;
		if (st.st_uid != 0 && st.st_uid != me)
			return error_set(&j->err, -EPERM, "attach refused: %s belongs to uid %d",
					 j->api_socket, (int)st.st_uid);
		return error_set(&j->err, -EPERM, "attach refused: %s is served by uid %d",
				 j->api_socket, (int)cred.uid);
	}
	return 0;
}

static int api_fail(struct start_job *j, struct fc_client *c, int r, const char *what)
{
	return fc_error(c, r, &j->err, what);
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

/* A child of a branch maps the branch's template privately, whatever the
 * VMM (shared:false is the default, so stock Firecracker takes it too): its
 * writes never reach the template, and a live branch of it reads its own
 * view (uffd/memsrc.c: /proc/PID/mem for a private mapping). Otherwise a
 * forkd VMM maps forkfs's own memfd shared (each restore has its own memory);
 * stock Firecracker refuses the "shared" key: it gets the image file itself,
 * mapped privately, and the memfd is dropped. The probe has no side effects
 * before boot (fc_probe_caps). */
static int configure_restore(struct start_job *j, struct fc_client *c)
{
	char backend[sizeof(j->src.mem_path)];
	struct fc_caps caps;
	bool shared;
	int r;

	r = fc_probe_caps(c, &caps);
	if (r < 0)
		return api_fail(j, c, r, "probing the VMM");
	shared = caps.uffd_wp && caps.vmstate_only && !j->src.tmpl;
	if (j->jailed && (j->src.tmpl || shared)) {
		snprintf(backend, sizeof(backend), "/proc/self/fd/%d", JAIL_INHERIT_FD);
	} else if (j->jailed) {
		snprintf(backend, sizeof(backend), "/memory");
		j->memfd = safe_close(j->memfd);
		j->mapped_privately = true;
	} else if (j->src.tmpl) {
		snprintf(backend, sizeof(backend), "/proc/%d/fd/%d", (int)getpid(), j->src.tmpl->fd);
	} else if (shared) {
		snprintf(backend, sizeof(backend), "/proc/%d/fd/%d", (int)getpid(), j->memfd);
	} else {
		snprintf(backend, sizeof(backend), "%s", j->src.mem_path);
		j->memfd = safe_close(j->memfd);
		j->mapped_privately = true;
	}
	r = fc_snapshot_load(c, j->jailed ? "/vmstate" : j->src.snapshot_path, backend, shared,
			     true, LOAD_TIMEOUT_MS);
	return r < 0 ? api_fail(j, c, r, "PUT /snapshot/load") : 0;
}

static void configure_run(uv_work_t *w)
{
	struct start_job *j = w->data;
	struct fc_client *c = NULL;
	struct fc_instance_info info;
	int r;

	r = j->cfg->kind == CONFIG_ATTACH ? check_attach_socket(j) : wait_for_socket(j);
	if (r < 0)
		goto out;
	r = fc_client_new(j->api_socket, &c);
	if (r < 0) {
		error_set_errno(&j->err, r, "API client for %s", j->api_socket);
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
		r = error_set(&j->err, -EINVAL, "the VM is \"%s\", not started",
			      fc_vm_state_to_string(info.state));
		goto out;
	}
	if (j->test_hook)
		j->test_hook(j->test_ctx, j->pid);
	r = vmm_new(j->api_socket, j->pid, j->memfd, j->run_dir, &j->vmm);
	if (r < 0)
		error_set_errno(&j->err, r, "vmm_new");
	else {
		vmm_set_copy_rate(j->vmm, j->copy_rate);
		vmm_set_incremental(j->vmm, j->incremental);
		if ((j->jailed || j->attached_jail) &&
		    vmm_set_jail(j->vmm, j->jail_root, j->jail_out, CONFINE_SNAPSHOTS,
				 j->jail_uid, TAKE_FD(j->jail_out_fd)) < 0)
			r = error_set(&j->err, -ENOMEM, "out of memory");
	}
out:
	fc_client_free(c);
	j->r = r;
}

/* ---- the loop side ---- */

static void start_finish(struct start_job *j)
{
	struct sandbox *sb = j->sb;
	struct sbenv *env = sb->env;
	int r = j->r;

	assert_on_loop(env);
	sandbox_end(sb);
	if (j->mapped_privately)
		sb_log(sb, "restore: the VMM lacks the forkd extensions; mapping %s privately",
		       j->src.mem_path);
	if (r >= 0 && j->cfg->kind != CONFIG_ATTACH && !vmm_proc_alive(sb->proc))
		r = error_set(&j->err, -ECHILD, "the VMM exited during start");
	if (r < 0 && !error_is_set(&j->err))
		error_set(&j->err, r, "%s", strerror(-r));
	if (r < 0) {
		sandbox_start_failed(sb, error_msg(&j->err));
	} else {
		sandbox_started(sb, TAKE_PTR(j->vmm), j->cfg->kind == CONFIG_ATTACH,
				j->vm_state == FC_STATE_PAUSED);
		if (j->src.tmpl)
			sb_log(sb, "restore: %s mapped privately from the branch's template "
			       "(%llu MiB, shared with %u other sandbox(es))", j->src.mem_path,
			       (unsigned long long)(j->src.tmpl->size >> 20), j->src.tmpl->refs - 1);
		sandbox_set_template(sb, TAKE_PTR(j->src.tmpl));
		sb_log(sb, "started (%s): %s", kind_name(j->cfg->kind), sb_state_to_string(sb->state));
	}
	j->done(j->ctx, r);
	if (r >= 0 && env->shutting_down)
		sandbox_stop(sb, NULL, NULL);
	start_job_free(j);
	env_job_end(env);
}

static void configure_done(uv_work_t *w, int status)
{
	start_finish(w->data);
}

static void launch_and_configure(struct start_job *j)
{
	struct sandbox *sb = j->sb;

	if (j->cfg->kind != CONFIG_ATTACH) {
		j->r = sandbox_launch(sb, j->api_socket, j->jailed ? &j->conf.spec : NULL,
				      j->conf.fds, &j->err);
		confine_done(&j->conf);
		if (j->r < 0) {
			start_finish(j);
			return;
		}
		j->pid = vmm_proc_pid(sb->proc);
	}
	if (uv_queue_work(sb->env->loop, &j->work, configure_run, configure_done) < 0) {
		j->r = error_set(&j->err, -EIO, "cannot queue the start");
		start_finish(j);
	}
}

static void prepare_done(uv_work_t *w, int status);
static void template_loaded(struct template *t);

/* Queue the first step of a restore. A start from a branch whose template
 * another start is filling waits on the loop until that fill is done. */
static void queue_prepare(struct start_job *j)
{
	struct template *t = j->src.tmpl;

	if (t && t->loading) {
		j->next_waiting = t->waiting;
		t->waiting = j;
		return;
	}
	if (t && !t->loaded) {
		t->loading = true;
		j->loads_template = true;
	}
	if (uv_queue_work(j->sb->env->loop, &j->work, prepare_run, prepare_done) < 0) {
		j->r = error_set(&j->err, -EIO, "cannot queue the start");
		if (j->loads_template) {	/* the waiters fill it themselves */
			j->loads_template = false;
			template_loaded(t);
		}
		start_finish(j);
	}
}

/* The fill is done (or failed): the waiting starts go on; template_fill()
 * gives each the result at once. */
static void template_loaded(struct template *t)
{
	struct start_job *w = t->waiting;

	t->loading = false;
	t->loaded = true;
	t->waiting = NULL;
	while (w) {
		struct start_job *next = w->next_waiting;

		w->next_waiting = NULL;
		queue_prepare(w);
		w = next;
	}
}

static void prepare_done(uv_work_t *w, int status)
{
	struct start_job *j = w->data;

	if (j->loads_template) {
		j->loads_template = false;
		template_loaded(j->src.tmpl);
	}

	if (j->r >= 0 && j->sb->env->shutting_down)
		j->r = error_set(&j->err, -ESHUTDOWN, "forkfs is shutting down");
	if (j->r < 0) {
		start_finish(j);
		return;
	}
	launch_and_configure(j);
}

/* The checks and the job, before anything is launched. */
static int start_job_new(struct sandbox *sb, start_resolve_fn resolve, void *resolve_ctx,
			 struct start_job **ret)
{
	struct start_job *j;
	struct error err = ERROR_INIT;
	int r;

	if (sandbox_is_started(sb)) {
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
	j->conf.spec.inherit = -1;
	j->jail_out_fd = -1;
	j->sb = sandbox_ref(sb);
	r = config_parse(sb->config, sb->config_len, &j->cfg, &err);
	if (r < 0) {
		sb_log(sb, "start refused: config.json: %s", error_msg(&err));
		start_job_free(j);
		return r == -EFBIG ? -EINVAL : r;
	}
	if (j->cfg->kind == CONFIG_RESTORE) {
		if (j->cfg->snapshot_path) {
			snprintf(j->src.snapshot_path, sizeof(j->src.snapshot_path), "%s",
				 j->cfg->snapshot_path);
			snprintf(j->src.mem_path, sizeof(j->src.mem_path), "%s", j->cfg->mem_file_path);
		} else if ((r = resolve(resolve_ctx, sb, j->cfg, &j->src)) < 0) {
			start_job_free(j);
			return r;
		}
	}
	r = sandbox_make_run_dir(sb);
	if (r < 0) {
		start_job_free(j);
		return r;
	}
	snprintf(j->run_dir, sizeof(j->run_dir), "%s", sb->run_dir);
	j->jailed = sb->env->jail && j->cfg->kind != CONFIG_ATTACH;
	j->policy = (struct confine_policy){ .store = sb->env->sandboxes_dir,
					     .allow = sb->env->allow_path,
					     .n_allow = sb->env->n_allow_path };
	if (j->jailed) {
		struct sbenv *env = sb->env;

		snprintf(j->jail_root, sizeof(j->jail_root), "%s/root", sb->run_dir);
		snprintf(j->jail_out, sizeof(j->jail_out), "%s/.snapshots", sb->dir);
		snprintf(j->cgroup, sizeof(j->cgroup), "forkfs-%d-%u", (int)getpid(), sb->seq);
		j->jail_uid = env->jail_id_first + sb->seq % env->jail_id_count;
	}
	if (j->cfg->kind == CONFIG_ATTACH) {
		snprintf(j->api_socket, sizeof(j->api_socket), "%s", j->cfg->api_socket);
	} else {
		if (snprintf(j->api_socket, sizeof(j->api_socket), "%s%s", j->jailed ? j->jail_root :
			     sb->run_dir, j->jailed ? CONFINE_API_SOCKET : "/api.sock") >=
		    (int)sizeof(j->api_socket)) {
			sb_log(sb, "start refused: the run directory's path is too long");
			start_job_free(j);
			return -ENAMETOOLONG;
		}
		unlink(j->api_socket);	/* a stale one from a VMM that died */
	}
	j->copy_rate = sb->env->copy_rate;
	j->incremental = !sb->env->no_incremental;
	j->test_hook = sb->env->test_before_vmm_new;
	j->test_ctx = sb->env->test_ctx;
	*ret = j;
	return 0;
}

int sandbox_start(struct sandbox *sb, start_resolve_fn resolve, void *resolve_ctx,
		  sb_done_fn done, void *ctx)
{
	struct sbenv *env = sb->env;
	struct start_job *j;
	int r;

	assert_on_loop(env);
	r = start_job_new(sb, resolve, resolve_ctx, &j);
	if (r < 0)
		return r;
	j->done = done;
	j->ctx = ctx;
	sb_log(sb, "starting (%s)", kind_name(j->cfg->kind));
	env_job_begin(env);
	if (j->cfg->kind != CONFIG_ATTACH) {
		queue_prepare(j);
		return 0;
	}
	launch_and_configure(j);
	return 0;
}
