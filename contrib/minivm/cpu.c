/* SPDX-License-Identifier: MIT
 * cpu.c — the emulated CPU (cpu.h says what it models): decode one x86_64
 * instruction at rip, execute it, repeat until kicked or faulted.
 *
 * Shape. step() decodes the legacy prefixes, REX and the opcode, then one
 * switch per opcode map (one byte, 0x0F) executes. Operands are a struct
 * opnd: a register number or a linear address, read and written by size
 * (1, 2, 4, 8; 32-bit register writes zero the upper half, 8/16-bit writes
 * keep it, AH..BH without REX). Flags are computed eagerly by alu(), shift()
 * and friends (CF PF AF ZF SF OF). A fault unwinds with longjmp to cpu_run(),
 * which restores rip to the instruction's start: nothing the instruction did
 * to memory is undone, but the VM is stopped anyway.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "contrib/minivm/cpu.h"

#define F_CF 0x1ULL
#define F_PF 0x4ULL
#define F_AF 0x10ULL
#define F_ZF 0x40ULL
#define F_SF 0x80ULL
#define F_DF 0x400ULL
#define F_OF 0x800ULL
#define F_ARITH (F_CF | F_PF | F_AF | F_ZF | F_SF | F_OF)

#define INSN_MAX 15

struct opnd {
	bool mem;
	unsigned reg;		/* register number when !mem */
	uint64_t addr;		/* linear address when mem */
};

struct x86 {
	struct cpu_state *c;
	const struct cpu_bus *bus;
	jmp_buf fault;
	char why[160];

	/* the instruction being executed */
	uint64_t start;		/* its rip */
	uint8_t ib[INSN_MAX];
	unsigned avail, n;	/* bytes fetched, bytes consumed */
	uint8_t rex;
	bool p66, pf2, pf3;
	uint64_t seg_base;
	/* ModRM */
	uint8_t modrm;
	unsigned reg;		/* ModRM.reg with REX.R */
	struct opnd rm;
	bool riprel;		/* rm.addr still needs the end of the instruction added */
};

static _Noreturn void _printf_(2, 3) fault(struct x86 *x, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(x->why, sizeof(x->why), fmt, ap);
	va_end(ap);
	longjmp(x->fault, 1);
}

static _Noreturn void unknown(struct x86 *x)
{
	char hex[3 * INSN_MAX + 1] = "";
	size_t n = 0;

	for (unsigned i = 0; i < x->avail && i < 8; i++)
		n += (size_t)snprintf(hex + n, sizeof(hex) - n, "%s%02x", i ? " " : "", x->ib[i]);
	fault(x, "unsupported instruction at rip 0x%llx: %s", (unsigned long long)x->start, hex);
}

/* ---- memory ----------------------------------------------------------------- */

static void *host(struct x86 *x, uint64_t addr, size_t len)
{
	void *p = x->bus->mem(x->bus->ctx, addr, len);

	if (!p)
		fault(x, "#PF: access to 0x%llx (%zu bytes) outside guest memory at rip 0x%llx",
		      (unsigned long long)addr, len, (unsigned long long)x->start);
	return p;
}

/* Guest accesses may be unaligned (x86 allows it): memcpy of a constant
 * size, which the compiler turns into one load or store. */
static uint64_t mem_read(struct x86 *x, uint64_t addr, unsigned sz)
{
	const void *p = host(x, addr, sz);
	uint64_t v = 0;

	switch (sz) {
	case 1: v = *(const uint8_t *)p; break;
	case 2: { uint16_t t; memcpy(&t, p, 2); v = t; break; }
	case 4: { uint32_t t; memcpy(&t, p, 4); v = t; break; }
	default: memcpy(&v, p, 8); break;
	}
	return v;
}

static void mem_write(struct x86 *x, uint64_t addr, unsigned sz, uint64_t v)
{
	void *p = host(x, addr, sz);

	switch (sz) {
	case 1: *(uint8_t *)p = (uint8_t)v; break;
	case 2: { uint16_t t = (uint16_t)v; memcpy(p, &t, 2); break; }
	case 4: { uint32_t t = (uint32_t)v; memcpy(p, &t, 4); break; }
	default: memcpy(p, &v, 8); break;
	}
}

/* ---- fetch and decode ---------------------------------------------------------- */

static void fetch_window(struct x86 *x)
{
	const uint8_t *p = NULL;
	unsigned len;

	/* The instruction may end near the end of a region: take what is there. */
	for (len = INSN_MAX; len && !(p = x->bus->mem(x->bus->ctx, x->start, len)); len--)
		;
	if (!p)
		fault(x, "#PF: instruction fetch at 0x%llx outside guest memory",
		      (unsigned long long)x->start);
	memcpy(x->ib, p, len);
	x->avail = len;
	x->n = 0;
}

