/* SPDX-License-Identifier: MIT */
/* beam_nif.h - what the NIF's files share: the bus handle and argument helpers. */
#ifndef MB_BEAM_NIF_H
#define MB_BEAM_NIF_H

#include <erl_nif.h>

#include "beam_consumer.h"
#include "beam_terms.h"
#include "mobbus.h"

/*
 * The bus a mobbus:start/1 opened: a resource, so that it has a destructor
 * and can hold the monitors of its subscribers. The NIF keeps one reference
 * while it is the current bus; mobbus:stop/0 closes it and drops that.
 */
struct mbb_bus {
	mb_bus *bus;
	mb_pub *pub;           /* the consumer's commands (cmd/) and publish/2 */
	mb_store *store;       /* NULL without a db option */
	mb_actor *deliver, *policy, *conn;
	struct mbb_consumer *consumer;
	Mobbus__Os os;
	ErlNifMutex *cmd_lock; /* subscriber changes and the commands they send */
	int subscribed_once;   /* cmd/subscribe went out: later ups restart */
	ErlNifMonitor *mons;   /* at close: the subscribers' monitors */
	size_t nmons;
	int closed;
	char modes[8][32];     /* background_modes, for the policy actor */
	const char *mode_ptrs[9];
};

/* The current bus, pinned for the caller's use (NULL when none is
 * started); mbb_bus_put unpins it. mobbus_nif.c. */
struct mbb_bus *mbb_bus_get(void);
void mbb_bus_put(struct mbb_bus *b);

/* mbb_cmd_send - a consumer command (AppCommand) on topic. */
int mbb_cmd_send(struct mbb_bus *b, Mobbus__AppCommand__Do what,
    const char *topic, const char *id, const char *push_id, const char *token,
    const char *result);

/* The calls of beam_calls.c, as the NIF table names them. */
#define MBB_CALLS_MAP(X)                                                       \
	X(ack) X(complete) X(keep_alive) X(keep_alive_stop) X(connect)        \
	X(publish)                                                             \
	X(state_get) X(state_put) X(state_delete) X(sync) X(stats)             \
	X(json_encode) X(json_decode)
#define MBB_CALL_DECL_(name)                                                   \
	ERL_NIF_TERM mbb_##name##_nif(ErlNifEnv *env, int argc,                \
	    const ERL_NIF_TERM argv[]);
MBB_CALLS_MAP(MBB_CALL_DECL_)
#undef MBB_CALL_DECL_

/* A string bag: NUL-terminated copies of binaries, freed together. */
struct mbb_strs {
	char *p[24];
	int n;
};
void mbb_strs_free(struct mbb_strs *s);

/*
 * mbb_get_str - a binary or iolist as a NUL-terminated string owned by s.
 * Returns 0 on success, -1 when t is not one or holds a NUL (badarg).
 */
int mbb_get_str(ErlNifEnv *env, ERL_NIF_TERM t, struct mbb_strs *s,
    char **out);

/* {error, Name} for an mb_err code. */
ERL_NIF_TERM mbb_error(ErlNifEnv *env, int err);
/* {error, Atom}. */
ERL_NIF_TERM mbb_error_atom(ErlNifEnv *env, ERL_NIF_TERM reason);

/* publish/2 (beam_publish.c): Kind, Fields as an envelope on b's bus.
 * Returns MB_OK, MB_EINVAL for a wrong argument (the caller raises badarg),
 * or a runtime error from mb_publish. */
int mbb_publish(ErlNifEnv *env, struct mbb_bus *b, ERL_NIF_TERM kind,
    ERL_NIF_TERM fields);

/* The replay child (beam_replay.c): replay_child/2, replay_wait/1. */
int mbb_replay_load(ErlNifEnv *env);
ERL_NIF_TERM mbb_replay_child_nif(ErlNifEnv *env, int argc,
    const ERL_NIF_TERM argv[]);
ERL_NIF_TERM mbb_replay_wait_nif(ErlNifEnv *env, int argc,
    const ERL_NIF_TERM argv[]);

/* The benchmark's BEAM case (beam_bench.c): bench_run/4, bench_handled/0. */
ERL_NIF_TERM mbb_bench_run_nif(ErlNifEnv *env, int argc,
    const ERL_NIF_TERM argv[]);
ERL_NIF_TERM mbb_bench_handled_nif(ErlNifEnv *env, int argc,
    const ERL_NIF_TERM argv[]);

/* Resources alive now (leak measurement). */
long mbb_resources_live(void);
void mbb_resource_count(int delta);

#endif
