/* SPDX-License-Identifier: MIT */
/*
 * beam_calls.c - the NIF calls other than start, stop and subscribe: the
 * consumer's commands (ack, complete, keep_alive), publish/2, the key-value
 * state, sync, stats and the JSON helpers, plus the argument helpers every
 * NIF file shares. Wrong arguments raise badarg; run-time failures return
 * {error, Reason}.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beam_nif.h"
#include "json.h"

void
mbb_strs_free(struct mbb_strs *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->p[i]);
	s->n = 0;
}

int
mbb_get_str(ErlNifEnv *env, ERL_NIF_TERM t, struct mbb_strs *s, char **out)
{
	ErlNifBinary b;
	char *p;

	if (s->n == (int)(sizeof(s->p) / sizeof(s->p[0])))
		return -1;
	if (!enif_inspect_iolist_as_binary(env, t, &b) ||
	    memchr(b.data, 0, b.size) != NULL)
		return -1;
	if ((p = malloc(b.size + 1)) == NULL)
		return -1;
	memcpy(p, b.data, b.size);
	p[b.size] = '\0';
	s->p[s->n++] = p;
	*out = p;
	return 0;
}

ERL_NIF_TERM
mbb_error_atom(ErlNifEnv *env, ERL_NIF_TERM reason)
{
	return enif_make_tuple2(env, mbb_atom.error, reason);
}

ERL_NIF_TERM
mbb_error(ErlNifEnv *env, int err)
{
	return mbb_error_atom(env, enif_make_atom(env, mb_err_name(err)));
}

/* Run one consumer command; argument strings are already checked. */
static ERL_NIF_TERM
command(ErlNifEnv *env, Mobbus__AppCommand__Do what, const char *topic,
        const char *id, const char *push_id, const char *token,
        const char *result)
{
	struct mbb_bus *b;
	int rv;

	if ((b = mbb_bus_get()) == NULL)
		return mbb_error_atom(env, mbb_atom.not_started);
	rv = mbb_cmd_send(b, what, topic, id, push_id, token, result);
	mbb_bus_put(b);
	return rv == MB_OK ? mbb_atom.ok : mbb_error(env, rv);
}

/* A binary id: non-empty, no NUL. */
static int
get_id(ErlNifEnv *env, ERL_NIF_TERM t, struct mbb_strs *s, char **out)
{
	return enif_is_binary(env, t) && mbb_get_str(env, t, s, out) == 0 &&
	       **out != '\0';
}

/* {Tag, Binary} */
static int
get_tagged(ErlNifEnv *env, ERL_NIF_TERM t, ERL_NIF_TERM tag, struct mbb_strs *s,
           char **out)
{
	const ERL_NIF_TERM *e;
	int arity;

	return enif_get_tuple(env, t, &arity, &e) && arity == 2 &&
	       enif_is_identical(e[0], tag) && get_id(env, e[1], s, out);
}

/* ack(Id | {push_token, Token}) -> ok | {error, Reason}. */
ERL_NIF_TERM
mbb_ack_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	struct mbb_strs s = {0};
	char *id = NULL, *token = NULL;
	ERL_NIF_TERM r;

	(void)argc;
	if (!get_id(env, argv[0], &s, &id) &&
	    !get_tagged(env, argv[0], mbb_atom.push_token, &s, &token)) {
		mbb_strs_free(&s);
		return enif_make_badarg(env);
	}
	r = command(env, MOBBUS__APP_COMMAND__DO__ACK, "cmd/ack", id, NULL,
	            token, NULL);
	mbb_strs_free(&s);
	return r;
}

/* complete(Id | {push_id, PushId}, new_data | no_data | failed). */
ERL_NIF_TERM
mbb_complete_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	struct mbb_strs s = {0};
	char *id = NULL, *push_id = NULL;
	const char *result;
	ERL_NIF_TERM r;

	(void)argc;
	if (enif_is_identical(argv[1], mbb_atom.new_data))
		result = "new_data";
	else if (enif_is_identical(argv[1], mbb_atom.no_data))
		result = "no_data";
	else if (enif_is_identical(argv[1], mbb_atom.failed))
		result = "failed";
	else
		return enif_make_badarg(env);
	if (!get_id(env, argv[0], &s, &id) &&
	    !get_tagged(env, argv[0], mbb_atom.push_id, &s, &push_id)) {
		mbb_strs_free(&s);
		return enif_make_badarg(env);
	}
	r = command(env, MOBBUS__APP_COMMAND__DO__COMPLETE, "cmd/complete", id,
	            push_id, NULL, result);
	mbb_strs_free(&s);
	return r;
}

