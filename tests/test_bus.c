/* SPDX-License-Identifier: MIT */
/* test_bus.c - the bus and the actor runtime: stamping, filtering, drops and
 * gaps, drain, supervision and malformed input. */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "mobbus.h"
#include "nuts.h"

#define WAIT_MS 30000

/* ---- a recording actor --------------------------------------------------- */

struct seen {
	char topic[MBI_TOPIC_MAX];
	uint32_t pub;
	uint64_t seq;
	uint64_t ts_ns;
	int64_t at_ms;
	char code[32]; /* BusError bodies */
	uint32_t err_pub;
	uint64_t missed;
};

struct rec {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	const char *topics[4];
	unsigned max_restarts;
	bool keep;  /* record every envelope in seen[] */
	bool stall; /* the first handle() waits for release */
	bool released;
	int entered;        /* handle() calls that reached the stall */
	uint64_t handled;   /* handle() calls that returned */
	uint64_t first_seq; /* of the first and last envelope handled */
	uint64_t last_seq;
	uint64_t fail_on; /* fail the Nth call; 0: never */
	bool fail_all;
	const char *republish; /* forward each envelope to this topic */
	int errors;            /* mb_publish failures inside handle() */
	int inits;
	int terms;
	int inline_mode;     /* 0: no inline_ok; 1: takes all; 2: refuses */
	uint64_t on_caller;  /* handled on a thread inside mb_publish */
	const mb_envelope *last_env; /* what the last handle() was given */
	struct seen *seen;
	size_t nseen;
	size_t cap;
	mb_actor *actor;
};

static void
rec_init(struct rec *r, const char *t0, const char *t1)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->mtx, NULL);
	nuts_cond_init(&r->cv);
	r->topics[0] = t0;
	r->topics[1] = t1;
	r->keep = true;
}

static int
rec_init_cb(mb_actor *a, void *arg, void **statep)
{
	struct rec *r = arg;

	(void)a;
	pthread_mutex_lock(&r->mtx);
	r->inits++;
	pthread_mutex_unlock(&r->mtx);
	*statep = r;
	return (MB_OK);
}

static void
rec_terminate_cb(mb_actor *a, void *state)
{
	struct rec *r = state;

	(void)a;
	pthread_mutex_lock(&r->mtx);
	r->terms++;
	pthread_mutex_unlock(&r->mtx);
}

/* Set on a test thread while it is inside mb_publish: a handler that sees
 * it runs inline, on the publisher's thread. */
static _Thread_local bool tl_publishing;

static int
publish_here(mb_pub *pub, const char *topic, mb_envelope *env)
{
	int rv;

	tl_publishing = true;
	rv = mb_publish(pub, topic, env);
	tl_publishing = false;
	return (rv);
}

static bool
rec_inline_ok_cb(mb_actor *a, void *state, const mb_envelope *env)
{
	struct rec *r = state;

	(void)a;
	(void)env;
	return (r->inline_mode == 1);
}

static int
rec_handle_cb(mb_actor *a, void *state, const mb_envelope *env)
{
	struct rec *r = state;
	uint64_t n;
	bool fail;

	pthread_mutex_lock(&r->mtx);
	if (tl_publishing) {
		r->on_caller++;
	}
	r->last_env = env;
	if (r->stall && !r->released) {
		r->entered++;
		pthread_cond_broadcast(&r->cv);
		while (!r->released) {
			pthread_cond_wait(&r->cv, &r->mtx);
		}
	}
	if (r->keep) {
		struct seen *s;

		if (r->nseen == r->cap) {
			r->cap = r->cap != 0 ? r->cap * 2 : 16;
			r->seen = realloc(r->seen, r->cap * sizeof(*s));
			ck_assert_ptr_nonnull(r->seen);
		}
		s = &r->seen[r->nseen++];
		memset(s, 0, sizeof(*s));
		strncpy(s->topic, env->topic, sizeof(s->topic) - 1);
		s->pub = env->publisher;
		s->seq = env->seq;
		s->ts_ns = env->ts_ns;
		s->at_ms = env->at_ms;
		if (env->body_case == MOBBUS__ENVELOPE__BODY_ERROR) {
			strncpy(s->code, env->error->code, sizeof(s->code) - 1);
			s->err_pub = env->error->publisher;
			s->missed = env->error->missed;
		}
	}
	if (r->handled == 0) {
		r->first_seq = env->seq;
	}
	r->last_seq = env->seq;
	n = ++r->handled;
	fail = r->fail_all || n == r->fail_on;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mtx);

	if (r->republish != NULL) {
		mb_envelope fwd = MOBBUS__ENVELOPE__INIT;

		if (mb_publish(mb_actor_pub(a), r->republish, &fwd) != MB_OK) {
			pthread_mutex_lock(&r->mtx);
			r->errors++;
			pthread_mutex_unlock(&r->mtx);
		}
	}
	return (fail ? -1 : 0);
}

static struct mb_actor_ops rec_ops = {
    .size = sizeof(struct mb_actor_ops),
    .name = "rec",
    .init = rec_init_cb,
    .handle = rec_handle_cb,
    .terminate = rec_terminate_cb,
};

static void
rec_start(mb_bus *bus, struct rec *r, struct mb_actor_ops *ops)
{
	*ops = rec_ops;
	ops->topics = r->topics;
	ops->max_restarts = r->max_restarts;
	ops->restart_window_ms = 60000;
	ops->inline_ok = r->inline_mode != 0 ? rec_inline_ok_cb : NULL;
	NUTS_PASS(mb_actor_start(bus, ops, r, &r->actor));
}

static void
rec_release(struct rec *r)
{
	pthread_mutex_lock(&r->mtx);
	r->released = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mtx);
}

/* rec_wait_entered - wait until a stalling handler has been entered. */
static void
rec_wait_entered(struct rec *r)
{
	struct timespec dl = nuts_deadline(WAIT_MS);
	int rv = 0;

	pthread_mutex_lock(&r->mtx);
	while (r->entered == 0 && rv != ETIMEDOUT) {
		rv = pthread_cond_timedwait(&r->cv, &r->mtx, &dl);
	}
	pthread_mutex_unlock(&r->mtx);
	ck_assert_int_eq(r->entered, 1);
}

/* rec_wait_handled - wait until handle() has returned n times. */
static void
rec_wait_handled(struct rec *r, uint64_t n)
{
	struct timespec dl = nuts_deadline(WAIT_MS);
	int rv = 0;

	pthread_mutex_lock(&r->mtx);
	while (r->handled < n && rv != ETIMEDOUT) {
		rv = pthread_cond_timedwait(&r->cv, &r->mtx, &dl);
	}
	pthread_mutex_unlock(&r->mtx);
	ck_assert_uint_eq(r->handled, n);
}

