/* SPDX-License-Identifier: MIT
 * guest.c — the forkfs-minivm guest: a freestanding x86_64 program that runs
 * on every vCPU and writes guest memory continuously, so that a snapshot taken
 * while it runs can be checked after a restore.
 *
 * Page ownership. The stampable pages are every 4 KiB page from
 * boot_info.first_page to the end of region 0, then every page of region 1,
 * numbered g = 0 .. P-1 in that order. vCPU i of N owns the pages g = i + k*N
 * (k = 0 .. P - 1, P = pages_i) and walks them: its j-th write (j = 0, 1,
 * ...) stamps qword 0 = j + 1 and qword 1 = GPA ^ GUEST_STAMP_MAGIC (see
 * abi.h). The first pass writes page k = j (never-written pages stay zero,
 * so it keeps touching fresh pages); after it, write j goes to page
 * (j - P) mod W, where W = P, or the vCPU's share of the command line's
 * wset_mib (abi.h), so later passes rewrite only the first W own pages.
 *
 * Verification. The write counter j lives only in registers (start.S). Every
 * 256 writes the vCPU reads the "restored?" port; after a restore it checks
 * each own page against what j implies (want(), below: exact for every
 * page, in and out of the working set). It prints exactly one line:
 *   guest: verify ok vcpu=V pages=N writes=C
 *   guest: verify FAIL vcpu=V page=0xGPA got=0xX want=0xY mismatches=M pages=N writes=C
 *   guest: verify FAIL vcpu=V fpu got=0xX want=0xY pages=N writes=C
 * (the last when xmm0, which holds j as of the previous poll, j - 256, was not
 * restored: the FPU/SSE state is part of what must survive), then keeps writing.
 * At boot each vCPU prints "guest: boot vcpu=V of=N pages=P" (P = own pages),
 * and "guest: first pass done vcpu=V pages=P" once it has written every own
 * page (from then on its memory use no longer grows).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "contrib/minivm/guest/abi.h"

#define MAX_VCPUS 32

/* Constants of one vCPU's walk; start.S knows the field offsets. */
struct stamp_params {
	uint64_t first_gpa;	/* GPA of own page 0 */
	uint64_t stride;	/* N * 4096 */
	uint64_t r0_end;	/* end GPA of region 0 */
	uint64_t r1_delta;	/* region 1 base - r0_end, 0 with one region */
	uint64_t pages;		/* own pages */
	uint64_t vcpu;
	uint64_t vcpu_count;
	uint64_t first_page;	/* boot_info.first_page */
	uint64_t p0;		/* stampable pages in region 0 */
	uint64_t r1_base;
	uint64_t xmm_slot[2];	/* offset 80: start.S loads xmm0 from here */
	uint64_t wset;		/* offset 96: W, the pages of every pass after the first */
	uint64_t passed;	/* offset 104: the first pass is done (start.S sets it) */
};
_Static_assert(__builtin_offsetof(struct stamp_params, xmm_slot) == 80, "start.S offsets");
_Static_assert(__builtin_offsetof(struct stamp_params, wset) == 96, "start.S offsets");
_Static_assert(__builtin_offsetof(struct stamp_params, passed) == 104, "start.S offsets");

static struct stamp_params params[MAX_VCPUS];
static char printbuf[MAX_VCPUS][GUEST_PRINT_MAX];

void guest_main(uint64_t vcpu, uint64_t count, const struct guest_boot_info *info);
void guest_verify(struct stamp_params *sp, uint64_t writes);
void guest_first_pass(struct stamp_params *sp);
void stamp_run(struct stamp_params *sp) __attribute__((noreturn));

/* The compiler may emit calls to these even in freestanding code. */
void *memset(void *s, int c, size_t n)
{
	unsigned char *p = s;

	while (n--)
		*p++ = (unsigned char)c;
	return s;
}

