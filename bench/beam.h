/* SPDX-License-Identifier: MIT */
/* beam.h - case 5 of the benchmark, run inside an erl (beam.c). */
#ifndef MB_BENCH_BEAM_H
#define MB_BENCH_BEAM_H

#include <stddef.h>
#include <stdint.h>

#include "stats.h"

struct beam_result {
	struct lat bus;        /* mobbus + BEAM consumer, store on */
	struct lat alone;      /* the BEAM consumer alone, no bus */
	struct lat send;       /* direct enif_send */
	char otp[16];          /* OTP release */
	/* What the bus did over the mobbus bridge calls (mb_bus_stats). */
	double calls, inline_per_call, sent_per_call;
	int schedulers;
	char why[256];         /* skipped or failed: the reason */
};

/*
 * beam_run - run case 5 in an erl: samples per kind after warmup, the
 * driver's generator seeded with seed, the store's database at db. The
 * three lats must be initialised with room for samples; they are filled and
 * finished on success. Returns 0 (measured), 1 (skipped: no BEAM) or -1
 * (failed); r->why says why for the last two.
 */
int beam_run(size_t samples, size_t warmup, uint64_t seed, const char *db,
    struct beam_result *r);

#endif
