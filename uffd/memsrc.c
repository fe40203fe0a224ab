/* SPDX-License-Identifier: MIT
 * memsrc.c — choosing how forkfs reads a VMM's guest memory (engine.h
 * struct memsrc). When every region is a shared mapping of one file
 * (memfd/shmem: Firecracker restored with shared:true, minivm) that file is
 * opened through /proc/PID/map_files/ and read with pread(), which
 * the VMM's uffd does not cover and which outlives the VMM. Otherwise (private
 * anonymous memory of a freshly booted VMM) the engine reads /proc/PID/mem
 * with pread(): an fd, not a pid, so that a VMM that exits and whose pid is
 * reused never has another process's memory read in its place.
 * Whether any region is anonymous is recorded (memsrc.anon): writes to
 * anonymous memory cannot be tracked across branches.
 */
#define LOG_PREFIX "uffd: "
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include "common/error.h"
#include "common/log.h"
#include "common/macro.h"
#include "uffd/engine.h"

struct vma {
	uint64_t start, end, pgoff;
	unsigned dev_major, dev_minor;
	uint64_t inode;
	bool shared;
};

#define MAX_VMAS 64	/* VMAs that cover guest regions (each may be split) */

/* Collect the VMAs intersecting any region, in address order (as maps lists them). */
static int read_vmas(pid_t pid, const struct uffd_region *regions, size_t n, struct vma *vmas,
		     size_t *ret_n)
{
	_cleanup_free_ char *line = NULL;
	char path[64];
	size_t cap = 0, k = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		struct vma v = {};
		char perms[8];
		bool hit = false;

		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %" SCNx64 " %x:%x %" SCNu64, &v.start,
			   &v.end, perms, &v.pgoff, &v.dev_major, &v.dev_minor, &v.inode) != 7)
			continue;
		for (size_t i = 0; i < n; i++)
			if (v.start < regions[i].base + regions[i].size && regions[i].base < v.end)
				hit = true;
		if (!hit)
			continue;
		if (k == MAX_VMAS) {
			fclose(f);
			return -E2BIG;
		}
		v.shared = perms[3] == 's';
		vmas[k++] = v;
	}
	fclose(f);
	*ret_n = k;
	return 0;
}

/* Is every region a contiguous shared mapping of the same file, at file offset
 * regions[i].offset + one common fd_offset? */
static bool regions_map_one_file(const struct uffd_region *regions, size_t n,
				 const struct vma *vmas, size_t nv, off_t *ret_fd_offset)
{
	bool have_offset = false;
	int64_t fd_offset = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t addr = regions[i].base, end = regions[i].base + regions[i].size;

		while (addr < end) {
			const struct vma *v = NULL;
			int64_t delta;

			for (size_t j = 0; j < nv; j++)
				if (vmas[j].start <= addr && addr < vmas[j].end)
					v = &vmas[j];
			if (!v || !v->shared || v->inode == 0 || v->inode != vmas[0].inode ||
			    v->dev_major != vmas[0].dev_major || v->dev_minor != vmas[0].dev_minor)
				return false;
			/* file offset of addr minus its image offset */
			delta = (int64_t)(v->pgoff + (addr - v->start)) -
				(int64_t)(regions[i].offset + (addr - regions[i].base));
			if (have_offset && delta != fd_offset)
				return false;
			fd_offset = delta;
			have_offset = true;
			addr = MIN(end, v->end);
		}
	}
	if (fd_offset < 0)
		return false;
	*ret_fd_offset = (off_t)fd_offset;
	return true;
}

int memsrc_open_for_pid(pid_t pid, const struct uffd_region *regions, size_t n,
			struct memsrc *ret, struct error *err)
{
	struct vma vmas[MAX_VMAS];
	off_t fd_offset = 0;
	size_t nv = 0;
	char path[96];
	struct stat st;
	int fd, r;

	if (pid <= 0 || n == 0)
		return error_set(err, -EINVAL, "no process or no regions");
	r = read_vmas(pid, regions, n, vmas, &nv);
	if (r < 0)
		return error_set_errno(err, r, "cannot read the memory map of pid %d", (int)pid);
	if (nv == 0)
		return error_set(err, -ENOENT, "pid %d maps none of the guest regions", (int)pid);

	if (!regions_map_one_file(regions, n, vmas, nv, &fd_offset))
		goto process;

	snprintf(path, sizeof(path), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)pid,
		 vmas[0].start, vmas[0].end);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		log_warning_errno(-errno, "cannot open %s, reading through /proc/PID/mem", path);
		goto process;
	}
	/* The VMA could have been replaced between reading maps and opening it. */
	if (fstat(fd, &st) < 0 || st.st_ino != vmas[0].inode ||
	    major(st.st_dev) != vmas[0].dev_major || minor(st.st_dev) != vmas[0].dev_minor) {
		safe_close(fd);
		return error_set(err, -ESTALE, "memory map of pid %d changed", (int)pid);
	}
	*ret = (struct memsrc){ .kind = MEMSRC_FD, .fd = fd, .fd_offset = fd_offset, .pid = pid };
	return 0;
process:
	*ret = (struct memsrc){ .kind = MEMSRC_PROCESS, .fd = -1, .pid = pid };
	for (size_t j = 0; j < nv; j++)
		if (vmas[j].inode == 0)
			ret->anon = true;
	return memsrc_open_mem(ret, err);
}

int memsrc_open_mem(struct memsrc *src, struct error *err)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/mem", (int)src->pid);
	src->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (src->fd < 0)
		return error_set_errno(err, -errno, "cannot open %s", path);
	return 0;
}
