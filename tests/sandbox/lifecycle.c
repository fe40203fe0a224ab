/* SPDX-License-Identifier: MIT
 * lifecycle.t — the sandbox lifecycle (sandbox/) without FUSE, driven like
 * the FUSE layer drives it, against real forkfs-minivm processes ($MINIVM,
 * guest $GUEST_IMG): start, pause, resume, stop and rmdir with the races
 * between them, a VMM that dies inside a start, concurrent mkdir of one
 * branch tag, a restore from that branch whose guest verifies its memory,
 * and shutdown with a start in flight.
 *
 * Everything runs on this thread's libuv loop, as in forkfs. The cases that
 * need a guest run it on KVM or minivm's emulated CPU (and /dev/userfaultfd for the live branch). LIFECYCLE_VMM=PATH runs the others against
 * another VMM that answers the Firecracker API (for machines without KVM);
 * CI never sets it.
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

#include "common/util.h"
#include "sandbox/ctl.h"
#include "sandbox/entry.h"
#include "sandbox/supervisor.h"
#include "sandbox/tree.h"
#include "tests/tap.h"

#define WAIT_MS 30000

static uv_loop_t loop;
static uv_timer_t tick;
static struct tree t;
static char tmpdir[] = "/tmp/forkfs-lifecycle.XXXXXX";
static char store[PATH_MAX], run_dir[PATH_MAX];
static bool with_guest;

struct done {
	bool called;
	int r;
	struct sbranch *br;
};

static void on_done(void *ctx, int r)
{
	struct done *d = ctx;

	d->called = true;
	d->r = r;
}

static void on_entry_done(void *ctx, int r, struct sbranch *br)
{
	struct done *d = ctx;

	d->called = true;
	d->r = r;
	d->br = entry_ref(br);
}

static void on_tick(uv_timer_t *h)
{
}

/* Run the loop until *flag, or timeout. */
static bool run_until_flag(const bool *flag, int timeout_ms)
{
	uint64_t end = now_usec() + (uint64_t)timeout_ms * USEC_PER_MSEC;

	while (!*flag && now_usec() < end)
		uv_run(&loop, UV_RUN_ONCE);
	return *flag;
}

/* Run the loop for ms (let queued work and exits be handled). */
static void run_for(int ms)
{
	uint64_t end = now_usec() + (uint64_t)ms * USEC_PER_MSEC;

	while (now_usec() < end)
		uv_run(&loop, UV_RUN_ONCE);
}

static int ctl(struct sandbox *sb, const char *cmd, struct done *d)
{
	*d = (struct done){ 0 };
	return ctl_write(&t, sb, cmd, strlen(cmd), on_done, d);
}

/* Run a ctl command to its end: its done's r, or -ETIMEDOUT. */
static int ctl_sync(struct sandbox *sb, const char *cmd)
{
	struct done d;
	int r = ctl(sb, cmd, &d);

	if (r < 0)
		return r;
	return run_until_flag(&d.called, WAIT_MS) ? d.r : -ETIMEDOUT;
}

static bool file_has(const char *path, const char *needle)
{
	char *text = NULL;
	bool found;

	if (read_file(path, 64 << 20, &text, NULL) < 0)
		return false;
	found = strstr(text, needle) != NULL;
	free(text);
	return found;
}

/* The sandbox's log has needle, within timeout_ms (the loop runs meanwhile). */
static bool log_has(struct sandbox *sb, const char *needle, int timeout_ms)
{
	char path[PATH_MAX];
	uint64_t end = now_usec() + (uint64_t)timeout_ms * USEC_PER_MSEC;

	snprintf(path, sizeof(path), "%s/log", sb->dir);
	while (!file_has(path, needle)) {
		if (now_usec() > end)
			return false;
		run_for(50);
	}
	return true;
}

static const char *sb_dir(const char *name)
{
	static char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/sandboxes/%s", store, name);
	return path;
}

static void dump_log(struct sandbox *sb)
{
	char path[PATH_MAX], *text = NULL;

	snprintf(path, sizeof(path), "%s/log", sb->dir);
	if (read_file(path, 1 << 20, &text, NULL) < 0)
		return;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
		tap_diag("%s: %s", sb->name, line);
	free(text);
}

