/* SPDX-License-Identifier: MIT */
/*
 * mobbus_nif.c - the NIF: load, start and stop the bus, subscribe Erlang
 * processes (the other calls are in beam_calls.c).
 *
 * DESIGN
 * One bus per VM, as one app has one bus: mobbus:start/1 opens it (bus,
 * store, deliver and policy actors, with the BEAM consumer attached to the
 * deliver actor) and every other call uses it. Erlang processes subscribe;
 * the consumer is "up" while at least one is subscribed. The first subscriber
 * sends cmd/subscribe, which hands what waited (durably, with a store) since
 * the start; when the last one goes (unsubscribe, or its monitor fires)
 * cmd/unsubscribe makes the deliver actor hold messages again, and the next
 * subscriber sends cmd/restart, which hands again, redelivered, what nobody
 * acknowledged. Nothing is ever sent to a process from a NIF call: only the
 * consumer's own thread calls enif_send.
 *
 * Arguments of the wrong shape raise badarg; everything that can go wrong at
 * run time (no bus, a closed bus, a missing key, a database error) returns
 * {error, Reason}.
 *
 * THREAD SAFETY
 * g.lock guards g.cur and g.users; a call pins the current bus (users++) for
 * its duration, and stop waits for the pins to go before it closes. Lock
 * order: b->cmd_lock, then the consumer's lock.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "beam_nif.h"
#include "json.h"

#define MBB_STOP_DRAIN_MS 2000

static struct {
	ErlNifMutex *lock;
	ErlNifCond *cv;
	struct mbb_bus *cur;
	unsigned users;
	int starting;
	ErlNifResourceType *bus_rt;
} g;

static atomic_long resources_live;

long
mbb_resources_live(void)
{
	return atomic_load(&resources_live);
}

void
mbb_resource_count(int delta)
{
	atomic_fetch_add(&resources_live, delta);
}

/* The current bus, pinned; NULL when none is started. */
struct mbb_bus *
mbb_bus_get(void)
{
	struct mbb_bus *b;

	enif_mutex_lock(g.lock);
	if ((b = g.cur) != NULL)
		g.users++;
	enif_mutex_unlock(g.lock);
	return b;
}

void
mbb_bus_put(struct mbb_bus *b)
{
	(void)b;
	enif_mutex_lock(g.lock);
	if (--g.users == 0)
		enif_cond_broadcast(g.cv);
	enif_mutex_unlock(g.lock);
}

/* Pin b only if it is still the current bus (monitor callbacks). */
static int
bus_pin(struct mbb_bus *b)
{
	int ok;

	enif_mutex_lock(g.lock);
	if ((ok = g.cur == b))
		g.users++;
	enif_mutex_unlock(g.lock);
	return ok;
}

/* A consumer command on cmd/<what>. */
int
mbb_cmd_send(struct mbb_bus *b, Mobbus__AppCommand__Do what, const char *topic,
             const char *id, const char *push_id, const char *token,
             const char *result)
{
	Mobbus__AppCommand c = MOBBUS__APP_COMMAND__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;

	c.do_ = what;
	if (id)
		c.id = (char *)id;
	if (push_id)
		c.push_id = (char *)push_id;
	if (token)
		c.token = (char *)token;
	if (result)
		c.result = (char *)result;
	env.body_case = MOBBUS__ENVELOPE__BODY_APP;
	env.app = &c;
	return mb_publish(b->pub, topic, &env);
}

/* The consumer came up (first subscriber) or went down (last one gone).
 * Under b->cmd_lock. */
static void
consumer_up(struct mbb_bus *b)
{
	if (!b->subscribed_once) {
		b->subscribed_once = 1;
		(void)mbb_cmd_send(b, MOBBUS__APP_COMMAND__DO__SUBSCRIBE,
		                   "cmd/subscribe", NULL, NULL, NULL, NULL);
	} else {
		(void)mbb_cmd_send(b, MOBBUS__APP_COMMAND__DO__RESTART,
		                   "cmd/restart", NULL, NULL, NULL, NULL);
	}
}

