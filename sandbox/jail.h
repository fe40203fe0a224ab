/* SPDX-License-Identifier: MIT
 * jail.h — the confinement of a VMM forkfs launches (forkfs(8), SECURITY).
 *
 * The daemon describes a jail in a struct jail_spec and hands it, with the
 * fds of the files the VMM may use (opened and checked by forkfs), to the
 * spawner; the spawner's child enters it (jail_enter) and execs the VMM. The
 * layout is the one Firecracker's jailer makes:
 *
 *   ROOT/            the VMM's "/" (pivot_root), root:root 0755, read-only
 *     run/           the VMM's only writable directory (its API socket), uid-owned
 *     dev/           a private tmpfs: null, zero, urandom, userfaultfd, kvm (and
 *                    net/tun with JAIL_HOST_NET), the last two owned by the uid
 *     proc/          the VMM's own procfs (its PID namespace: it is pid 1)
 *     usr/ (+ lib, lib64, bin links or binds)  the host's, read-only, nosuid
 *     kernel, drive-ID, vmstate, memory, ...   files bound one by one
 *     snapshots/     a store directory where the VMM writes snapshots
 *
 * Each file is bound from forkfs's fd through an idmapped mount that shows its
 * owner as the jail's uid, so the VMM can use a root-owned kernel or drive
 * without any change to the file; read-only unless it is a writable drive.
 * The VMM also gets new mount, PID, IPC, UTS and (unless JAIL_HOST_NET)
 * network namespaces, its own cgroup (memory, pids, cpu), a uid and gid of
 * its own with no supplementary groups and no capabilities, no_new_privs, and
 * rlimits (no core dumps, bounded fds).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"

#define JAIL_MAX_FILES 12
#define JAIL_INHERIT_FD 3	/* the fd a VMM inherits (jail_spec.inherit): /proc/self/fd/3 */

enum {
	JAIL_ON = 1 << 0,
	JAIL_HOST_NET = 1 << 1,	/* keep the host's network namespace (a tap device) */
};

enum {
	JAIL_FILE_RO = 1 << 0,	/* bound read-only */
	JAIL_FILE_DIR = 1 << 1,	/* a directory (the snapshots directory) */
	JAIL_FILE_KEEP_OWNER = 1 << 2,	/* no idmap: already the jail's */
};

struct jail_file {
	char name[64];		/* under the root, without the leading '/' */
	uint32_t flags;
};

/* Sent as is over the spawner's socket (same binary on both ends). */
struct jail_spec {
	uint32_t flags;		/* 0: no jail (a plain fork and exec) */
	uint32_t uid, gid;
	uint32_t nfiles;
	uint32_t pids_max;
	uint32_t cpu_weight;	/* cgroup v2 cpu.weight scale (1..10000; 100 is the default) */
	uint64_t mem_max;	/* bytes; 0 = no memory limit */
	int32_t inherit;	/* index of the fd the VMM inherits as JAIL_INHERIT_FD, or -1 */
	char root[200];		/* host path of the jail's root directory (created by the child) */
	char cgroup[64];	/* the cgroup's name, "" for none */
	struct jail_file files[JAIL_MAX_FILES];
};

/* The fds that come with a spec, in this order after stdout and stderr:
 * the inherited fd (if inherit >= 0), then one per file. */
static inline unsigned jail_nfds(const struct jail_spec *s)
{
	return (s->inherit >= 0 ? 1u : 0u) + s->nfiles;
}

/* Daemon side: add a file to bind (fd is the caller's; it is sent, not
 * taken). Returns 0, or -E2BIG when the jail is full. */
int jail_add_file(struct jail_spec *s, int *fds, const char *name, int fd, uint32_t flags);


#define JAIL_SYS_DIRS 5

/* What the spawner clones from the host for a jail: detached mount trees. */
struct jail_trees {
	int files[JAIL_MAX_FILES];
	int sys[JAIL_SYS_DIRS];		/* /usr, /lib ... or -1 */
	char links[JAIL_SYS_DIRS][64];	/* ... or the host's symbolic link */
};

/* Spawner side, before the child: clone the spec's files (fds: the spec's
 * fds in order) and the system directories. On failure returns -errno and
 * names the step in err; jail_trees_close() in every case. */
int jail_trees_make(const struct jail_spec *s, const int *fds, struct jail_trees *t,
		    struct error *err);
void jail_trees_close(struct jail_trees *t);

/* Child side, in the spawner's child created in the new PID, IPC, UTS (and
 * network) namespaces, still in the spawner's mount namespace: build the
 * root from the trees, enter it and drop privileges (the caller then execs
 * the VMM from an fd opened before). On failure returns -errno and names the
 * step in err. */
int jail_enter(const struct jail_spec *s, struct jail_trees *t, struct error *err);