static uint8_t imm8(struct x86 *x)
{
	if (x->n >= x->avail)
		fault(x, "instruction at rip 0x%llx runs past the end of memory or 15 bytes",
		      (unsigned long long)x->start);
	return x->ib[x->n++];
}

static uint64_t imm(struct x86 *x, unsigned sz)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < sz; i++)
		v |= (uint64_t)imm8(x) << (8 * i);
	return v;
}

static int64_t sext(uint64_t v, unsigned sz)
{
	switch (sz) {
	case 1: return (int8_t)v;
	case 2: return (int16_t)v;
	case 4: return (int32_t)v;
	default: return (int64_t)v;
	}
}

static uint64_t mask(unsigned sz)
{
	return sz == 8 ? ~0ULL : (1ULL << (8 * sz)) - 1;
}

/* An immediate of operand size sz: 1, 2 or 4 bytes, the 4 sign-extended for 8. */
static uint64_t imm_z(struct x86 *x, unsigned sz)
{
	if (sz == 8)
		return (uint64_t)sext(imm(x, 4), 4);
	return imm(x, sz);
}

static void decode_modrm(struct x86 *x)
{
	unsigned mod, rm, base, index;
	uint64_t addr = 0;

	x->modrm = imm8(x);
	mod = x->modrm >> 6;
	rm = x->modrm & 7;
	x->reg = ((x->modrm >> 3) & 7) | ((x->rex & 4) << 1);
	x->riprel = false;
	if (mod == 3) {
		x->rm = (struct opnd){ .mem = false, .reg = rm | ((x->rex & 1) << 3) };
		return;
	}
	if (rm == 4) {
		uint8_t sib = imm8(x);

		base = (sib & 7) | ((x->rex & 1) << 3);
		index = ((sib >> 3) & 7) | ((x->rex & 2) << 2);
		if (index != 4)
			addr += x->c->gpr[index] << (sib >> 6);
		if ((sib & 7) == 5 && mod == 0)
			addr += (uint64_t)sext(imm(x, 4), 4);
		else
			addr += x->c->gpr[base];
	} else if (rm == 5 && mod == 0) {
		addr = (uint64_t)sext(imm(x, 4), 4);
		x->riprel = true;
	} else {
		addr = x->c->gpr[rm | ((x->rex & 1) << 3)];
	}
	if (mod == 1)
		addr += (uint64_t)sext(imm8(x), 1);
	else if (mod == 2)
		addr += (uint64_t)sext(imm(x, 4), 4);
	x->rm = (struct opnd){ .mem = true, .addr = addr + x->seg_base };
}

/* RIP-relative operands count from the end of the instruction, immediates
 * included: call once every byte is consumed. */
static void finish(struct x86 *x)
{
	if (x->riprel) {
		x->rm.addr += x->start + x->n;
		x->riprel = false;
	}
}

/* ---- registers and operands ---------------------------------------------------- */

static bool high8(const struct x86 *x, unsigned r, unsigned sz)
{
	return sz == 1 && !x->rex && r >= 4 && r < 8;
}

static uint64_t reg_get(struct x86 *x, unsigned r, unsigned sz)
{
	if (high8(x, r, sz))
		return (x->c->gpr[r - 4] >> 8) & 0xff;
	return x->c->gpr[r] & mask(sz);
}

static void reg_set(struct x86 *x, unsigned r, unsigned sz, uint64_t v)
{
	uint64_t *g = &x->c->gpr[r];

	if (high8(x, r, sz)) {
		g = &x->c->gpr[r - 4];
		*g = (*g & ~0xff00ULL) | ((v & 0xff) << 8);
		return;
	}
	switch (sz) {
	case 1: *g = (*g & ~0xffULL) | (v & 0xff); break;
	case 2: *g = (*g & ~0xffffULL) | (v & 0xffff); break;
	case 4: *g = (uint32_t)v; break;
	default: *g = v; break;
	}
}

static uint64_t get(struct x86 *x, const struct opnd *o, unsigned sz)
{
	return o->mem ? mem_read(x, o->addr, sz) : reg_get(x, o->reg, sz);
}

static void put(struct x86 *x, const struct opnd *o, unsigned sz, uint64_t v)
{
	if (o->mem)
		mem_write(x, o->addr, sz, v);
	else
		reg_set(x, o->reg, sz, v);
}

static void push(struct x86 *x, uint64_t v)
{
	mem_write(x, x->c->gpr[CPU_RSP] - 8, 8, v);
	x->c->gpr[CPU_RSP] -= 8;
}

static uint64_t pop(struct x86 *x)
{
	uint64_t v = mem_read(x, x->c->gpr[CPU_RSP], 8);

	x->c->gpr[CPU_RSP] += 8;
	return v;
}

/* ---- flags and arithmetic ---------------------------------------------------------- */

static void set_flags(struct x86 *x, uint64_t which, uint64_t f)
{
	x->c->rflags = (x->c->rflags & ~which) | (f & which);
}