static size_t
rec_count_code(struct rec *r, const char *code, uint32_t from)
{
	size_t n = 0;

	for (size_t i = 0; i < r->nseen; i++) {
		if (strcmp(r->seen[i].code, code) == 0 &&
		    (from == 0 || r->seen[i].pub == from)) {
			n++;
		}
	}
	return (n);
}

static void
rec_fini(struct rec *r)
{
	free(r->seen);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mtx);
}

static void
publish_n(mb_pub *pub, const char *topic, int n)
{
	for (int i = 0; i < n; i++) {
		mb_envelope env = MOBBUS__ENVELOPE__INIT;

		NUTS_PASS(mb_publish(pub, topic, &env));
	}
}

/* ---- tests --------------------------------------------------------------- */

START_TEST(test_roundtrip)
{
	mb_bus *bus;
	mb_pub *pub;
	struct rec n, t;
	struct mb_actor_ops on, ot;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	char *orig = env.topic;
	int64_t lo, hi;

	NUTS_PASS(mb_bus_open(&bus, NULL));
	rec_init(&n, "notify/", NULL);
	rec_init(&t, "token/", NULL);
	rec_start(bus, &n, &on);
	rec_start(bus, &t, &ot);
	NUTS_PASS(mb_pub_alloc(bus, &pub));

	mb_bus_set_clock(bus, 1234);
	ck_assert_int_eq(mb_bus_now_ms(bus), 1234);
	NUTS_PASS(mb_publish(pub, "notify/a", &env));
	ck_assert_ptr_eq(env.topic, orig); /* restored */
	NUTS_PASS(mb_publish(pub, "notify/a", &env));
	NUTS_PASS(mb_publish(pub, "notify/b", &env));
	mb_bus_set_clock(bus, 5678);
	NUTS_PASS(mb_publish(pub, "notify/a", &env));
	NUTS_PASS(mb_publish(pub, "token/x", &env));
	mb_bus_set_clock(bus, -1);
	lo = mb_bus_now_ms(bus);
	NUTS_PASS(mb_publish(pub, "notify/b", &env));
	hi = mb_bus_now_ms(bus);
	NUTS_PASS(mb_bus_drain(bus, WAIT_MS));

	ck_assert_uint_eq(n.nseen, 5); /* token/x filtered out */
	const char *topics[] = {"notify/a", "notify/a", "notify/b", "notify/a",
	                        "notify/b"};
	uint64_t seqs[] = {1, 2, 1, 3, 2};
	int64_t ats[] = {1234, 1234, 1234, 5678, -1};
	for (int i = 0; i < 5; i++) {
		ck_assert_str_eq(n.seen[i].topic, topics[i]);
		ck_assert_uint_eq(n.seen[i].seq, seqs[i]);
		ck_assert_uint_eq(n.seen[i].pub, mb_pub_id(pub));
		ck_assert_uint_gt(n.seen[i].ts_ns, 0);
		if (i > 0) {
			ck_assert_uint_ge(n.seen[i].ts_ns, n.seen[i - 1].ts_ns);
		}
		if (ats[i] >= 0) {
			ck_assert_int_eq(n.seen[i].at_ms, ats[i]);
		}
	}
	ck_assert_int_ge(n.seen[4].at_ms, lo);
	ck_assert_int_le(n.seen[4].at_ms, hi);

	ck_assert_uint_eq(t.nseen, 1);
	ck_assert_str_eq(t.seen[0].topic, "token/x");
	ck_assert_uint_eq(t.seen[0].seq, 1);
	ck_assert_int_eq(t.seen[0].at_ms, 5678);

	struct mb_bus_stats st;
	mb_bus_stats(bus, &st);
	ck_assert_uint_eq(st.published, 6);
	ck_assert_uint_eq(st.handled, 6);
	ck_assert_uint_eq(st.gaps, 0);
	mb_bus_close(bus);
	ck_assert_int_eq(n.inits, 1);
	ck_assert_int_eq(n.terms, 1);
	rec_fini(&n);
	rec_fini(&t);
}
END_TEST

/* Two matching prefixes: nng sub0 delivers once, and drain counts once. */
START_TEST(test_prefix_once)
{
	mb_bus *bus;
	mb_pub *pub;
	struct rec r;
	struct mb_actor_ops ops;
	struct mb_bus_stats st;

	NUTS_PASS(mb_bus_open(&bus, NULL));
	rec_init(&r, "a/", "a/b");
	rec_start(bus, &r, &ops);
	NUTS_PASS(mb_pub_alloc(bus, &pub));
	publish_n(pub, "a/b/c", 100);
	NUTS_PASS(mb_bus_drain(bus, WAIT_MS));
	ck_assert_uint_eq(r.handled, 100);
	for (size_t i = 0; i < r.nseen; i++) {
		ck_assert_uint_eq(r.seen[i].seq, i + 1);
	}
	mb_bus_stats(bus, &st);
	ck_assert_uint_eq(st.handled, 100);
	ck_assert_uint_eq(st.gaps, 0);
	mb_bus_close(bus);
	rec_fini(&r);
}
END_TEST

/* Whatever is published right after mb_actor_start returns arrives. */
START_TEST(test_start_connected)
{
	mb_bus *bus;
	mb_pub *pub;

	NUTS_PASS(mb_bus_open(&bus, NULL));
	NUTS_PASS(mb_pub_alloc(bus, &pub));
	for (int i = 0; i < 30; i++) {
		struct rec r;
		struct mb_actor_ops ops;

		rec_init(&r, "s/", NULL);
		rec_start(bus, &r, &ops);
		publish_n(pub, "s/x", 1);
		NUTS_PASS(mb_bus_drain(bus, WAIT_MS));
		ck_assert_uint_eq(r.handled, 1);
		ck_assert_uint_eq(r.seen[0].seq, (uint64_t)i + 1);
		mb_actor_stop(r.actor);
		ck_assert_int_eq(r.terms, 1);
		rec_fini(&r);
	}
	mb_bus_close(bus);
}
END_TEST

/* A stream that began before the actor started is picked up where it is,
 * with no false gap; one published while no actor listened is not counted. */
START_TEST(test_baseline)
{
	mb_bus *bus;
	mb_pub *pub;
	struct rec r;
	struct mb_actor_ops ops;
	struct mb_bus_stats st;

	NUTS_PASS(mb_bus_open(&bus, NULL));
	NUTS_PASS(mb_pub_alloc(bus, &pub));
	publish_n(pub, "t/x", 3);
	NUTS_PASS(mb_bus_drain(bus, 0)); /* nobody was listening */
	rec_init(&r, "t/", NULL);
	rec_start(bus, &r, &ops);
	publish_n(pub, "t/x", 2);
	NUTS_PASS(mb_bus_drain(bus, WAIT_MS));
	ck_assert_uint_eq(r.handled, 2);
	ck_assert_uint_eq(r.seen[0].seq, 4);
	ck_assert_uint_eq(r.seen[1].seq, 5);
	mb_bus_stats(bus, &st);
	ck_assert_uint_eq(st.gaps, 0);
	ck_assert_uint_eq(st.missed, 0);
	mb_bus_close(bus);
	rec_fini(&r);
}
END_TEST

