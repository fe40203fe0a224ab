/* SPDX-License-Identifier: MIT
 * cgroup.h — the cgroup of a jailed VMM: its memory, pids and CPU share
 * (cgroup v2, or the v1 hierarchies where v2 has no controllers). Used by the
 * spawner process only.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* Make the group "name" under the spawner's own cgroup, with memory.max (0:
 * none), pids.max and a CPU weight (cgroup v2 scale, 100 = default). On
 * failure returns -errno and says what failed in err. */
int cgroup_create(const char *name, uint64_t mem_max, uint32_t pids_max, uint32_t cpu_weight,
		  struct error *err);
/* In the child: move the calling process into the group. */
int cgroup_enter(const char *name);
/* Remove the group (its processes have exited). */
void cgroup_remove(const char *name);