static void
consumer_down(struct mbb_bus *b)
{
	(void)mbb_cmd_send(b, MOBBUS__APP_COMMAND__DO__UNSUBSCRIBE,
	                   "cmd/unsubscribe", NULL, NULL, NULL, NULL);
}

/* Close everything b opened; safe on a half-built bus and twice. */
static void
bus_close(struct mbb_bus *b)
{
	if (b->closed)
		return;
	b->closed = 1;
	if (b->bus != NULL)
		(void)mb_bus_drain(b->bus, MBB_STOP_DRAIN_MS);
	mb_store_close(b->store); /* commits what is queued */
	b->store = NULL;
	mb_bus_close(b->bus); /* stops the actors: no more messages */
	b->bus = NULL;
	b->pub = NULL;
	if (b->consumer != NULL) {
		mbb_consumer_stop(b->consumer); /* sends what it still holds */
		mbb_consumer_clear(b->consumer, &b->mons, &b->nmons);
	}
	mbb_consumer_free(b->consumer);
	b->consumer = NULL;
}

static void
bus_dtor(ErlNifEnv *env, void *obj)
{
	struct mbb_bus *b = obj;

	(void)env;
	bus_close(b);
	if (b->cmd_lock != NULL)
		enif_mutex_destroy(b->cmd_lock);
	free(b->mons);
	mbb_resource_count(-1);
}

/* A subscriber died: drop it; the last one gone takes the consumer down. */
static void
bus_down(ErlNifEnv *env, void *obj, ErlNifPid *pid, ErlNifMonitor *mon)
{
	struct mbb_bus *b = obj;
	int empty = 0;

	(void)env;
	(void)pid;
	if (!bus_pin(b))
		return;
	enif_mutex_lock(b->cmd_lock);
	if (mbb_consumer_remove(b->consumer, NULL, mon, NULL, NULL, &empty) &&
	    empty)
		consumer_down(b);
	enif_mutex_unlock(b->cmd_lock);
	mbb_bus_put(b);
}

/* Options */

static int
opt(ErlNifEnv *env, ERL_NIF_TERM map, ERL_NIF_TERM key, ERL_NIF_TERM *v)
{
	return enif_get_map_value(env, map, key, v);
}

static int
get_bool(ERL_NIF_TERM t, int *out)
{
	if (enif_is_identical(t, mbb_atom.atom_true))
		*out = 1;
	else if (enif_is_identical(t, mbb_atom.atom_false))
		*out = 0;
	else
		return 0;
	return 1;
}

struct start_opts {
	char *db;
	int manual_ack;
	Mobbus__Os os;
	int android_sdk;
	unsigned commit_delay_ms;
	int delivery_info;
	char modes[8][32];
	int nmodes;
};

static int
start_opts_parse(ErlNifEnv *env, ERL_NIF_TERM m, struct start_opts *o,
                 struct mbb_strs *strs)
{
	ERL_NIF_TERM v, head, list;
	size_t n;
	int i;
	unsigned u;

	if (!enif_get_map_size(env, m, &n))
		return 0;
	o->os = MOBBUS__OS__OS_IOS;
	if (opt(env, m, mbb_atom.db, &v) && mbb_get_str(env, v, strs, &o->db))
		return 0;
	if (opt(env, m, mbb_atom.platform, &v)) {
		if (enif_is_identical(v, mbb_atom.android))
			o->os = MOBBUS__OS__OS_ANDROID;
		else if (!enif_is_identical(v, mbb_atom.ios))
			return 0;
	}
	if (opt(env, m, mbb_atom.ack, &v)) {
		if (enif_is_identical(v, mbb_atom.manual))
			o->manual_ack = 1;
		else if (!enif_is_identical(v, mbb_atom.atom_auto))
			return 0;
	}
	if (opt(env, m, mbb_atom.android_sdk, &v) &&
	    (!enif_get_int(env, v, &i) || i < 0))
		return 0;
	else if (opt(env, m, mbb_atom.android_sdk, &v))
		o->android_sdk = i;
	if (opt(env, m, mbb_atom.commit_delay_ms, &v)) {
		if (!enif_get_uint(env, v, &u))
			return 0;
		o->commit_delay_ms = u;
	}
	if (opt(env, m, mbb_atom.delivery_info, &v) &&
	    !get_bool(v, &o->delivery_info))
		return 0;
	if (opt(env, m, mbb_atom.background_modes, &v)) {
		list = v;
		while (enif_get_list_cell(env, list, &head, &list)) {
			char *s;
			char buf[32];
			if (o->nmodes == 8)
				return 0;
			if (enif_get_atom(env, head, buf, sizeof(buf),
			                  ERL_NIF_LATIN1) > 0) {
				s = buf;
			} else if (mbb_get_str(env, head, strs, &s) != 0 ||
			           strlen(s) >= sizeof(o->modes[0])) {
				return 0;
			}
			snprintf(o->modes[o->nmodes++], sizeof(o->modes[0]),
			         "%s", s);
		}
		if (!enif_is_empty_list(env, list))
			return 0;
	}
	return 1;
}