static uint64_t szp(uint64_t r, unsigned sz)
{
	uint64_t f = 0;

	r &= mask(sz);
	if (!r)
		f |= F_ZF;
	if (r >> (8 * sz - 1))
		f |= F_SF;
	if (!__builtin_parity((unsigned)(r & 0xff)))
		f |= F_PF;
	return f;
}

enum { ALU_ADD, ALU_OR, ALU_ADC, ALU_SBB, ALU_AND, ALU_SUB, ALU_XOR, ALU_CMP };

/* Returns the result; sets the arithmetic flags. */
static uint64_t alu(struct x86 *x, unsigned op, uint64_t a, uint64_t b, unsigned sz)
{
	uint64_t m = mask(sz), msb = 1ULL << (8 * sz - 1);
	uint64_t cin = x->c->rflags & F_CF, r, f = 0;

	a &= m;
	b &= m;
	switch (op) {
	case ALU_ADD:
	case ALU_ADC:
		if (op == ALU_ADD)
			cin = 0;
		r = (a + b + cin) & m;
		if (r < a || (cin && r == a))
			f |= F_CF;
		if ((a ^ r) & (b ^ r) & msb)
			f |= F_OF;
		break;
	case ALU_SUB:
	case ALU_CMP:
	case ALU_SBB:
		if (op != ALU_SBB)
			cin = 0;
		r = (a - b - cin) & m;
		if (a < b || (cin && a == b))
			f |= F_CF;
		if ((a ^ b) & (a ^ r) & msb)
			f |= F_OF;
		break;
	case ALU_OR: r = a | b; break;
	case ALU_AND: r = a & b; break;
	default: r = a ^ b; break;
	}
	if (op != ALU_OR && op != ALU_AND && op != ALU_XOR)
		f |= (a ^ b ^ r) & F_AF;
	set_flags(x, F_ARITH, f | szp(r, sz));
	return r;
}

static uint64_t shift(struct x86 *x, unsigned op, uint64_t a, unsigned cnt, unsigned sz)
{
	unsigned bits = 8 * sz;
	uint64_t m = mask(sz), msb = 1ULL << (bits - 1), r, f;

	cnt &= sz == 8 ? 63 : 31;
	a &= m;
	if (!cnt)
		return a;
	switch (op) {
	case 0:	/* rol */
		cnt %= bits;
		r = cnt ? ((a << cnt) | (a >> (bits - cnt))) & m : a;
		set_flags(x, F_CF | F_OF, (r & 1 ? F_CF : 0) | ((((r >> (bits - 1)) ^ r) & 1) ? F_OF : 0));
		return r;
	case 1:	/* ror */
		cnt %= bits;
		r = cnt ? ((a >> cnt) | (a << (bits - cnt))) & m : a;
		set_flags(x, F_CF | F_OF, (r & msb ? F_CF : 0) | (((r ^ (r << 1)) & msb) ? F_OF : 0));
		return r;
	case 4:
	case 6:	/* shl/sal */
		r = cnt < bits ? (a << cnt) & m : 0;
		f = cnt <= bits && ((a >> (bits - cnt)) & 1) ? F_CF : 0;
		if (((r & msb) != 0) != ((f & F_CF) != 0))
			f |= F_OF;
		break;
	case 5:	/* shr */
		r = cnt < bits ? a >> cnt : 0;
		f = cnt <= bits && ((a >> (cnt - 1)) & 1) ? F_CF : 0;
		if (a & msb)
			f |= F_OF;
		break;
	case 7: {	/* sar */
		int64_t s = sext(a, sz);

		r = (uint64_t)(s >> (cnt < bits ? cnt : bits - 1)) & m;
		f = ((uint64_t)(s >> (cnt - 1 < bits ? cnt - 1 : bits - 1)) & 1) ? F_CF : 0;
		break;
	}
	default:
		unknown(x);
	}
	set_flags(x, F_ARITH, f | szp(r, sz));
	return r;
}

static bool cond(const struct x86 *x, unsigned cc)
{
	uint64_t f = x->c->rflags;
	bool sf_ne_of = !(f & F_SF) != !(f & F_OF), r;

	switch (cc >> 1) {
	case 0: r = f & F_OF; break;
	case 1: r = f & F_CF; break;
	case 2: r = f & F_ZF; break;
	case 3: r = f & (F_CF | F_ZF); break;
	case 4: r = f & F_SF; break;
	case 5: r = f & F_PF; break;
	case 6: r = sf_ne_of; break;
	default: r = (f & F_ZF) || sf_ne_of; break;
	}
	return (cc & 1) ? !r : r;
}