static bool pid_gone(pid_t pid, int timeout_ms)
{
	uint64_t end = now_usec() + (uint64_t)timeout_ms * USEC_PER_MSEC;

	while (kill(pid, 0) == 0 || errno != ESRCH) {
		if (now_usec() > end)
			return false;
		run_for(20);
	}
	return true;
}

static struct sandbox *make_sandbox(const char *name, unsigned mem_mib)
{
	char cfg[PATH_MAX + 128];
	struct sandbox *sb = NULL;
	int n;

	if (tree_mkdir_sandbox(&t, name, &sb) < 0)
		return NULL;
	n = snprintf(cfg, sizeof(cfg),
		     "{\"boot-source\":{\"kernel_image_path\":\"%s\"},"
		     "\"machine-config\":{\"vcpu_count\":1,\"mem_size_mib\":%u}}\n",
		     getenv("GUEST_IMG") ?: "/nonexistent", mem_mib);
	if (sandbox_set_config(sb, cfg, (size_t)n) < 0)
		return NULL;
	return sb;
}

/* ---- the store, planted with symlinks before forkfs starts ---- */

static char target[PATH_MAX], outside[PATH_MAX];

static void plant(const char *rel, const char *link_to)
{
	char path[PATH_MAX], dir[PATH_MAX];

	snprintf(path, sizeof(path), "%s/sandboxes/%s", store, rel);
	snprintf(dir, sizeof(dir), "%s", path);
	*strrchr(dir, '/') = 0;
	mkdir(dir, 0700);
	if (link_to) {
		if (symlink(link_to, path) < 0)
			tap_diag("symlink %s: %s", path, strerror(errno));
	} else {
		int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

		safe_close(fd);
	}
}

static void plant_store(void)
{
	char path[PATH_MAX];
	int fd;

	snprintf(target, sizeof(target), "%s/target", tmpdir);
	fd = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd >= 0 && write(fd, "secret\n", 7) != 7)
		tap_diag("cannot write %s", target);
	safe_close(fd);
	mkdir(store, 0700);
	mkdir(sb_dir(""), 0700);
	plant("evil/log", target);		/* the log: would be appended to */
	plant("cfg/log", NULL);
	plant("cfg/config.json", target);	/* the config: would be read */
	/* A directory on the way: branches/ a link to a directory outside the
	 * store holding a branch (would be listed, then removed with it). */
	snprintf(outside, sizeof(outside), "%s/outside", tmpdir);
	mkdir(outside, 0700);
	snprintf(path, sizeof(path), "%s/b1", outside);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/b1/branch.state", outside);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, "ready\n", 6) != 6)
		tap_diag("cannot write %s", path);
	safe_close(fd);
	plant("linked/log", NULL);
	plant("linked/branches", outside);
}

static void test_store_planted(void)
{
	char path[PATH_MAX], *text = NULL;
	struct sandbox *sb = tree_find_sandbox(&t, "cfg");
	static const char cfg[] = "{\"attach\":{\"api_socket\":\"/nonexistent.sock\"}}";
	struct stat st;

	TAP_CHECK(read_file(target, 4096, &text, NULL) == 0 && !strcmp(text, "secret\n"));
	free(text);
	TAP_CHECK(tree_find_sandbox(&t, "evil") == NULL);	/* its log is a symlink */
	if (!TAP_CHECK(sb))
		return;
	TAP_CHECK(!sb->config && sb->config_len == 0);	/* not read through the link */
	/* Saving config.json replaces the link; the old predictable temp name
	 * (config.json.tmp.PID), planted, is not followed either. */
	snprintf(path, sizeof(path), "cfg/config.json.tmp.%d", (int)getpid());
	plant(path, target);
	TAP_CHECK(sandbox_set_config(sb, cfg, strlen(cfg)) == 0);
	TAP_CHECK(read_file(target, 4096, &text, NULL) == 0 && !strcmp(text, "secret\n"));
	free(text);
	snprintf(path, sizeof(path), "%s/config.json", sb->dir);
	TAP_CHECK(lstat(path, &st) == 0 && S_ISREG(st.st_mode));
	{
		struct done d = { 0 };

		TAP_CHECK(tree_rmdir_sandbox(&t, "cfg", on_done, &d) == 0 && d.called && d.r == 0);
	}
	TAP_CHECK(access(target, F_OK) == 0);	/* rmdir removed the links, not their target */
	/* No link on the way is followed: the linked branches/ lists nothing,
	 * and removing the sandbox removes the link, not what it points to. */
	sb = tree_find_sandbox(&t, "linked");
	if (!TAP_CHECK(sb))
		return;
	TAP_CHECK(entry_find(sb, "b1", true) == NULL);
	{
		struct done d = { 0 };

		TAP_CHECK(tree_rmdir_sandbox(&t, "linked", on_done, &d) == 0 && d.called);
	}
	snprintf(path, sizeof(path), "%s/b1/branch.state", outside);
	TAP_CHECK(access(path, F_OK) == 0);
	TAP_CHECK(access(sb_dir("linked"), F_OK) < 0 && errno == ENOENT);
}