static int
bus_open(struct mbb_bus *b, const struct start_opts *o)
{
	struct mb_store_opts sopts = {.size = sizeof(sopts),
	                              .path = o->db,
	                              .commit_delay_ms = o->commit_delay_ms};
	struct mb_deliver_opts dopts = {.size = sizeof(dopts),
	                                .manual_ack = o->manual_ack};
	struct mb_policy_opts popts = {.size = sizeof(popts),
	                               .os = o->os,
	                               .android_sdk = o->android_sdk,
	                               .background_modes = b->mode_ptrs};
	int rv;

	for (int i = 0; i < o->nmodes; i++) {
		memcpy(b->modes[i], o->modes[i], sizeof(b->modes[i]));
		b->mode_ptrs[i] = b->modes[i];
	}
	b->mode_ptrs[o->nmodes] = NULL;
	b->os = o->os;
	if ((rv = mb_bus_open(&b->bus, NULL)) != MB_OK ||
	    (rv = mb_pub_alloc(b->bus, &b->pub)) != MB_OK ||
	    (rv = mbb_consumer_alloc(
	         &b->consumer, o->delivery_info ? MBB_F_DELIVERY_INFO : 0)) !=
	        MB_OK)
		return rv;
	/* Erlang's own publishes run on schedulers: the actors take them on
	 * their own threads, not on a scheduler between two reductions. */
	mb_pub_inline(b->pub, false);
	if (o->db != NULL &&
	    (rv = mb_store_open(b->bus, &sopts, &b->store)) != MB_OK)
		return rv;
	/* The consumer hangs on the deliver actor, which calls it with every
	 * message and effect in order, on its own thread. */
	dopts.store = b->store;
	dopts.consumer = &mbb_consumer_sink_ops;
	dopts.consumer_arg = b->consumer;
	dopts.consumer_inline = 1; /* it hands off when it must (beam_consumer.c) */
	/* Policy before deliver: an actor started later runs first when a
	 * bridge call runs them inline, and the consumer should not wait. */
	if ((rv = mb_policy_start(b->bus, &popts, &b->policy)) != MB_OK ||
	    (rv = mb_deliver_start(b->bus, &dopts, &b->deliver)) != MB_OK ||
	    (rv = mb_conn_start(b->bus, NULL, &b->conn)) != MB_OK)
		return rv;
	return MB_OK;
}

/* start(Opts) -> ok | {error, Reason}. Dirty I/O: opens the database. */
static ERL_NIF_TERM
start_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	struct start_opts o = {0};
	struct mbb_strs strs = {0};
	struct mbb_bus *b;
	int rv;

	(void)argc;
	if (!start_opts_parse(env, argv[0], &o, &strs)) {
		mbb_strs_free(&strs);
		return enif_make_badarg(env);
	}
	enif_mutex_lock(g.lock);
	if (g.cur != NULL || g.starting) {
		enif_mutex_unlock(g.lock);
		mbb_strs_free(&strs);
		return mbb_error_atom(env, mbb_atom.already_started);
	}
	g.starting = 1;
	enif_mutex_unlock(g.lock);

	b = enif_alloc_resource(g.bus_rt, sizeof(*b));
	if (b == NULL) {
		rv = MB_ENOMEM;
	} else {
		memset(b, 0, sizeof(*b));
		mbb_resource_count(1);
		b->cmd_lock = enif_mutex_create("mobbus_cmd");
		rv = b->cmd_lock ? bus_open(b, &o) : MB_ENOMEM;
	}
	mbb_strs_free(&strs);
	enif_mutex_lock(g.lock);
	g.starting = 0;
	if (rv == MB_OK)
		g.cur = b; /* keeps the allocation's reference */
	enif_mutex_unlock(g.lock);
	if (rv != MB_OK) {
		if (b != NULL)
			enif_release_resource(b); /* the destructor closes */
		return mbb_error(env, rv);
	}
	return mbb_atom.ok;
}