static void
send_forged(mb_bus *bus, const char *wire_topic, const char *topic,
            uint32_t publisher, uint64_t seq)
{
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	uint8_t buf[256];
	size_t tl = strlen(wire_topic);

	env.topic = (char *)topic;
	env.publisher = publisher;
	env.seq = seq;
	memcpy(buf, wire_topic, tl + 1);
	ck_assert_uint_lt(mobbus__envelope__get_packed_size(&env),
	                  sizeof(buf) - tl - 1);
	NUTS_PASS(mbi_bus_send_raw(
	    bus, buf, tl + 1 + mobbus__envelope__pack(&env, buf + tl + 1)));
}

/* A hole in a stream from a publisher born after the actor is reported. */
START_TEST(test_gap_report)
{
	mb_bus *bus;
	struct rec r, w;
	struct mb_actor_ops ro, wo;
	struct mb_bus_stats st;

	NUTS_PASS(mb_bus_open(&bus, NULL));
	rec_init(&r, "g/", NULL);
	rec_init(&w, "bus/", NULL);
	rec_start(bus, &r, &ro);
	rec_start(bus, &w, &wo);
	send_forged(bus, "g/x", "g/x", 1000, 1);
	send_forged(bus, "g/x", "g/x", 1000, 5);
	send_forged(bus, "g/x", "g/x", 1000, 6);
	/* Forged holes were never counted, so drain may return before the
	 * last envelope is handled: wait for the callbacks themselves. */
	rec_wait_handled(&r, 3);
	rec_wait_handled(&w, 1);
	NUTS_PASS(mb_bus_drain(bus, WAIT_MS));
	ck_assert_str_eq(w.seen[0].topic, "bus/gap");
	ck_assert_str_eq(w.seen[0].code, "gap");
	ck_assert_uint_eq(w.seen[0].pub, mb_pub_id(mb_actor_pub(r.actor)));
	ck_assert_uint_eq(w.seen[0].err_pub, 1000);
	ck_assert_uint_eq(w.seen[0].missed, 3);
	mb_bus_stats(bus, &st);
	ck_assert_uint_eq(st.gaps, 1);
	ck_assert_uint_eq(st.missed, 3);
	mb_bus_close(bus);
	rec_fini(&r);
	rec_fini(&w);
}
END_TEST

#define FLOOD 50000

/*
 * mb_publish never waits for a subscriber: two actors sit in handle() while
 * the test publishes FLOOD envelopes to them. Then every envelope must be
 * accounted for exactly, handled or reported lost.
 */
START_TEST(test_never_blocks)
{
	mb_bus *bus;
	mb_pub *pub;
	struct rec s[2], w;
	struct mb_actor_ops so[2], wo;
	struct mb_bus_stats st;
	int failed = 0;
	uint64_t total_missed = 0;
	size_t ngaps = 0;

	NUTS_PASS(mb_bus_open(&bus, NULL));
	for (int i = 0; i < 2; i++) {
		rec_init(&s[i], "load/", NULL);
		s[i].stall = true;
		s[i].keep = false;
		rec_start(bus, &s[i], &so[i]);
	}
	rec_init(&w, "bus/", NULL);
	rec_start(bus, &w, &wo);
	NUTS_PASS(mb_pub_alloc(bus, &pub));

	publish_n(pub, "load/x", 1);
	rec_wait_entered(&s[0]);
	rec_wait_entered(&s[1]);
	for (int i = 1; i < FLOOD; i++) {
		mb_envelope env = MOBBUS__ENVELOPE__INIT;

		if (mb_publish(pub, "load/x", &env) != MB_OK) {
			failed++;
		}
	}
	ck_assert_int_eq(failed, 0);
	/* Neither handler has returned: the loop never waited for them. */
	for (int i = 0; i < 2; i++) {
		pthread_mutex_lock(&s[i].mtx);
		ck_assert(!s[i].released);
		ck_assert_uint_eq(s[i].handled, 0);
		pthread_mutex_unlock(&s[i].mtx);
	}
	NUTS_FAIL(mb_bus_drain(bus, 0), MB_ETIMEDOUT);

	rec_release(&s[0]);
	rec_release(&s[1]);
	NUTS_PASS(mb_bus_drain(bus, 4 * WAIT_MS));

	for (int i = 0; i < 2; i++) {
		uint32_t id = mb_pub_id(mb_actor_pub(s[i].actor));
		uint64_t missed = 0;

		for (size_t j = 0; j < w.nseen; j++) {
			if (w.seen[j].pub == id &&
			    strcmp(w.seen[j].code, "gap") == 0) {
				ck_assert_uint_eq(w.seen[j].err_pub,
				                  mb_pub_id(pub));
				missed += w.seen[j].missed;
				ngaps++;
			}
		}
		ck_assert_uint_gt(missed, 0);
		ck_assert_uint_eq(s[i].handled + missed, FLOOD);
		/* pub0 drops the oldest queued: the newest always arrives. */
		ck_assert_uint_eq(s[i].first_seq, 1);
		ck_assert_uint_eq(s[i].last_seq, FLOOD);
		total_missed += missed;
	}
	mb_bus_stats(bus, &st);
	ck_assert_uint_gt(st.gaps, 0);
	ck_assert_uint_eq(st.gaps, ngaps);
	ck_assert_uint_eq(st.missed, total_missed);
	ck_assert_uint_eq(st.published, FLOOD + ngaps);
	mb_bus_close(bus);
	rec_fini(&s[0]);
	rec_fini(&s[1]);
	rec_fini(&w);
}
END_TEST

/*
 * A pipe's queue is shared by all streams: traffic for another actor, which
 * this one does not even subscribe to, pushes the tail of a stream out, and
 * no later envelope on that stream shows the hole. Drain must still return,
 * the tail reported lost, also for a publisher freed meanwhile.
 */