/* A store that others could write to is refused. */
static void test_store_modes(void)
{
	struct tree_options o = { 0 };
	char path[PATH_MAX];
	struct tree t2;

	snprintf(path, sizeof(path), "%s/store2", tmpdir);
	TAP_CHECK(mkdir(path, 0700) == 0 && chmod(path, 0777) == 0);
	o.store = path;
	o.vmm_path = "/nonexistent";
	o.run_dir = run_dir;
	TAP_CHECK(tree_init(&t2, &loop, &o) == 0);
	TAP_CHECK(tree_load_store(&t2) == -EPERM);
	TAP_CHECK(chmod(path, 0755) == 0 && tree_load_store(&t2) == 0);
	tree_free(&t2);
}

/* ---- the cases ---- */

static void test_names(void)
{
	struct sandbox *sb = NULL;
	struct done d;

	TAP_CHECK(tree_mkdir_sandbox(&t, "n1", &sb) == 0 && sb);
	TAP_CHECK(tree_mkdir_sandbox(&t, "n1", &sb) == -EEXIST);
	TAP_CHECK(tree_mkdir_sandbox(&t, "bad/name", &sb) == -EINVAL);
	TAP_CHECK(tree_mkdir_sandbox(&t, ".hidden", &sb) == -EINVAL);
	sb = tree_find_sandbox(&t, "n1");
	TAP_CHECK(ctl(sb, "bogus\n", &d) == -EINVAL && !d.called);
	TAP_CHECK(ctl(sb, "start\n", &d) == -EINVAL && !d.called);	/* no config.json */
	TAP_CHECK(log_has(sb, "start refused: config.json is empty", 0));
	TAP_CHECK(ctl(sb, "stop\n", &d) == -EINVAL);
	TAP_CHECK(ctl(sb, "pause\n", &d) == -EINVAL);
	TAP_CHECK(entry_mkdir(sb, "b1", on_entry_done, &d) == -EINVAL);	/* not running */
	TAP_CHECK(!sb->busy);
	d = (struct done){ 0 };
	TAP_CHECK(tree_rmdir_sandbox(&t, "n1", on_done, &d) == 0 && d.called && d.r == 0);
	TAP_CHECK(tree_find_sandbox(&t, "n1") == NULL);
	TAP_CHECK(access(sb_dir("n1"), F_OK) < 0 && errno == ENOENT);
	d = (struct done){ 0 };
	TAP_CHECK(tree_rmdir_sandbox(&t, "n1", on_done, &d) == -ENOENT);
}

