/* SPDX-License-Identifier: MIT */
/*
 * beam_json.c - JSON as Erlang terms and back, the way Elixir apps expect
 * from a decoder, with one Mob rule on top: the top-level keys of `data`
 * (and of a connectivity map) are atoms. Atoms are never collected, and
 * push payloads come from outside the app, so a key becomes an atom only
 * when it is short ASCII and either already exists or fits a budget of
 * MBB_ATOM_BUDGET new atoms for the life of the VM; past that it stays a
 * binary. Nested maps always have binary keys. Strings are binaries,
 * integers and reals numbers, true/false atoms, null nil.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "beam_terms.h"
#include "json.h"

#define MBB_ATOM_KEY_MAX 64 /* longer keys stay binaries */
#define MBB_DEPTH_MAX 2100  /* past jansson's own 2048: what it parsed, we print */
#define MBB_SMALL_MAP 32    /* ERTS's flatmap limit */

static atomic_uint atoms_made;

unsigned
mbb_atoms_made(void)
{
	return atomic_load(&atoms_made);
}

ERL_NIF_TERM
mbb_binary(ErlNifEnv *menv, const char *s)
{
	ERL_NIF_TERM t;
	size_t n = s ? strlen(s) : 0;
	unsigned char *p = enif_make_new_binary(menv, n, &t);

	if (n > 0)
		memcpy(p, s, n);
	return t;
}

static ERL_NIF_TERM
binary_n(ErlNifEnv *menv, const char *s, size_t n)
{
	ERL_NIF_TERM t;
	unsigned char *p = enif_make_new_binary(menv, n, &t);

	if (n > 0)
		memcpy(p, s, n);
	return t;
}

static int
short_ascii(const char *s, size_t n)
{
	if (n == 0 || n > MBB_ATOM_KEY_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80 || s[i] == '\0')
			return 0;
	return 1;
}

ERL_NIF_TERM
mbb_budget_atom(ErlNifEnv *menv, const char *name, size_t len)
{
	ERL_NIF_TERM a;

	if (!short_ascii(name, len))
		return binary_n(menv, name, len);
	if (enif_make_existing_atom_len(menv, name, len, &a, ERL_NIF_LATIN1))
		return a;
	/* Check and add are not one step: the budget may be passed by the
	 * number of threads at most, which is still a bound. */
	if (atomic_load(&atoms_made) >= MBB_ATOM_BUDGET)
		return binary_n(menv, name, len);
	atomic_fetch_add(&atoms_made, 1);
	return enif_make_atom_len(menv, name, len);
}

static ERL_NIF_TERM json_term_(ErlNifEnv *menv, const json_t *v, int atoms);

int
mbb_make_map(ErlNifEnv *menv, ERL_NIF_TERM *keys, ERL_NIF_TERM *vals, size_t n,
             ERL_NIF_TERM *map)
{
	/* ERTS 13 (OTP 25) builds a map of more than 32 keys from arrays by
	 * sorting on a scheduler's temporary heap, which a thread of our own
	 * does not have: it crashes. Key by key works on any thread. */
	size_t first = n < MBB_SMALL_MAP ? n : MBB_SMALL_MAP;

	if (!enif_make_map_from_arrays(menv, keys, vals, first, map))
		return 0;
	for (size_t i = first; i < n; i++) {
		ERL_NIF_TERM old;
		if (enif_get_map_value(menv, *map, keys[i], &old) ||
		    !enif_make_map_put(menv, *map, keys[i], vals[i], map))
			return 0;
	}
	return 1;
}

