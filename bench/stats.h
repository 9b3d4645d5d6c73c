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
void lat_fini(struct lat *l);
/* Write "latency_us fraction" rows (up to 1000 points) for gnuplot. */
int lat_write_cdf(const struct lat *l, const char *path);

uint64_t now_ns(void);

#endif
