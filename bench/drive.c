/* SPDX-License-Identifier: MIT */
/* drive.c - the latency driver the latency cases share (see drive.h). */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <time.h>

#include "drive.h"

void
probe_handled(struct probe *p)
{
	uint64_t t1 = now_ns();
	int cpu = sched_getcpu();

	lat_add(p->lat, t1 - atomic_load(&p->t0), cpu == atomic_load(&p->cpu));
	atomic_store_explicit(&p->done, 1, memory_order_release);
}

void
sleep_us(unsigned us)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)us * 1000 };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static unsigned
gap_us(struct probe *p)
{
	p->rng = p->rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return 20 + (unsigned)((p->rng >> 33) % 181); /* 20..200 us */
}

void
drive(struct probe *p, size_t warmup, size_t samples, void (*fire)(void *),
    void *arg)
{
	struct lat *keep = p->lat, warm;

	lat_init(&warm, "warmup", warmup);
	for (size_t i = 0; i < warmup + samples; i++) {
		p->lat = i < warmup ? &warm : keep;
		sleep_us(gap_us(p));
		atomic_store(&p->done, 0);
		atomic_store(&p->cpu, sched_getcpu());
		atomic_store(&p->t0, now_ns());
		fire(arg);
		while (!atomic_load_explicit(&p->done, memory_order_acquire))
			sleep_us(5);
	}
	p->lat = keep;
	lat_fini(&warm);
}

void
drive_turns(struct probe *p, size_t warmup, size_t samples, int nkinds,
    struct lat *const lats[], void (*const fire[])(void *),
    void *const arg[], void (*turn)(void *ctx, int k, int after), void *ctx)
{
	for (size_t done = 0; done < samples; done += DRIVE_BLOCK) {
		size_t n = samples - done < DRIVE_BLOCK ? samples - done :
		                                          DRIVE_BLOCK;
		for (int k = 0; k < nkinds; k++) {
			sleep_us(DRIVE_PAUSE_US);
			p->lat = lats[k];
			if (turn != NULL)
				turn(ctx, k, 0);
			drive(p, done == 0 ? warmup : DRIVE_REWARM, n, fire[k],
			    arg[k]);
			if (turn != NULL)
				turn(ctx, k, 1);
		}
	}
}

void
bench_notification(mb_envelope *env, Mobbus__Notification *no, char *id,
    uint64_t n)
{
	mobbus__notification__init(no);
	mobbus__envelope__init(env);
	snprintf(id, 32, "n%llu", (unsigned long long)n);
	no->id = id;
	no->source = MOBBUS__NOTIFICATION__SOURCE__PUSH;
	no->presentation = MOBBUS__NOTIFICATION__PRESENTATION__FOREGROUND;
	no->data_json = "{}";
	env->body_case = MOBBUS__ENVELOPE__BODY_NOTIFICATION;
	env->notification = no;
}

int
bench_notify(mb_pub *pub, const char *topic, uint64_t n)
{
	Mobbus__Notification no;
	mb_envelope env;
	char id[32];

	bench_notification(&env, &no, id, n);
	return mb_publish(pub, topic, &env);
}