static ERL_NIF_TERM
json_object_term(ErlNifEnv *menv, const json_t *v, int atoms)
{
	size_t n = json_object_size(v), i = 0;
	ERL_NIF_TERM small[2 * 16], *keys, *vals, map;
	const char *k;
	json_t *e;

	keys = n <= 16 ? small : malloc(2 * n * sizeof(*keys));
	if (keys == NULL)
		return enif_make_new_map(menv);
	vals = keys + n;
	json_object_foreach((json_t *)v, k, e)
	{
		size_t klen = strlen(k);
		keys[i] = atoms ? mbb_budget_atom(menv, k, klen)
		                : binary_n(menv, k, klen);
		vals[i] = json_term_(menv, e, 0);
		i++;
	}
	if (!mbb_make_map(menv, keys, vals, i, &map))
		map = enif_make_new_map(
		    menv); /* duplicate keys: not from jansson */
	if (keys != small)
		free(keys);
	return map;
}

static ERL_NIF_TERM
json_term_(ErlNifEnv *menv, const json_t *v, int atoms)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return json_object_term(menv, v, atoms);
	case JSON_ARRAY: {
		ERL_NIF_TERM list = enif_make_list(menv, 0);
		for (size_t i = json_array_size(v); i > 0; i--)
			list = enif_make_list_cell(
			    menv, json_term_(menv, json_array_get(v, i - 1), 0),
			    list);
		return list;
	}
	case JSON_STRING:
		return binary_n(menv, json_string_value(v),
		                json_string_length(v));
	case JSON_INTEGER:
		return enif_make_int64(menv, json_integer_value(v));
	case JSON_REAL:
		return enif_make_double(menv, json_real_value(v));
	case JSON_TRUE:
		return mbb_atom.atom_true;
	case JSON_FALSE:
		return mbb_atom.atom_false;
	default:
		return mbb_atom.nil;
	}
}

ERL_NIF_TERM
mbb_json_term(ErlNifEnv *menv, const json_t *v, int top_atoms)
{
	return json_term_(menv, v, top_atoms);
}

ERL_NIF_TERM
mbb_json_text_term(ErlNifEnv *menv, const char *text, int top_atoms)
{
	json_error_t err;
	json_t *v;
	ERL_NIF_TERM t;

	if (text == NULL || *text == '\0')
		return enif_make_new_map(menv);
	if ((v = mbi_json_load(text, strlen(text), &err)) == NULL)
		return mbb_binary(menv, text); /* as the transcript shows it */
	t = json_term_(menv, v, top_atoms);
	json_decref(v);
	return t;
}

/* Atom text (Latin-1) as a JSON string (UTF-8). */
static json_t *
atom_json(ErlNifEnv *env, ERL_NIF_TERM t)
{
	char buf[256], out[512];
	size_t o = 0;
	int n = enif_get_atom(env, t, buf, sizeof(buf), ERL_NIF_LATIN1);

	if (n <= 0)
		return NULL;
	for (int i = 0; i < n - 1; i++) {
		unsigned char c = (unsigned char)buf[i];
		if (c < 0x80) {
			out[o++] = (char)c;
		} else {
			out[o++] = (char)(0xc0 | (c >> 6));
			out[o++] = (char)(0x80 | (c & 0x3f));
		}
	}
	return json_stringn(out, o);
}

/* A map key or proplist key: atom or binary, as a NUL-terminated string. */
static char *
key_text(ErlNifEnv *env, ERL_NIF_TERM k)
{
	ErlNifBinary b;
	json_t *s;
	char *p;

	if (enif_is_atom(env, k)) {
		if ((s = atom_json(env, k)) == NULL)
			return NULL;
		p = strdup(json_string_value(s));
		json_decref(s);
		return p;
	}
	if (!enif_inspect_binary(env, k, &b) || memchr(b.data, 0, b.size))
		return NULL;
	if ((p = malloc(b.size + 1)) == NULL)
		return NULL;
	memcpy(p, b.data, b.size);
	p[b.size] = '\0';
	return p;
}

static json_t *term_json_(ErlNifEnv *env, ERL_NIF_TERM t, int depth);

