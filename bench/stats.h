/* SPDX-License-Identifier: MIT */
/* stats.h - latency samples: percentiles, CPU sharing, CDF files. */
#ifndef MB_BENCH_STATS_H
#define MB_BENCH_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct lat {
	const char *name;
	uint64_t *ns;         /* samples */
	size_t n, cap;
	size_t same_cpu;      /* consumer ran on the producer's CPU */
	double p50, p90, p99, p999, max, mean; /* microseconds */
};

int lat_init(struct lat *l, const char *name, size_t cap);
void lat_add(struct lat *l, uint64_t ns, int same_cpu);
void lat_finish(struct lat *l);      /* sorts and computes percentiles */
/* After lat_finish: a bimodal wake-up's two modes, split at split_ns: the
 * share of samples under it and each side's median (0 for an empty side). */
void lat_modes(const struct lat *l, uint64_t split_ns, double *fast_share,
    double *fast_p50, double *slow_p50);
void lat_fini(struct lat *l);
/* Write "latency_us fraction" rows (up to 1000 points) for gnuplot. */
int lat_write_cdf(const struct lat *l, const char *path);

uint64_t now_ns(void);

#endif