static void test_start_stop(void)
{
	struct sandbox *sb = make_sandbox("s1", 64);
	struct done d, d2;
	pid_t pid;

	if (!TAP_CHECK(sb))
		return;
	TAP_CHECK(ctl(sb, "start\n", &d) == 0);
	/* While the start runs, every other command is refused. */
	TAP_CHECK(sb->busy && !strcmp(sb->busy, "start"));
	TAP_CHECK(ctl(sb, "pause\n", &d2) == -EBUSY && !d2.called);
	TAP_CHECK(ctl(sb, "stop\n", &d2) == -EBUSY);
	TAP_CHECK(ctl(sb, "start\n", &d2) == -EBUSY);
	d2 = (struct done){ 0 };
	TAP_CHECK(tree_rmdir_sandbox(&t, "s1", on_done, &d2) == -EBUSY);
	TAP_CHECK(log_has(sb, "ctl pause refused: start in progress", 0));
	TAP_CHECK(run_until_flag(&d.called, WAIT_MS) && d.r == 0);
	if (d.r != 0)
		dump_log(sb);
	TAP_CHECK(sb->state == SB_RUNNING && !sb->busy && sb->vmm && sb->proc);
	TAP_CHECK(sb->run_dir && access(sb->run_dir, F_OK) == 0);
	TAP_CHECK(ctl_sync(sb, "start\n") == -EINVAL);	/* already running */
	TAP_CHECK(ctl_sync(sb, "resume\n") == -EINVAL);	/* not paused */
	TAP_CHECK(ctl_sync(sb, "pause\n") == 0 && sb->state == SB_PAUSED);
	TAP_CHECK(ctl_sync(sb, "pause\n") == -EINVAL);
	TAP_CHECK(ctl_sync(sb, "resume") == 0 && sb->state == SB_RUNNING);
	pid = vmm_proc_pid(sb->proc);
	TAP_CHECK(ctl(sb, "stop\n", &d) == 0);
	TAP_CHECK(ctl(sb, "start\n", &d2) == -EBUSY);	/* stop in progress */
	TAP_CHECK(run_until_flag(&d.called, WAIT_MS) && d.r == 0);
	TAP_CHECK(sb->state == SB_STOPPED && !sb->proc && !sb->vmm && !sb->run_dir && !sb->busy);
	TAP_CHECK(pid_gone(pid, 5000));
	TAP_CHECK(log_has(sb, "(stop)", 0));
	TAP_CHECK(ctl_sync(sb, "stop\n") == -EINVAL);
	/* A stopped sandbox starts again. */
	TAP_CHECK(ctl_sync(sb, "start\n") == 0 && sb->state == SB_RUNNING);
	pid = sb->proc ? vmm_proc_pid(sb->proc) : 0;
	/* rmdir of a started sandbox stops it first, then removes it. */
	d = (struct done){ 0 };
	TAP_CHECK(tree_rmdir_sandbox(&t, "s1", on_done, &d) == 0);
	TAP_CHECK(run_until_flag(&d.called, WAIT_MS) && d.r == 0);
	TAP_CHECK(tree_find_sandbox(&t, "s1") == NULL);
	TAP_CHECK(pid > 0 && pid_gone(pid, 5000));
}

/* The VMM dies on the worker's side of a start, after it answered, before
 * forkfs makes its handle: the loop handles the exit meanwhile (and drops the
 * run directory). The start must fail cleanly, and the sandbox start again. */
struct dying {
	char run_dir[PATH_MAX];
	bool killed;
};

static void kill_vmm_now(void *ctx, pid_t pid)
{
	struct dying *dy = ctx;
	uint64_t end = now_usec() + 5 * USEC_PER_SEC;

	if (pid <= 0 || kill(pid, SIGKILL) < 0)
		return;
	dy->killed = true;
	/* The loop has handled the exit once the run directory is gone. */
	while (access(dy->run_dir, F_OK) == 0 && now_usec() < end)
		usleep(5000);
}

static void test_vmm_dies_during_start(void)
{
	struct sandbox *sb = make_sandbox("d1", 64);
	struct dying dy = { 0 };
	struct done d;

	if (!TAP_CHECK(sb))
		return;
	snprintf(dy.run_dir, sizeof(dy.run_dir), "%s/%u", run_dir, sb->seq);
	t.env.test_before_vmm_new = kill_vmm_now;
	t.env.test_ctx = &dy;
	TAP_CHECK(ctl(sb, "start\n", &d) == 0);
	TAP_CHECK(run_until_flag(&d.called, WAIT_MS));
	t.env.test_before_vmm_new = NULL;
	TAP_CHECK(dy.killed);
	TAP_CHECK(access(dy.run_dir, F_OK) < 0);
	TAP_CHECK(d.r < 0);
	TAP_CHECK(sb->state == SB_FAILED && !sb->vmm && !sb->proc && !sb->busy);
	TAP_CHECK(log_has(sb, "start failed: the VMM exited during start", 0));
	/* Nothing is left behind that would keep it from starting again. */
	TAP_CHECK(ctl_sync(sb, "start\n") == 0 && sb->state == SB_RUNNING);
	TAP_CHECK(ctl_sync(sb, "stop\n") == 0 && sb->state == SB_STOPPED);
	d = (struct done){ 0 };
	TAP_CHECK(tree_rmdir_sandbox(&t, "d1", on_done, &d) == 0 && d.called && d.r == 0);
}