START_TEST(test_tail_loss)
{
	mb_bus *bus;
	mb_pub *p, *q;
	struct rec x, w, z;
	struct mb_actor_ops xo, wo, zo;
	struct mb_bus_stats st;
	uint32_t pid;
	uint64_t missed = 0;

	NUTS_PASS(mb_bus_open(&bus, NULL));
	rec_init(&x, "a/", "b/");
	x.stall = true;
	x.keep = false;
	rec_init(&w, "bus/", NULL);
	rec_init(&z, "z/", NULL);
	z.keep = false;
	rec_start(bus, &x, &xo);
	rec_start(bus, &w, &wo);
	rec_start(bus, &z, &zo);
	NUTS_PASS(mb_pub_alloc(bus, &p));
	NUTS_PASS(mb_pub_alloc(bus, &q));
	pid = mb_pub_id(p);

	publish_n(q, "b/x", 1);
	rec_wait_entered(&x);
	publish_n(p, "a/x", 5);
	mb_pub_free(p);
	publish_n(q, "z/x", 9000); /* for z, and queued to x's pipe too */
	rec_release(&x);
	NUTS_PASS(mb_bus_drain(bus, WAIT_MS));

	for (size_t i = 0; i < w.nseen; i++) {
		ck_assert_str_eq(w.seen[i].code, "gap");
		ck_assert_uint_eq(w.seen[i].pub,
		                  mb_pub_id(mb_actor_pub(x.actor)));
		ck_assert_uint_eq(w.seen[i].err_pub, pid);
		missed += w.seen[i].missed;
	}
	ck_assert_uint_ge(missed, 4);
	ck_assert_uint_eq(x.handled + missed, 6);
	mb_bus_stats(bus, &st);
	ck_assert_uint_eq(st.missed, missed);
	ck_assert_uint_eq(st.gaps, w.nseen);
	mb_bus_close(bus);
	rec_fini(&x);
	rec_fini(&w);
	rec_fini(&z);
}
END_TEST

struct pub_thread {
	mb_pub *pub;
	const char *topic;
	int n;
	int pause_every; /* sleep 100 us after this many; 0: never */
	int failed;
};

static void *
pub_thread_main(void *arg)
{
	struct pub_thread *pt = arg;

	for (int i = 0; i < pt->n; i++) {
		mb_envelope env = MOBBUS__ENVELOPE__INIT;

		if (publish_here(pt->pub, pt->topic, &env) != MB_OK) {
			pt->failed++;
		}
		if (pt->pause_every > 0 && i % pt->pause_every == 0) {
			usleep(100);
		}
	}
	return (NULL);
}