ERL_NIF_TERM
mbb_keep_alive_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	(void)argc;
	(void)argv;
	return command(env, MOBBUS__APP_COMMAND__DO__KEEP_ALIVE,
	               "cmd/keep_alive", NULL, NULL, NULL, NULL);
}

ERL_NIF_TERM
mbb_keep_alive_stop_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	(void)argc;
	(void)argv;
	return command(env, MOBBUS__APP_COMMAND__DO__KEEP_ALIVE_STOP,
	               "cmd/keep_alive_stop", NULL, NULL, NULL, NULL);
}

/*
 * connect(Name, Url) -> ok | {error, Reason}: a disposable socket the
 * connection actor keeps open while the app may use the network (README
 * "How it fits together"); {conn, Name, up | down} tells each change.
 */
ERL_NIF_TERM
mbb_connect_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	Mobbus__AppCommand c = MOBBUS__APP_COMMAND__INIT;
	mb_envelope e = MOBBUS__ENVELOPE__INIT;
	struct mbb_strs s = {0};
	struct mbb_bus *b;
	char *name = NULL, *url = NULL;
	int rv;

	(void)argc;
	if (!get_id(env, argv[0], &s, &name) || !get_id(env, argv[1], &s, &url) ||
	    strlen(name) >= 64 || strlen(url) >= 512) {
		mbb_strs_free(&s);
		return enif_make_badarg(env);
	}
	if ((b = mbb_bus_get()) == NULL) {
		mbb_strs_free(&s);
		return mbb_error_atom(env, mbb_atom.not_started);
	}
	c.do_ = MOBBUS__APP_COMMAND__DO__CONNECT;
	c.name = name;
	c.url = url;
	e.body_case = MOBBUS__ENVELOPE__BODY_APP;
	e.app = &c;
	rv = mb_publish(b->pub, "cmd/connect", &e);
	mbb_bus_put(b);
	mbb_strs_free(&s);
	return rv == MB_OK ? mbb_atom.ok : mbb_error(env, rv);
}

/* publish(Kind, Fields) -> ok | {error, Reason}. */
ERL_NIF_TERM
mbb_publish_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	struct mbb_bus *b;
	int rv;

	(void)argc;
	if (!enif_is_atom(env, argv[0]) || !enif_is_map(env, argv[1]))
		return enif_make_badarg(env);
	if ((b = mbb_bus_get()) == NULL)
		return mbb_error_atom(env, mbb_atom.not_started);
	rv = mbb_publish(env, b, argv[0], argv[1]);
	mbb_bus_put(b);
	if (rv == MB_EINVAL)
		return enif_make_badarg(env);
	return rv == MB_OK ? mbb_atom.ok : mbb_error(env, rv);
}

/* A state key: a binary the store accepts (non-empty, under 1024 bytes). */
static int
get_key(ErlNifEnv *env, ERL_NIF_TERM t, struct mbb_strs *s, char **out)
{
	return get_id(env, t, s, out) && strlen(*out) < 1024;
}

/*
 * The store of the running bus, pinned in *bp (mbb_bus_put it when not
 * NULL), or NULL with the error term in *err: not_started, no_store.
 */
static mb_store *
store_get(ErlNifEnv *env, struct mbb_bus **bp, ERL_NIF_TERM *err)
{
	if ((*bp = mbb_bus_get()) == NULL) {
		*err = mbb_error_atom(env, mbb_atom.not_started);
		return NULL;
	}
	if ((*bp)->store == NULL) {
		*err = mbb_error_atom(env, mbb_atom.no_store);
		return NULL;
	}
	return (*bp)->store;
}