/* A failed start of a VMM that is not there, and one whose config the VMM
 * refuses: failed, with the reason in the log, and nothing left started. */
static void test_start_failures(void)
{
	struct sandbox *sb = make_sandbox("f1", 64);
	static const char bad[] = "{\"boot-source\":{\"kernel_image_path\":\"/nonexistent/k\"},"
				  "\"machine-config\":{\"vcpu_count\":1,\"mem_size_mib\":64}}";
	char *vmm = t.env.vmm_path;

	if (!TAP_CHECK(sb))
		return;
	t.env.vmm_path = (char *)"/nonexistent/vmm";
	TAP_CHECK(ctl_sync(sb, "start\n") == -ENOENT);
	t.env.vmm_path = vmm;
	TAP_CHECK(sb->state == SB_FAILED && !sb->proc && !sb->busy);
	TAP_CHECK(log_has(sb, "start failed: cannot launch VMM /nonexistent/vmm", 0));
	if (with_guest) {
		TAP_CHECK(sandbox_set_config(sb, bad, strlen(bad)) == 0);
		TAP_CHECK(ctl_sync(sb, "start\n") < 0 && sb->state == SB_FAILED);
		/* forkfs checks config.json's files before any VMM sees them. */
		TAP_CHECK(log_has(sb, "start failed: config.json: kernel /nonexistent/k: No such file", 0));
	}
	TAP_CHECK(!sb->vmm);
	/* Wait for the VMM of the failed start to be gone before rmdir. */
	for (int i = 0; i < 500 && sb->proc; i++)
		run_for(10);
	TAP_CHECK(!sb->proc);
	{
		struct done d;

		d = (struct done){ 0 };
		TAP_CHECK(tree_rmdir_sandbox(&t, "f1", on_done, &d) == 0 && d.called && d.r == 0);
	}
}

static off_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* attach: only to a socket of root or ours, served by root or us. */
static void attach_refused(struct sandbox *sb, const char *sock, int want, const char *reason)
{
	char cfg[PATH_MAX + 64];
	int n = snprintf(cfg, sizeof(cfg), "{\"attach\":{\"api_socket\":\"%s\"}}", sock);
	int r;

	TAP_CHECK(sandbox_set_config(sb, cfg, (size_t)n) == 0);
	r = ctl_sync(sb, "start\n");
	tap_ok(r == want, "attach to %s: %d", sock, r);
	tap_ok(sb->state == SB_FAILED && !sb->vmm && log_has(sb, reason, 0), "log: %s", reason);
}

static void test_attach_refused(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char file[PATH_MAX], msg[PATH_MAX + 64];
	struct sandbox *sb = NULL;
	int fd;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/other.sock", tmpdir);
	snprintf(file, sizeof(file), "%s/file", tmpdir);
	safe_close(open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	TAP_CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 4) == 0);
	TAP_CHECK(chown(sa.sun_path, 65534, 65534) == 0);	/* nobody's socket */
	if (!TAP_CHECK(tree_mkdir_sandbox(&t, "a1", &sb) == 0))
		return;
	snprintf(msg, sizeof(msg), "start failed: attach refused: %s belongs to uid 65534",
		 sa.sun_path);
	attach_refused(sb, sa.sun_path, -EPERM, msg);
	snprintf(msg, sizeof(msg), "start failed: attach: %s is not a socket", file);
	attach_refused(sb, file, -EINVAL, msg);
	safe_close(fd);
	{
		struct done d = { 0 };

		TAP_CHECK(tree_rmdir_sandbox(&t, "a1", on_done, &d) == 0 && d.called && d.r == 0);
	}
}

/* A VMM that floods its output (a guest flooding its console) before it
 * serves the API: the log stays under its cap (log + log.1), the flood is
 * cut to the rate limit with a line saying so, and the sandbox works. */
