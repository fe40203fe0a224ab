/* SPDX-License-Identifier: MIT
 * pagestate.h — the engine's per-page state for one copy session, as two
 * bitmaps updated with atomics: a page is PENDING (neither bit), CLAIMED (the
 * claimed bit: one path is copying it) or COPIED (both bits: its bytes are in
 * the destination). Claiming is a fetch_or, so exactly one caller wins a page.
 * Memory: 2 bits per 4 KiB page (64 KiB per GiB of guest memory).
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PAGESTATE_WORD_PAGES 64

struct pagestate {
	size_t npages;
	size_t nwords;
	_Atomic uint64_t *claimed;
	_Atomic uint64_t *copied;
};

int pagestate_init(struct pagestate *ps, size_t npages);
void pagestate_fini(struct pagestate *ps);
/* Every page back to PENDING; no other thread may use ps meanwhile. */
void pagestate_reset(struct pagestate *ps);
/* Every page of the set pending (bit set in set[w]), every other COPIED: a
 * session that copies only some pages (an incremental branch). Same rule. */
void pagestate_reset_to(struct pagestate *ps, const _Atomic uint64_t *set);

/* Pages [first, first+n) must lie within one 64-page word (n >= 1). Claim the
 * pending ones: returns a mask (bit i = page first+i) of the pages this caller
 * now owns and must copy, then pass to pagestate_mark_copied(). */
uint64_t pagestate_claim(struct pagestate *ps, size_t first, unsigned n);
/* Mark the pages of mask (relative to first, as above) COPIED. */
void pagestate_mark_copied(struct pagestate *ps, size_t first, uint64_t mask);
/* Mask of the pages among [first, first+n) (one word) that are not COPIED yet. */
uint64_t pagestate_not_copied(struct pagestate *ps, size_t first, unsigned n);

/* Length of the segment starting at page p that stays within p's word and below end. */
static inline unsigned pagestate_segment(size_t p, size_t end)
{
	size_t word_end = (p / PAGESTATE_WORD_PAGES + 1) * PAGESTATE_WORD_PAGES;

	return (unsigned)((end < word_end ? end : word_end) - p);
}
