/* SPDX-License-Identifier: MIT
 * test-slots.c — the process-wide limit on background copies
 * (engine_set_copy_slots) against real userfaultfd: four guests, each with
 * its own engine, branched one after another with one slot. The first copy
 * holds the slot (capped at 1 MiB/s; its guest never touches a quarter of
 * its memory, so only the walk can finish it); the others wait in order,
 * their guests' writes still copied first meanwhile; the third is cancelled
 * while it waits and ends at once with every page released; once the cap is
 * lifted the rest copy one at a time, in the order they were taken (the
 * second capped in turn, the fourth still waits), and each image equals its guest's memory at its own pause. As root, the copy that
 * holds the slot runs at the raise asked for, the waiting ones do not.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "tests/tap.h"
#include "tests/uffd/guest.h"
#include "uffd/engine.h"
#include "uffd/uffd.h"

#define N_VMS 4
#define VM_SIZE (16 * MIB)
#define CANCELLED 2	/* the VM whose copy is cancelled while it waits */
#define SLOT_RAISE 5

static char tmpdir[] = "/tmp/uffd-slots.XXXXXX";

struct vm {
	struct guest g;
	bool g_up;
	struct engine *e;
	struct engine_session *s;
	int dest;
	uint8_t *shadow;
	struct guest_done done;
};

static struct engine_progress progress(struct vm *v)
{
	struct engine_progress p;

	engine_get_progress(v->s, &p);
	return p;
}

/* Until v's copy waits for a slot (or timeout_ms). */
static bool wait_queued(struct vm *v, unsigned timeout_ms)
{
	for (unsigned ms = 0; ms < timeout_ms; ms++) {
		if (progress(v).queued)
			return true;
		usleep(1000);
	}
	return false;
}

/* A guest writing, with an engine. */
static int vm_up(struct vm *v, int i)
{
	char path[128];
	struct memsrc src;
	const char *why = "";
	int r;

	*v = (struct vm){ .dest = -1, .done = GUEST_DONE_INIT };
	r = guest_new(&v->g, false, 1, VM_SIZE, &why);
	if (!tap_ok(r == 0, "vm %d: guest set-up: %s", i, why))
		return r;
	v->g_up = true;
	v->shadow = malloc(VM_SIZE);
	snprintf(path, sizeof(path), "%s/vm%d.bin", tmpdir, i);
	v->dest = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (!v->shadow || v->dest < 0 || guest_start_writers(&v->g, 1) < 0 ||
	    !guest_wait_writes(&v->g, 2000, 5000))
		return -EIO;
	r = memsrc_open_for_pid(getpid(), v->g.regions, 1, &src, NULL);
	if (r == 0)
		r = engine_new(TAKE_FD(v->g.uffd), v->g.regions, 1, &src, &v->e, NULL);
	tap_ok(r == 0, "vm %d: engine up (%s)", i, strerror(-r));
	return r;
}

/* Pause, record, arm, resume (its virgin pages stay untouched), start the copy. */
static int vm_branch(struct vm *v)
{
	int r = engine_prepare(v->e, NULL);

	if (r < 0)
		return r;
	guest_pause(&v->g);
	guest_snapshot(&v->g, v->shadow);
	r = engine_arm(v->e, v->dest, false, &v->s, NULL);
	guest_resume(&v->g);
	if (r == 0)
		r = engine_start_copy(v->s, guest_on_done, &v->done, NULL);
	return r;
}

static void vm_down(struct vm *v)
{
	if (v->g_up)
		guest_stop_writers(&v->g);
	v->e = engine_free(v->e);
	engine_session_unref(v->s);
	if (v->g_up)
		guest_free(&v->g);
	safe_close(v->dest);
	free(v->shadow);
}

/* The nice values of this process's threads named forkfs-copy: how many run
 * at raised (-SLOT_RAISE) and how many at 0. */
static void copy_thread_nices(unsigned *raised, unsigned *base)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;

	*raised = *base = 0;
	while (d && (de = readdir(d))) {
		char path[300], comm[32] = "";
		FILE *f;
		int nice;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;
		if (!fgets(comm, sizeof(comm), f) || strcmp(comm, "forkfs-copy\n")) {
			fclose(f);
			continue;
		}
		fclose(f);
		errno = 0;
		nice = getpriority(PRIO_PROCESS, (id_t)atoi(de->d_name));
		if (nice == -SLOT_RAISE)
			(*raised)++;
		else if (nice == 0 && !errno)
			(*base)++;
	}
	if (d)
		closedir(d);
}