static int
object_put(ErlNifEnv *env, json_t *o, ERL_NIF_TERM k, ERL_NIF_TERM v, int depth)
{
	char *key = key_text(env, k);
	json_t *jv;
	int rv = -1;

	if (key != NULL && (jv = term_json_(env, v, depth + 1)) != NULL)
		rv = json_object_set_new(o, key, jv); /* checks UTF-8 */
	free(key);
	return rv;
}

static json_t *
map_json(ErlNifEnv *env, ERL_NIF_TERM t, int depth)
{
	ErlNifMapIterator it;
	ERL_NIF_TERM k, v;
	json_t *o = json_object();

	if (o == NULL || !enif_map_iterator_create(
	                     env, t, &it, ERL_NIF_MAP_ITERATOR_FIRST)) {
		json_decref(o);
		return NULL;
	}
	for (; enif_map_iterator_get_pair(env, &it, &k, &v);
	     enif_map_iterator_next(env, &it)) {
		if (object_put(env, o, k, v, depth) != 0) {
			json_decref(o);
			o = NULL;
			break;
		}
	}
	enif_map_iterator_destroy(env, &it);
	return o;
}

/* {[{K, V}, ...]}: an object whose keys keep their order. */
static json_t *
proplist_json(ErlNifEnv *env, ERL_NIF_TERM list, int depth)
{
	ERL_NIF_TERM head;
	const ERL_NIF_TERM *kv;
	json_t *o = json_object();
	int arity;

	while (o != NULL && enif_get_list_cell(env, list, &head, &list)) {
		if (!enif_get_tuple(env, head, &arity, &kv) || arity != 2 ||
		    object_put(env, o, kv[0], kv[1], depth) != 0) {
			json_decref(o);
			return NULL;
		}
	}
	if (o != NULL && !enif_is_empty_list(env, list)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *
term_json_(ErlNifEnv *env, ERL_NIF_TERM t, int depth)
{
	ErlNifBinary b;
	ErlNifSInt64 i;
	double d;
	const ERL_NIF_TERM *tup;
	int arity;

	if (depth > MBB_DEPTH_MAX)
		return NULL;
	if (enif_is_binary(env, t) && enif_inspect_binary(env, t, &b))
		return json_stringn((const char *)b.data, b.size);
	if (enif_is_map(env, t))
		return map_json(env, t, depth);
	if (enif_get_int64(env, t, &i))
		return json_integer(i);
	if (enif_get_double(env, t, &d))
		return json_real(d);
	if (enif_is_atom(env, t)) {
		if (enif_is_identical(t, mbb_atom.atom_true))
			return json_true();
		if (enif_is_identical(t, mbb_atom.atom_false))
			return json_false();
		if (enif_is_identical(t, mbb_atom.nil) ||
		    enif_is_identical(t, mbb_atom.null))
			return json_null();
		return atom_json(env, t);
	}
	if (enif_is_list(env, t)) {
		ERL_NIF_TERM head;
		json_t *a = json_array();
		while (a != NULL && enif_get_list_cell(env, t, &head, &t)) {
			json_t *e = term_json_(env, head, depth + 1);
			if (e == NULL || json_array_append_new(a, e) != 0) {
				json_decref(a);
				return NULL;
			}
		}
		if (a != NULL && !enif_is_empty_list(env, t)) {
			json_decref(a);
			return NULL;
		}
		return a;
	}
	if (enif_get_tuple(env, t, &arity, &tup)) {
		if (arity == 1 && enif_is_list(env, tup[0]))
			return proplist_json(env, tup[0], depth);
		if (arity == 2 && enif_is_identical(tup[0], mbb_atom.json) &&
		    enif_inspect_binary(env, tup[1], &b)) {
			json_error_t err;
			json_t *v =
			    mbi_json_load((const char *)b.data, b.size, &err);
			return v ? v
			         : json_stringn((const char *)b.data, b.size);
		}
	}
	return NULL;
}

json_t *
mbb_term_json(ErlNifEnv *env, ERL_NIF_TERM t)
{
	return term_json_(env, t, 0);
}
