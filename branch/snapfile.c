/* SPDX-License-Identifier: MIT
 * snapfile.c — snapshot files a (jailed) VMM writes for a branch
 * (snapfile.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "branch/snapfile.h"
#include "common/macro.h"
#include "common/nolinks.h"

static int path2(char *buf, size_t size, const char *a, const char *b, const char *c)
{
	return snprintf(buf, size, "%s/%s%s", a, b, c) < (int)size ? 0 : -ENAMETOOLONG;
}

int snap_file_begin(const struct snap_jail *j, const char *dir, const char *name,
		    struct snap_file *f, struct error *err)
{
	const char *tag = strrchr(dir, '/');
	char file[NAME_MAX + 1];

	f->fd = -1;
	f->host[0] = '\0';
	if (path2(f->final, sizeof(f->final), dir, name, "") < 0)
		return error_set(err, -ENAMETOOLONG, "branch path too long");
	if (!j || !j->host_dir) {
		snprintf(f->vmm, sizeof(f->vmm), "%s", f->final);
		return 0;
	}
	/* One name per branch and file: the tag is unique in its sandbox. */
	if (snprintf(file, sizeof(file), "%s.%s", tag ? tag + 1 : dir, name) >= (int)sizeof(file) ||
	    path2(f->host, sizeof(f->host), j->host_dir, file, "") < 0 ||
	    path2(f->vmm, sizeof(f->vmm), j->vmm_dir, file, "") < 0)
		return error_set(err, -ENAMETOOLONG, "snapshot path too long");
	(void)unlink(f->host);	/* left by a crash */
	f->fd = open(f->host, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (f->fd < 0 || fchown(f->fd, j->uid, j->uid) < 0) {
		int r = error_set_errno(err, -errno, "creating %s for the VMM", f->host);

		snap_file_end(f);
		return r;
	}
	return 0;
}

/* The snapshots directory is another mount (a VMM attached to, reached
 * through /proc/PID/root): copy the file forkfs made, from its own fd. */
static int copy_in(struct snap_file *f, struct error *err)
{
	_cleanup_close_ int out = open_nolinks(f->final, O_WRONLY | O_CREAT | O_EXCL, 0600);
	off_t in_off = 0;
	ssize_t n;

	if (out < 0)
		return error_set_errno(err, out, "creating %s", f->final);
	do
		n = copy_file_range(f->fd, &in_off, out, NULL, 1 << 30, 0);
	while (n > 0 || (n < 0 && errno == EINTR));
	if (n < 0) {
		int r = error_set_errno(err, -errno, "copying %s into the branch", f->host);

		(void)unlink_nolinks(f->final);
		return r;
	}
	return 0;	/* snap_file_end() unlinks the VMM's copy */
}

int snap_file_finish(struct snap_file *f, struct error *err)
{
	struct stat mine, moved;

	if (f->fd < 0)
		return 0;
	/* Ours again first: from here the VMM cannot open it anew. */
	if (fchown(f->fd, geteuid(), getegid()) < 0 || fchmod(f->fd, 0600) < 0 ||
	    fstat(f->fd, &mine) < 0)
		return error_set_errno(err, -errno, "taking back %s", f->host);
	if (rename(f->host, f->final) < 0) {
		if (errno != EXDEV)
			return error_set_errno(err, -errno, "moving %s into the branch", f->host);
		return copy_in(f, err);
	}
	f->host[0] = '\0';
	if (lstat(f->final, &moved) < 0)
		return error_set_errno(err, -errno, "%s", f->final);
	if (moved.st_dev != mine.st_dev || moved.st_ino != mine.st_ino) {
		(void)unlink_nolinks(f->final);
		return error_set(err, -EPERM, "the VMM replaced the snapshot file it was given (%s)",
				 f->vmm);
	}
	return 0;
}

void snap_file_end(struct snap_file *f)
{
	if (f->host[0])
		(void)unlink(f->host);
	f->host[0] = '\0';
	f->fd = safe_close(f->fd);
}
