/* SPDX-License-Identifier: MIT */
/* stats.c - latency samples: percentiles, CPU sharing, CDF files. */
#include <stdlib.h>
#include <time.h>

#include "stats.h"

uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int
lat_init(struct lat *l, const char *name, size_t cap)
{
	*l = (struct lat){ .name = name, .cap = cap };
	l->ns = malloc(cap * sizeof(*l->ns));
	return l->ns != NULL ? 0 : -1;
}

void
lat_add(struct lat *l, uint64_t ns, int same_cpu)
{
	if (l->n < l->cap) {
		l->ns[l->n++] = ns;
		l->same_cpu += same_cpu != 0;
	}
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double
pct(const struct lat *l, double p)
{
	size_t i = (size_t)(p * (double)(l->n - 1) + 0.5);
	return (double)l->ns[i] / 1000.0;
}

void
lat_finish(struct lat *l)
{
	double sum = 0;

	if (l->n == 0)
		return;
	qsort(l->ns, l->n, sizeof(*l->ns), cmp_u64);
	for (size_t i = 0; i < l->n; i++)
		sum += (double)l->ns[i];
	l->mean = sum / (double)l->n / 1000.0;
	l->p50 = pct(l, 0.50);
	l->p90 = pct(l, 0.90);
	l->p99 = pct(l, 0.99);
	l->p999 = pct(l, 0.999);
	l->max = (double)l->ns[l->n - 1] / 1000.0;
}

void
lat_modes(const struct lat *l, uint64_t split_ns, double *fast_share,
    double *fast_p50, double *slow_p50)
{
	size_t k, lo = 0, hi = l->n;

	while (lo < hi) { /* first sample at or over split_ns */
		size_t mid = lo + (hi - lo) / 2;
		if (l->ns[mid] < split_ns)
			lo = mid + 1;
		else
			hi = mid;
	}
	k = lo;
	*fast_share = l->n ? (double)k / (double)l->n : 0.0;
	*fast_p50 = k ? (double)l->ns[k / 2] / 1000.0 : 0.0;
	*slow_p50 = k < l->n ? (double)l->ns[k + (l->n - k) / 2] / 1000.0 : 0.0;
}

void
lat_fini(struct lat *l)
{
	free(l->ns);
	l->ns = NULL;
}

int
lat_write_cdf(const struct lat *l, const char *path)
{
	FILE *f = fopen(path, "w");
	size_t step;

	if (f == NULL)
		return -1;
	step = l->n > 1000 ? l->n / 1000 : 1;
	for (size_t i = 0; i < l->n; i += step)
		fprintf(f, "%.3f %.5f\n", (double)l->ns[i] / 1000.0,
		    (double)(i + 1) / (double)l->n);
	if (l->n)
		fprintf(f, "%.3f 1.0\n", (double)l->ns[l->n - 1] / 1000.0);
	fclose(f);
	return 0;
}
