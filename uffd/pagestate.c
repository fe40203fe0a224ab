/* SPDX-License-Identifier: MIT
 * pagestate.c — per-page PENDING/CLAIMED/COPIED bitmaps; see pagestate.h.
 * Claims use acq_rel fetch_or; marking COPIED is a release so that a thread
 * that sees the bit (acquire) also sees everything the copier did before.
 */
#include <errno.h>
#include <stdlib.h>
#include "uffd/pagestate.h"

int pagestate_init(struct pagestate *ps, size_t npages)
{
	size_t nwords = (npages + PAGESTATE_WORD_PAGES - 1) / PAGESTATE_WORD_PAGES;

	ps->claimed = calloc(nwords, sizeof(uint64_t));
	ps->copied = calloc(nwords, sizeof(uint64_t));
	if (!ps->claimed || !ps->copied) {
		pagestate_fini(ps);
		return -ENOMEM;
	}
	ps->npages = npages;
	ps->nwords = nwords;
	return 0;
}

void pagestate_fini(struct pagestate *ps)
{
	free((void *)ps->claimed);
	free((void *)ps->copied);
	ps->claimed = ps->copied = NULL;
	ps->npages = ps->nwords = 0;
}

void pagestate_reset(struct pagestate *ps)
{
	for (size_t w = 0; w < ps->nwords; w++) {
		atomic_store_explicit(&ps->claimed[w], 0, memory_order_relaxed);
		atomic_store_explicit(&ps->copied[w], 0, memory_order_relaxed);
	}
	atomic_thread_fence(memory_order_seq_cst);
}

void pagestate_reset_to(struct pagestate *ps, const _Atomic uint64_t *set)
{
	for (size_t w = 0; w < ps->nwords; w++) {
		uint64_t out = ~atomic_load_explicit(&set[w], memory_order_relaxed);

		atomic_store_explicit(&ps->claimed[w], out, memory_order_relaxed);
		atomic_store_explicit(&ps->copied[w], out, memory_order_relaxed);
	}
	atomic_thread_fence(memory_order_seq_cst);
}

static inline uint64_t segment_mask(unsigned n)
{
	return n >= 64 ? ~0ULL : (1ULL << n) - 1;
}

uint64_t pagestate_claim(struct pagestate *ps, size_t first, unsigned n)
{
	unsigned shift = first % PAGESTATE_WORD_PAGES;
	uint64_t want = segment_mask(n) << shift, old;

	/* Skip the atomic write when every page is already taken. */
	old = atomic_load_explicit(&ps->claimed[first / 64], memory_order_acquire);
	if ((old & want) == want)
		return 0;
	old = atomic_fetch_or_explicit(&ps->claimed[first / 64], want, memory_order_acq_rel);
	return (want & ~old) >> shift;
}

void pagestate_mark_copied(struct pagestate *ps, size_t first, uint64_t mask)
{
	atomic_fetch_or_explicit(&ps->copied[first / 64], mask << (first % 64),
				 memory_order_seq_cst);
}

uint64_t pagestate_not_copied(struct pagestate *ps, size_t first, unsigned n)
{
	unsigned shift = first % PAGESTATE_WORD_PAGES;
	uint64_t want = segment_mask(n) << shift;
	uint64_t have = atomic_load_explicit(&ps->copied[first / 64], memory_order_seq_cst);

	return (want & ~have) >> shift;
}
