/* SPDX-License-Identifier: MIT */
/*
 * beam_replay.c - one simulated process of `mobbus replay --beam`, inside an
 * erl node. The driver (the mobbus command) starts `erl` where it would fork;
 * mobbus_replay:child/0 calls replay_child/2, which runs the sim's
 * per-process driver (mbi_replay_child_main) on a thread of its own, with a
 * BEAM consumer as the sink and the calling Erlang process as its one
 * subscriber. That process renders each message it receives as a transcript
 * line and prints it. The driver's markers (#K at a kill line, #E at the
 * end) go through the same consumer queue, behind every message before
 * them, so the Erlang process prints them after everything it received.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beam_nif.h"
#include "replay.h"

struct mbb_replay {
	struct mbb_consumer *c;
	ErlNifTid tid;
	int started, joined;
	int argc;
	char **argv;
	int rv;
	char line[4096]; /* the output stream's current line */
	size_t nline;
};

static ErlNifResourceType *replay_rt;

static void
replay_free_args(struct mbb_replay *r)
{
	for (int i = 0; i < r->argc; i++)
		free(r->argv[i]);
	free(r->argv);
	r->argv = NULL;
	r->argc = 0;
}

static void
replay_dtor(ErlNifEnv *env, void *obj)
{
	struct mbb_replay *r = obj;

	(void)env;
	/* A thread still running keeps what it uses: only a process that
	 * dropped its handle before #E gets here with one, and it is about
	 * to be killed by the driver. */
	if (!r->started || r->joined) {
		mbb_consumer_free(r->c);
		replay_free_args(r);
	}
	mbb_resource_count(-1);
}

/* The stream the driver writes its markers to: each line is queued. */
static ssize_t
out_write_cb(void *cookie, const char *buf, size_t size)
{
	struct mbb_replay *r = cookie;

	for (size_t i = 0; i < size; i++) {
		if (buf[i] == '\n') {
			(void)mbb_consumer_line(r->c, r->line, r->nline);
			r->nline = 0;
		} else if (r->nline < sizeof(r->line)) {
			r->line[r->nline++] = buf[i];
		}
	}
	return (ssize_t)size;
}

static void *
replay_main(void *arg)
{
	struct mbb_replay *r = arg;
	cookie_io_functions_t fns = {.write = out_write_cb};
	FILE *out = fopencookie(r, "w", fns);

	if (out == NULL) {
		r->rv = MB_ENOMEM;
		(void)mbb_consumer_line(r->c, "#E 1", 4);
		return NULL;
	}
	r->rv = mbi_replay_child_main(r->argc, r->argv, &mbb_consumer_sink_ops,
	                              r->c, out);
	fclose(out);
	return NULL;
}

/*
 * replay_child(Args, Pid) -> {ok, Handle} | {error, Reason}: Args are the
 * arguments the driver gave the erl command (after -extra); Pid receives
 * every message and effect, with cold_start and redelivered, and
 * {mobbus_replay, Line} for the markers.
 */
ERL_NIF_TERM
mbb_replay_child_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	struct mbb_strs s = {0};
	struct mbb_replay *r;
	ERL_NIF_TERM head, list = argv[0], handle;
	ErlNifPid pid;
	unsigned n;
	int added, first, rv;

	(void)argc;
	if (!enif_get_list_length(env, list, &n) || n > 64 ||
	    !enif_get_local_pid(env, argv[1], &pid))
		return enif_make_badarg(env);
	if ((r = enif_alloc_resource(replay_rt, sizeof(*r))) == NULL)
		return mbb_error(env, MB_ENOMEM);
	memset(r, 0, sizeof(*r));
	mbb_resource_count(1);
	handle = enif_make_resource(env, r);
	enif_release_resource(r); /* the handle term owns it now */
	if ((r->argv = calloc(n + 1, sizeof(*r->argv))) == NULL)
		return mbb_error(env, MB_ENOMEM);
	while (enif_get_list_cell(env, list, &head, &list)) {
		char *a;
		if (mbb_get_str(env, head, &s, &a) != 0) {
			mbb_strs_free(&s);
			return enif_make_badarg(env);
		}
		r->argv[r->argc++] = a;
		s.n = 0; /* r->argv owns it now */
	}
	if ((rv = mbb_consumer_alloc(&r->c, MBB_F_DELIVERY_INFO)) != MB_OK ||
	    (rv = mbb_consumer_add(r->c, &pid,
	                           MBB_K_ALL | MBB_K_EFFECT | MBB_K_OUT, NULL,
	                           &added, &first)) != MB_OK)
		return mbb_error(env, rv);
	if (enif_thread_create("mobbus_replay", &r->tid, replay_main, r,
	                       NULL) != 0)
		return mbb_error(env, MB_ENOMEM);
	r->started = 1;
	return enif_make_tuple2(env, mbb_atom.ok, handle);
}

/* replay_wait(Handle) -> {ok, Result}: after #E, join the thread and send
 * what is still queued. Dirty I/O: it waits. */
ERL_NIF_TERM
mbb_replay_wait_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	struct mbb_replay *r;

	(void)argc;
	if (!enif_get_resource(env, argv[0], replay_rt, (void **)&r))
		return enif_make_badarg(env);
	if (!r->started)
		return mbb_error_atom(env, mbb_atom.closed);
	if (!r->joined) {
		enif_thread_join(r->tid, NULL);
		r->joined = 1;
	}
	return enif_make_tuple2(env, mbb_atom.ok, enif_make_int(env, r->rv));
}

int
mbb_replay_load(ErlNifEnv *env)
{
	ErlNifResourceTypeInit init = {.dtor = replay_dtor};

	replay_rt = enif_open_resource_type_x(env, "mobbus_replay", &init,
	                                      ERL_NIF_RT_CREATE, NULL);
	return replay_rt == NULL;
}
