/* SPDX-License-Identifier: MIT */
/*
 * beam_terms.h - envelopes as the Erlang messages Mob screens receive, and
 * JSON as Erlang terms (both ways). Pure functions: no locks, no threads.
 */
#ifndef MB_BEAM_TERMS_H
#define MB_BEAM_TERMS_H

#include <erl_nif.h>
#include <jansson.h>

#include "beam_atoms.h"
#include "mobbus.h"

/* What a subscriber can ask for: one bit per kind of message. */
enum mbb_kind {
	MBB_K_NONE = 0,
	MBB_K_NOTIFICATION = 1u << 0, /* {notification, Map} */
	MBB_K_PUSH_FIRED = 1u << 1,   /* {push_fired, Id, PushId, PayloadJson} */
	MBB_K_PUSH_TOKEN = 1u << 2,   /* {push_token, Os, Token} */
	MBB_K_DEVICE = 1u << 3,       /* {mob_device, Event} / {mob_device, connectivity_changed, Map} */
	MBB_K_WAKE = 1u << 4,         /* {wake_fired, Id} */
	MBB_K_CONN = 1u << 5,         /* {conn, Name, up | down} */
	MBB_K_KEEP_ALIVE = 1u << 6,   /* {keep_alive, ok | {refused, Reason}} */
	MBB_K_ERROR = 1u << 7,        /* {mobbus_error, Map} */
	MBB_K_EFFECT = 1u << 8,       /* {mobbus_effect, Kind, Map}: not a Mob message */
	MBB_K_OUT = 1u << 9,          /* {mobbus_replay, Line}: replay markers */
};
#define MBB_K_ALL                                                              \
	(MBB_K_NOTIFICATION | MBB_K_PUSH_FIRED | MBB_K_PUSH_TOKEN |            \
	    MBB_K_DEVICE | MBB_K_WAKE | MBB_K_CONN | MBB_K_KEEP_ALIVE |        \
	    MBB_K_ERROR)

/* Flags for mbb_message. */
#define MBB_F_DELIVERY_INFO 1u /* notification maps add cold_start, redelivered */

/* Top-level JSON keys made into atoms over the VM's life, at most. Past it,
 * a key that is not already an atom stays a binary (atom table safety). */
#define MBB_ATOM_BUDGET 10000

/* mbb_atoms_init - fill mbb_atom; at load, before any other call. */
void mbb_atoms_init(ErlNifEnv *env);

/* mbb_kind_of - the kind of message env becomes, MBB_K_NONE for none. */
unsigned mbb_kind_of(const mb_envelope *env);

/*
 * mbb_message - the message term for env in menv. Returns 0, or -1 when env
 * is nothing the consumer receives. Terms are built in menv only.
 */
int mbb_message(ErlNifEnv *menv, const mb_envelope *env, unsigned flags,
    ERL_NIF_TERM *msg);

/*
 * mbb_json_term - a JSON value as a term: objects are maps (top-level keys
 * atoms when top_atoms is set and the key is short ASCII, within the atom
 * budget; binaries below the top and otherwise), arrays lists, strings
 * binaries, integers and reals numbers, true/false atoms, null nil.
 */
ERL_NIF_TERM mbb_json_term(ErlNifEnv *menv, const json_t *v, int top_atoms);

/* mbb_json_text_term - the same from JSON text; an empty or invalid text
 * gives an empty map. */
ERL_NIF_TERM mbb_json_text_term(ErlNifEnv *menv, const char *text,
    int top_atoms);

/*
 * mbb_term_json - a term as JSON: maps objects (atom or binary keys),
 * {[{K, V}...]} objects in list order, lists arrays, binaries strings
 * (UTF-8), integers, floats, true/false, nil/null null, other atoms
 * strings, {json, Text} the JSON value Text holds. Returns a new reference,
 * or NULL for a term that has no JSON form (the caller raises badarg).
 */
json_t *mbb_term_json(ErlNifEnv *env, ERL_NIF_TERM t);

/* mbb_budget_atom - an atom for name when it is short ASCII and already
 * exists or fits the budget, else a binary. */
ERL_NIF_TERM mbb_budget_atom(ErlNifEnv *menv, const char *name, size_t len);

/* mbb_binary - a binary copy of a C string (NULL: empty). */
ERL_NIF_TERM mbb_binary(ErlNifEnv *menv, const char *s);

/* mbb_make_map - enif_make_map_from_arrays that works on any thread, for
 * any size; 0 for duplicate keys. */
int mbb_make_map(ErlNifEnv *menv, ERL_NIF_TERM *keys, ERL_NIF_TERM *vals,
    size_t n, ERL_NIF_TERM *map);

/* mbb_atoms_made - how many atoms the budget has spent. */
unsigned mbb_atoms_made(void);

#endif
