/* SPDX-License-Identifier: MIT */
/* nuts.h - small assertion helpers shared by the Check tests (after nng's). */
#ifndef MOBBUS_NUTS_H
#define MOBBUS_NUTS_H

#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "mobbus.h"

/* NUTS_PASS - expr must return MB_OK. */
#define NUTS_PASS(expr)                                                        \
	do {                                                                   \
		int nuts_rv_ = (expr);                                         \
		ck_assert_msg(nuts_rv_ == MB_OK, "%s: %s (%d)", #expr,         \
		              mb_strerror(nuts_rv_), nuts_rv_);                \
	} while (0)

/* NUTS_FAIL - expr must return the error err. */
#define NUTS_FAIL(expr, err)                                                   \
	do {                                                                   \
		int nuts_rv_ = (expr);                                         \
		ck_assert_msg(nuts_rv_ == (err), "%s: got %s, want %s", #expr, \
		              mb_err_name(nuts_rv_), mb_err_name(err));        \
	} while (0)

/* nuts_cond_init - a condition variable that waits on CLOCK_MONOTONIC. */
static inline void
nuts_cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &attr);
	pthread_condattr_destroy(&attr);
}

/* nuts_deadline - now + ms on CLOCK_MONOTONIC, for pthread_cond_timedwait
 * on a nuts_cond_init condition. A deadline is a safety net against a hang,
 * never a way to synchronise. */
static inline struct timespec
nuts_deadline(int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return (ts);
}

#endif /* MOBBUS_NUTS_H */
