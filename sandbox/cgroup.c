/* SPDX-License-Identifier: MIT
 * cgroup.c — a cgroup per jailed VMM (cgroup.h): made by the spawner before
 * the launch, entered by its child, removed once the spawner has reaped it.
 *
 * cgroup v2 when /sys/fs/cgroup is a cgroup2 mount whose controllers include
 * memory; otherwise the v1 hierarchies of memory, pids and cpu (a hybrid
 * layout such as this project's CI machines have: there the cgroup2 mount
 * has no controllers). Groups are made under the spawner's own cgroup of
 * each hierarchy, which the daemon shares. On v2 a cgroup with processes
 * cannot hand controllers to its children: the spawner then moves the
 * processes of its cgroup (the daemon's and its own) into a leaf named
 * "forkfs" first, as a systemd unit with Delegate=yes (forkfs@.service)
 * expects. memory must be available; pids and cpu are used where they are. Groups a
 * killed spawner left behind are removed when the next one starts.
 */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/macro.h"
#include "common/util.h"
#include "sandbox/cgroup.h"

#define CG_ROOT "/sys/fs/cgroup"

enum { CG_MEMORY, CG_PIDS, CG_CPU, CG_N };
static const char *const v1_names[CG_N] = { "memory", "pids", "cpu" };

static struct {
	bool probed, v2;
	char base[CG_N][PATH_MAX];	/* v2: base[0] only; "" where there is none */
} cg;