/* F6/F7 /4../7: mul, imul, div, idiv of rDX:rAX by src. */
static void muldiv(struct x86 *x, unsigned op, uint64_t src, unsigned sz)
{
	uint64_t *g = x->c->gpr, m = mask(sz);
	unsigned bits = 8 * sz;
	unsigned __int128 a;
	__int128 sa;
	bool over;

	if (sz == 1)
		a = g[CPU_RAX] & 0xffff;
	else
		a = ((unsigned __int128)(g[CPU_RDX] & m) << bits) | (g[CPU_RAX] & m);
	sa = sz == 1 ? (int16_t)a : sz == 8 ? (__int128)a : (__int128)sext((uint64_t)a, 2 * sz);
	switch (op) {
	case 4:
	case 5: {
		unsigned __int128 p;

		if (op == 4) {
			p = (unsigned __int128)(g[CPU_RAX] & m) * (src & m);
			over = (p >> bits) != 0;
		} else {
			__int128 sp = (__int128)sext(g[CPU_RAX], sz) * sext(src, sz);

			p = (unsigned __int128)sp;
			over = sp != (__int128)sext((uint64_t)sp, sz);
		}
		set_flags(x, F_CF | F_OF, over ? F_CF | F_OF : 0);
		if (sz == 1) {
			reg_set(x, CPU_RAX, 2, (uint64_t)p);
		} else {
			reg_set(x, CPU_RAX, sz, (uint64_t)p);
			reg_set(x, CPU_RDX, sz, (uint64_t)(p >> bits));
		}
		return;
	}
	case 6: {
		unsigned __int128 q, d = src & m;

		if (!d)
			fault(x, "#DE: divide by zero at rip 0x%llx", (unsigned long long)x->start);
		q = a / d;
		if (q > m)
			fault(x, "#DE: quotient overflow at rip 0x%llx", (unsigned long long)x->start);
		if (sz == 1) {
			x->c->gpr[CPU_RAX] = (x->c->gpr[CPU_RAX] & ~0xffffULL) | (uint64_t)(q & 0xff) |
					     ((uint64_t)(a % d & 0xff) << 8);	/* AL, AH */
		} else {
			reg_set(x, CPU_RAX, sz, (uint64_t)q);
			reg_set(x, CPU_RDX, sz, (uint64_t)(a % d));
		}
		return;
	}
	default: {
		__int128 q, d = sext(src, sz);

		if (!d)
			fault(x, "#DE: divide by zero at rip 0x%llx", (unsigned long long)x->start);
		if (d == -1 && (unsigned __int128)sa == (unsigned __int128)1 << 127)
			fault(x, "#DE: quotient overflow at rip 0x%llx", (unsigned long long)x->start);
		q = sa / d;
		if (q != (__int128)sext((uint64_t)q, sz))
			fault(x, "#DE: quotient overflow at rip 0x%llx", (unsigned long long)x->start);
		if (sz == 1) {
			reg_set(x, CPU_RAX, 1, (uint64_t)q);
			x->c->gpr[CPU_RAX] = (x->c->gpr[CPU_RAX] & ~0xff00ULL) |
					     (((uint64_t)(sa % d) & 0xff) << 8);
		} else {
			reg_set(x, CPU_RAX, sz, (uint64_t)q);
			reg_set(x, CPU_RDX, sz, (uint64_t)(sa % d));
		}
		return;
	}
	}
}

/* The two- and three-operand imul: ModRM.reg = a * b truncated to sz, CF
 * and OF set when the signed product did not fit. */
static void imul_to_reg(struct x86 *x, uint64_t a, uint64_t b, unsigned sz)
{
	__int128 p = (__int128)sext(a, sz) * sext(b, sz);

	set_flags(x, F_CF | F_OF, p != (__int128)sext((uint64_t)p, sz) ? F_CF | F_OF : 0);
	reg_set(x, x->reg, sz, (uint64_t)p);
}

/* ---- instructions -------------------------------------------------------------- */

/* Operand size of a non-byte instruction. */
static unsigned osz(const struct x86 *x)
{
	return (x->rex & 8) ? 8 : x->p66 ? 2 : 4;
}

static void jump(struct x86 *x, uint64_t target)
{
	x->c->rip = target;
}

static void port_io(struct x86 *x, bool out, uint16_t port, unsigned sz)
{
	if (out) {
		x->bus->out(x->bus->ctx, port, sz, (uint32_t)reg_get(x, CPU_RAX, sz));
		return;
	}
	reg_set(x, CPU_RAX, sz == 4 ? 4 : sz, x->bus->in(x->bus->ctx, port, sz) & mask(sz));
}

/* stos/movs, with or without rep. */
static void string_op(struct x86 *x, uint8_t op)
{
	unsigned sz = (op & 1) ? osz(x) : 1;
	uint64_t *g = x->c->gpr;
	int64_t step = (x->c->rflags & F_DF) ? -(int64_t)sz : (int64_t)sz;
	bool rep = x->pf3 || x->pf2;

	while (!rep || g[CPU_RCX]) {
		if (op >= 0xaa)
			mem_write(x, g[CPU_RDI], sz, reg_get(x, CPU_RAX, sz));
		else
			mem_write(x, g[CPU_RDI], sz, mem_read(x, g[CPU_RSI] + x->seg_base, sz));
		g[CPU_RDI] += (uint64_t)step;
		if (op < 0xaa)
			g[CPU_RSI] += (uint64_t)step;
		if (!rep)
			break;
		g[CPU_RCX]--;
	}
}