/* stop() -> ok | {error, not_started}. Dirty I/O: commits and joins. */
static ERL_NIF_TERM
stop_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	struct mbb_bus *b;

	(void)argc;
	(void)argv;
	enif_mutex_lock(g.lock);
	if ((b = g.cur) == NULL) {
		enif_mutex_unlock(g.lock);
		return mbb_error_atom(env, mbb_atom.not_started);
	}
	g.cur = NULL;
	while (g.users > 0)
		enif_cond_wait(g.cv, g.lock);
	enif_mutex_unlock(g.lock);
	bus_close(b);
	/* The monitors would go with the resource, but only after a round
	 * trip to each process; without them it goes now. */
	enif_mutex_lock(b->cmd_lock);
	if (b->consumer == NULL && b->mons != NULL) {
		for (size_t i = 0; i < b->nmons; i++)
			(void)enif_demonitor_process(env, b, &b->mons[i]);
	}
	free(b->mons);
	b->mons = NULL;
	enif_mutex_unlock(b->cmd_lock);
	enif_release_resource(b);
	return mbb_atom.ok;
}

static int
kinds_parse(ErlNifEnv *env, ERL_NIF_TERM t, unsigned *kinds)
{
	static const struct {
		ERL_NIF_TERM *atom;
		unsigned kind;
	} names[] = {
	    {&mbb_atom.all, MBB_K_ALL},
	    {&mbb_atom.notification, MBB_K_NOTIFICATION},
	    {&mbb_atom.push_fired, MBB_K_PUSH_FIRED},
	    {&mbb_atom.push_token, MBB_K_PUSH_TOKEN},
	    {&mbb_atom.mob_device, MBB_K_DEVICE},
	    {&mbb_atom.wake_fired, MBB_K_WAKE},
	    {&mbb_atom.conn, MBB_K_CONN},
	    {&mbb_atom.keep_alive, MBB_K_KEEP_ALIVE},
	    {&mbb_atom.mobbus_error, MBB_K_ERROR},
	    {&mbb_atom.mobbus_effect, MBB_K_EFFECT},
	};
	ERL_NIF_TERM head, list = t;
	int single = enif_is_atom(env, t);

	*kinds = 0;
	while (single || enif_get_list_cell(env, list, &head, &list)) {
		unsigned k = 0;
		if (single)
			head = t;
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (enif_is_identical(head, *names[i].atom))
				k = names[i].kind;
		if (k == 0)
			return 0;
		*kinds |= k;
		if (single)
			return 1;
	}
	return enif_is_empty_list(env, list) && *kinds != 0;
}

/* subscribe(Pid, Kinds) -> ok | {error, Reason}. */
static ERL_NIF_TERM
subscribe_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	struct mbb_bus *b;
	ErlNifPid pid;
	ErlNifMonitor mon;
	unsigned kinds;
	int added, first, rv;

	(void)argc;
	if (!enif_get_local_pid(env, argv[0], &pid) ||
	    !kinds_parse(env, argv[1], &kinds))
		return enif_make_badarg(env);
	if ((b = mbb_bus_get()) == NULL)
		return mbb_error_atom(env, mbb_atom.not_started);
	enif_mutex_lock(b->cmd_lock);
	/* A subscriber whose monitor has not fired yet is gone all the same. */
	(void)mbb_consumer_prune(b->consumer, env);
	if (enif_monitor_process(env, b, &pid, &mon) != 0) {
		enif_mutex_unlock(b->cmd_lock);
		mbb_bus_put(b);
		return mbb_error_atom(env, mbb_atom.noproc);
	}
	rv = mbb_consumer_add(b->consumer, &pid, kinds, &mon, &added, &first);
	if (rv != MB_OK || !added)
		(void)enif_demonitor_process(env, b, &mon);
	if (rv == MB_OK && first)
		consumer_up(b);
	enif_mutex_unlock(b->cmd_lock);
	mbb_bus_put(b);
	return rv == MB_OK ? mbb_atom.ok : mbb_error(env, rv);
}

