/* SPDX-License-Identifier: MIT
 * confine.c — a start's jail (confine.h): config.json's files opened and
 * checked here, by forkfs, and bound into the VMM's root under fixed names.
 *
 * A path in config.json is untrusted: it is opened with O_PATH (which never
 * blocks and has no side effect, even on a FIFO or device), then its type
 * and owner are checked on the fd, and that fd, not the path, is what the
 * jail binds. The VMM sees only the fixed names, never the host's paths.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/macro.h"
#include "common/util.h"
#include "sandbox/confine.h"

#define JAIL_PIDS_MAX 256
#define JAIL_CPU_WEIGHT 100

enum kind { K_FILE, K_DRIVE, K_OUTPUT };

static bool type_ok(enum kind k, mode_t m)
{
	return S_ISREG(m) || (k == K_DRIVE && S_ISBLK(m)) || (k == K_OUTPUT && S_ISFIFO(m));
}

static const char *type_want(enum kind k)
{
	return k == K_DRIVE ? "a regular file or block device" :
	       k == K_OUTPUT ? "a regular file or FIFO" : "a regular file";
}

static bool beneath(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return n > 0 && strncmp(path, dir, n) == 0 && (path[n] == '/' || dir[n - 1] == '/');
}

/* Where an allowed file may lie (besides anywhere, for a read-only file
 * everyone may read): the store, and -o allow_path. The file's real path is
 * what counts, so a symbolic link out of an allowed directory is judged by
 * where it leads. */
static bool allowed(const struct confine *c, int fd, const struct stat *st, bool writable)
{
	char link[64], real[PATH_MAX];
	ssize_t n;

	if (!writable && S_ISREG(st->st_mode) && (st->st_mode & S_IROTH))
		return true;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, real, sizeof(real) - 1);
	if (n <= 0)
		return false;
	real[n] = '\0';
	if (c->policy.store && beneath(real, c->policy.store))
		return true;
	for (size_t i = 0; i < c->policy.n_allow; i++)
		if (beneath(real, c->policy.allow[i]))
			return true;
	return false;
}

/* Open path for the VMM, checked; returns the fd (O_PATH) or -errno. */
static int open_checked(const struct confine *c, const char *what, const char *path, enum kind k,
			bool nofollow, bool writable, struct stat *st, struct error *err)
{
	_cleanup_close_ int fd = -1;
	uid_t me = geteuid();

	if (path[0] != '/')
		return error_set(err, -EINVAL, "%s %.300s: not an absolute path", what, path);
	fd = open(path, O_PATH | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0));
	if (fd < 0 || fstat(fd, st) < 0)
		return error_set_errno(err, -errno, "%s %.300s", what, path);
	if (!type_ok(k, st->st_mode))
		return error_set(err, -EINVAL, "%s %.300s is not %s", what, path, type_want(k));
	if (st->st_uid != 0 && st->st_uid != me)
		return error_set(err, -EPERM, "%s %.300s belongs to uid %u, not to root or uid %u",
				 what, path, (unsigned)st->st_uid, (unsigned)me);
	if (!allowed(c, fd, st, writable))
		return error_set(err, -EACCES, "%s %.300s: not allowed (%s; see -o allow_path)",
				 what, path, writable ? "a file the VMM writes must be in an "
				 "allowed directory" : "not readable by everyone, nor in an allowed "
				 "directory");
	return TAKE_FD(fd);
}

/* Check path and, in a jail, bind it as name (without one, the VMM opens
 * the path itself: it is only checked). ret_read (NULL: not wanted): the
 * same file, opened for reading by forkfs (O_NONBLOCK), never the path again. */
static int bind(struct confine *c, const char *what, const char *path, enum kind k, bool nofollow,
		const char *name, uint32_t flags, int *ret_read, struct error *err)
{
	struct stat st;
	_cleanup_close_ int fd = open_checked(c, what, path, k, nofollow, !(flags & JAIL_FILE_RO),
					      &st, err);

	if (fd < 0)
		return fd;
	if (ret_read) {
		char self[64];

		snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
		*ret_read = open(self, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		if (*ret_read < 0)
			return error_set_errno(err, -errno, "cannot open %s %.300s", what, path);
	}
	if (!(c->spec.flags & JAIL_ON))
		return 0;
	if (jail_add_file(&c->spec, c->fds, name, fd, flags) < 0)
		return error_set(err, -E2BIG, "too many files for the jail (at most %d)",
				 JAIL_MAX_FILES);
	fd = -1;	/* the jail's now */
	return 0;
}

static void set_path(json_object *o, const char *key, const char *name)
{
	char p[80];

	snprintf(p, sizeof(p), "/%s", name);
	json_object_object_add(o, key, json_object_new_string(p));
}

int confine_init(struct confine *c, const struct confine_policy *policy, const char *root,
		 const char *out_dir, uid_t uid, gid_t gid, const char *cgroup, struct error *err)
{
	_cleanup_close_ int fd = -1;
	struct stat st;

	memset(c, 0, sizeof(*c));
	c->policy = *policy;
	c->spec.inherit = -1;
	if (!root)
		return 0;	/* no jail: the files are only checked */
	c->spec.flags = JAIL_ON;
	c->spec.uid = uid;
	c->spec.gid = gid;
	c->spec.inherit = -1;
	c->spec.pids_max = JAIL_PIDS_MAX;
	c->spec.cpu_weight = JAIL_CPU_WEIGHT;
	if (snprintf(c->spec.root, sizeof(c->spec.root), "%s", root) >= (int)sizeof(c->spec.root))
		return error_set(err, -ENAMETOOLONG, "jail root %.300s: path too long", root);
	snprintf(c->spec.cgroup, sizeof(c->spec.cgroup), "%s", cgroup);
	/* The snapshots directory: the VMM's, and nothing else in it. */
	if (mkdir(out_dir, 0700) < 0 && errno != EEXIST)
		return error_set_errno(err, -errno, "creating %.300s", out_dir);
	fd = open(out_dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		return error_set_errno(err, -errno, "opening %.300s", out_dir);
	if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH) < 0)
		return error_set_errno(err, -errno, "giving %.300s to uid %u", out_dir, (unsigned)uid);
	jail_add_file(&c->spec, c->fds, CONFINE_SNAPSHOTS + 1, TAKE_FD(fd),
		      JAIL_FILE_DIR | JAIL_FILE_KEEP_OWNER);
	return 0;
}