static void sse_move(struct x86 *x, uint8_t op)
{
	uint8_t *xr;
	unsigned len;
	bool to_xmm, ok;

	/* The mandatory prefix selects the instruction: refuse the ones not here
	 * (movss/movsd, MMX forms) rather than run them as something else. */
	switch (op) {
	case 0x10: case 0x11: case 0x57: ok = !x->pf2 && !x->pf3; break;
	case 0x6f: case 0x7f: ok = x->p66 != x->pf3 && !x->pf2; break;
	case 0x7e: ok = (x->p66 != x->pf3) && !x->pf2; break;
	default: ok = x->p66 && !x->pf2 && !x->pf3; break;	/* 6e d6 ef */
	}
	if (!ok)
		unknown(x);
	decode_modrm(x);
	finish(x);
	xr = x->c->xmm[x->reg];
	switch (op) {
	case 0x10: case 0x6f: to_xmm = true; len = 16; break;		/* movups/movdqu/movdqa load */
	case 0x11: case 0x7f: to_xmm = false; len = 16; break;		/* store */
	case 0xd6: to_xmm = false; len = 8; break;			/* 66: movq xmm/m64, xmm */
	case 0x7e:
		if (x->pf3) {	/* F3 0F 7E: movq xmm, xmm/m64 */
			to_xmm = true;
			len = 8;
			break;
		}
		/* 66 [REX.W] 0F 7E: movd/movq r/m, xmm */
		put(x, &x->rm, osz(x) == 8 ? 8 : 4, ((uint64_t *)xr)[0]);
		return;
	case 0x6e: {	/* 66 [REX.W] 0F 6E: movd/movq xmm, r/m */
		uint64_t v = get(x, &x->rm, osz(x) == 8 ? 8 : 4);

		memset(xr, 0, 16);
		memcpy(xr, &v, 8);
		return;
	}
	default:	/* 0x57, 0xef: xorps, pxor */
		if (x->rm.mem) {
			const uint8_t *p = host(x, x->rm.addr, 16);

			for (int i = 0; i < 16; i++)
				xr[i] ^= p[i];
		} else {
			for (int i = 0; i < 16; i++)
				xr[i] ^= x->c->xmm[x->rm.reg][i];
		}
		return;
	}
	if (to_xmm) {
		uint8_t tmp[16] = { 0 };

		memcpy(tmp, x->rm.mem ? host(x, x->rm.addr, len) : x->c->xmm[x->rm.reg], len);
		memcpy(xr, tmp, 16);	/* movq zeroes the upper half */
	} else if (x->rm.mem) {
		memcpy(host(x, x->rm.addr, len), xr, len);
	} else {
		uint8_t tmp[16] = { 0 };

		memcpy(tmp, xr, len);
		memcpy(x->c->xmm[x->rm.reg], tmp, 16);
	}
}

/* bt, bts, btr, btc (kind 0..3), by register or immediate bit offset. A
 * register offset into memory may reach outside the operand, as on hardware. */
static void bit_op(struct x86 *x, unsigned kind, bool imm_form, unsigned sz)
{
	unsigned bits = 8 * sz;
	uint64_t off, v;
	struct opnd o;

	if (imm_form) {
		off = imm8(x);
		finish(x);
	} else {
		off = reg_get(x, x->reg, sz);
	}
	finish(x);
	o = x->rm;
	if (o.mem && !imm_form)
		o.addr += (uint64_t)(sext(off, sz) >> __builtin_ctz(bits)) * sz;
	off &= bits - 1;
	v = get(x, &o, sz);
	set_flags(x, F_CF, (v >> off) & 1 ? F_CF : 0);
	switch (kind) {
	case 1: v |= 1ULL << off; break;
	case 2: v &= ~(1ULL << off); break;
	case 3: v ^= 1ULL << off; break;
	default: return;
	}
	put(x, &o, sz, v);
}

