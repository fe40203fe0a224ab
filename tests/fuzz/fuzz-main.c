/* SPDX-License-Identifier: MIT
 * fuzz-main.c — a tiny standalone driver for libFuzzer-style targets, so that
 * every fuzz target also runs in "make check" without clang.
 *
 *   TARGET FILE...          run each file once (reproduce a crash, replay a corpus)
 *   TARGET [-n N] [-s SEED] run the seeds, then N random mutations of them
 *                           (default N=100000, or $FUZZ_ITERATIONS; SEED from
 *                           $FUZZ_SEED, else a fixed value so runs repeat)
 *
 * Mutations: bit flips, random bytes, insertion of "interesting" tokens
 * (CRLF, digits, quotes, header names), deletion, duplication and truncation
 * of ranges, and splicing two seeds. Output is TAP; a crash is the failure.
 * Before each input the driver writes it to $FUZZ_CRASH_FILE (if set) so a
 * crashing input can be replayed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/macro.h"
#include "common/nolinks.h"
#include "common/util.h"
#include "tests/fuzz/fuzz.h"

#define MAX_INPUT (64 * 1024)

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* xorshift64*: fast and reproducible from the seed. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

static size_t rnd_below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

static const char *const tokens[] = {
	"\r\n", "\r\n\r\n", "\n", "\r", ":", " ", "\"", "\\", "{", "}", "0", "9",
	"4294967296", "18446744073709551616", "-1", "Content-Length: ", "content-length:",
	"Transfer-Encoding: chunked", "Deprecation: true", "HTTP/1.1 ", "HTTP/1.0 200 ",
	"\"fault_message\"", "\"error\"", "\\u0000", "\\n", "\0", "\xff",
};

/* Mutate buf (len bytes, capacity MAX_INPUT) in place; returns the new length. */
static size_t mutate(uint8_t *buf, size_t len)
{
	size_t rounds = 1 + rnd_below(4);

	while (rounds--) {
		size_t pos = rnd_below(len + 1), n;
		const struct fuzz_seed *s;
		const char *t;

		switch (rnd_below(8)) {
		case 0: /* flip a bit */
			if (len)
				buf[rnd_below(len)] ^= (uint8_t)(1u << rnd_below(8));
			break;
		case 1: /* set a random byte */
			if (len)
				buf[rnd_below(len)] = (uint8_t)rnd();
			break;
		case 2: /* insert a token */
			t = tokens[rnd_below(ARRAY_SIZE(tokens))];
			n = strlen(t) ? strlen(t) : 1;
			if (len + n > MAX_INPUT)
				break;
			memmove(buf + pos + n, buf + pos, len - pos);
			memcpy(buf + pos, t, n);
			len += n;
			break;
		case 3: /* delete a range */
			n = rnd_below(MIN(len - MIN(pos, len), (size_t)64) + 1);
			memmove(buf + pos, buf + pos + n, len - pos - n);
			len -= n;
			break;
		case 4: /* duplicate a range */
			n = rnd_below(MIN(len - pos, (size_t)256) + 1);
			if (len + n > MAX_INPUT)
				break;
			memmove(buf + pos + n, buf + pos, len - pos);
			len += n;
			break;
		case 5: /* truncate */
			len = pos;
			break;
		case 6: /* splice: the tail of another seed */
			s = &fuzz_seeds[rnd_below(fuzz_n_seeds)];
			n = rnd_below(s->len + 1);
			if (pos + (s->len - n) > MAX_INPUT)
				break;
			memcpy(buf + pos, s->data + n, s->len - n);
			len = pos + (s->len - n);
			break;
		default: /* change a digit (lengths, status codes) */
			for (size_t i = 0; i < len; i++) {
				size_t j = (pos + i) % len;
				if (buf[j] >= '0' && buf[j] <= '9') {
					buf[j] = (uint8_t)('0' + rnd_below(10));
					break;
				}
			}
			break;
		}
	}
	return len;
}

static void run_one(const uint8_t *data, size_t len)
{
	/* A private copy, exactly len bytes long, so ASan sees any over-read. */
	uint8_t *copy = malloc(len ? len : 1);

	if (!copy)
		abort();
	memcpy(copy, data, len);
	if (getenv("FUZZ_CRASH_FILE"))
		(void)write_file_atomic(getenv("FUZZ_CRASH_FILE"), copy, len, 0600);
	LLVMFuzzerTestOneInput(copy, len);
	free(copy);
}

static int run_files(int argc, char **argv)
{
	int failed = 0;

	for (int i = 0; i < argc; i++) {
		_cleanup_free_ char *data = NULL;
		size_t len;
		int r = read_file(argv[i], MAX_INPUT * 16, &data, &len);

		if (r < 0) {
			printf("not ok %d - read %s: %s\n", i + 1, argv[i], strerror(-r));
			failed++;
			continue;
		}
		run_one((const uint8_t *)data, len);
		printf("ok %d - %s (%zu bytes)\n", i + 1, argv[i], len);
	}
	printf("1..%d\n", argc);
	return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
	static uint8_t buf[MAX_INPUT];
	uint64_t iterations = 100000, seed = 0x666f726b6673ULL, t0;
	int opt;

	if (getenv("FUZZ_ITERATIONS"))
		(void)parse_u64(getenv("FUZZ_ITERATIONS"), &iterations);
	if (getenv("FUZZ_SEED"))
		(void)parse_u64(getenv("FUZZ_SEED"), &seed);
	while ((opt = getopt(argc, argv, "n:s:")) >= 0) {
		if (opt == 'n' && parse_u64(optarg, &iterations) >= 0)
			continue;
		if (opt == 's' && parse_u64(optarg, &seed) >= 0)
			continue;
		fprintf(stderr, "usage: %s [-n ITERATIONS] [-s SEED] [FILE...]\n", argv[0]);
		return 2;
	}
	if (optind < argc)
		return run_files(argc - optind, argv + optind);

	rng_state = seed ? seed : 1;
	t0 = now_usec();
	for (size_t i = 0; i < fuzz_n_seeds; i++)
		run_one((const uint8_t *)fuzz_seeds[i].data, fuzz_seeds[i].len);
	printf("ok 1 - %zu built-in seeds\n", fuzz_n_seeds);
	for (uint64_t i = 0; i < iterations; i++) {
		const struct fuzz_seed *s = &fuzz_seeds[rnd_below(fuzz_n_seeds)];
		size_t len = MIN(s->len, (size_t)MAX_INPUT);

		memcpy(buf, s->data, len);
		len = mutate(buf, len);
		run_one(buf, len);
	}
	printf("ok 2 - %llu mutations (seed %llu) in %llu ms\n", (unsigned long long)iterations,
	       (unsigned long long)seed, (unsigned long long)((now_usec() - t0) / 1000));
	printf("1..2\n");
	return 0;
}
