/* SPDX-License-Identifier: MIT
 * wait.c — branches/TAG/wait: a read that blocks until the branch's copy has
 * ended, then returns its status text (as "status" gives it), so a script
 * waits for ready with "cat wait" instead of polling.
 *
 * A read at offset 0 of a branch still copying is parked as a waiter; the
 * reply comes from the loop. The copy ends on an engine thread that knows no
 * FUSE request, so while waiters exist a loop timer looks at their branches
 * every WAIT_TICK_MS (the user's read blocks; nothing spins). A waiter is
 * answered with the status once the branch is ready or failed, ENOENT when
 * the branch is removed, EINTR when the reader is interrupted (Ctrl-C; the
 * kernel's INTERRUPT request), ESHUTDOWN at unmount. Later reads of the same
 * open file slice the text the first one returned.
 */
#include <errno.h>
#include <stdlib.h>

#include "common/log.h"
#include "fusefs/ops.h"
#include "sandbox/entry.h"

#define WAIT_TICK_MS 50

struct waiter {
	fuse_req_t req;
	struct fh *h;		/* holds the entry; lives until release, after our reply */
	size_t size;
	off_t off;
	bool interrupted;	/* set by libfuse on the loop (the INTERRUPT request) */
	struct waiter *next;
};

static void on_interrupt(fuse_req_t req, void *data)
{
	struct waiter *w = data;

	(void)req;
	w->interrupted = true;
}

/* Answer w if it can be; true when answered (the caller frees it). */
static bool waiter_try(struct waiter *w, int error)
{
	struct sbranch *br = w->h->br;

	if (error) {
		fuse_reply_err(w->req, error);
		return true;
	}
	if (w->interrupted) {
		fuse_reply_err(w->req, EINTR);
		return true;
	}
	if (br->phase != ENTRY_VISIBLE) {
		fuse_reply_err(w->req, ENOENT);
		return true;
	}
	if (!entry_is_settled(br))
		return false;
	if (fh_generate(w->h, NODE_BR_STATUS) < 0)
		fuse_reply_err(w->req, ENOMEM);
	else
		reply_slice(w->req, w->h->buf, w->h->len, w->size, w->off);
	return true;
}

/* Answer what can be answered; the timer runs while waiters remain. */
static void waiters_sweep(struct forkfs *fs, int error)
{
	struct waiter **p = &fs->waiters;

	while (*p) {
		struct waiter *w = *p;

		if (waiter_try(w, error)) {
			*p = w->next;
			free(w);
		} else {
			p = &w->next;
		}
	}
	if (!fs->waiters && fs->wait_timer_on) {
		uv_timer_stop(&fs->wait_timer);
		fs->wait_timer_on = false;
	}
}

static void on_tick(uv_timer_t *t)
{
	waiters_sweep(t->data, 0);
}

void wait_init(struct forkfs *fs)
{
	uv_timer_init(&fs->loop, &fs->wait_timer);
	fs->wait_timer.data = fs;
}

void wait_read(struct forkfs *fs, fuse_req_t req, struct fh *h, size_t size, off_t off)
{
	struct waiter *w;

	if (off > 0 && h->buf) {	/* the rest of the text the first read returned */
		reply_slice(req, h->buf, h->len, size, off);
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	*w = (struct waiter){ .req = req, .h = h, .size = size, .off = off < 0 ? 0 : off };
	if (waiter_try(w, fs->tree.env.shutting_down ? ESHUTDOWN : 0)) {
		free(w);
		return;
	}
	w->next = fs->waiters;
	fs->waiters = w;
	/* Calls on_interrupt at once if the request was already interrupted. */
	fuse_req_interrupt_func(req, on_interrupt, w);
	if (!fs->wait_timer_on) {
		uv_timer_start(&fs->wait_timer, on_tick, WAIT_TICK_MS, WAIT_TICK_MS);
		fs->wait_timer_on = true;
	}
}

void wait_shutdown(struct forkfs *fs)
{
	waiters_sweep(fs, ESHUTDOWN);
	if (!uv_is_closing((uv_handle_t *)&fs->wait_timer))
		uv_close((uv_handle_t *)&fs->wait_timer, NULL);
}