static void step_0f(struct x86 *x)
{
	uint8_t op = imm8(x);
	unsigned sz = osz(x);

	if (op >= 0x80 && op <= 0x8f) {	/* jcc rel32 */
		int64_t d = sext(imm(x, 4), 4);

		x->c->rip = x->start + x->n;
		if (cond(x, op & 15))
			jump(x, x->c->rip + (uint64_t)d);
		return;
	}
	if (op >= 0x40 && op <= 0x4f) {	/* cmovcc: a 32-bit move zero-extends even when not taken */
		uint64_t v;

		decode_modrm(x);
		finish(x);
		v = get(x, &x->rm, sz);
		reg_set(x, x->reg, sz, cond(x, op & 15) ? v : reg_get(x, x->reg, sz));
		goto next;
	}
	if (op >= 0x90 && op <= 0x9f) {	/* setcc */
		decode_modrm(x);
		finish(x);
		put(x, &x->rm, 1, cond(x, op & 15));
		goto next;
	}
	switch (op) {
	case 0x1f:	/* nop r/m */
		decode_modrm(x);
		break;
	case 0xaf:	/* imul r, r/m */
		decode_modrm(x);
		finish(x);
		imul_to_reg(x, get(x, &x->rm, sz), reg_get(x, x->reg, sz), sz);
		break;
	case 0xa3: case 0xab: case 0xb3: case 0xbb:	/* bt, bts, btr, btc r/m, r */
		decode_modrm(x);
		bit_op(x, (op >> 3) & 3, false, sz);
		break;
	case 0xba:	/* group 8: bt, bts, btr, btc r/m, imm8 */
		decode_modrm(x);
		if ((x->reg & 7) < 4)
			unknown(x);
		bit_op(x, (x->reg & 7) - 4, true, sz);
		break;
	case 0xb6: case 0xb7: case 0xbe: case 0xbf: {	/* movzx, movsx */
		unsigned ssz = (op & 1) ? 2 : 1;
		uint64_t v;

		decode_modrm(x);
		finish(x);
		v = get(x, &x->rm, ssz);
		reg_set(x, x->reg, sz, op >= 0xbe ? (uint64_t)sext(v, ssz) : v);
		break;
	}
	case 0x10: case 0x11: case 0x57: case 0x6e: case 0x6f: case 0x7e: case 0x7f:
	case 0xd6: case 0xef:
		sse_move(x, op);
		break;
	default:
		unknown(x);
	}
next:
	finish(x);
	x->c->rip = x->start + x->n;
}

