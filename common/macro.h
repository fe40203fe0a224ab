/* SPDX-License-Identifier: MIT
 * macro.h — small helpers shared by every part of forkfs: scope-bound cleanup
 * (systemd style), ownership hand-off, array sizes. No state, no I/O.
 */
#pragma once

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#undef MIN	/* <sys/param.h>'s, through <uv.h>, is the same */
#undef MAX
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define DIV_ROUND_UP(n, d) (((n) + (d)-1) / (d))
#define ALIGN_UP(n, a) (((n) + (a)-1) & ~((__typeof__(n))(a)-1))
#define ALIGN_DOWN(n, a) ((n) & ~((__typeof__(n))(a)-1))

/* Sizes. PAGE_4K is the one page size forkfs copies, and the one a VMM's
 * uffd handshake may announce. */
#define MIB (1024ULL * 1024ULL)
#define PAGE_4K 4096ULL
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_ __attribute__((noreturn))
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _likely_(x) __builtin_expect(!!(x), 1)
#define _unlikely_(x) __builtin_expect(!!(x), 0)

/* Hand ownership on: returns the value and leaves NULL / -1 behind. */
#define TAKE_PTR(p)                              \
	({                                       \
		__typeof__(p) _p_ = (p);         \
		(p) = NULL;                      \
		_p_;                             \
	})
#define TAKE_FD(fd)                              \
	({                                       \
		int _fd_ = (fd);                 \
		(fd) = -1;                       \
		_fd_;                            \
	})

/* close() that keeps errno and accepts -1; returns -1 for "fd = safe_close(fd)". */
static inline int safe_close(int fd)
{
	if (fd >= 0) {
		int saved = errno;
		close(fd);
		errno = saved;
	}
	return -1;
}

static inline void closep(int *fd) { safe_close(*fd); }
static inline void freep(void *p) { free(*(void **)p); }
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_free_ _cleanup_(freep)

/* Define a NULL-safe cleanup helper for a type's destructor. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)          \
	static inline void func##p(type *p)              \
	{                                                \
		if (*p)                                  \
			func(*p);                        \
	}

/* Return -errno from a libc call that sets errno and returns -1. */
#define RET_NERRNO(expr)                                 \
	({                                               \
		__typeof__(expr) _r_ = (expr);           \
		_r_ < 0 ? -errno : _r_;                  \
	})

/* errno may be 0 after a failed call in rare libc paths; never return success. */
static inline int negative_errno(void) { return errno > 0 ? -errno : -EIO; }

/* Built with AddressSanitizer (GCC defines the first, clang has the second).
 * LeakSanitizer's check at exit ptraces every thread, which the seccomp
 * allow-lists forbid: such builds log calls outside them instead of dying. */
#if defined(__SANITIZE_ADDRESS__)
#define BUILT_WITH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BUILT_WITH_ASAN 1
#endif
#endif