/* state_get(Key) -> {ok, Value} | {error, not_found | no_store | ...}.
 * Dirty I/O: reads the database. */
ERL_NIF_TERM
mbb_state_get_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	struct mbb_strs s = {0};
	struct mbb_bus *b;
	mb_store *st;
	char *key;
	void *val = NULL;
	size_t len = 0;
	ERL_NIF_TERM r, bin;
	int rv;

	(void)argc;
	if (!get_key(env, argv[0], &s, &key)) {
		mbb_strs_free(&s);
		return enif_make_badarg(env);
	}
	if ((st = store_get(env, &b, &r)) == NULL) {
		/* r says why */
	} else if ((rv = mb_state_get(st, key, &val, &len)) == MB_OK) {
		unsigned char *p = enif_make_new_binary(env, len, &bin);
		if (len > 0)
			memcpy(p, val, len);
		r = enif_make_tuple2(env, mbb_atom.ok, bin);
	} else {
		r = rv == MB_EFIELD ? mbb_error_atom(env, mbb_atom.not_found)
		                    : mbb_error(env, rv);
	}
	free(val);
	if (b != NULL)
		mbb_bus_put(b);
	mbb_strs_free(&s);
	return r;
}

/* state_put(Key, Value) -> ok | {error, Reason}; Value is iodata. */
ERL_NIF_TERM
mbb_state_put_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	struct mbb_strs s = {0};
	struct mbb_bus *b;
	mb_store *st;
	ErlNifBinary val;
	char *key;
	ERL_NIF_TERM r;
	int rv;

	(void)argc;
	if (!get_key(env, argv[0], &s, &key) ||
	    !enif_inspect_iolist_as_binary(env, argv[1], &val)) {
		mbb_strs_free(&s);
		return enif_make_badarg(env);
	}
	if ((st = store_get(env, &b, &r)) != NULL) {
		rv = mb_state_put(st, key, val.data, val.size);
		r = rv == MB_OK ? mbb_atom.ok : mbb_error(env, rv);
	}
	if (b != NULL)
		mbb_bus_put(b);
	mbb_strs_free(&s);
	return r;
}

/* state_delete(Key) -> ok | {error, Reason}. */
ERL_NIF_TERM
mbb_state_delete_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	struct mbb_strs s = {0};
	struct mbb_bus *b;
	mb_store *st;
	char *key;
	ERL_NIF_TERM r;
	int rv;

	(void)argc;
	if (!get_key(env, argv[0], &s, &key)) {
		mbb_strs_free(&s);
		return enif_make_badarg(env);
	}
	if ((st = store_get(env, &b, &r)) != NULL) {
		rv = mb_state_delete(st, key);
		r = rv == MB_OK ? mbb_atom.ok : mbb_error(env, rv);
	}
	if (b != NULL)
		mbb_bus_put(b);
	mbb_strs_free(&s);
	return r;
}

/*
 * sync(Token, TimeoutMs) -> ok | {error, Reason}: wait until the bus has
 * handled everything published so far, then queue {mobbus_sync, Token} for
 * the caller behind every message it caused. Dirty I/O: it waits.
 */
ERL_NIF_TERM
mbb_sync_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	struct mbb_bus *b;
	ErlNifSInt64 token;
	ErlNifPid self;
	int timeout, rv;

	(void)argc;
	if (!enif_get_int64(env, argv[0], &token) ||
	    !enif_get_int(env, argv[1], &timeout) || timeout < 0 ||
	    enif_self(env, &self) == NULL)
		return enif_make_badarg(env);
	if ((b = mbb_bus_get()) == NULL)
		return mbb_error_atom(env, mbb_atom.not_started);
	if ((rv = mb_bus_drain(b->bus, timeout)) == MB_OK)
		rv = mbb_consumer_sync(b->consumer, &self, token);
	mbb_bus_put(b);
	return rv == MB_OK ? mbb_atom.ok : mbb_error(env, rv);
}

/* A number attribute after `tag` in s, or 0. */
static uint64_t
xml_num(const char *s, const char *tag)
{
	const char *p = s ? strstr(s, tag) : NULL;

	return p ? strtoull(p + strlen(tag), NULL, 10) : 0;
}

