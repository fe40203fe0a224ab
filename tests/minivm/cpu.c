/* SPDX-License-Identifier: MIT
 * cpu.c — tests forkfs-minivm's emulated CPU (contrib/minivm/cpu.c) against
 * the machine's own: each snippet below is assembled into this test binary
 * as a function struct pair f(uint64_t a, uint64_t b) (SysV: a in rdi, b in
 * rsi, the result in rax:rdx, usually a value and the flags). The test calls
 * it natively, then copies its bytes into a small guest memory and runs them
 * on cpu_run() with the same inputs, and compares, for edge values and 2000
 * random pairs per snippet. Flags the architecture leaves undefined for an
 * instruction are masked per snippet. Then: every way the CPU stops (hlt,
 * an unknown instruction, #DE, an access outside memory) and the kick.
 * No root, no KVM: runs everywhere.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "common/macro.h"
#include "contrib/minivm/cpu.h"
#include "tests/tap.h"

struct pair {
	uint64_t a, b;
};

/* Flags: CF PF AF ZF SF OF. */
#define ARITH 0x8d5ULL
#define NO_AF 0x8c5ULL
#define SHIFT 0x0c5ULL	/* OF is undefined for counts > 1, AF always */
#define CF_OF 0x801ULL
#define CF_ONLY 0x001ULL

/* Each snippet: a name, the global label of its code and of its end, and the
 * flags mask applied to the second result (0: compare b as is). */
