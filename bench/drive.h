/* SPDX-License-Identifier: MIT */
/*
 * drive.h - the latency driver every latency case shares: one event at a
 * time after a random 20-200 us idle gap, stamped by the producer on entry
 * to the call under test and by the consumer's handler on entry.
 *
 * The BEAM case (5) runs this same loop inside the erl it measures, on a
 * native thread of the NIF (bridges/beam/beam_bench.c), so its gaps,
 * warm-up and CPU accounting are those of cases 1-4.
 */
#ifndef MB_BENCH_DRIVE_H
#define MB_BENCH_DRIVE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "mobbus.h"
#include "stats.h"

/* One event in flight: the producer's stamp and CPU, and the consumer's
 * "handled" flag. */
struct probe {
	_Atomic uint64_t t0;
	_Atomic int cpu;
	_Atomic int done;
	struct lat *lat;
	uint64_t rng;
};

/* probe_handled - the consumer's side, first thing in its handler: one
 * sample (now - the producer's stamp, and whether it runs on the producer's
 * CPU), then lets the producer go on. Any thread. */
void probe_handled(struct probe *p);

/*
 * drive - fire warmup + samples events through fire(arg), one at a time
 * after a random idle gap, recording into p->lat only after the warm-up.
 * fire() must lead to probe_handled(p) on the consumer's side.
 */
void drive(struct probe *p, size_t warmup, size_t samples,
    void (*fire)(void *), void *arg);

/* The turns of drive_turns: events a block, the pause before each block
 * (the store's group commit and the bus settle), and unrecorded events at
 * the start of every block but a kind's first (which has the warm-up). */
#define DRIVE_BLOCK 1000
#define DRIVE_PAUSE_US 10000
#define DRIVE_REWARM 20

/*
 * drive_turns - drive nkinds kinds of event in turns of DRIVE_BLOCK, kind k
 * through fire[k](arg[k]) into lats[k], until each has samples, so that
 * every kind sees the same machine: wake-up costs here drift with whatever
 * else runs. turn, if not NULL, is called around each kind's block (after
 * 0 before it, 1 after it).
 */
void drive_turns(struct probe *p, size_t warmup, size_t samples, int nkinds,
    struct lat *const lats[], void (*const fire[])(void *),
    void *const arg[], void (*turn)(void *ctx, int k, int after),
    void *ctx);

/* sleep_us - nanosleep, resumed after signals. */
void sleep_us(unsigned us);

/* bench_notify - publish the notification every mobbus case sends (id
 * "n<n>", push, foreground, data {}) on topic. */
int bench_notify(mb_pub *pub, const char *topic, uint64_t n);

/* bench_notification - the same notification as an envelope for code that
 * does not publish it (the direct enif_send baseline). id: 32 bytes. */
void bench_notification(mb_envelope *env, Mobbus__Notification *no,
    char *id, uint64_t n);

#endif