int main(void)
{
	struct vm vms[N_VMS] = {};
	struct engine_progress p;
	bool raised = false;
	uint64_t t0;
	unsigned n_raised, n_base;
	long wp, bad;

	if (!guest_wp_available())
		tap_skip_all("userfaultfd with write-protect is not available");
	if (!guest_tmpdir(tmpdir))
		tap_skip_all("cannot create a temporary directory");
	log_set_max_level(LOG_LEVEL_WARN);
	/* As forkfs's service threads; the copy holding the slot at half of it. */
	if (geteuid() == 0)
		raised = thread_nice_raise(2 * SLOT_RAISE) == 0;
	engine_set_copy_slots(1, SLOT_RAISE);

	for (int i = 0; i < N_VMS; i++)
		if (vm_up(&vms[i], i) < 0)
			goto out;
	/* The first holds the slot: capped, and a quarter only the walk copies. */
	engine_set_rate(vms[0].e, 1 * MIB);
	TAP_CHECK(vm_branch(&vms[0]) == 0);
	for (int i = 1; i < N_VMS; i++) {
		TAP_CHECK(vm_branch(&vms[i]) == 0);
		tap_ok(wait_queued(&vms[i], 5000), "vm %d: its copy waits for the slot", i);
	}
	p = progress(&vms[0]);
	tap_ok(p.state == ENGINE_COPYING && !p.queued, "vm 0: its copy holds the slot");
	if (raised) {
		copy_thread_nices(&n_raised, &n_base);
		tap_ok(n_raised == 1 && n_base == N_VMS - 1,
		       "the copy holding the slot runs at nice -%d, the %d waiting at 0 (%u, %u)",
		       SLOT_RAISE, N_VMS - 1, n_raised, n_base);
	} else {
		tap_skip("copy priorities: needs root (CAP_SYS_NICE)");
	}
	/* Waiting, the guest's writes are still copied first. */
	TAP_CHECK(guest_wait_writes(&vms[1].g, 5000, 5000));
	p = progress(&vms[1]);
	tap_ok(p.queued && p.bytes_bulk == 0 && p.pages_faulted > 0,
	       "vm 1: waiting, its guest's writes are copied first (%" PRIu64 " pages), the walk "
	       "has not started (%" PRIu64 " bytes)", p.pages_faulted, p.bytes_bulk);

	t0 = now_usec();
	TAP_CHECK(engine_cancel(vms[CANCELLED].s) == 0);
	tap_ok(guest_wait_done(&vms[CANCELLED].done, 5) &&
	       vms[CANCELLED].done.result == -ECANCELED &&
	       progress(&vms[CANCELLED]).state == ENGINE_CANCELLED,
	       "vm %d: cancelled while it waits (%d), in %" PRIu64 " ms", CANCELLED,
	       vms[CANCELLED].done.result, (vms[CANCELLED].done.usec - t0) / 1000);
	wp = guest_count_wp(&vms[CANCELLED].g);
	tap_ok(wp == 0, "vm %d: every page released (%ld protected)", CANCELLED, wp);
	tap_ok(guest_wait_writes(&vms[CANCELLED].g, 5000, 5000), "vm %d: the guest runs on",
	       CANCELLED);
	p = progress(&vms[1]);
	tap_ok(p.queued && !vms[1].done.calls && !vms[0].done.calls,
	       "vm 1 still waits behind vm 0 after the cancel");

	/* Next in line: vm 1 (capped in turn, to see vm 3 still wait). */
	engine_set_rate(vms[1].e, 1 * MIB);
	engine_set_rate(vms[0].e, 0);
	TAP_CHECK(guest_wait_done(&vms[0].done, 60));
	for (int ms = 0; ms < 5000 && progress(&vms[1]).queued; ms++)
		usleep(1000);
	tap_ok(!progress(&vms[1]).queued && progress(&vms[3]).queued,
	       "vm 0 done: vm 1 holds the slot, vm 3 waits");
	engine_set_rate(vms[1].e, 0);
	for (int i = 0; i < N_VMS; i++) {
		if (i == CANCELLED)
			continue;
		TAP_CHECK(guest_wait_done(&vms[i].done, 60));
		p = progress(&vms[i]);
		bad = image_mismatches(vms[i].dest, vms[i].shadow, VM_SIZE);
		tap_ok(vms[i].done.result == 0 && p.state == ENGINE_DONE && !p.queued &&
		       p.bytes_copied == VM_SIZE && p.bytes_bulk > 0 && bad == 0,
		       "vm %d: image equals the memory at its pause (%d; %" PRIu64 " KiB walked, "
		       "%" PRIu64 " pages faulted; %ld pages differ)", i, vms[i].done.result,
		       p.bytes_bulk >> 10, p.pages_faulted, bad);
		wp = guest_count_wp(&vms[i].g);
		tap_ok(wp == 0, "vm %d: every page released (%ld protected)", i, wp);
	}
out:
	for (int i = 0; i < N_VMS; i++)
		vm_down(&vms[i]);
	engine_set_copy_slots(0, 0);
	return tap_done();
}
