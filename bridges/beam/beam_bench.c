/* SPDX-License-Identifier: MIT */
/*
 * beam_bench.c - case 5 of the benchmark (bench/bench.c), which has to run
 * inside the erl it measures: the producer is a native thread of this OS
 * process, as a platform bridge's thread is in the app.
 *
 * bench_run(Pid, Samples, Warmup, Seed) creates that thread
 * (enif_thread_create) and runs the benchmark's own driver on it
 * (bench/drive.c: one event at a time after a random 20-200 us gap, the
 * producer's stamp on entry to the call under test), Samples events of
 * each of three kinds, all received by Pid:
 *   mobbus     a bridge call: mb_publish of a notify/arrival notification,
 *              on a publisher of the thread's own, into the bus
 *              mobbus:start/1 opened (bus, store, deliver and policy
 *              actors); Pid is subscribed and gets {notification, Map}
 *              from the BEAM consumer.
 *   consumer   the same notification handed straight to the BEAM
 *              consumer's receive callback, as the deliver actor would
 *              hand it, on the producer's thread: the consumer without the
 *              bus (a diagnostic).
 *   enif_send  the baseline, what Mob's native code does today: the same
 *              message built in an env the thread owns and enif_send()t to
 *              Pid.
 * Pid calls bench_handled/0 first thing when the message arrives, which
 * reads CLOCK_MONOTONIC and the CPU (erlang:monotonic_time/0 is another
 * clock) and lets the producer go on.
 *
 * The kinds take turns (drive_turns, bench/drive.h), so that all three see
 * the same machine: on two vCPUs a wake-up costs ~3 us or ~45 us depending
 * on where the woken thread lands, and that drifts with whatever else runs.
 *
 * Nothing here runs unless the benchmark calls it.
 */
#include <stdatomic.h>
#include <string.h>

#include "beam_nif.h"
#include "drive.h"


enum bench_kind { BENCH_MOBBUS, BENCH_CONSUMER, BENCH_SEND, BENCH_KINDS };

struct bench_run {
	ErlNifPid pid;
	ErlNifEnv *env;                /* enif_send: the thread's own */
	mb_pub *pub;                   /* mobbus: the thread's own publisher */
	struct mbb_consumer *consumer; /* consumer */
	size_t samples, warmup;
	uint64_t n; /* notification ids */
	int failed; /* a publish or send that did not go */
	mb_bus *bus;
	/* Over the mobbus blocks: bridge calls, and what the bus did for
	 * them (mb_bus_stats deltas). */
	uint64_t calls, published, unsent, inline_runs;
	struct mb_bus_stats st_before, st_after; /* around one block */
	uint64_t n_before;
	struct probe p;
	struct lat lat[BENCH_KINDS];
};

/* The run in progress, for bench_handled/0; NULL between runs. */
static _Atomic(struct probe *) bench_cur;

static void
bench_fail(struct bench_run *r)
{
	r->failed = 1;
	atomic_store_explicit(&r->p.done, 1, memory_order_release);
}

static void
bench_publish_fire(void *arg)
{
	struct bench_run *r = arg;

	if (bench_notify(r->pub, MB_TOPIC_NOTIFY_ARRIVAL, r->n++) != MB_OK)
		bench_fail(r);
}

static void
bench_consumer_fire(void *arg)
{
	struct bench_run *r = arg;
	Mobbus__Notification no;
	mb_envelope env;
	char id[32];

	bench_notification(&env, &no, id, r->n++);
	if (mbb_consumer_sink_ops.receive(r->consumer, &env) != MB_OK)
		bench_fail(r);
}

static void
bench_send_fire(void *arg)
{
	struct bench_run *r = arg;
	Mobbus__Notification no;
	mb_envelope env;
	ERL_NIF_TERM msg;
	char id[32];
	int ok;

	bench_notification(&env, &no, id, r->n++);
	ok = mbb_message(r->env, &env, 0, &msg) == 0 &&
	     enif_send(NULL, &r->pid, r->env, msg);
	enif_clear_env(r->env);
	if (!ok)
		bench_fail(r);
}

/* bench_turn - around each mobbus block: what the bus did for it. */
static void
bench_turn(void *ctx, int k, int after)
{
	struct bench_run *r = ctx;

	if (k != BENCH_MOBBUS)
		return;
	mb_bus_stats(r->bus, after ? &r->st_after : &r->st_before);
	if (!after) {
		r->n_before = r->n;
		return;
	}
	r->calls += r->n - r->n_before;
	r->published += r->st_after.published - r->st_before.published;
	r->unsent += r->st_after.unsent - r->st_before.unsent;
	r->inline_runs += r->st_after.inline_runs - r->st_before.inline_runs;
}

static void *
bench_main(void *arg)
{
	static void (*const fire[BENCH_KINDS])(void *) = {
	    [BENCH_MOBBUS] = bench_publish_fire,
	    [BENCH_CONSUMER] = bench_consumer_fire,
	    [BENCH_SEND] = bench_send_fire,
	};
	struct bench_run *r = arg;
	void *const args[BENCH_KINDS] = {r, r, r};
	struct lat *const lats[BENCH_KINDS] = {
	    &r->lat[BENCH_MOBBUS], &r->lat[BENCH_CONSUMER], &r->lat[BENCH_SEND]};

	drive_turns(&r->p, r->warmup, r->samples, BENCH_KINDS, lats, fire,
	            args, bench_turn, r);
	return NULL;
}

