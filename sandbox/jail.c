/* SPDX-License-Identifier: MIT
 * jail.c — entering a VMM's jail (jail.h), in the spawner's child, and the
 * daemon's small helpers for describing one.
 *
 * Everything that must come from the host (the bound files, /usr) is cloned
 * first, by the spawner, as detached mount trees (open_tree), made read-only
 * or idmapped while still detached (mount_setattr; the idmap's user
 * namespace is made in the spawner's PID namespace, whose /proc it writes),
 * and only then moved by the child into the private mount namespace it
 * builds around the root: the fds forkfs opened keep naming the
 * files it checked, whatever happens to their paths meanwhile. Every step
 * that fails names itself in err, which the spawner sends back to the
 * daemon for the sandbox's log.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/error.h"
#include "common/macro.h"
#include "sandbox/jail.h"

#define JAIL_NOFILE 4096	/* fds of a jailed VMM */

int jail_add_file(struct jail_spec *s, int *fds, const char *name, int fd, uint32_t flags)
{
	struct jail_file *f;

	if (s->nfiles == JAIL_MAX_FILES)
		return -E2BIG;
	f = &s->files[s->nfiles];
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->flags = flags;
	fds[(s->inherit >= 0 ? 1 : 0) + s->nfiles++] = fd;
	return 0;
}

/* ---- the child side ---- */

#define FAIL(...) return error_set_errno(err, -errno, __VA_ARGS__)

/* A user namespace whose only uid and gid map owner and group to the jail's:
 * an idmapped mount through it shows a file of owner:group as the jail's. */