static void step(struct x86 *x)
{
	struct cpu_state *c = x->c;
	uint8_t op;
	unsigned sz;

	x->start = c->rip;
	fetch_window(x);
	x->rex = 0;
	x->p66 = x->pf2 = x->pf3 = false;
	x->seg_base = 0;
	x->riprel = false;
	for (;;) {	/* legacy prefixes, then at most one REX right before the opcode */
		op = imm8(x);
		if (op == 0x66) x->p66 = true;
		else if (op == 0xf2) x->pf2 = true;
		else if (op == 0xf3) x->pf3 = true;
		else if (op == 0x64) x->seg_base = c->fs_base;
		else if (op == 0x65) x->seg_base = c->gs_base;
		else if (op == 0x2e || op == 0x3e || op == 0x26 || op == 0x36) continue;
		else break;
	}
	if ((op & 0xf0) == 0x40) {
		x->rex = op;
		op = imm8(x);
	}
	sz = osz(x);

	if (op < 0x40 && (op & 7) < 6) {	/* add or adc sbb and sub xor cmp */
		unsigned alu_op = op >> 3, bsz = (op & 1) ? sz : 1;
		uint64_t r;

		switch (op & 7) {
		case 0: case 1:	/* E, G */
			decode_modrm(x);
			finish(x);
			r = alu(x, alu_op, get(x, &x->rm, bsz), reg_get(x, x->reg, bsz), bsz);
			if (alu_op != ALU_CMP)
				put(x, &x->rm, bsz, r);
			break;
		case 2: case 3:	/* G, E */
			decode_modrm(x);
			finish(x);
			r = alu(x, alu_op, reg_get(x, x->reg, bsz), get(x, &x->rm, bsz), bsz);
			if (alu_op != ALU_CMP)
				reg_set(x, x->reg, bsz, r);
			break;
		default: {	/* rAX, imm */
			uint64_t i = (op & 1) ? imm_z(x, sz) : imm8(x);

			r = alu(x, alu_op, reg_get(x, CPU_RAX, bsz), i, bsz);
			if (alu_op != ALU_CMP)
				reg_set(x, CPU_RAX, bsz, r);
			break;
		}
		}
		goto next;
	}
	if (op >= 0x50 && op <= 0x57) {
		push(x, c->gpr[(op & 7) | ((x->rex & 1) << 3)]);
		goto next;
	}
	if (op >= 0x58 && op <= 0x5f) {
		uint64_t v = pop(x);

		c->gpr[(op & 7) | ((x->rex & 1) << 3)] = v;
		goto next;
	}
	if (op >= 0x70 && op <= 0x7f) {	/* jcc rel8 */
		int64_t d = sext(imm8(x), 1);

		c->rip = x->start + x->n;
		if (cond(x, op & 15))
			jump(x, c->rip + (uint64_t)d);
		return;
	}
	if (op >= 0x91 && op <= 0x97) {	/* xchg rAX, r */
		unsigned r = (op & 7) | ((x->rex & 1) << 3);
		uint64_t t = reg_get(x, r, sz);

		reg_set(x, r, sz, reg_get(x, CPU_RAX, sz));
		reg_set(x, CPU_RAX, sz, t);
		goto next;
	}
	if (op >= 0xb0 && op <= 0xb7) {	/* mov r8, imm8 */
		reg_set(x, (op & 7) | ((x->rex & 1) << 3), 1, imm8(x));
		goto next;
	}
	if (op >= 0xb8 && op <= 0xbf) {	/* mov r, imm (imm64 with REX.W) */
		reg_set(x, (op & 7) | ((x->rex & 1) << 3), sz, imm(x, sz));
		goto next;
	}

	switch (op) {
	case 0x0f:
		step_0f(x);
		return;
	case 0x63:	/* movsxd */
		decode_modrm(x);
		finish(x);
		reg_set(x, x->reg, sz, (uint64_t)sext(get(x, &x->rm, 4), 4));
		break;
	case 0x68:
		push(x, imm_z(x, 8));
		break;
	case 0x6a:
		push(x, (uint64_t)sext(imm8(x), 1));
		break;
	case 0x69: case 0x6b: {	/* imul r, r/m, imm */
		uint64_t i;

		decode_modrm(x);
		i = op == 0x6b ? (uint64_t)sext(imm8(x), 1) : imm_z(x, sz);
		finish(x);
		imul_to_reg(x, get(x, &x->rm, sz), i, sz);
		break;
	}
	case 0x80: case 0x81: case 0x83: {	/* group 1: alu r/m, imm */
		unsigned bsz = op == 0x80 ? 1 : sz;
		uint64_t i, r;

		decode_modrm(x);
		i = op == 0x81 ? imm_z(x, sz) : (uint64_t)sext(imm8(x), 1);
		finish(x);
		r = alu(x, x->reg & 7, get(x, &x->rm, bsz), i, bsz);
		if ((x->reg & 7) != ALU_CMP)
			put(x, &x->rm, bsz, r);
		break;
	}
	case 0x84: case 0x85: {	/* test r/m, r */
		unsigned bsz = op == 0x84 ? 1 : sz;

		decode_modrm(x);
		finish(x);
		alu(x, ALU_AND, get(x, &x->rm, bsz), reg_get(x, x->reg, bsz), bsz);
		break;
	}
	case 0x86: case 0x87: {	/* xchg r/m, r */
		unsigned bsz = op == 0x86 ? 1 : sz;
		uint64_t t;

		decode_modrm(x);
		finish(x);
		t = get(x, &x->rm, bsz);
		put(x, &x->rm, bsz, reg_get(x, x->reg, bsz));
		reg_set(x, x->reg, bsz, t);
		break;
	}
	case 0x88: case 0x89:
		decode_modrm(x);
		finish(x);
		put(x, &x->rm, op == 0x88 ? 1 : sz, reg_get(x, x->reg, op == 0x88 ? 1 : sz));
		break;
	case 0x8a: case 0x8b:
		decode_modrm(x);
		finish(x);
		reg_set(x, x->reg, op == 0x8a ? 1 : sz, get(x, &x->rm, op == 0x8a ? 1 : sz));
		break;
	case 0x8d:	/* lea */
		decode_modrm(x);
		finish(x);
		if (!x->rm.mem)
			unknown(x);
		reg_set(x, x->reg, sz, x->rm.addr - x->seg_base);
		break;
	case 0x8f: {	/* pop r/m: an rsp-based address counts after the pop */
		uint64_t v = pop(x);

		decode_modrm(x);
		finish(x);
		put(x, &x->rm, 8, v);
		break;
	}
	case 0x90:	/* nop, pause, xchg r8, rax */
		if (x->rex & 1) {
			uint64_t t = reg_get(x, 8, sz);

			reg_set(x, 8, sz, reg_get(x, CPU_RAX, sz));
			reg_set(x, CPU_RAX, sz, t);
		}
		break;
	case 0x98:	/* cbw, cwde, cdqe */
		reg_set(x, CPU_RAX, sz, (uint64_t)sext(c->gpr[CPU_RAX], sz / 2));
		break;
	case 0x99:	/* cwd, cdq, cqo */
		reg_set(x, CPU_RDX, sz, sext(c->gpr[CPU_RAX], sz) < 0 ? ~0ULL : 0);
		break;
	case 0x9c:	/* pushf */
		push(x, c->rflags);
		break;
	case 0x9d: {	/* popf: the arithmetic flags and DF; the rest is kept */
		uint64_t f = pop(x);

		c->rflags = (c->rflags & ~(F_ARITH | F_DF)) | (f & (F_ARITH | F_DF)) | 0x2;
		break;
	}
	case 0xa4: case 0xa5: case 0xaa: case 0xab:
		string_op(x, op);
		break;
	case 0xa8: case 0xa9: {	/* test rAX, imm */
		unsigned bsz = op == 0xa8 ? 1 : sz;

		alu(x, ALU_AND, reg_get(x, CPU_RAX, bsz), bsz == 1 ? imm8(x) : imm_z(x, sz), bsz);
		break;
	}
	case 0xc0: case 0xc1: case 0xd0: case 0xd1: case 0xd2: case 0xd3: {	/* group 2 */
		unsigned bsz = (op & 1) ? sz : 1, cnt;

		decode_modrm(x);
		cnt = op <= 0xc1 ? imm8(x) : op <= 0xd1 ? 1 : (unsigned)(c->gpr[CPU_RCX] & 0xff);
		finish(x);
		put(x, &x->rm, bsz, shift(x, x->reg & 7, get(x, &x->rm, bsz), cnt, bsz));
		break;
	}
	case 0xc3:
		jump(x, pop(x));
		return;
	case 0xc6: case 0xc7: {	/* mov r/m, imm */
		unsigned bsz = op == 0xc6 ? 1 : sz;
		uint64_t i;

		decode_modrm(x);
		if (x->reg & 7)
			unknown(x);
		i = bsz == 1 ? imm8(x) : imm_z(x, sz);
		finish(x);
		put(x, &x->rm, bsz, i);
		break;
	}
	case 0xc9:	/* leave */
		c->gpr[CPU_RSP] = c->gpr[CPU_RBP];
		c->gpr[CPU_RBP] = pop(x);
		break;
	case 0xe4: case 0xe5: case 0xe6: case 0xe7: {
		uint16_t port = imm8(x);

		port_io(x, op & 2, port, (op & 1) ? (x->p66 ? 2 : 4) : 1);
		break;
	}
	case 0xec: case 0xed: case 0xee: case 0xef:
		port_io(x, op & 2, (uint16_t)c->gpr[CPU_RDX], (op & 1) ? (x->p66 ? 2 : 4) : 1);
		break;
	case 0xe8: {	/* call rel32 */
		int64_t d = sext(imm(x, 4), 4);

		c->rip = x->start + x->n;
		push(x, c->rip);
		jump(x, c->rip + (uint64_t)d);
		return;
	}
	case 0xe9:
	case 0xeb: {	/* jmp rel32, rel8 */
		int64_t d = op == 0xeb ? sext(imm8(x), 1) : sext(imm(x, 4), 4);

		jump(x, x->start + x->n + (uint64_t)d);
		return;
	}
	case 0xf4:
		fault(x, "hlt at rip 0x%llx", (unsigned long long)x->start);
	case 0xf6: case 0xf7: {	/* group 3 */
		unsigned bsz = op == 0xf6 ? 1 : sz, sub;
		uint64_t v;

		decode_modrm(x);
		sub = x->reg & 7;
		if (sub <= 1) {
			uint64_t i = bsz == 1 ? imm8(x) : imm_z(x, sz);

			finish(x);
			alu(x, ALU_AND, get(x, &x->rm, bsz), i, bsz);
			break;
		}
		finish(x);
		v = get(x, &x->rm, bsz);
		if (sub == 2)
			put(x, &x->rm, bsz, ~v);
		else if (sub == 3)
			put(x, &x->rm, bsz, alu(x, ALU_SUB, 0, v, bsz));
		else
			muldiv(x, sub, v, bsz);
		break;
	}
	case 0xfc:
		c->rflags &= ~F_DF;
		break;
	case 0xfd:
		c->rflags |= F_DF;
		break;
	case 0xfe: case 0xff: {	/* group 4/5 */
		unsigned bsz = op == 0xfe ? 1 : sz, sub;
		uint64_t v, cf = c->rflags & F_CF;

		decode_modrm(x);
		finish(x);
		sub = x->reg & 7;
		if (sub <= 1) {	/* inc, dec: CF unchanged */
			v = alu(x, sub ? ALU_SUB : ALU_ADD, get(x, &x->rm, bsz), 1, bsz);
			set_flags(x, F_CF, cf);
			put(x, &x->rm, bsz, v);
			break;
		}
		if (op == 0xfe)
			unknown(x);
		v = get(x, &x->rm, 8);
		if (sub == 2) {	/* call r/m */
			c->rip = x->start + x->n;
			push(x, c->rip);
			jump(x, v);
			return;
		}
		if (sub == 4) {	/* jmp r/m */
			jump(x, v);
			return;
		}
		if (sub == 6) {
			push(x, v);
			break;
		}
		unknown(x);
	}
	default:
		unknown(x);
	}
next:
	finish(x);
	c->rip = x->start + x->n;
}

int cpu_run(struct cpu_state *c, const struct cpu_bus *bus, const atomic_bool *kick,
	    uint64_t max_insns, struct error *err)
{
	struct x86 x = { .c = c, .bus = bus };
	volatile uint64_t n = 0;	/* read after a longjmp */

	if (setjmp(x.fault)) {
		c->rip = x.start;
		return error_set(err, -EIO, "%s", x.why);
	}
	while (!atomic_load_explicit(kick, memory_order_relaxed) && (!max_insns || n < max_insns)) {
		step(&x);
		n = n + 1;
	}
	return 0;
}