static void test_log_flood(void)
{
	static const uint64_t cap = 64 << 10;
	char wrapper[PATH_MAX], log[PATH_MAX], log1[PATH_MAX];
	struct sandbox *sb = make_sandbox("l1", 64);
	char *vmm = t.env.vmm_path;
	uint64_t saved = t.env.log_max;
	FILE *f;

	if (!TAP_CHECK(sb))
		return;
	snprintf(wrapper, sizeof(wrapper), "%s/flood-vmm", tmpdir);
	f = fopen(wrapper, "w");
	if (!TAP_CHECK(f))
		return;
	fprintf(f, "#!/bin/sh\n"
		   "i=0\n"
		   "while [ $i -lt 6000 ]; do\n"
		   "\techo \"flood $i \033[2J ................................................\"\n"
		   "\ti=$((i + 1))\n"
		   "done\n"
		   "exec '%s' \"$@\"\n", vmm);
	fclose(f);
	chmod(wrapper, 0755);
	t.env.vmm_path = wrapper;
	t.env.log_max = cap;
	TAP_CHECK(ctl_sync(sb, "start\n") == 0 && sb->state == SB_RUNNING);
	run_for(300);	/* the rest of the output */
	TAP_CHECK(ctl_sync(sb, "stop\n") == 0 && sb->state == SB_STOPPED);
	t.env.vmm_path = vmm;
	t.env.log_max = saved;
	snprintf(log, sizeof(log), "%s/log", sb->dir);
	snprintf(log1, sizeof(log1), "%s/log.1", sb->dir);
	tap_ok(file_size(log) >= 0 && (uint64_t)file_size(log) <= cap, "log: %lld bytes",
	       (long long)file_size(log));
	tap_ok(file_size(log1) > 0 && (uint64_t)file_size(log1) <= cap, "log.1: %lld bytes",
	       (long long)file_size(log1));
	TAP_CHECK(file_has(log, "lines of VMM output dropped") ||
		  file_has(log1, "lines of VMM output dropped"));
	TAP_CHECK(!file_has(log, "\033") && !file_has(log1, "\033"));
	/* The exit line, after the flood (a last "dropped" line may rotate it). */
	TAP_CHECK(file_has(log, "(stop)") || file_has(log1, "(stop)"));
	{
		struct done d = { 0 };

		TAP_CHECK(tree_rmdir_sandbox(&t, "l1", on_done, &d) == 0 && d.called && d.r == 0);
	}
}

/* A restore from files named in config.json: what is not a regular file is
 * refused before any VMM starts, and a FIFO does not hold a worker. */
static void restore_refused(struct sandbox *sb, const char *snap, const char *mem,
			    const char *reason)
{
	char cfg[3 * PATH_MAX];
	uint64_t t0 = now_usec();
	int n, r;

	n = snprintf(cfg, sizeof(cfg),
		     "{\"restore\":{\"snapshot_path\":\"%s\",\"mem_file_path\":\"%s\"}}", snap,
		     mem);
	TAP_CHECK(sandbox_set_config(sb, cfg, (size_t)n) == 0);
	r = ctl_sync(sb, "start\n");
	tap_ok(r < 0 && r != -ETIMEDOUT && now_usec() - t0 < 5 * USEC_PER_SEC,
	       "restore of %s + %s refused at once (%d)", snap, mem, r);
	tap_ok(sb->state == SB_FAILED && !sb->proc && !sb->busy && log_has(sb, reason, 0),
	       "log: %s", reason);
}

static void test_restore_paths(void)
{
	struct sandbox *sb = NULL;
	char fifo[PATH_MAX], file[PATH_MAX], dir[PATH_MAX], link[PATH_MAX], msg[3 * PATH_MAX];
	int fd;

	snprintf(fifo, sizeof(fifo), "%s/fifo", tmpdir);
	snprintf(file, sizeof(file), "%s/file", tmpdir);
	snprintf(dir, sizeof(dir), "%s/dir", tmpdir);
	TAP_CHECK(mkfifo(fifo, 0600) == 0 && mkdir(dir, 0700) == 0);
	fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	TAP_CHECK(fd >= 0 && write(fd, "x", 1) == 1);
	close(fd);
	if (!TAP_CHECK(tree_mkdir_sandbox(&t, "p1", &sb) == 0))
		return;
	snprintf(msg, sizeof(msg), "start failed: config.json: memory image %s is not a regular file",
		 fifo);
	restore_refused(sb, file, fifo, msg);
	snprintf(msg, sizeof(msg), "start failed: config.json: memory image %s is not a regular file",
		 dir);
	restore_refused(sb, file, dir, msg);
	snprintf(msg, sizeof(msg), "start failed: config.json: snapshot %s is not a regular file",
		 fifo);
	restore_refused(sb, fifo, file, msg);
	restore_refused(sb, file, "/nonexistent/mem",
			"start failed: config.json: memory image /nonexistent/mem: No such file");
	/* Checked before forkfs reads it: only root may read it, and it is
	 * outside the allowed directory (tmpdir); a link there to it is judged
	 * by where it leads. */
	restore_refused(sb, file, "/etc/shadow",
			"start failed: config.json: memory image /etc/shadow: not allowed");
	snprintf(link, sizeof(link), "%s/shadow-link", tmpdir);
	TAP_CHECK(symlink("/etc/shadow", link) == 0);
	snprintf(msg, sizeof(msg), "start failed: config.json: memory image %s: not allowed", link);
	restore_refused(sb, file, link, msg);
	{
		struct done d = { 0 };

		TAP_CHECK(tree_rmdir_sandbox(&t, "p1", on_done, &d) == 0 && d.called && d.r == 0);
	}
}