/* unsubscribe(Pid) -> ok | {error, Reason}. */
static ERL_NIF_TERM
unsubscribe_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	struct mbb_bus *b;
	ErlNifPid pid;
	ErlNifMonitor mon;
	int has_mon = 0, empty = 0;

	(void)argc;
	if (!enif_get_local_pid(env, argv[0], &pid))
		return enif_make_badarg(env);
	if ((b = mbb_bus_get()) == NULL)
		return mbb_error_atom(env, mbb_atom.not_started);
	enif_mutex_lock(b->cmd_lock);
	if (mbb_consumer_remove(b->consumer, &pid, NULL, &mon, &has_mon,
	                        &empty)) {
		if (has_mon)
			(void)enif_demonitor_process(env, b, &mon);
		if (empty)
			consumer_down(b);
	}
	enif_mutex_unlock(b->cmd_lock);
	mbb_bus_put(b);
	return mbb_atom.ok;
}

static int
load(ErlNifEnv *env, void **priv, ERL_NIF_TERM info)
{
	ErlNifResourceTypeInit init = {
	    .dtor = bus_dtor,
	    .down = bus_down,
	};

	(void)priv;
	(void)info;
	mbb_atoms_init(env);
	g.lock = enif_mutex_create("mobbus_global");
	g.cv = enif_cond_create("mobbus_global");
	g.bus_rt = enif_open_resource_type_x(env, "mobbus_bus", &init,
	                                     ERL_NIF_RT_CREATE, NULL);
	if (g.lock == NULL || g.cv == NULL || g.bus_rt == NULL)
		return 1;
	return mbb_replay_load(env);
}

static void
unload(ErlNifEnv *env, void *priv)
{
	struct mbb_bus *b;

	(void)env;
	(void)priv;
	enif_mutex_lock(g.lock);
	b = g.cur;
	g.cur = NULL;
	while (g.users > 0)
		enif_cond_wait(g.cv, g.lock);
	enif_mutex_unlock(g.lock);
	if (b != NULL) {
		bus_close(b);
		enif_release_resource(b);
	}
}

static ErlNifFunc funcs[] = {
    {"start", 1, start_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"stop", 0, stop_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"subscribe", 2, subscribe_nif, 0},
    {"unsubscribe", 1, unsubscribe_nif, 0},
    {"ack", 1, mbb_ack_nif, 0},
    {"complete", 2, mbb_complete_nif, 0},
    {"keep_alive", 0, mbb_keep_alive_nif, 0},
    {"keep_alive_stop", 0, mbb_keep_alive_stop_nif, 0},
    {"connect", 2, mbb_connect_nif, 0},
    {"publish", 2, mbb_publish_nif, 0},
    {"state_get", 1, mbb_state_get_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"state_put", 2, mbb_state_put_nif, 0},
    {"state_delete", 1, mbb_state_delete_nif, 0},
    {"sync", 2, mbb_sync_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"stats", 0, mbb_stats_nif, 0},
    {"json_encode", 1, mbb_json_encode_nif, 0},
    {"json_decode", 1, mbb_json_decode_nif, 0},
    {"replay_child", 2, mbb_replay_child_nif, 0},
    {"replay_wait", 1, mbb_replay_wait_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"bench_run", 4, mbb_bench_run_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"bench_handled", 0, mbb_bench_handled_nif, 0},
};

ERL_NIF_INIT(mobbus_nif, funcs, load, NULL, NULL, unload)
