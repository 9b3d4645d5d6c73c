/* SPDX-License-Identifier: MIT */
/*
 * timer.c - real time for the actors: a tick on "time/tick" when the
 * earliest deadline an actor asked for comes. One thread per bus, started at
 * the first request and asleep in between: an idle app costs no wake-ups.
 * Under a simulated clock (replay) the driver publishes the ticks itself and
 * requests are ignored.
 *
 * THREAD SAFETY
 * t_mtx guards the deadline and the closing flag; it is never held while
 * publishing. Taken after no other lock.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "bus.h"

struct mbi_timer {
	pthread_mutex_t t_mtx;
	pthread_cond_t t_cv;
	pthread_t t_thr;
	mb_pub *t_pub;
	mb_bus *t_bus;
	int64_t t_at;      /* earliest deadline, ms; -1: none */
	bool t_closing;
};

static void *
timer_main(void *arg)
{
	struct mbi_timer *t = arg;

	(void)pthread_setname_np(pthread_self(), "mobbus:timer");
	pthread_mutex_lock(&t->t_mtx);
	while (!t->t_closing) {
		int64_t now = mb_bus_now_ms(t->t_bus);
		if (t->t_at < 0) {
			pthread_cond_wait(&t->t_cv, &t->t_mtx);
		} else if (t->t_at > now) {
			struct timespec ts;
			uint64_t until = mbi_mono_ns() +
			    (uint64_t)(t->t_at - now) * 1000000u;
			ts.tv_sec = (time_t)(until / 1000000000u);
			ts.tv_nsec = (long)(until % 1000000000u);
			pthread_cond_timedwait(&t->t_cv, &t->t_mtx, &ts);
		} else {
			Mobbus__Tick tick = MOBBUS__TICK__INIT;
			mb_envelope env = MOBBUS__ENVELOPE__INIT;

			/* Due: each actor that still waits for something
			 * asks again when it handles this tick. */
			t->t_at = -1;
			pthread_mutex_unlock(&t->t_mtx);
			tick.now_ms = now;
			env.body_case = MOBBUS__ENVELOPE__BODY_TICK;
			env.tick = &tick;
			(void)mb_publish(t->t_pub, MB_TOPIC_TIME, &env);
			pthread_mutex_lock(&t->t_mtx);
		}
	}
	pthread_mutex_unlock(&t->t_mtx);
	return NULL;
}

static struct mbi_timer *
timer_start(mb_bus *bus)
{
	struct mbi_timer *t = calloc(1, sizeof(*t));
	pthread_condattr_t attr;

	if (t == NULL)
		return NULL;
	t->t_bus = bus;
	t->t_at = -1;
	pthread_mutex_init(&t->t_mtx, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&t->t_cv, &attr);
	pthread_condattr_destroy(&attr);
	if (mb_pub_alloc(bus, &t->t_pub) != MB_OK ||
	    pthread_create(&t->t_thr, NULL, timer_main, t) != 0) {
		mb_pub_free(t->t_pub);
		pthread_cond_destroy(&t->t_cv);
		pthread_mutex_destroy(&t->t_mtx);
		free(t);
		return NULL;
	}
	return t;
}

int
mb_bus_wake_at(mb_bus *bus, int64_t at_ms)
{
	struct mbi_timer *t;

	if (bus == NULL || at_ms < 0)
		return MB_EINVAL;
	if (atomic_load(&bus->b_clock_ms) >= 0)
		return MB_OK; /* simulated time: the driver ticks */
	pthread_mutex_lock(&bus->b_mtx);
	if (bus->b_closing) {
		pthread_mutex_unlock(&bus->b_mtx);
		return MB_ECLOSED;
	}
	t = bus->b_timer;
	pthread_mutex_unlock(&bus->b_mtx);
	if (t == NULL) {
		/* Started outside b_mtx: mb_pub_alloc takes it. */
		struct mbi_timer *nt = timer_start(bus);
		if (nt == NULL)
			return MB_ENOMEM;
		pthread_mutex_lock(&bus->b_mtx);
		if (bus->b_timer == NULL) {
			bus->b_timer = nt;
			nt = NULL;
		}
		t = bus->b_timer;
		pthread_mutex_unlock(&bus->b_mtx);
		if (nt != NULL)
			mbi_timer_stop(nt); /* lost a race: another started */
	}
	pthread_mutex_lock(&t->t_mtx);
	if (t->t_at < 0 || at_ms < t->t_at) {
		t->t_at = at_ms;
		pthread_cond_signal(&t->t_cv);
	}
	pthread_mutex_unlock(&t->t_mtx);
	return MB_OK;
}

void
mbi_timer_stop(struct mbi_timer *t)
{
	if (t == NULL)
		return;
	pthread_mutex_lock(&t->t_mtx);
	t->t_closing = true;
	pthread_cond_signal(&t->t_cv);
	pthread_mutex_unlock(&t->t_mtx);
	pthread_join(t->t_thr, NULL);
	mb_pub_free(t->t_pub);
	pthread_cond_destroy(&t->t_cv);
	pthread_mutex_destroy(&t->t_mtx);
	free(t);
}