void *memcpy(void *d, const void *s, size_t n)
{
	unsigned char *dp = d;
	const unsigned char *sp = s;

	while (n--)
		*dp++ = *sp++;
	return d;
}

static inline void outl(uint16_t port, uint32_t val)
{
	__asm__ volatile("outl %0, %1" : : "a"(val), "Nd"(port) : "memory");
}

static inline uint32_t inl(uint16_t port)
{
	uint32_t v;

	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port) : "memory");
	return v;
}

/* A tiny line builder: each vCPU formats into its own buffer. */
struct line {
	char *buf;
	size_t len;
};

static void put_str(struct line *l, const char *s)
{
	while (*s && l->len < GUEST_PRINT_MAX - 1)
		l->buf[l->len++] = *s++;
}

static void put_num(struct line *l, uint64_t v, bool hex)
{
	char tmp[24];
	int n = 0;
	unsigned base = hex ? 16 : 10;

	if (hex)
		put_str(l, "0x");
	do {
		tmp[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (n && l->len < GUEST_PRINT_MAX - 1)
		l->buf[l->len++] = tmp[--n];
}

static void put_kv(struct line *l, const char *key, uint64_t v, bool hex)
{
	put_str(l, key);
	put_num(l, v, hex);
}

static void line_emit(struct line *l)
{
	l->buf[l->len] = '\0';
	outl(GUEST_PORT_PRINT, (uint32_t)(uintptr_t)l->buf);
	l->len = 0;
}

static uint64_t own_gpa(const struct stamp_params *sp, uint64_t k)
{
	uint64_t g = sp->vcpu + k * sp->vcpu_count;

	if (g < sp->p0)
		return sp->first_page + g * GUEST_PAGE_SIZE;
	return sp->r1_base + (g - sp->p0) * GUEST_PAGE_SIZE;
}

/* Read xmm0 through memory (the emulator has no XMM-to-GPR move). */
static uint64_t read_xmm0(struct stamp_params *sp)
{
	__asm__ volatile("movdqu %%xmm0, %0" : "=m"(sp->xmm_slot));
	return sp->xmm_slot[0];
}

/* qword 0 of own page k after j writes (see the walk above). */
static uint64_t want(const struct stamp_params *sp, uint64_t k, uint64_t j)
{
	uint64_t P = sp->pages, W = sp->wset, e, q, r;

	if (j <= P)
		return k < j ? k + 1 : 0;
	if (k >= W)
		return k + 1;		/* written once, in the first pass */
	e = j - P;
	q = e / W;
	r = e % W;
	if (k < r)
		return P + q * W + k + 1;
	return q ? P + (q - 1) * W + k + 1 : k + 1;
}

/* "wset_mib=N" in the command line, in MiB; 0 if absent. */
static uint64_t cmdline_wset_mib(const struct guest_boot_info *info)
{
	static const char key[] = "wset_mib=";
	const char *s = (const char *)info->cmdline;

	if (!info->cmdline)
		return 0;
	for (uint64_t i = 0; i < GUEST_CMDLINE_MAX && s[i]; i++) {
		uint64_t k = 0, v = 0;

		if (i && s[i - 1] != ' ')
			continue;
		while (key[k] && s[i + k] == key[k])
			k++;
		if (key[k])
			continue;
		for (i += k; s[i] >= '0' && s[i] <= '9' && v < (1ULL << 40); i++)
			v = v * 10 + (uint64_t)(s[i] - '0');
		return v;
	}
	return 0;
}

/* Called once, when the first pass over all own pages ends. */
void guest_first_pass(struct stamp_params *sp)
{
	struct line l = { .buf = printbuf[sp->vcpu] };

	put_kv(&l, "guest: first pass done vcpu=", sp->vcpu, false);
	put_kv(&l, " pages=", sp->pages, false);
	line_emit(&l);
}

void guest_verify(struct stamp_params *sp, uint64_t writes)
{
	uint64_t xmm = read_xmm0(sp);
	struct line l = { .buf = printbuf[sp->vcpu] };
	uint64_t mismatches = 0, bad_gpa = 0, bad_got = 0, bad_want = 0;

	for (uint64_t k = 0; k < sp->pages; k++) {
		uint64_t gpa = own_gpa(sp, k);
		const volatile uint64_t *page = (const volatile uint64_t *)gpa;
		uint64_t want0 = want(sp, k, writes), want1, got0 = page[0], got1 = page[1];

		want1 = want0 ? gpa ^ GUEST_STAMP_MAGIC : 0;
		if (got0 == want0 && got1 == want1)
			continue;
		if (!mismatches++) {
			bad_gpa = gpa;
			bad_got = got0 != want0 ? got0 : got1;
			bad_want = got0 != want0 ? want0 : want1;
		}
	}

	put_str(&l, "guest: verify ");
	if (mismatches) {
		put_kv(&l, "FAIL vcpu=", sp->vcpu, false);
		put_kv(&l, " page=", bad_gpa, true);
		put_kv(&l, " got=", bad_got, true);
		put_kv(&l, " want=", bad_want, true);
		put_kv(&l, " mismatches=", mismatches, false);
	} else if (xmm != writes - 256) {
		put_kv(&l, "FAIL vcpu=", sp->vcpu, false);
		put_kv(&l, " fpu got=", xmm, true);
		put_kv(&l, " want=", writes - 256, true);
	} else {
		put_kv(&l, "ok vcpu=", sp->vcpu, false);
	}
	put_kv(&l, " pages=", sp->pages, false);
	put_kv(&l, " writes=", writes, false);
	line_emit(&l);
}

void guest_main(uint64_t vcpu, uint64_t count, const struct guest_boot_info *info)
{
	struct stamp_params *sp = &params[vcpu % MAX_VCPUS];
	struct line l = { .buf = printbuf[vcpu % MAX_VCPUS] };
	uint64_t p0 = 0, p1 = 0, total;

	if (info->magic != GUEST_BOOT_MAGIC || vcpu >= MAX_VCPUS || !count) {
		put_str(&l, "guest: bad boot info");
		line_emit(&l);
		return;
	}
	if (info->regions[0].size > info->first_page)
		p0 = (info->regions[0].size - info->first_page) / GUEST_PAGE_SIZE;
	if (info->nr_regions > 1)
		p1 = info->regions[1].size / GUEST_PAGE_SIZE;
	total = p0 + p1;

	sp->vcpu = vcpu;
	sp->vcpu_count = count;
	sp->first_page = info->first_page;
	sp->p0 = p0;
	sp->r0_end = info->regions[0].gpa + info->regions[0].size;
	sp->r1_base = info->nr_regions > 1 ? info->regions[1].gpa : sp->r0_end;
	sp->r1_delta = sp->r1_base - sp->r0_end;
	sp->stride = count * GUEST_PAGE_SIZE;
	sp->pages = total > vcpu ? (total - vcpu + count - 1) / count : 0;
	sp->first_gpa = own_gpa(sp, 0);
	sp->wset = cmdline_wset_mib(info) * (1024 * 1024 / GUEST_PAGE_SIZE) / count;
	if (!sp->wset || sp->wset > sp->pages)
		sp->wset = sp->pages;

	put_kv(&l, "guest: boot vcpu=", vcpu, false);
	put_kv(&l, " of=", count, false);
	put_kv(&l, " pages=", sp->pages, false);
	if (sp->wset != sp->pages)
		put_kv(&l, " wset=", sp->wset, false);
	line_emit(&l);

	if (sp->pages)
		stamp_run(sp);
	/* Nothing to stamp: still answer a restore. */
	for (;;)
		if (inl(GUEST_PORT_RESTORED)) {
			put_kv(&l, "guest: verify ok vcpu=", vcpu, false);
			put_str(&l, " pages=0 writes=0");
			line_emit(&l);
		}
}