#define SNIPPET(name, body)                                                    \
	__asm__(".pushsection .text\n.globl snip_" #name "\nsnip_" #name ":\n" body \
		"\n.globl snip_" #name "_end\nsnip_" #name "_end:\n.popsection\n"); \
	struct pair snip_##name(uint64_t, uint64_t);                           \
	extern const uint8_t snip_##name##_end[];

#define FLAGS_TO_RDX "pushfq\npop %rdx\n"

SNIPPET(add, "mov %rdi,%rax\nadd %rsi,%rax\n" FLAGS_TO_RDX "ret")
SNIPPET(adc, "mov %rdi,%rax\nbt $0,%rsi\nadc %rsi,%rax\n" FLAGS_TO_RDX "ret")
SNIPPET(sub, "mov %rdi,%rax\nsub %rsi,%rax\n" FLAGS_TO_RDX "ret")
SNIPPET(sbb32, "mov %rdi,%rax\nbt $1,%rsi\nsbb %esi,%eax\n" FLAGS_TO_RDX "ret")
SNIPPET(cmp8, "mov %rdi,%rax\ncmp %sil,%al\n" FLAGS_TO_RDX "ret")
SNIPPET(add16, "mov %rdi,%rax\nadd %si,%ax\n" FLAGS_TO_RDX "ret")
SNIPPET(and_or_xor, "mov %rdi,%rax\nand %rsi,%rax\nor $0x35,%al\nxor %rsi,%rax\n" FLAGS_TO_RDX "ret")
SNIPPET(test32, "xor %eax,%eax\ntest %esi,%edi\n" FLAGS_TO_RDX "ret")
SNIPPET(inc_dec, "mov %rdi,%rax\nbt $0,%rsi\ninc %rax\ndec %eax\ninc %ax\n" FLAGS_TO_RDX "ret")
SNIPPET(neg_not, "mov %rdi,%rax\nnot %rax\nneg %rax\nneg %sil\n" FLAGS_TO_RDX "add %rsi,%rax\nret")
SNIPPET(shl_cl, "mov %rdi,%rax\nmov %esi,%ecx\nxor %edx,%edx\nshl %cl,%rax\n" FLAGS_TO_RDX "ret")
SNIPPET(shr_cl32, "mov %rdi,%rax\nmov %esi,%ecx\nxor %edx,%edx\nshr %cl,%eax\n" FLAGS_TO_RDX "ret")
SNIPPET(sar_cl8, "mov %rdi,%rax\nmov %esi,%ecx\nand $7,%ecx\nxor %edx,%edx\nsar %cl,%al\n" FLAGS_TO_RDX "ret")
SNIPPET(shifts_imm, "mov %rdi,%rax\nshl $12,%rax\nshr $5,%rax\nsar $3,%rax\nshl %rax\n" FLAGS_TO_RDX "ret")
SNIPPET(rol_ror, "mov %rdi,%rax\nmov %esi,%ecx\nrol %cl,%rax\nror $7,%eax\n" FLAGS_TO_RDX "ret")
SNIPPET(imul2, "mov %rdi,%rax\nimul %rsi,%rax\n" FLAGS_TO_RDX "ret")
SNIPPET(imul3, "imul $-1234567,%rdi,%rax\nimul $77,%esi,%ecx\n" FLAGS_TO_RDX "add %rcx,%rax\nret")
SNIPPET(mul, "mov %rdi,%rax\nmul %rsi\nret")
SNIPPET(imul1_32, "mov %rdi,%rax\nimul %esi\npushfq\npop %rcx\nshl $32,%rdx\nor %rdx,%rax\n"
		  "mov %rcx,%rdx\nret")
SNIPPET(div, "mov %rdi,%rax\nxor %edx,%edx\nor $1,%rsi\ndiv %rsi\nret")
SNIPPET(div128, "mov %rdi,%rax\nmov %rsi,%rdx\nshr $2,%rdx\nbts $63,%rsi\ndiv %rsi\nret")
SNIPPET(idiv, "mov %rdi,%rax\ncqo\nbtr $0,%rsi\nor $2,%rsi\nidiv %rsi\nret")
SNIPPET(div8, "xor %edx,%edx\nmovzwl %di,%eax\nor $0x80,%sil\nand $0x7f,%ah\ndiv %sil\nret")
SNIPPET(setcc, "xor %edx,%edx\ncmp %rsi,%rdi\n"
	       "seto %cl\nmovzbl %cl,%ecx\nlea (%rcx,%rdx,2),%rdx\n"
	       "setb %cl\nmovzbl %cl,%ecx\nlea (%rcx,%rdx,2),%rdx\n"
	       "setz %cl\nmovzbl %cl,%ecx\nlea (%rcx,%rdx,2),%rdx\n"
	       "setbe %cl\nmovzbl %cl,%ecx\nlea (%rcx,%rdx,2),%rdx\n"
	       "sets %cl\nmovzbl %cl,%ecx\nlea (%rcx,%rdx,2),%rdx\n"
	       "setp %cl\nmovzbl %cl,%ecx\nlea (%rcx,%rdx,2),%rdx\n"
	       "setl %cl\nmovzbl %cl,%ecx\nlea (%rcx,%rdx,2),%rdx\n"
	       "setle %cl\nmovzbl %cl,%ecx\nlea (%rcx,%rdx,2),%rdx\n"
	       "seta %cl\nmovzbl %cl,%ecx\nlea (%rcx,%rdx,2),%rdx\n"
	       "setge %cl\nmovzbl %cl,%ecx\nlea (%rcx,%rdx,2),%rdx\n"
	       "setae %cl\nmovzbl %cl,%ecx\nlea (%rcx,%rdx,2),%rdx\n"
	       "setne %cl\nmovzbl %cl,%ecx\nlea (%rcx,%rdx,2),%rdx\n"
	       "setg %cl\nmovzbl %cl,%ecx\nlea (%rcx,%rdx,2),%rdx\n"
	       "setno %cl\nmovzbl %cl,%ecx\nlea (%rcx,%rdx,2),%rdx\n"
	       "setns %cl\nmovzbl %cl,%ecx\nlea (%rcx,%rdx,2),%rdx\n"
	       "setnp %cl\nmovzbl %cl,%ecx\nlea (%rcx,%rdx,2),%rdx\n"
	       "mov %rdx,%rax\nret")
SNIPPET(cmov, "mov %rdi,%rax\nxor %edx,%edx\ncmp %rsi,%rdi\ncmovae %rsi,%rax\ncmovl %esi,%edx\ncmove %rdi,%rax\n"
	      "shl $32,%rdx\nret")
SNIPPET(jcc, "xor %eax,%eax\ncmp %esi,%edi\njb 1f\nor $1,%eax\n1:jg 2f\nor $2,%eax\n2:jne 3f\n"
	     "or $4,%eax\n3:test %rdi,%rdi\njs 4f\nor $8,%eax\n4:xor %edx,%edx\nret")
SNIPPET(movx, "movzbl %dil,%eax\nmovsbq %sil,%rdx\nmovzwq %si,%rcx\nadd %rcx,%rax\n"
	      "movswl %di,%ecx\nadd %rcx,%rdx\nmovslq %esi,%rcx\nadd %rcx,%rdx\nret")
SNIPPET(high8, "push %rbx\nmov %rdi,%rax\nmov %rsi,%rbx\nmov %bh,%ah\nadd %al,%bl\nxchg %ah,%bl\n"
	       "mov %rbx,%rdx\npop %rbx\nret")
SNIPPET(lea_stack, "push %rbx\npush %rbp\nmov %rsp,%rbp\nlea 3(%rdi,%rsi,4),%rax\n"
		   "lea -8(%rsi,%rdi,8),%rbx\nmov %rdi,-16(%rsp)\nmovq $-7,-8(%rsp)\nmovl $7,-8(%rsp)\n"
		   "addq -16(%rsp),%rbx\nmovb $9,-8(%rsp)\nmov -8(%rsp),%rdx\nadd %rbx,%rdx\n"
		   "leave\npop %rbx\nret")
SNIPPET(call_ret, "lea 1f(%rip),%rcx\nmov %rdi,%rax\ncall 2f\nadd %rsi,%rax\njmp *%rcx\n"
		  "2:imul $3,%rax,%rax\nret\n1:xor %edx,%edx\nret")
SNIPPET(cwd, "mov %rdi,%rax\ncltq\ncqto\nret")
SNIPPET(pop_rsp, "sub $24,%rsp\nmov %rdi,(%rsp)\nmov %rsi,8(%rsp)\npopq 8(%rsp)\n"
		 "mov (%rsp),%rax\nmov 8(%rsp),%rdx\nadd $16,%rsp\nret")
SNIPPET(sse, "movq %rdi,%xmm1\nmovq %rsi,%xmm2\npxor %xmm1,%xmm2\nmovdqu %xmm2,-32(%rsp)\n"
	     "movq %xmm1,-24(%rsp)\nmovdqu -32(%rsp),%xmm3\nmovq %xmm3,%rax\nmov -24(%rsp),%rdx\nret")
SNIPPET(stos, "mov %rdi,-24(%rsp)\nmov %rsi,-16(%rsp)\nlea -24(%rsp),%rdi\nmov $0xab,%eax\n"
	      "mov $3,%ecx\ncld\nrep stosb\nmov -24(%rsp),%rax\nmov -16(%rsp),%rdx\nret")

struct snippet {
	const char *name;
	struct pair (*fn)(uint64_t, uint64_t);
	const uint8_t *end;
	uint64_t bmask;		/* mask of the second result; 0 means all of it */
};

#define S(n, mask) { #n, snip_##n, snip_##n##_end, mask }
static const struct snippet snippets[] = {
	S(add, ARITH), S(adc, ARITH), S(sub, ARITH), S(sbb32, ARITH), S(cmp8, ARITH),
	S(add16, ARITH), S(and_or_xor, NO_AF), S(test32, NO_AF), S(inc_dec, ARITH),
	S(neg_not, ARITH), S(shl_cl, SHIFT), S(shr_cl32, SHIFT), S(sar_cl8, SHIFT),
	S(shifts_imm, SHIFT), S(rol_ror, CF_ONLY), S(imul2, CF_OF), S(imul3, CF_OF),
	S(mul, 0), S(imul1_32, CF_OF), S(div, 0), S(div128, 0), S(idiv, 0), S(div8, 0), S(setcc, 0), S(cmov, 0), S(jcc, 0), S(movx, 0),
	S(high8, 0), S(lea_stack, 0), S(call_ret, 0), S(cwd, 0), S(pop_rsp, 0), S(sse, 0), S(stos, 0),
};

/* ---- the guest side ------------------------------------------------------------- */

#define MEM_SIZE (64 * 1024)
#define CODE_AT 0x1000
#define STACK_TOP 0xf000
#define HLT_AT 0x100	/* the return address: a hlt */

static uint8_t mem[MEM_SIZE];
static unsigned fetch_budget;	/* mem() calls left before the kick */
static atomic_bool kick;
static uint32_t last_out;

static void *bus_mem(void *ctx, uint64_t gpa, size_t len)
{
	(void)ctx;
	if (fetch_budget && !--fetch_budget)
		atomic_store(&kick, true);
	if (gpa >= MEM_SIZE || len > MEM_SIZE - gpa)
		return NULL;
	return mem + gpa;
}

static uint32_t bus_in(void *ctx, uint16_t port, unsigned size)
{
	(void)ctx;
	return port == 0x504 ? 1 : 0xffffffffU >> (32 - 8 * size);
}

static void bus_out(void *ctx, uint16_t port, unsigned size, uint32_t value)
{
	(void)ctx;
	(void)port;
	(void)size;
	last_out = value;
}

static const struct cpu_bus bus = { bus_mem, bus_in, bus_out, NULL };

/* Run code (copied to CODE_AT) with rdi, rsi; returns cpu_run's result with
 * the state in *c. A normal end is the hlt at the return address. */
static int emulate(const uint8_t *code, size_t len, uint64_t a, uint64_t b, struct cpu_state *c,
		   struct error *err)
{
	memset(mem, 0, sizeof(mem));
	mem[HLT_AT] = 0xf4;
	memcpy(mem + CODE_AT, code, len);
	memset(c, 0, sizeof(*c));
	c->gpr[CPU_RDI] = a;
	c->gpr[CPU_RSI] = b;
	c->gpr[CPU_RSP] = STACK_TOP - 8;
	memcpy(mem + STACK_TOP - 8, &(uint64_t){ HLT_AT }, 8);
	c->rip = CODE_AT;
	c->rflags = 0x2;
	atomic_store(&kick, false);
	error_clear(err);
	return cpu_run(c, &bus, &kick, 0, err);
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545F4914F6CDD1DULL;
}

static void check_snippet(const struct snippet *s)
{
	static const uint64_t edges[] = { 0, 1, 2, 7, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff,
					  0x7fffffff, 0x80000000, 0xffffffff, 0x100000000,
					  0x7fffffffffffffff, 0x8000000000000000, ~0ULL, ~1ULL };
	size_t len = (size_t)(s->end - (const uint8_t *)s->fn), ne = ARRAY_SIZE(edges);
	unsigned runs = 0, bad = 0;
	char first[256] = "";

	for (unsigned i = 0; i < ne * ne + 2000; i++) {
		uint64_t a = i < ne * ne ? edges[i / ne] : rnd() >> (rnd() % 64);
		uint64_t b = i < ne * ne ? edges[i % ne] : rnd() >> (rnd() % 64);
		struct error err = ERROR_INIT;
		struct cpu_state c;
		struct pair want, got;
		uint64_t m = s->bmask ? s->bmask : ~0ULL;
		int r;

		want = s->fn(a, b);
		r = emulate((const uint8_t *)s->fn, len, a, b, &c, &err);
		runs++;
		got = (struct pair){ c.gpr[CPU_RAX], c.gpr[CPU_RDX] };
		if (r == -EIO && c.rip == HLT_AT && want.a == got.a && (want.b & m) == (got.b & m))
			continue;
		if (!bad++)
			snprintf(first, sizeof(first),
				 "a=%#llx b=%#llx: native %#llx:%#llx, emulated %#llx:%#llx (%s)",
				 (unsigned long long)a, (unsigned long long)b,
				 (unsigned long long)want.a, (unsigned long long)(want.b & m),
				 (unsigned long long)got.a, (unsigned long long)(got.b & m),
				 error_msg(&err));
	}
	if (bad)
		tap_diag("%s: first difference: %s", s->name, first);
	tap_ok(!bad, "%s (%zu bytes): emulated == native for %u input pairs", s->name, len, runs);
}

/* ---- how it stops ------------------------------------------------------------------ */

static int run_bytes(const uint8_t *code, size_t len, struct cpu_state *c, struct error *err)
{
	return emulate(code, len, 0, 0, c, err);
}

static void check_stops(void)
{
	static const uint8_t ud2[] = { 0x90, 0x0f, 0x0b };
	static const uint8_t div0[] = { 0x31, 0xc9, 0x48, 0xf7, 0xf1 };		/* xor ecx; div rcx */
	static const uint8_t far[] = { 0x48, 0xb8, 0, 0, 0, 0, 1, 0, 0, 0, 0x48, 0x89, 0x18 };
	static const uint8_t loop[] = { 0xeb, 0xfe };				/* jmp . */
	static const uint8_t io[] = { 0x66, 0xba, 0x04, 0x05, 0xed, 0x89, 0xc7,	/* in 0x504 */
				      0xb8, 0x34, 0x12, 0x00, 0x00, 0x66, 0xba, 0x00, 0x05,
				      0xef, 0xc3 };				/* out 0x500 */
	static const uint8_t movss[] = { 0xf3, 0x0f, 0x10, 0xc1 };		/* not supported */
	struct error err = ERROR_INIT;
	struct cpu_state c;
	int r;

	r = run_bytes(ud2, sizeof(ud2), &c, &err);
	tap_ok(r == -EIO && c.rip == CODE_AT + 1 && strstr(error_msg(&err), "unsupported instruction") &&
		       strstr(error_msg(&err), "0f 0b"),
	       "ud2 stops the CPU at its own rip: %s", error_msg(&err));
	r = run_bytes(movss, sizeof(movss), &c, &err);
	tap_ok(r == -EIO && strstr(error_msg(&err), "unsupported"),
	       "an SSE instruction of another prefix (movss) is refused, not misread: %s",
	       error_msg(&err));
	r = run_bytes(div0, sizeof(div0), &c, &err);
	tap_ok(r == -EIO && c.rip == CODE_AT + 2 && strstr(error_msg(&err), "#DE"),
	       "div by zero: %s", error_msg(&err));
	r = run_bytes(far, sizeof(far), &c, &err);
	tap_ok(r == -EIO && strstr(error_msg(&err), "outside guest memory"),
	       "a store outside guest memory: %s", error_msg(&err));
	r = run_bytes(io, sizeof(io), &c, &err);
	tap_ok(r == -EIO && c.rip == HLT_AT && c.gpr[CPU_RDI] == 1 && last_out == 0x1234,
	       "in/out reach the bus (in 0x504 -> %llu, out 0x500 <- %#x)",
	       (unsigned long long)c.gpr[CPU_RDI], last_out);
	fetch_budget = 1000;
	r = run_bytes(loop, sizeof(loop), &c, &err);
	fetch_budget = 0;
	tap_ok(r == 0 && c.rip == CODE_AT, "the kick stops a spinning CPU at an instruction boundary");
}

int main(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(snippets); i++)
		check_snippet(&snippets[i]);
	check_stops();
	return tap_done();
}