/* Concurrent mkdir of one tag, commands during the take, a restore from the
 * branch whose guest verifies its memory, rmdir of both. */
static void test_branches(void)
{
	struct sandbox *sb = make_sandbox("g1", 128), *rb;
	struct done d, d2, d3;
	struct sbranch *br;
	static const char restore[] = "{\"restore\":{\"branch\":\"g1/t1\"}}";
	uint64_t end;

	if (!TAP_CHECK(sb))
		return;
	TAP_CHECK(ctl_sync(sb, "start\n") == 0 && sb->state == SB_RUNNING);
	TAP_CHECK(log_has(sb, "guest: boot vcpu=0", 20000));
	d = (struct done){ 0 };
	d2 = (struct done){ 0 };
	TAP_CHECK(entry_mkdir(sb, "t1", on_entry_done, &d) == 0);
	TAP_CHECK(entry_mkdir(sb, "t1", on_entry_done, &d2) == -EEXIST && !d2.called);
	TAP_CHECK(entry_mkdir(sb, "t2", on_entry_done, &d2) == -EBUSY && !d2.called);
	TAP_CHECK(entry_find(sb, "t1", true) == NULL);	/* reserved, not visible */
	TAP_CHECK(ctl(sb, "stop\n", &d3) == -EBUSY);
	TAP_CHECK(entry_rmdir(sb, "t1", on_done, &d3) == -ENOENT);
	TAP_CHECK(run_until_flag(&d.called, WAIT_MS) && d.r == 0 && d.br);
	br = d.br;
	if (!br) {
		dump_log(sb);
		return;
	}
	TAP_CHECK(br && entry_find(sb, "t1", true) == br && !sb->busy);
	d3 = (struct done){ 0 };
	TAP_CHECK(tree_rmdir_sandbox(&t, "g1", on_done, &d3) == -ENOTEMPTY);
	end = now_usec() + WAIT_MS * USEC_PER_MSEC;
	while (br && !entry_is_settled(br) && now_usec() < end)
		run_for(20);
	{
		char status[4096];

		entry_status_text(br, status, sizeof(status));
		TAP_CHECK(br->b && entry_is_settled(br) && !strncmp(status, "ready\n", 6));
	}

	/* A restore from the branch: the guest checks its own memory. */
	TAP_CHECK(tree_mkdir_sandbox(&t, "r1", &rb) == 0);
	TAP_CHECK(sandbox_set_config(rb, restore, strlen(restore)) == 0);
	TAP_CHECK(ctl_sync(rb, "start\n") == 0 && rb->state == SB_RUNNING);
	/* One vCPU: exactly one verdict line, ok or FAIL. */
	TAP_CHECK(log_has(rb, "guest: verify ", 60000));
	if (!TAP_CHECK(log_has(rb, "guest: verify ok vcpu=0", 0) && !log_has(rb, "verify FAIL", 0)))
		dump_log(rb);
	d3 = (struct done){ 0 };
	TAP_CHECK(tree_rmdir_sandbox(&t, "r1", on_done, &d3) == 0 &&
		  run_until_flag(&d3.called, WAIT_MS) && d3.r == 0);

	/* rmdir of the branch, then of the (running) sandbox. */
	d3 = (struct done){ 0 };
	TAP_CHECK(entry_rmdir(sb, "t1", on_done, &d3) == 0);
	TAP_CHECK(entry_find(sb, "t1", true) == NULL);	/* invisible at once */
	TAP_CHECK(entry_mkdir(sb, "t1", on_entry_done, &d2) == -EBUSY);	/* still being removed */
	TAP_CHECK(run_until_flag(&d3.called, WAIT_MS) && d3.r == 0);
	TAP_CHECK(access(br->dir, F_OK) < 0);
	entry_unref(br);
	d3 = (struct done){ 0 };
	TAP_CHECK(tree_rmdir_sandbox(&t, "g1", on_done, &d3) == 0 &&
		  run_until_flag(&d3.called, WAIT_MS) && d3.r == 0);
}