/* {SameCpu, Nanoseconds} for one kind. */
static ERL_NIF_TERM
bench_result(ErlNifEnv *env, const struct lat *l)
{
	ERL_NIF_TERM bin;
	unsigned char *p =
	    enif_make_new_binary(env, l->n * sizeof(*l->ns), &bin);

	if (l->n > 0)
		memcpy(p, l->ns, l->n * sizeof(*l->ns));
	return enif_make_tuple2(env, enif_make_uint64(env, l->same_cpu), bin);
}

/*
 * bench_run(Pid, Samples, Warmup, Seed) ->
 *     {ok, #{mobbus | consumer | enif_send => {SameCpu, Nanoseconds}},
 *          #{calls, published, unsent, inline_runs => integer()}}
 *   | {error, Reason}
 * Nanoseconds: a binary of Samples native-endian 64-bit latencies; SameCpu:
 * how many ran on the producer's CPU. The second map is what the bus did
 * in the mobbus blocks (mb_bus_stats deltas over that many bridge calls).
 * Needs a started bus with Pid subscribed to notifications. Dirty I/O: it
 * waits for the thread.
 */
ERL_NIF_TERM
mbb_bench_run_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	struct bench_run r = {0};
	struct mbb_bus *b;
	struct probe *none = NULL;
	ErlNifUInt64 samples, warmup, seed;
	ErlNifTid tid;
	ERL_NIF_TERM res, keys[BENCH_KINDS], vals[BENCH_KINDS], map;
	int rv = MB_OK;

	(void)argc;
	if (!enif_get_local_pid(env, argv[0], &r.pid) ||
	    !enif_get_uint64(env, argv[1], &samples) ||
	    !enif_get_uint64(env, argv[2], &warmup) ||
	    !enif_get_uint64(env, argv[3], &seed) || samples == 0 ||
	    samples > 10000000u || warmup > 10000000u)
		return enif_make_badarg(env);
	r.samples = samples;
	r.warmup = warmup;
	r.p.rng = seed;
	if ((b = mbb_bus_get()) == NULL)
		return mbb_error_atom(env, mbb_atom.not_started);
	if (!atomic_compare_exchange_strong(&bench_cur, &none, &r.p)) {
		mbb_bus_put(b);
		return mbb_error_atom(env, mbb_atom.busy);
	}
	r.consumer = b->consumer;
	r.bus = b->bus;
	for (int k = 0; k < BENCH_KINDS; k++)
		if (lat_init(&r.lat[k], "beam", r.samples) != 0)
			rv = MB_ENOMEM;
	if (rv == MB_OK && (r.env = enif_alloc_env()) == NULL)
		rv = MB_ENOMEM;
	if (rv == MB_OK)
		rv = mb_pub_alloc(b->bus, &r.pub);
	if (rv == MB_OK &&
	    enif_thread_create("mobbus_bench", &tid, bench_main, &r, NULL) != 0)
		rv = MB_ENOMEM;
	else if (rv == MB_OK)
		enif_thread_join(tid, NULL);
	atomic_store(&bench_cur, NULL);
	if (rv == MB_OK && r.failed) {
		res = mbb_error_atom(env, mbb_atom.failed);
	} else if (rv != MB_OK) {
		res = mbb_error(env, rv);
	} else {
		keys[BENCH_MOBBUS] = mbb_atom.mobbus;
		keys[BENCH_CONSUMER] = mbb_atom.consumer;
		keys[BENCH_SEND] = mbb_atom.enif_send;
		for (int k = 0; k < BENCH_KINDS; k++)
			vals[k] = bench_result(env, &r.lat[k]);
		ERL_NIF_TERM bkeys[] = {
		    enif_make_atom(env, "calls"),
		    enif_make_atom(env, "published"),
		    enif_make_atom(env, "unsent"),
		    enif_make_atom(env, "inline_runs")};
		ERL_NIF_TERM bvals[] = {enif_make_uint64(env, r.calls),
		    enif_make_uint64(env, r.published),
		    enif_make_uint64(env, r.unsent),
		    enif_make_uint64(env, r.inline_runs)};
		ERL_NIF_TERM bus;
		res = enif_make_map_from_arrays(env, keys, vals, BENCH_KINDS,
		                                &map) &&
		              enif_make_map_from_arrays(env, bkeys, bvals, 4, &bus)
		          ? enif_make_tuple3(env, mbb_atom.ok, map, bus)
		          : mbb_error(env, MB_ENOMEM);
	}
	mb_pub_free(r.pub);
	if (r.env != NULL)
		enif_free_env(r.env);
	for (int k = 0; k < BENCH_KINDS; k++)
		lat_fini(&r.lat[k]);
	mbb_bus_put(b);
	return res;
}

/* bench_handled() -> ok: the receiving process's stamp (see the top). */
ERL_NIF_TERM
mbb_bench_handled_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	struct probe *p = atomic_load(&bench_cur);

	(void)env;
	(void)argc;
	(void)argv;
	if (p != NULL)
		probe_handled(p);
	return mbb_atom.ok;
}