/* Bytes malloc has handed out and not had back, over every arena (mallinfo2
 * sees the main arena only): malloc_info's totals, in use = current -
 * free chunks + mmapped chunks. */
static uint64_t
heap_in_use(void)
{
	char *xml = NULL, *tail;
	size_t len = 0;
	uint64_t cur, fast, rest, mmapped;
	FILE *f = open_memstream(&xml, &len);

	if (f == NULL)
		return 0;
	(void)malloc_trim(0); /* free tops go back: less allocator noise */
	(void)malloc_info(0, f);
	fclose(f);
	if (xml == NULL)
		return 0;
	tail = xml;
	for (char *p = xml; (p = strstr(p, "</heap>")) != NULL; p++)
		tail = p;
	fast = xml_num(strstr(tail, "<total type=\"fast\""), "size=\"");
	rest = xml_num(strstr(tail, "<total type=\"rest\""), "size=\"");
	mmapped = xml_num(strstr(tail, "<total type=\"mmap\""), "size=\"");
	cur = xml_num(strstr(tail, "<system type=\"current\""), "size=\"");
	free(xml);
	return cur - fast - rest + mmapped;
}

/* stats() -> #{...}: counters for tests and the leak measurement. */
ERL_NIF_TERM
mbb_stats_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	struct mbb_consumer_stats st = {0};
	struct mbb_bus *b;
	ERL_NIF_TERM k[11], v[11], map;

	(void)argc;
	(void)argv;
	if ((b = mbb_bus_get()) != NULL) {
		mbb_consumer_stats(b->consumer, &st);
		mbb_bus_put(b);
	}
	k[0] = mbb_atom.envs;
	v[0] = enif_make_long(env, mbb_envs_live());
	k[1] = mbb_atom.resources;
	v[1] = enif_make_long(env, mbb_resources_live());
	k[2] = mbb_atom.queued;
	v[2] = enif_make_uint64(env, st.queued);
	k[3] = mbb_atom.received;
	v[3] = enif_make_uint64(env, st.received);
	k[4] = mbb_atom.sent;
	v[4] = enif_make_uint64(env, st.sent);
	k[5] = mbb_atom.send_failed;
	v[5] = enif_make_uint64(env, st.send_failed);
	k[6] = mbb_atom.dropped;
	v[6] = enif_make_uint64(env, st.dropped);
	k[7] = mbb_atom.subscribers;
	v[7] = enif_make_uint64(env, st.subscribers);
	k[8] = mbb_atom.heap_bytes;
	v[8] = enif_make_uint64(env, heap_in_use());
	k[9] = mbb_atom.atoms_made;
	v[9] = enif_make_uint(env, mbb_atoms_made());
	k[10] = mbb_atom.direct;
	v[10] = enif_make_uint64(env, st.direct);
	if (!enif_make_map_from_arrays(env, k, v, 11, &map))
		return enif_make_badarg(env);
	return map;
}

/* json_encode(Term) -> Binary; badarg for a term with no JSON form. */
ERL_NIF_TERM
mbb_json_encode_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	json_t *v = mbb_term_json(env, argv[0]);
	char *text;
	ERL_NIF_TERM r;

	(void)argc;
	if (v == NULL)
		return enif_make_badarg(env);
	text = mbi_json_dump(v);
	json_decref(v);
	if (text == NULL)
		return mbb_error(env, MB_ENOMEM);
	r = mbb_binary(env, text);
	free(text);
	return r;
}

/* json_decode(Binary) -> Term | {error, invalid_json}; binary keys. */
ERL_NIF_TERM
mbb_json_decode_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
	ErlNifBinary b;
	json_error_t err;
	json_t *v;
	ERL_NIF_TERM r;

	(void)argc;
	if (!enif_inspect_iolist_as_binary(env, argv[0], &b))
		return enif_make_badarg(env);
	if ((v = json_loadb((const char *)b.data, b.size,
	                    JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err)) ==
	    NULL)
		return mbb_error(env, MB_EJSON);
	r = mbb_json_term(env, v, 0);
	json_decref(v);
	return r;
}