static int write_str(const char *dir, const char *file, const char *value)
{
	char p[PATH_MAX + 64];
	_cleanup_close_ int fd = -1;
	size_t n = strlen(value);

	snprintf(p, sizeof(p), "%s/%s", dir, file);
	fd = open(p, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	return write(fd, value, n) == (ssize_t)n ? 0 : -errno;
}

static bool list_has(const char *list, const char *word, char sep)
{
	size_t n = strlen(word);

	for (const char *p = list; p && *p;) {
		if (strncmp(p, word, n) == 0 && (p[n] == sep || p[n] == '\0' || p[n] == '\n'))
			return true;
		p = strchr(p, sep);
		p = p ? p + 1 : NULL;
	}
	return false;
}

/* v2: move every process of base into base/forkfs, so that base may enable
 * controllers for its children. */
static int v2_make_leaf(const char *base)
{
	char procs[PATH_MAX + 32], leaf[PATH_MAX + 16], line[32];
	FILE *f;
	int r = 0;

	snprintf(leaf, sizeof(leaf), "%s/forkfs", base);
	if (mkdir(leaf, 0755) < 0 && errno != EEXIST)
		return -errno;
	snprintf(procs, sizeof(procs), "%s/cgroup.procs", base);
	f = fopen(procs, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		r = write_str(leaf, "cgroup.procs", line) ?: r;
	fclose(f);
	return r;
}

/* Groups left by a spawner that was killed (its daemon's pid is in their
 * name and is gone): rmdir only removes a group without processes. */
static void remove_stale(const char *base)
{
	DIR *d = opendir(base);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		int pid;
		char p[PATH_MAX + 300];

		if (sscanf(de->d_name, "forkfs-%d-", &pid) != 1 || pid <= 0 ||
		    (kill(pid, 0) == 0 || errno != ESRCH))
			continue;
		snprintf(p, sizeof(p), "%s/%s", base, de->d_name);
		rmdir(p);
	}
	closedir(d);
}

static void probe(void)
{
	char line[PATH_MAX + 64], *ctrls = NULL;
	size_t n;
	FILE *f;

	cg.probed = true;
	if (read_file(CG_ROOT "/cgroup.controllers", 4096, &ctrls, &n) >= 0 &&
	    list_has(ctrls, "memory", ' '))
		cg.v2 = true;
	free(ctrls);
	f = fopen("/proc/self/cgroup", "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL, *nl;

		if (!c2)
			continue;
		*c2 = '\0';
		if ((nl = strchr(c2 + 1, '\n')))
			*nl = '\0';
		if (strcmp(c2 + 1, "/") == 0)
			c2[1] = '\0';	/* the root: no trailing "/" */
		if (cg.v2 && c1[1] == '\0') {
			snprintf(cg.base[0], sizeof(cg.base[0]), CG_ROOT "%s", c2 + 1);
			break;
		}
		for (int i = 0; !cg.v2 && i < CG_N; i++)
			if (list_has(c1 + 1, v1_names[i], ','))
				snprintf(cg.base[i], sizeof(cg.base[i]), CG_ROOT "/%s%s", c1 + 1, c2 + 1);
	}
	fclose(f);
	for (int i = 0; i < CG_N; i++)
		if (cg.base[i][0])
			remove_stale(cg.base[i]);
}

static int group_dir(int i, const char *name, char *buf, size_t len)
{
	if (!cg.base[i][0])
		return -ENOENT;
	return snprintf(buf, len, "%s/%s", cg.base[i], name) < (int)len ? 0 : -ENAMETOOLONG;
}

static int v2_create(const char *name, uint64_t mem_max, uint32_t pids_max, uint32_t cpu_weight,
		     struct error *err)
{
	char dir[PATH_MAX], v[32];
	int r;

	bool pids, cpu;

	if (group_dir(0, name, dir, sizeof(dir)) < 0)
		return error_set_errno(err, -ENOENT, "no cgroup v2 hierarchy");
	/* memory is what the jail needs; pids and cpu where the parent has them. */
	r = write_str(cg.base[0], "cgroup.subtree_control", "+memory");
	if (r == -EBUSY && v2_make_leaf(cg.base[0]) == 0)
		r = write_str(cg.base[0], "cgroup.subtree_control", "+memory");
	if (r < 0)
		return error_set_errno(err, r, "enabling the memory controller in %s", cg.base[0]);
	pids = write_str(cg.base[0], "cgroup.subtree_control", "+pids") == 0;
	cpu = write_str(cg.base[0], "cgroup.subtree_control", "+cpu") == 0;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return error_set_errno(err, -errno, "creating %s", dir);
	snprintf(v, sizeof(v), "%" PRIu64, mem_max);
	r = mem_max ? write_str(dir, "memory.max", v) : 0;
	snprintf(v, sizeof(v), "%" PRIu32, pids_max);
	r = r ?: (pids ? write_str(dir, "pids.max", v) : 0);
	snprintf(v, sizeof(v), "%" PRIu32, cpu_weight);
	r = r ?: (cpu ? write_str(dir, "cpu.weight", v) : 0);
	if (r < 0) {
		rmdir(dir);
		return error_set_errno(err, r, "setting the limits of %s", dir);
	}
	return 0;
}

static int v1_create(const char *name, uint64_t mem_max, uint32_t pids_max, uint32_t cpu_weight,
		     struct error *err)
{
	char dir[PATH_MAX], v[32];
	int r = 0;

	for (int i = 0; i < CG_N && r >= 0; i++) {
		if (group_dir(i, name, dir, sizeof(dir)) < 0) {
			r = error_set(err, -ENOENT, "no cgroup v1 %s hierarchy", v1_names[i]);
			break;
		}
		if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
			r = error_set_errno(err, -errno, "creating %s", dir);
			break;
		}
		if (i == CG_MEMORY && mem_max) {
			snprintf(v, sizeof(v), "%" PRIu64, mem_max);
			r = write_str(dir, "memory.limit_in_bytes", v);
		} else if (i == CG_PIDS) {
			snprintf(v, sizeof(v), "%" PRIu32, pids_max);
			r = write_str(dir, "pids.max", v);
		} else if (i == CG_CPU) {
			/* cpu.shares 1024 is weight 100 */
			snprintf(v, sizeof(v), "%" PRIu64, MAX((uint64_t)cpu_weight * 1024 / 100, 2));
			r = write_str(dir, "cpu.shares", v);
		}
		if (r < 0)
			error_set_errno(err, r, "setting the limits of %s", dir);
	}
	if (r < 0)
		cgroup_remove(name);
	return r;
}

int cgroup_create(const char *name, uint64_t mem_max, uint32_t pids_max, uint32_t cpu_weight,
		  struct error *err)
{
	if (!cg.probed)
		probe();
	if (cg.v2)
		return v2_create(name, mem_max, pids_max, cpu_weight, err);
	return v1_create(name, mem_max, pids_max, cpu_weight, err);
}

int cgroup_enter(const char *name)
{
	char dir[PATH_MAX];
	int r = 0;

	for (int i = 0; i < (cg.v2 ? 1 : CG_N) && r >= 0; i++) {
		r = group_dir(i, name, dir, sizeof(dir));
		r = r ?: write_str(dir, "cgroup.procs", "0");
	}
	return r;
}

void cgroup_remove(const char *name)
{
	char dir[PATH_MAX];

	for (int i = 0; i < (cg.v2 ? 1 : CG_N); i++)
		if (group_dir(i, name, dir, sizeof(dir)) == 0)
			rmdir(dir);
}
