/* SPDX-License-Identifier: MIT
 * snapfile.h — a snapshot file the VMM writes for a branch (vmstate, and
 * memory.bin of a full snapshot). A VMM without a jail writes it in the
 * branch directory itself. A jailed VMM sees no store: it writes into its
 * snapshots directory (jail.h), into a file forkfs made for it there and
 * keeps open; once the snapshot call returns, forkfs moves that file into
 * the branch and checks that what it moved is the file it made (a VMM that
 * replaced it with a link or another file fails the branch). The file then
 * belongs to forkfs again. For a jailed VMM attached to, whose directory is
 * reached through /proc/PID/root (another mount), it is copied instead.
 */
#pragma once

#include <limits.h>
#include <sys/types.h>

#include "common/error.h"

/* Where a jailed VMM writes snapshots, or all NULL/0 for no jail. */
struct snap_jail {
	const char *host_dir;	/* the store directory bound into the jail */
	const char *vmm_dir;	/* ... and the path the VMM sees for it */
	uid_t uid;
};

struct snap_file {
	char final[PATH_MAX];	/* in the branch directory */
	char host[PATH_MAX];	/* where the VMM writes it, as forkfs sees it */
	char vmm[PATH_MAX];	/* ... and as the VMM does: the path to send it */
	int fd;			/* jail: forkfs's fd of that file, else -1 */
};

/* Set up f for name in the branch directory dir. */
int snap_file_begin(const struct snap_jail *j, const char *dir, const char *name,
		    struct snap_file *f, struct error *err);
/* The VMM has written it: move it into the branch (no-op without a jail). */
int snap_file_finish(struct snap_file *f, struct error *err);
/* Drop what begin made (after a failure; also after finish, to close fd). */
void snap_file_end(struct snap_file *f);