/* One publisher shared by threads: seqs are unique and arrive in order. */
START_TEST(test_concurrent_publish)
{
	mb_bus *bus;
	mb_pub *pub;
	struct rec r;
	struct mb_actor_ops ops;
	struct mb_bus_stats st;
	pthread_t thr[4];
	struct pub_thread pt[4];

	NUTS_PASS(mb_bus_open(&bus, NULL));
	rec_init(&r, "m/", NULL);
	rec_start(bus, &r, &ops);
	NUTS_PASS(mb_pub_alloc(bus, &pub));
	for (int i = 0; i < 4; i++) {
		pt[i] = (struct pub_thread){.pub = pub, .topic = "m/x",
		                            .n = 1500};
		ck_assert_int_eq(
		    pthread_create(&thr[i], NULL, pub_thread_main, &pt[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(thr[i], NULL);
		ck_assert_int_eq(pt[i].failed, 0);
	}
	NUTS_PASS(mb_bus_drain(bus, WAIT_MS));
	/* 6000 fit in the queues: nothing may be lost, nothing reordered. */
	ck_assert_uint_eq(r.nseen, 6000);
	for (size_t i = 0; i < r.nseen; i++) {
		ck_assert_uint_eq(r.seen[i].seq, i + 1);
	}
	mb_bus_stats(bus, &st);
	ck_assert_uint_eq(st.gaps, 0);
	mb_bus_close(bus);
	rec_fini(&r);
}
END_TEST

/* Drain covers what handlers publish in turn. */
START_TEST(test_drain_followups)
{
	mb_bus *bus;
	mb_pub *pub;
	struct rec a, b;
	struct mb_actor_ops ao, bo;
	struct mb_bus_stats st;

	NUTS_PASS(mb_bus_open(&bus, NULL));
	rec_init(&a, "a/", NULL);
	rec_init(&b, "b/", NULL);
	a.keep = false;
	b.keep = false;
	a.republish = "b/x";
	rec_start(bus, &a, &ao);
	rec_start(bus, &b, &bo);
	NUTS_PASS(mb_pub_alloc(bus, &pub));
	publish_n(pub, "a/x", 2000);
	NUTS_PASS(mb_bus_drain(bus, WAIT_MS));
	pthread_mutex_lock(&b.mtx);
	ck_assert_uint_eq(b.handled, 2000);
	pthread_mutex_unlock(&b.mtx);
	ck_assert_int_eq(a.errors, 0);
	mb_bus_stats(bus, &st);
	ck_assert_uint_eq(st.gaps, 0);
	ck_assert_uint_eq(st.handled, 4000);
	ck_assert_uint_eq(st.published, 4000);
	mb_bus_close(bus);
	rec_fini(&a);
	rec_fini(&b);
}
END_TEST

START_TEST(test_drain_timeout)
{
	mb_bus *bus;
	mb_pub *pub;
	struct rec r;
	struct mb_actor_ops ops;

	NUTS_PASS(mb_bus_open(&bus, NULL));
	rec_init(&r, "d/", NULL);
	r.stall = true;
	rec_start(bus, &r, &ops);
	NUTS_PASS(mb_pub_alloc(bus, &pub));
	publish_n(pub, "d/x", 3);
	rec_wait_entered(&r);
	NUTS_FAIL(mb_bus_drain(bus, 20), MB_ETIMEDOUT);
	rec_release(&r);
	NUTS_PASS(mb_bus_drain(bus, -1));
	ck_assert_uint_eq(r.handled, 3);
	mb_bus_close(bus);
	rec_fini(&r);
}
END_TEST

/* Stopping an actor forgets what it still had pending. */
START_TEST(test_stop_pending)
{
	mb_bus *bus;
	mb_pub *pub;
	struct rec r;
	struct mb_actor_ops ops;

	NUTS_PASS(mb_bus_open(&bus, NULL));
	rec_init(&r, "d/", NULL);
	r.stall = true;
	rec_start(bus, &r, &ops);
	NUTS_PASS(mb_pub_alloc(bus, &pub));
	publish_n(pub, "d/x", 10);
	rec_wait_entered(&r);
	NUTS_FAIL(mb_bus_drain(bus, 0), MB_ETIMEDOUT);
	rec_release(&r);
	mb_actor_stop(r.actor);
	NUTS_PASS(mb_bus_drain(bus, 0));
	ck_assert_int_eq(r.terms, 1);
	mb_bus_close(bus);
	rec_fini(&r);
}
END_TEST

START_TEST(test_restart)
{
	mb_bus *bus;
	mb_pub *pub;
	struct rec r, w;
	struct mb_actor_ops ro, wo;
	struct mb_bus_stats st;

	NUTS_PASS(mb_bus_open(&bus, NULL));
	rec_init(&r, "r/", NULL);
	r.fail_on = 3;
	rec_init(&w, "bus/", NULL);
	rec_start(bus, &r, &ro);
	rec_start(bus, &w, &wo);
	NUTS_PASS(mb_pub_alloc(bus, &pub));
	publish_n(pub, "r/x", 10);
	NUTS_PASS(mb_bus_drain(bus, WAIT_MS));

	ck_assert_uint_eq(r.handled, 10); /* later messages still handled */
	ck_assert_int_eq(r.inits, 2);
	ck_assert_int_eq(r.terms, 1);
	ck_assert_uint_eq(rec_count_code(&w, "handler_failed",
	                                 mb_pub_id(mb_actor_pub(r.actor))),
	                  1);
	ck_assert_uint_eq(rec_count_code(&w, "restart_limit", 0), 0);
	mb_bus_stats(bus, &st);
	ck_assert_uint_eq(st.restarts, 1);
	ck_assert_uint_eq(st.handled, 10 + w.handled);
	mb_bus_close(bus);
	ck_assert_int_eq(r.terms, 2);
	rec_fini(&r);
	rec_fini(&w);
}
END_TEST

START_TEST(test_restart_limit)
{
	mb_bus *bus;
	mb_pub *pub;
	struct rec r, w;
	struct mb_actor_ops ro, wo;
	struct mb_bus_stats st;

	NUTS_PASS(mb_bus_open(&bus, NULL));
	rec_init(&r, "r/", NULL);
	r.fail_all = true;
	r.max_restarts = 2;
	rec_init(&w, "bus/", NULL);
	rec_start(bus, &r, &ro);
	rec_start(bus, &w, &wo);
	NUTS_PASS(mb_pub_alloc(bus, &pub));
	publish_n(pub, "r/x", 10);
	NUTS_PASS(mb_bus_drain(bus, WAIT_MS));

	/* Fails 1 and 2 restart; fail 3 is one more than max_restarts. */
	ck_assert_uint_eq(r.handled, 3);
	ck_assert_int_eq(r.inits, 3);
	ck_assert_int_eq(r.terms, 3);
	ck_assert_uint_eq(rec_count_code(&w, "handler_failed", 0), 3);
	ck_assert_uint_eq(rec_count_code(&w, "restart_limit", 0), 1);
	mb_bus_stats(bus, &st);
	ck_assert_uint_eq(st.restarts, 2);

	/* Stopped for good, but its mailbox still drains. */
	publish_n(pub, "r/x", 5);
	NUTS_PASS(mb_bus_drain(bus, WAIT_MS));
	ck_assert_uint_eq(r.handled, 3);
	mb_bus_close(bus);
	ck_assert_int_eq(r.terms, 3); /* not terminated twice */
	rec_fini(&r);
	rec_fini(&w);
}
END_TEST

START_TEST(test_malformed)
{
	mb_bus *bus;
	mb_pub *pub;
	struct rec r, w;
	struct mb_actor_ops ro, wo;
	static const char junk[] = "x/bad\0\xff\xff\xff\xff\xff";

	NUTS_PASS(mb_bus_open(&bus, NULL));
	rec_init(&r, "x/", NULL);
	rec_init(&w, "bus/", NULL);
	rec_start(bus, &r, &ro);
	rec_start(bus, &w, &wo);
	NUTS_PASS(mb_pub_alloc(bus, &pub));

	NUTS_PASS(mbi_bus_send_raw(bus, junk, sizeof(junk) - 1));
	NUTS_PASS(mbi_bus_send_raw(bus, "x/no-nul-at-all", 15));
	send_forged(bus, "x/wire", "x/other", 1000, 1); /* topics differ */
	send_forged(bus, "x/zero", "x/zero", 1000, 0);  /* seq 0 */
	publish_n(pub, "x/ok", 1);
	NUTS_PASS(mb_bus_drain(bus, WAIT_MS));

	ck_assert_uint_eq(r.handled, 1);
	ck_assert_str_eq(r.seen[0].topic, "x/ok");
	ck_assert_uint_eq(rec_count_code(&w, "bad_envelope",
	                                 mb_pub_id(mb_actor_pub(r.actor))),
	                  4);
	for (size_t i = 0; i < w.nseen; i++) {
		ck_assert_str_eq(w.seen[i].topic, "bus/error");
	}
	mb_bus_close(bus);
	rec_fini(&r);
	rec_fini(&w);
}
END_TEST

START_TEST(test_errors)
{
	mb_bus *bus;
	mb_pub *pub;
	mb_actor *a;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	struct mb_bus_opts big = {.size = sizeof(big), .sendbuf = 9000};
	struct mb_actor_ops bad = {.size = sizeof(bad), .name = "bad"};
	char longt[MBI_TOPIC_MAX + 1];

	ck_assert_str_eq(mb_err_name(MB_ETOOLARGE), "payload_too_large");
	ck_assert_str_eq(mb_err_name(MB_EPROTO), "bad_envelope");
	ck_assert_str_eq(mb_err_name(MB_EGAP), "gap");
	ck_assert_ptr_nonnull(mb_strerror(12345));
	ck_assert_ptr_nonnull(mb_strerror(-1));
	ck_assert_ptr_nonnull(mb_err_name(12345));
	ck_assert_str_eq(mb_strerror(MB_OK), "ok");

	NUTS_FAIL(mb_bus_open(&bus, &big), MB_EINVAL);
	NUTS_FAIL(mb_bus_open(NULL, NULL), MB_EINVAL);
	NUTS_PASS(mb_bus_open(&bus, NULL));
	NUTS_PASS(mb_pub_alloc(bus, &pub));
	NUTS_FAIL(mb_publish(pub, "", &env), MB_EINVAL);
	NUTS_FAIL(mb_publish(pub, NULL, &env), MB_EINVAL);
	NUTS_FAIL(mb_publish(pub, "a/", NULL), MB_EINVAL);
	memset(longt, 'x', MBI_TOPIC_MAX);
	longt[MBI_TOPIC_MAX] = '\0';
	NUTS_FAIL(mb_publish(pub, longt, &env), MB_EINVAL);
	longt[MBI_TOPIC_MAX - 1] = '\0';
	NUTS_PASS(mb_publish(pub, longt, &env)); /* 63 bytes is fine */
	NUTS_FAIL(mb_actor_start(bus, &bad, NULL, &a), MB_EINVAL);
	NUTS_PASS(mb_publish_error(pub, MB_ETOOLARGE, "%s", "too big"));
	mb_bus_close(bus); /* frees pub */
	mb_bus_close(NULL);
	mb_pub_free(NULL);
	mb_actor_stop(NULL);
}
END_TEST

static int
fail_init_cb(mb_actor *a, void *arg, void **statep)
{
	(void)a;
	(void)arg;
	(void)statep;
	return (MB_EDB);
}

/* init's own error comes back from mb_actor_start; nothing leaks. */
START_TEST(test_init_fails)
{
	mb_bus *bus;
	mb_actor *a = NULL;
	const char *topics[] = {"i/", NULL};
	struct mb_actor_ops ops = rec_ops;

	ops.topics = topics;
	ops.init = fail_init_cb;
	NUTS_PASS(mb_bus_open(&bus, NULL));
	NUTS_FAIL(mb_actor_start(bus, &ops, NULL, &a), MB_EDB);
	ck_assert_ptr_null(a);
	mb_bus_close(bus);
}
END_TEST

/* Closing the bus stops running actors and frees publishers left over. */
START_TEST(test_close_running)
{
	mb_bus *bus;
	mb_pub *p1, *p2;
	struct rec r1, r2;
	struct mb_actor_ops o1, o2;

	NUTS_PASS(mb_bus_open(&bus, NULL));
	rec_init(&r1, "c/", NULL);
	rec_init(&r2, "", NULL); /* everything */
	rec_start(bus, &r1, &o1);
	rec_start(bus, &r2, &o2);
	NUTS_PASS(mb_pub_alloc(bus, &p1));
	NUTS_PASS(mb_pub_alloc(bus, &p2));
	publish_n(p1, "c/x", 100);
	publish_n(p2, "z/x", 100);
	mb_bus_close(bus);
	ck_assert_int_eq(r1.terms, 1);
	ck_assert_int_eq(r2.terms, 1);
	rec_fini(&r1);
	rec_fini(&r2);
}
END_TEST

START_TEST(test_batch)
{
	/* A batch is one nng message but n deliveries, each with its own
	 * consecutive sequence number, interleaving correctly with single
	 * publishes on the same stream, and counted exactly for drain. */
	mb_bus *bus;
	mb_pub *pub;
	struct rec n;
	struct mb_actor_ops on;
	mb_envelope envs[100], *ptrs[100], one = MOBBUS__ENVELOPE__INIT;
	struct mb_bus_stats st;

	NUTS_PASS(mb_bus_open(&bus, NULL));
	rec_init(&n, "notify/", NULL);
	rec_start(bus, &n, &on);
	NUTS_PASS(mb_pub_alloc(bus, &pub));
	for (int i = 0; i < 100; i++) {
		mobbus__envelope__init(&envs[i]);
		ptrs[i] = &envs[i];
	}
	NUTS_PASS(mb_publish(pub, "notify/a", &one));
	NUTS_PASS(mb_publish_batch(pub, "notify/a", ptrs, 100));
	NUTS_PASS(mb_publish(pub, "notify/a", &one));
	NUTS_PASS(mb_publish_batch(pub, "notify/a", ptrs, 1));
	NUTS_FAIL(mb_publish_batch(pub, "notify/a", ptrs, 0), MB_EINVAL);
	NUTS_FAIL(mb_publish_batch(pub, "", ptrs, 2), MB_EINVAL);
	NUTS_PASS(mb_bus_drain(bus, WAIT_MS));
	ck_assert_uint_eq(n.nseen, 103);
	for (size_t i = 0; i < n.nseen; i++) {
		ck_assert_str_eq(n.seen[i].topic, "notify/a");
		ck_assert_uint_eq(n.seen[i].seq, i + 1);
	}
	mb_bus_stats(bus, &st);
	ck_assert_uint_eq(st.published, 103);
	ck_assert_uint_eq(st.gaps, 0);
	mb_bus_close(bus);
	rec_fini(&n);
}
END_TEST

START_TEST(test_batch_truncated)
{
	/* A batch cut short delivers what it holds and reports the rest;
	 * drain still returns. */
	mb_bus *bus;
	mb_pub *pub;
	struct rec n, e;
	struct mb_actor_ops on, oe;
	uint8_t buf[64] = "notify/x";
	size_t off = sizeof("notify/x");

	NUTS_PASS(mb_bus_open(&bus, NULL));
	rec_init(&n, "notify/", NULL);
	rec_init(&e, "bus/", NULL);
	rec_start(bus, &n, &on);
	rec_start(bus, &e, &oe);
	NUTS_PASS(mb_pub_alloc(bus, &pub));
	buf[off++] = 0;          /* batch marker */
	buf[off++] = 200;        /* a length past the end */
	buf[off++] = 0;
	buf[off++] = 0;
	buf[off++] = 0;
	buf[off++] = 0x0a;
	NUTS_PASS(mbi_bus_send_raw(bus, buf, off));
	NUTS_PASS(mb_bus_drain(bus, WAIT_MS));
	ck_assert_uint_eq(n.nseen, 0);
	ck_assert_uint_ge(e.nseen, 1);
	mb_bus_close(bus);
	rec_fini(&n);
	rec_fini(&e);
}
END_TEST

START_TEST(test_wake_at)
{
	/* Real time: a tick comes when the earliest deadline is due, and not
	 * before; under a simulated clock, requests are ignored. */
	mb_bus *bus;
	struct rec r;
	struct mb_actor_ops ops;
	int64_t asked;

	NUTS_PASS(mb_bus_open(&bus, NULL));
	rec_init(&r, "time/", NULL);
	rec_start(bus, &r, &ops);
	asked = mb_bus_now_ms(bus);
	NUTS_PASS(mb_bus_wake_at(bus, asked + 300));
	NUTS_PASS(mb_bus_wake_at(bus, asked + 50)); /* the earliest wins */
	NUTS_FAIL(mb_bus_wake_at(bus, -1), MB_EINVAL);
	pthread_mutex_lock(&r.mtx);
	while (r.nseen < 1) {
		struct timespec dl = nuts_deadline(WAIT_MS);
		ck_assert_int_eq(pthread_cond_timedwait(&r.cv, &r.mtx, &dl), 0);
	}
	pthread_mutex_unlock(&r.mtx);
	ck_assert_uint_eq(r.nseen, 1);
	ck_assert_int_ge(r.seen[0].at_ms, asked + 50);
	mb_bus_close(bus);
	rec_fini(&r);

	NUTS_PASS(mb_bus_open(&bus, NULL));
	mb_bus_set_clock(bus, 0);
	NUTS_PASS(mb_bus_wake_at(bus, 1)); /* simulated: the driver ticks */
	mb_bus_close(bus);
}
END_TEST

/* A consumer that counts effects (deliver's hook runs on its thread). */
struct effects {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	int fired, completions;
	char result[16];
};

static int
effects_cb(void *arg, const mb_envelope *env)
{
	struct effects *e = arg;

	pthread_mutex_lock(&e->mtx);
	if (env->body_case == MOBBUS__ENVELOPE__BODY_NOTIFICATION)
		e->fired++;
	if (env->body_case == MOBBUS__ENVELOPE__BODY_EFFECT &&
	    env->effect->kind == MOBBUS__EFFECT__KIND__PUSH_COMPLETION) {
		e->completions++;
		snprintf(e->result, sizeof(e->result), "%s", env->effect->result);
	}
	pthread_cond_broadcast(&e->cv);
	pthread_mutex_unlock(&e->mtx);
	return MB_OK;
}

START_TEST(test_budget_real_time)
{
	/* With the real clock, a fetch window nobody completes is completed
	 * failed when its budget runs out: the bridge's handler is always
	 * called before the OS takes the time back. */
	struct effects e = {.fired = 0};
	struct mb_sink_ops ops = {.size = sizeof(ops), .receive = effects_cb};
	struct mb_deliver_opts dopts = {.size = sizeof(dopts)};
	Mobbus__Notification n = MOBBUS__NOTIFICATION__INIT;
	Mobbus__AppCommand c = MOBBUS__APP_COMMAND__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	mb_bus *bus;
	mb_pub *pub;
	mb_actor *d;

	pthread_mutex_init(&e.mtx, NULL);
	nuts_cond_init(&e.cv);
	dopts.consumer = &ops;
	dopts.consumer_arg = &e;
	NUTS_PASS(mb_bus_open(&bus, NULL));
	NUTS_PASS(mb_pub_alloc(bus, &pub));
	NUTS_PASS(mb_deliver_start(bus, &dopts, &d));
	c.do_ = MOBBUS__APP_COMMAND__DO__SUBSCRIBE;
	env.body_case = MOBBUS__ENVELOPE__BODY_APP;
	env.app = &c;
	NUTS_PASS(mb_publish(pub, "cmd/subscribe", &env));
	n.id = "S1";
	n.presentation = MOBBUS__NOTIFICATION__PRESENTATION__BACKGROUND;
	n.push_id = "P1";
	n.budget_ms = 50;
	env.body_case = MOBBUS__ENVELOPE__BODY_NOTIFICATION;
	env.notification = &n;
	NUTS_PASS(mb_publish(pub, MB_TOPIC_NOTIFY_BACKGROUND, &env));
	pthread_mutex_lock(&e.mtx);
	while (e.completions < 1) {
		struct timespec dl = nuts_deadline(WAIT_MS);
		ck_assert_int_eq(pthread_cond_timedwait(&e.cv, &e.mtx, &dl), 0);
	}
	ck_assert_int_eq(e.fired, 1);
	ck_assert_str_eq(e.result, "failed");
	pthread_mutex_unlock(&e.mtx);
	NUTS_PASS(mb_bus_drain(bus, WAIT_MS));
	ck_assert_int_eq(e.completions, 1); /* exactly once */
	mb_bus_close(bus);
}
END_TEST

/* ---- inline runs (bus.h) ------------------------------------------------ */

/* seen[] holds, per publisher, seqs 1..n in order and nothing else. */
static void
assert_streams(const struct rec *r, uint32_t pub, uint64_t n)
{
	uint64_t next = 1;

	for (size_t i = 0; i < r->nseen; i++) {
		if (r->seen[i].pub == pub) {
			ck_assert_uint_eq(r->seen[i].seq, next);
			next++;
		}
	}
	ck_assert_uint_eq(next - 1, n);
}

/* inline_open - a bus with one recorder on "a/" that takes envelopes
 * inline, and a publisher. */
static void
inline_open(mb_bus **bus, mb_pub **pub, struct rec *x, struct mb_actor_ops *xo)
{
	NUTS_PASS(mb_bus_open(bus, NULL));
	rec_init(x, "a/", NULL);
	x->inline_mode = 1;
	rec_start(*bus, x, xo);
	NUTS_PASS(mb_pub_alloc(*bus, pub));
}

/* An idle actor that takes envelopes inline runs on the publisher's thread,
 * and with nobody else subscribed nothing goes through nng at all. */
START_TEST(test_inline_idle)
{
	mb_bus *bus;
	mb_pub *pub;
	struct rec x;
	struct mb_actor_ops xo;
	struct mb_bus_stats st;

	inline_open(&bus, &pub, &x, &xo);
	for (int i = 0; i < 1000; i++) {
		mb_envelope env = MOBBUS__ENVELOPE__INIT;
		NUTS_PASS(publish_here(pub, "a/x", &env));
		/* Handled before mb_publish returned. */
		ck_assert_uint_eq(x.handled, (uint64_t)i + 1);
	}
	ck_assert_uint_eq(x.on_caller, 1000);
	assert_streams(&x, mb_pub_id(pub), 1000);
	mb_bus_stats(bus, &st);
	ck_assert_uint_eq(st.inflight, 0);
	ck_assert_uint_eq(st.handled, 1000);
	ck_assert_uint_eq(st.gaps, 0);
	NUTS_PASS(mb_bus_drain(bus, WAIT_MS));
	mb_bus_close(bus);
	rec_fini(&x);
}
END_TEST

/* Next to an actor that waits for its mailbox, the message still goes out;
 * the inline actor drops its own copy and handles each envelope once. */
START_TEST(test_inline_mixed)
{
	mb_bus *bus;
	mb_pub *pub;
	struct rec x, y;
	struct mb_actor_ops xo, yo;
	struct mb_bus_stats st;

	NUTS_PASS(mb_bus_open(&bus, NULL));
	rec_init(&x, "a/", NULL);
	rec_init(&y, "a/", NULL);
	x.inline_mode = 1;
	rec_start(bus, &x, &xo);
	rec_start(bus, &y, &yo);
	NUTS_PASS(mb_pub_alloc(bus, &pub));
	for (int i = 0; i < 2000; i++) {
		mb_envelope env = MOBBUS__ENVELOPE__INIT;
		NUTS_PASS(publish_here(pub, "a/x", &env));
	}
	NUTS_PASS(mb_bus_drain(bus, WAIT_MS));
	assert_streams(&x, mb_pub_id(pub), 2000);
	assert_streams(&y, mb_pub_id(pub), 2000);
	/* The first one found x idle; later ones may find it busy dropping
	 * a copy, and then wait in its mailbox. */
	ck_assert_uint_ge(x.on_caller, 1);
	ck_assert_uint_eq(y.on_caller, 0);
	mb_bus_stats(bus, &st);
	ck_assert_uint_eq(st.handled, 4000);
	ck_assert_uint_eq(st.gaps, 0);
	printf("bus: inline_mixed: %" PRIu64 " of 2000 inline\n", x.on_caller);
	mb_bus_close(bus);
	rec_fini(&x);
	rec_fini(&y);
}
END_TEST

/* inline_ok saying no, and a bus opened with no_inline: the mailbox. */
START_TEST(test_inline_refused)
{
	struct mb_bus_opts bo = {.size = sizeof(bo), .no_inline = 1};

	for (int pass = 0; pass < 2; pass++) {
		mb_bus *bus;
		mb_pub *pub;
		struct rec x;
		struct mb_actor_ops xo;

		NUTS_PASS(mb_bus_open(&bus, pass == 0 ? NULL : &bo));
		rec_init(&x, "a/", NULL);
		x.inline_mode = pass == 0 ? 2 : 1;
		rec_start(bus, &x, &xo);
		NUTS_PASS(mb_pub_alloc(bus, &pub));
		for (int i = 0; i < 500; i++) {
			mb_envelope env = MOBBUS__ENVELOPE__INIT;
			NUTS_PASS(publish_here(pub, "a/x", &env));
		}
		NUTS_PASS(mb_bus_drain(bus, WAIT_MS));
		ck_assert_uint_eq(x.on_caller, 0);
		assert_streams(&x, mb_pub_id(pub), 500);
		mb_bus_close(bus);
		rec_fini(&x);
	}
}
END_TEST

/* Two threads publish to an inline actor whose handler publishes to another
 * inline actor: runs nest, claims race with the mailbox (the pauses let the
 * actors go idle again, so both ways keep taking turns), and still every
 * stream arrives whole and in order, and drain is exact. */
START_TEST(test_inline_concurrent)
{
	mb_bus *bus;
	mb_pub *pub[2];
	struct rec x, z;
	struct mb_actor_ops xo, zo;
	struct mb_bus_stats st;
	pthread_t thr[2];
	struct pub_thread pt[2];

	NUTS_PASS(mb_bus_open(&bus, NULL));
	rec_init(&x, "a/", NULL);
	rec_init(&z, "b/", NULL);
	x.inline_mode = 1;
	z.inline_mode = 1;
	x.republish = "b/x";
	rec_start(bus, &x, &xo);
	rec_start(bus, &z, &zo);
	for (int i = 0; i < 2; i++) {
		NUTS_PASS(mb_pub_alloc(bus, &pub[i]));
		pt[i] = (struct pub_thread){.pub = pub[i], .topic = "a/x",
		                            .n = 3000, .pause_every = 20};
		ck_assert_int_eq(
		    pthread_create(&thr[i], NULL, pub_thread_main, &pt[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(thr[i], NULL);
		ck_assert_int_eq(pt[i].failed, 0);
	}
	NUTS_PASS(mb_bus_drain(bus, WAIT_MS));
	assert_streams(&x, mb_pub_id(pub[0]), 3000);
	assert_streams(&x, mb_pub_id(pub[1]), 3000);
	assert_streams(&z, mb_pub_id(mb_actor_pub(x.actor)), 6000);
	ck_assert_int_eq(x.errors, 0);
	mb_bus_stats(bus, &st);
	ck_assert_uint_eq(st.handled, 12000);
	ck_assert_uint_eq(st.gaps, 0);
	ck_assert_uint_eq(st.inflight, 0);
	printf("bus: inline_concurrent: %" PRIu64 " of 6000 and %" PRIu64
	       " of 6000 inline\n", x.on_caller, z.on_caller);
	mb_bus_close(bus);
	rec_fini(&x);
	rec_fini(&z);
}
END_TEST

/* A publisher's own envelope is handed to an inline handler as it is when
 * it reads like a decoded one; one with a NULL string is encoded and
 * decoded first, so a handler never sees NULL where decoding gives "". */
START_TEST(test_inline_direct)
{
	Mobbus__BusError be = MOBBUS__BUS_ERROR__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	mb_bus *bus;
	mb_pub *pub;
	struct rec x;
	struct mb_actor_ops xo;

	inline_open(&bus, &pub, &x, &xo);
	be.code = "c";
	be.message = "m";
	env.body_case = MOBBUS__ENVELOPE__BODY_ERROR;
	env.error = &be;
	for (int i = 0; i < 3; i++) {
		NUTS_PASS(publish_here(pub, "a/x", &env));
	}
	ck_assert_uint_eq(x.on_caller, 3);
	/* The first one taught the publisher that a/x runs inline only. */
	ck_assert_ptr_eq(x.last_env, &env);
	ck_assert_str_eq(x.seen[2].code, "c");

	be.code = NULL; /* encodes as "" */
	NUTS_PASS(publish_here(pub, "a/x", &env));
	ck_assert_uint_eq(x.on_caller, 4);
	ck_assert_ptr_ne(x.last_env, &env);
	ck_assert_str_eq(x.seen[3].code, "");
	assert_streams(&x, mb_pub_id(pub), 4);
	NUTS_PASS(mb_bus_drain(bus, WAIT_MS));
	mb_bus_close(bus);
	rec_fini(&x);
}
END_TEST

struct stopper {
	mb_actor *a;
	atomic_bool done;
};

static void *
stopper_main(void *arg)
{
	struct stopper *s = arg;

	mb_actor_stop(s->a);
	atomic_store(&s->done, true);
	return (NULL);
}

static void *
publish_one_main(void *arg)
{
	mb_envelope env = MOBBUS__ENVELOPE__INIT;

	(void)publish_here(arg, "a/x", &env);
	return (NULL);
}

/* mb_actor_stop waits for a handler running on a publisher's thread. */
START_TEST(test_inline_stop_waits)
{
	mb_bus *bus;
	mb_pub *pub;
	struct rec x;
	struct mb_actor_ops xo;
	struct stopper s;
	pthread_t pt, st;

	NUTS_PASS(mb_bus_open(&bus, NULL));
	rec_init(&x, "a/", NULL);
	x.inline_mode = 1;
	x.stall = true;
	rec_start(bus, &x, &xo);
	NUTS_PASS(mb_pub_alloc(bus, &pub));
	ck_assert_int_eq(pthread_create(&pt, NULL, publish_one_main, pub), 0);
	rec_wait_entered(&x);
	s.a = x.actor;
	atomic_init(&s.done, false);
	ck_assert_int_eq(pthread_create(&st, NULL, stopper_main, &s), 0);
	usleep(100 * 1000);
	ck_assert(!atomic_load(&s.done));
	rec_release(&x);
	pthread_join(st, NULL);
	pthread_join(pt, NULL);
	ck_assert(atomic_load(&s.done));
	ck_assert_uint_eq(x.on_caller, 1);
	ck_assert_int_eq(x.terms, 1);
	mb_bus_close(bus);
	rec_fini(&x);
}
END_TEST

NUTS_MAIN("bus",
	{"roundtrip", test_roundtrip, 30},
	{"prefix_once", test_prefix_once, 30},
	{"start_connected", test_start_connected, 60},
	{"baseline", test_baseline, 30},
	{"gap_report", test_gap_report, 30},
	{"never_blocks", test_never_blocks, 300},
	{"tail_loss", test_tail_loss, 60},
	{"concurrent_publish", test_concurrent_publish, 60},
	{"drain_followups", test_drain_followups, 60},
	{"drain_timeout", test_drain_timeout, 30},
	{"stop_pending", test_stop_pending, 30},
	{"restart", test_restart, 30},
	{"restart_limit", test_restart_limit, 30},
	{"malformed", test_malformed, 30},
	{"errors", test_errors, 30},
	{"init_fails", test_init_fails, 30},
	{"close_running", test_close_running, 30},
	{"batch", test_batch, 30},
	{"batch_truncated", test_batch_truncated, 30},
	{"wake_at", test_wake_at, 30},
	{"budget_real_time", test_budget_real_time, 30},
	{"inline_idle", test_inline_idle, 30},
	{"inline_mixed", test_inline_mixed, 60},
	{"inline_refused", test_inline_refused, 30},
	{"inline_concurrent", test_inline_concurrent, 120},
	{"inline_direct", test_inline_direct, 30},
	{"inline_stop_waits", test_inline_stop_waits, 30})