static int idmap_userns(uid_t owner, gid_t group, uid_t uid, gid_t gid)
{
	int go[2], done[2], fd = -1, e = 0;
	char path[64], map[64];
	pid_t pid;
	char c;

	if (pipe2(go, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(done, O_CLOEXEC) < 0) {
		e = errno;
		goto out_go;
	}
	pid = fork();
	if (pid < 0) {
		e = errno;
		goto out;
	}
	if (pid == 0) {
		c = unshare(CLONE_NEWUSER) < 0 ? 'E' : 'U';
		if (write(go[1], &c, 1) == 1)
			(void)!read(done[0], &c, 1);
		_exit(0);
	}
	if (read(go[0], &c, 1) != 1 || c != 'U') {
		e = EPERM;
	} else {
		const char *files[2] = { "uid_map", "gid_map" };
		unsigned long ids[2][2] = { { owner, uid }, { group, gid } };

		for (int i = 0; i < 2 && !e; i++) {
			int mfd;

			snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, files[i]);
			snprintf(map, sizeof(map), "%lu %lu 1\n", ids[i][0], ids[i][1]);
			mfd = open(path, O_WRONLY | O_CLOEXEC);
			if (mfd < 0 || write(mfd, map, strlen(map)) < 0)
				e = errno;
			safe_close(mfd);
		}
		snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
		if (!e && (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			e = errno;
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
out:
	close(done[0]);
	close(done[1]);
out_go:
	close(go[0]);
	close(go[1]);
	return e ? -e : fd;
}

static int mount_setattr_(int fd, const char *path, unsigned flags, struct mount_attr *a)
{
	return (int)syscall(SYS_mount_setattr, fd, path, flags, a, sizeof(*a));
}

/* A detached copy of the mount of fd (a file or directory), set up for the
 * jail: read-only unless writable, never suid/dev/exec, and owned by the
 * jail's uid through an idmap. */
static int clone_file(const struct jail_spec *s, const struct jail_file *f, int fd)
{
	struct mount_attr a = { .attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
					    MOUNT_ATTR_NOEXEC };
	_cleanup_close_ int t = -1, ns = -1;
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	t = (int)syscall(SYS_open_tree, fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
	if (t < 0)
		return -errno;
	if (f->flags & JAIL_FILE_RO)
		a.attr_set |= MOUNT_ATTR_RDONLY;
	if (!(f->flags & JAIL_FILE_KEEP_OWNER) && (st.st_uid != s->uid || st.st_gid != s->gid)) {
		ns = idmap_userns(st.st_uid, st.st_gid, s->uid, s->gid);
		if (ns < 0)
			return ns;
		a.attr_set |= MOUNT_ATTR_IDMAP;
		a.userns_fd = (uint64_t)ns;
	}
	if (mount_setattr_(t, "", AT_EMPTY_PATH, &a) == 0)
		return TAKE_FD(t);
	/* A file system without idmapped mounts (EINVAL): a read-only file
	 * everyone may read needs none; anything else cannot be given. */
	if (errno == EINVAL && (a.attr_set & MOUNT_ATTR_IDMAP) && (f->flags & JAIL_FILE_RO) &&
	    S_ISREG(st.st_mode) && (st.st_mode & S_IROTH)) {
		a.attr_set &= ~(uint64_t)MOUNT_ATTR_IDMAP;
		a.userns_fd = 0;
		if (mount_setattr_(t, "", AT_EMPTY_PATH, &a) == 0)
			return TAKE_FD(t);
	}
	return -errno;
}

/* The host's /usr read-only, and /lib, /lib64, /bin, /sbin as the host has
 * them (links on a merged-/usr system, else read-only binds): enough for a
 * dynamically linked VMM to load; a static one (Firecracker) needs none. */
static const char *const sys_dirs[JAIL_SYS_DIRS] = { "usr", "lib", "lib64", "bin", "sbin" };

static int clone_sys_dir(const char *name, char *link, size_t link_len)
{
	struct mount_attr a = { .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
					    MOUNT_ATTR_NODEV };
	char host[16];
	struct stat st;
	ssize_t n;
	int t;

	link[0] = '\0';
	snprintf(host, sizeof(host), "/%s", name);
	if (lstat(host, &st) < 0)
		return errno == ENOENT ? -ENOENT : -errno;
	if (S_ISLNK(st.st_mode)) {
		n = readlink(host, link, link_len - 1);
		if (n < 0)
			return -errno;
		link[n] = '\0';
		return -ENOENT;	/* no tree: a link */
	}
	if (!S_ISDIR(st.st_mode))
		return -ENOENT;
	t = (int)syscall(SYS_open_tree, AT_FDCWD, host,
			 OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	if (t < 0)
		return -errno;
	if (mount_setattr_(t, "", AT_EMPTY_PATH | AT_RECURSIVE, &a) < 0) {
		int r = -errno;

		close(t);
		return r;
	}
	return t;
}

static int mount_point(const char *name, bool dir)
{
	int fd;

	if (dir)
		return mkdir(name, 0755) < 0 && errno != EEXIST ? -errno : 0;
	fd = open(name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

static int move_tree(int t, const char *name)
{
	return syscall(SYS_move_mount, t, "", AT_FDCWD, name, MOVE_MOUNT_F_EMPTY_PATH) < 0 ? -errno
											   : 0;
}

/* A device node like the host's (if the host has it), mode and owner given. */
static int dev_node(const char *host, const char *name, mode_t mode, uid_t uid, gid_t gid)
{
	struct stat st;

	if (stat(host, &st) < 0 || !S_ISCHR(st.st_mode))
		return 0;
	if (mknod(name, S_IFCHR | mode, st.st_rdev) < 0 || chown(name, uid, gid) < 0 ||
	    chmod(name, mode) < 0)
		return -errno;
	return 0;
}

static int make_dev(const struct jail_spec *s)
{
	int r = 0;

	if (mkdir("dev", 0755) < 0 && errno != EEXIST)
		return -errno;
	if (mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") < 0)
		return -errno;
	r = r ?: dev_node("/dev/null", "dev/null", 0666, 0, 0);
	r = r ?: dev_node("/dev/zero", "dev/zero", 0666, 0, 0);
	r = r ?: dev_node("/dev/urandom", "dev/urandom", 0444, 0, 0);
	r = r ?: dev_node("/dev/userfaultfd", "dev/userfaultfd", 0600, s->uid, s->gid);
	r = r ?: dev_node("/dev/kvm", "dev/kvm", 0600, s->uid, s->gid);
	if (!r && (s->flags & JAIL_HOST_NET)) {
		if (mkdir("dev/net", 0755) < 0)
			return -errno;
		r = dev_node("/dev/net/tun", "dev/net/tun", 0600, s->uid, s->gid);
	}
	return r;
}

static int drop_privileges(const struct jail_spec *s)
{
	const struct rlimit core = { 0, 0 }, nofile = { JAIL_NOFILE, JAIL_NOFILE };

	if (setrlimit(RLIMIT_CORE, &core) < 0 || setrlimit(RLIMIT_NOFILE, &nofile) < 0)
		return -errno;
	if (setgroups(0, NULL) < 0 || setresgid(s->gid, s->gid, s->gid) < 0 ||
	    setresuid(s->uid, s->uid, s->uid) < 0)
		return -errno;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	umask(077);
	return 0;
}

void jail_trees_close(struct jail_trees *t)
{
	for (size_t i = 0; i < ARRAY_SIZE(t->files); i++)
		t->files[i] = safe_close(t->files[i]);
	for (size_t i = 0; i < ARRAY_SIZE(t->sys); i++)
		t->sys[i] = safe_close(t->sys[i]);
}

int jail_trees_make(const struct jail_spec *s, const int *fds, struct jail_trees *t,
		    struct error *err)
{
	const int *file_fds = fds + (s->inherit >= 0 ? 1 : 0);

	for (size_t i = 0; i < ARRAY_SIZE(t->files); i++)
		t->files[i] = -1;
	for (size_t i = 0; i < ARRAY_SIZE(t->sys); i++)
		t->sys[i] = -1;
	if (s->uid == 0 || s->gid == 0 || s->nfiles > JAIL_MAX_FILES || s->root[0] != '/')
		return error_set(err, -EINVAL, "invalid jail");
	for (uint32_t i = 0; i < s->nfiles; i++) {
		if (strchr(s->files[i].name, '/') || s->files[i].name[0] == '.' ||
		    !s->files[i].name[0])
			return error_set(err, -EINVAL, "bad file name %s", s->files[i].name);
		t->files[i] = clone_file(s, &s->files[i], file_fds[i]);
		if (t->files[i] < 0)
			return error_set_errno(err, t->files[i], "binding /%s", s->files[i].name);
	}
	for (size_t i = 0; i < ARRAY_SIZE(sys_dirs); i++) {
		t->sys[i] = clone_sys_dir(sys_dirs[i], t->links[i], sizeof(t->links[i]));
		if (t->sys[i] < 0 && t->sys[i] != -ENOENT)
			return error_set_errno(err, t->sys[i], "binding /%s", sys_dirs[i]);
	}
	return 0;
}

int jail_enter(const struct jail_spec *s, struct jail_trees *t, struct error *err)
{
	struct stat st;
	int r;

	/* The root: a directory of root's, which nobody else may change. */
	if (mkdir(s->root, 0755) < 0 && errno != EEXIST)
		FAIL("creating %s", s->root);
	if (lstat(s->root, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != 0)
		return error_set_errno(err, -EPERM, "%s is not root's directory", s->root);
	if (unshare(CLONE_NEWNS) < 0)
		FAIL("a mount namespace");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		FAIL("making mounts private");
	if (mount(s->root, s->root, NULL, MS_BIND, NULL) < 0 || chdir(s->root) < 0)
		FAIL("binding %s", s->root);
	if (mkdir("run", 0700) < 0 && errno != EEXIST)
		FAIL("creating /run");
	if (lchown("run", s->uid, s->gid) < 0 || mount("run", "run", NULL, MS_BIND, NULL) < 0)
		FAIL("setting up /run");
	r = make_dev(s);
	if (r < 0)
		return error_set_errno(err, r, "setting up /dev");
	for (uint32_t i = 0; i < s->nfiles; i++) {
		r = mount_point(s->files[i].name, s->files[i].flags & JAIL_FILE_DIR);
		if (r >= 0)
			r = move_tree(t->files[i], s->files[i].name);
		if (r < 0)
			return error_set_errno(err, r, "mounting /%s", s->files[i].name);
	}
	for (size_t i = 0; i < ARRAY_SIZE(sys_dirs); i++) {
		if (t->sys[i] >= 0) {
			r = mount_point(sys_dirs[i], true);
			if (r >= 0)
				r = move_tree(t->sys[i], sys_dirs[i]);
		} else if (t->links[i][0]) {
			r = symlink(t->links[i], sys_dirs[i]) < 0 && errno != EEXIST ? -errno : 0;
		}
		if (r < 0)
			return error_set_errno(err, r, "mounting /%s", sys_dirs[i]);
	}
	if (mkdir("proc", 0555) < 0 && errno != EEXIST)
		FAIL("creating /proc");

	/* Into it: the old root is stacked under the new one and detached. */
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		FAIL("pivot_root");
	if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
		FAIL("detaching the host's root");
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		FAIL("mounting /proc");
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
		  NULL) < 0)
		FAIL("making / read-only");
	if (sethostname("forkfs-vmm", 10) < 0)
		FAIL("sethostname");
	if ((r = drop_privileges(s)) < 0)
		return error_set_errno(err, r, "dropping privileges");
	return 0;
}