static void on_idle(void *ctx)
{
	*(bool *)ctx = true;
}

/* Unmount: one sandbox running, one starting. Every VMM is stopped, the
 * starting one once it has started; idle comes once nothing runs. */
static void test_shutdown(void)
{
	struct sandbox *a = make_sandbox("u1", 64), *b = make_sandbox("u2", 64);
	struct done d;
	bool idle = false;
	pid_t pa;

	if (!TAP_CHECK(a && b))
		return;
	TAP_CHECK(ctl_sync(a, "start\n") == 0 && a->state == SB_RUNNING);
	pa = a->proc ? vmm_proc_pid(a->proc) : 0;
	TAP_CHECK(ctl(b, "start\n", &d) == 0);
	tree_shutdown(&t, on_idle, &idle);
	TAP_CHECK(ctl(a, "pause\n", &(struct done){ 0 }) == -ESHUTDOWN);
	TAP_CHECK(entry_mkdir(a, "t1", on_entry_done, &(struct done){ 0 }) == -ESHUTDOWN);
	TAP_CHECK(run_until_flag(&idle, WAIT_MS));
	TAP_CHECK(d.called);
	TAP_CHECK(!sandbox_is_started(a) && !sandbox_is_started(b));
	TAP_CHECK(!a->proc && !b->proc && t.env.jobs == 0);
	TAP_CHECK(pa > 0 && pid_gone(pa, 5000));
}

int main(void)
{
	const char *vmm = getenv("LIFECYCLE_VMM");
	struct tree_options o = { 0 };
	char *allow[] = { tmpdir };

	if (!vmm) {
		vmm = getenv("MINIVM");
		tap_diag_guest_cpu();
		if (!vmm || !getenv("GUEST_IMG"))
			tap_skip_all("needs MINIVM and GUEST_IMG");
		with_guest = true;
		/* Live branches (minivm says it can) need the uffd, as the mount tests do. */
		if (access("/dev/userfaultfd", F_OK) < 0)
			tap_skip_all("needs /dev/userfaultfd");
	}
	/* The spawner first: this process has one thread until libuv's pool. */
	if (supervisor_fork_spawner() < 0)
		tap_skip_all("cannot fork the spawner");
	if (!mkdtemp(tmpdir))
		return 1;
	snprintf(store, sizeof(store), "%s/store", tmpdir);
	snprintf(run_dir, sizeof(run_dir), "%s/run", tmpdir);
	mkdir(run_dir, 0700);
	uv_loop_init(&loop);
	uv_timer_init(&loop, &tick);
	uv_timer_start(&tick, on_tick, 10, 10);	/* uv_run(ONCE) returns at least every 10 ms */
	o.store = store;
	o.vmm_path = vmm;
	o.run_dir = run_dir;
	o.mode = BRANCH_MODE_AUTO;
	o.allow_path = allow;	/* test_restore_paths' files */
	o.n_allow_path = 1;
	plant_store();
	if (!TAP_CHECK(tree_init(&t, &loop, &o) == 0) || !TAP_CHECK(tree_load_store(&t) == 0) ||
	    !TAP_CHECK(supervisor_watch(&loop) == 0))
		return tap_done();

	test_store_planted();
	test_store_modes();
	test_names();
	test_start_stop();
	test_vmm_dies_during_start();
	test_start_failures();
	test_restore_paths();
	test_log_flood();
	test_attach_refused();
	if (with_guest)
		test_branches();
	test_shutdown();

	supervisor_unwatch();
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	tree_free(&t);
	TAP_CHECK(uv_loop_close(&loop) == 0);
	supervisor_end_spawner();
	if (!tap_failed) {
		char cmd[PATH_MAX + 16];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			tap_diag("could not remove %s", tmpdir);
	}
	return tap_done();
}