static uint64_t mem_limit(uint64_t guest)
{
	return guest + guest / 4 + 256 * MIB;	/* the VMM's own memory, page tables, buffers */
}

static int bind_field(struct confine *c, json_object *o, const char *key, const char *what,
		      enum kind k, const char *name, uint32_t flags, struct error *err)
{
	json_object *v;
	int r;

	if (!o || !json_object_object_get_ex(o, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return error_set(err, -EINVAL, "%s: not a string", what);
	r = bind(c, what, json_object_get_string(v), k, false, name, flags, NULL, err);
	if (r >= 0 && (c->spec.flags & JAIL_ON))
		set_path(o, key, name);
	return r;
}

int confine_boot(struct confine *c, json_object *root, struct error *err)
{
	json_object *o = NULL, *v;
	uint64_t mib = 128;	/* Firecracker's default */
	int r;

	if ((c->spec.flags & JAIL_ON) && json_object_object_get_ex(root, "vsock", &o))
		return error_set(err, -EOPNOTSUPP, "\"vsock\" is not supported in the jail "
				 "(its socket would be inside the VMM's root); mount with -o jail=off");
	if (json_object_object_get_ex(root, "network-interfaces", &o))
		c->spec.flags |= JAIL_HOST_NET;
	if (json_object_object_get_ex(root, "machine-config", &o) &&
	    json_object_object_get_ex(o, "mem_size_mib", &v) && json_object_get_int64(v) > 0)
		mib = (uint64_t)json_object_get_int64(v);
	c->spec.mem_max = mem_limit(mib * MIB);

	o = NULL;
	json_object_object_get_ex(root, "boot-source", &o);
	r = bind_field(c, o, "kernel_image_path", "kernel", K_FILE, "kernel", JAIL_FILE_RO, err);
	if (r >= 0)
		r = bind_field(c, o, "initrd_path", "initrd", K_FILE, "initrd", JAIL_FILE_RO, err);
	o = NULL;
	if (r >= 0 && json_object_object_get_ex(root, "logger", &o))
		r = bind_field(c, o, "log_path", "logger log_path", K_OUTPUT, "logger.log", 0, err);
	o = NULL;
	if (r >= 0 && json_object_object_get_ex(root, "metrics", &o))
		r = bind_field(c, o, "metrics_path", "metrics_path", K_OUTPUT, "metrics.log", 0, err);
	o = NULL;
	if (r >= 0 && json_object_object_get_ex(root, "drives", &o)) {
		for (size_t i = 0; r >= 0 && i < json_object_array_length(o); i++) {
			json_object *d = json_object_array_get_idx(o, i), *id, *ro;
			char name[64], what[96];
			bool read_only;

			json_object_object_get_ex(d, "drive_id", &id);	/* checked by config.c */
			read_only = json_object_object_get_ex(d, "is_read_only", &ro) &&
				    json_object_get_boolean(ro);
			snprintf(name, sizeof(name), "drive-%s", json_object_get_string(id));
			snprintf(what, sizeof(what), "drive %s", json_object_get_string(id));
			r = bind_field(c, d, "path_on_host", what, K_DRIVE, name,
				       read_only ? JAIL_FILE_RO : 0, err);
		}
	}
	return r;
}

int confine_restore(struct confine *c, const char *snapshot_path, const char *mem_path,
		    bool in_store, int *ret_mem, struct error *err)
{
	_cleanup_close_ int mem = -1;
	struct stat st;
	int r;

	r = bind(c, "snapshot", snapshot_path, K_FILE, in_store, "vmstate", JAIL_FILE_RO, NULL, err);
	if (r >= 0)
		r = bind(c, "memory image", mem_path, K_FILE, in_store, "memory", JAIL_FILE_RO, &mem,
			 err);
	if (r < 0)
		return r;
	if (fstat(mem, &st) < 0)
		return error_set_errno(err, -errno, "memory image %.300s", mem_path);
	c->spec.mem_max = mem_limit((uint64_t)st.st_size);
	if (ret_mem)
		*ret_mem = TAKE_FD(mem);
	return 0;
}

int confine_inherit(struct confine *c, int memfd, struct error *err)
{
	int fd;

	if (!(c->spec.flags & JAIL_ON))
		return 0;
	/* The inherited fd comes first in fds: shift the files up. */
	fd = fcntl(memfd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return error_set_errno(err, -errno, "dup of the memory fd");
	memmove(c->fds + 1, c->fds, c->spec.nfiles * sizeof(int));
	c->fds[0] = fd;
	c->spec.inherit = 0;
	return 0;
}

void confine_done(struct confine *c)
{
	for (unsigned i = 0; i < jail_nfds(&c->spec); i++)
		c->fds[i] = safe_close(c->fds[i]);
	c->spec.nfiles = 0;
	c->spec.inherit = -1;
}
