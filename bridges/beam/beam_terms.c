/* SPDX-License-Identifier: MIT */
/*
 * beam_terms.c - envelopes as the Erlang messages Mob screens receive
 * ({notification, Map} with atom keys, {push_token, Os, Token},
 * {mob_device, Event}, ...), so app code written for Mob runs unchanged.
 * JSON inside them (data, connectivity fields) goes through beam_json.c.
 */
#include <string.h>

#include "beam_terms.h"

struct mbb_atoms mbb_atom;

void
mbb_atoms_init(ErlNifEnv *env)
{
#define MBB_ATOM_INIT_(name) mbb_atom.name = enif_make_atom(env, #name);
#define MBB_ATOM_INIT2_(field, text) mbb_atom.field = enif_make_atom(env, text);
	MBB_ATOM_MAP(MBB_ATOM_INIT_)
	MBB_ATOM_MAP2(MBB_ATOM_INIT2_)
#undef MBB_ATOM_INIT_
#undef MBB_ATOM_INIT2_
}

static ERL_NIF_TERM
str_or_nil(ErlNifEnv *menv, int set, const char *s)
{
	return set ? mbb_binary(menv, s) : mbb_atom.nil;
}

static ERL_NIF_TERM
boolean(int v)
{
	return v ? mbb_atom.atom_true : mbb_atom.atom_false;
}

static ERL_NIF_TERM
lifecycle_atom(Mobbus__Lifecycle__Event ev)
{
	switch (ev) {
	case MOBBUS__LIFECYCLE__EVENT__DID_BECOME_ACTIVE:
		return mbb_atom.did_become_active;
	case MOBBUS__LIFECYCLE__EVENT__WILL_RESIGN_ACTIVE:
		return mbb_atom.will_resign_active;
	case MOBBUS__LIFECYCLE__EVENT__DID_ENTER_BACKGROUND:
		return mbb_atom.did_enter_background;
	case MOBBUS__LIFECYCLE__EVENT__WILL_ENTER_FOREGROUND:
		return mbb_atom.will_enter_foreground;
	case MOBBUS__LIFECYCLE__EVENT__WILL_TERMINATE:
		return mbb_atom.will_terminate;
	default:
		return 0; /* launch and suspend are no device event */
	}
}

unsigned
mbb_kind_of(const mb_envelope *env)
{
	switch (env->body_case) {
	case MOBBUS__ENVELOPE__BODY_NOTIFICATION:
		return env->notification->presentation ==
		               MOBBUS__NOTIFICATION__PRESENTATION__BACKGROUND
		           ? MBB_K_PUSH_FIRED
		           : MBB_K_NOTIFICATION;
	case MOBBUS__ENVELOPE__BODY_PUSH_TOKEN:
		return MBB_K_PUSH_TOKEN;
	case MOBBUS__ENVELOPE__BODY_LIFECYCLE:
		return lifecycle_atom(env->lifecycle->event) ? MBB_K_DEVICE
		                                             : MBB_K_NONE;
	case MOBBUS__ENVELOPE__BODY_CONNECTIVITY:
		return MBB_K_DEVICE;
	case MOBBUS__ENVELOPE__BODY_WAKE:
		return MBB_K_WAKE;
	case MOBBUS__ENVELOPE__BODY_CONN:
		return MBB_K_CONN;
	case MOBBUS__ENVELOPE__BODY_KEEP_ALIVE:
		return MBB_K_KEEP_ALIVE;
	case MOBBUS__ENVELOPE__BODY_ERROR:
		return MBB_K_ERROR;
	case MOBBUS__ENVELOPE__BODY_EFFECT:
		switch (env->effect->kind) {
		case MOBBUS__EFFECT__KIND__PUSH_COMPLETION:
		case MOBBUS__EFFECT__KIND__TASK_COMPLETED:
		case MOBBUS__EFFECT__KIND__FGS_START:
		case MOBBUS__EFFECT__KIND__FGS_STOP:
		case MOBBUS__EFFECT__KIND__AUDIO_SESSION:
			return MBB_K_EFFECT;
		default:
			return MBB_K_NONE;
		}
	default:
		return MBB_K_NONE;
	}
}

static ERL_NIF_TERM
make_map(ErlNifEnv *menv, ERL_NIF_TERM *keys, ERL_NIF_TERM *vals, size_t n)
{
	ERL_NIF_TERM map;

	if (!enif_make_map_from_arrays(menv, keys, vals, n, &map))
		return enif_make_new_map(menv); /* keys are distinct atoms */
	return map;
}

static ERL_NIF_TERM
notification_term(ErlNifEnv *menv, const Mobbus__Notification *n,
                  unsigned flags)
{
	ERL_NIF_TERM k[9], v[9];
	size_t i = 0;

	k[i] = mbb_atom.id;
	v[i++] = mbb_binary(menv, n->id);
	k[i] = mbb_atom.title;
	v[i++] = str_or_nil(menv,
	                    n->title_or_null_case ==
	                        MOBBUS__NOTIFICATION__TITLE_OR_NULL_TITLE,
	                    n->title);
	k[i] = mbb_atom.body;
	v[i++] = str_or_nil(menv,
	                    n->body_or_null_case ==
	                        MOBBUS__NOTIFICATION__BODY_OR_NULL_BODY,
	                    n->body);
	k[i] = mbb_atom.data;
	v[i++] = mbb_json_text_term(menv, n->data_json, 1);
	k[i] = mbb_atom.source;
	v[i++] = n->source == MOBBUS__NOTIFICATION__SOURCE__LOCAL
	             ? mbb_atom.local
	             : mbb_atom.push;
	k[i] = mbb_atom.presentation;
	v[i++] = n->presentation == MOBBUS__NOTIFICATION__PRESENTATION__TAP
	             ? mbb_atom.tap
	             : mbb_atom.foreground;
	k[i] = mbb_atom.action;
	v[i++] = str_or_nil(menv,
	                    n->action_or_null_case ==
	                        MOBBUS__NOTIFICATION__ACTION_OR_NULL_ACTION,
	                    n->action);
	if (flags & MBB_F_DELIVERY_INFO) {
		k[i] = mbb_atom.cold_start;
		v[i++] = boolean(n->cold_start);
		k[i] = mbb_atom.redelivered;
		v[i++] = boolean(n->redelivered);
	}
	return enif_make_tuple2(menv, mbb_atom.notification,
	                        make_map(menv, k, v, i));
}

static ERL_NIF_TERM
connectivity_term(ErlNifEnv *menv, const Mobbus__Connectivity *c)
{
	ERL_NIF_TERM fields, k[5], v[5];

	fields =
	    *c->fields_json ? mbb_json_text_term(menv, c->fields_json, 1) : 0;
	if (fields == 0 || !enif_is_map(menv, fields)) {
		k[0] = mbb_atom.online;
		v[0] = boolean(c->online);
		k[1] = mbb_atom.transport;
		v[1] = mbb_binary(menv, c->transport);
		k[2] = mbb_atom.expensive;
		v[2] = boolean(c->expensive);
		k[3] = mbb_atom.validated;
		v[3] = boolean(c->validated);
		k[4] = mbb_atom.constrained;
		v[4] = boolean(c->constrained);
		fields = make_map(menv, k, v, 5);
	}
	return enif_make_tuple3(menv, mbb_atom.mob_device,
	                        mbb_atom.connectivity_changed, fields);
}

static ERL_NIF_TERM
error_term(ErlNifEnv *menv, const Mobbus__BusError *e)
{
	ERL_NIF_TERM k[5], v[5];
	size_t i = 0;

	k[i] = mbb_atom.code;
	v[i++] = mbb_budget_atom(menv, e->code, strlen(e->code));
	if (e->line != 0) {
		k[i] = mbb_atom.line;
		v[i++] = enif_make_uint(menv, e->line);
	}
	if (e->limit != 0) {
		k[i] = mbb_atom.bytes;
		v[i++] = enif_make_uint64(menv, e->bytes);
		k[i] = mbb_atom.limit;
		v[i++] = enif_make_uint64(menv, e->limit);
	}
	if (*e->message) {
		k[i] = mbb_atom.message;
		v[i++] = mbb_binary(menv, e->message);
	}
	return enif_make_tuple2(menv, mbb_atom.mobbus_error,
	                        make_map(menv, k, v, i));
}

static ERL_NIF_TERM
effect_term(ErlNifEnv *menv, const Mobbus__Effect *e)
{
	ERL_NIF_TERM kind, k[2], v[2];
	size_t i = 0;

	switch (e->kind) {
	case MOBBUS__EFFECT__KIND__PUSH_COMPLETION:
		kind = mbb_atom.push_completion;
		k[i] = mbb_atom.push_id;
		v[i++] = mbb_binary(menv, e->push_id);
		k[i] = mbb_atom.result;
		v[i++] = mbb_budget_atom(menv, e->result, strlen(e->result));
		break;
	case MOBBUS__EFFECT__KIND__TASK_COMPLETED:
		kind = mbb_atom.task_completed;
		k[i] = mbb_atom.identifier;
		v[i++] = mbb_binary(menv, e->identifier);
		k[i] = mbb_atom.success;
		v[i++] = boolean(e->success);
		break;
	case MOBBUS__EFFECT__KIND__FGS_START:
		kind = mbb_atom.fgs_start;
		k[i] = mbb_atom.notification;
		v[i++] = mbb_json_text_term(menv, e->notification_json, 0);
		break;
	case MOBBUS__EFFECT__KIND__FGS_STOP:
		kind = mbb_atom.fgs_stop;
		break;
	default:
		kind = mbb_atom.audio_session;
		k[i] = mbb_atom.active;
		v[i++] = boolean(e->active);
		break;
	}
	return enif_make_tuple3(menv, mbb_atom.mobbus_effect, kind,
	                        make_map(menv, k, v, i));
}

int
mbb_message(ErlNifEnv *menv, const mb_envelope *env, unsigned flags,
            ERL_NIF_TERM *msg)
{
	const Mobbus__Notification *n;

	switch (mbb_kind_of(env)) {
	case MBB_K_NOTIFICATION:
		*msg = notification_term(menv, env->notification, flags);
		return 0;
	case MBB_K_PUSH_FIRED:
		n = env->notification;
		*msg = enif_make_tuple4(
		    menv, mbb_atom.push_fired, mbb_binary(menv, n->id),
		    *n->push_id ? mbb_binary(menv, n->push_id) : mbb_atom.nil,
		    mbb_binary(menv,
		               *n->payload_json ? n->payload_json : "{}"));
		return 0;
	case MBB_K_PUSH_TOKEN:
		*msg = enif_make_tuple3(
		    menv, mbb_atom.push_token,
		    env->push_token->os == MOBBUS__OS__OS_ANDROID
		        ? mbb_atom.android
		        : mbb_atom.ios,
		    mbb_binary(menv, env->push_token->token));
		return 0;
	case MBB_K_DEVICE:
		if (env->body_case == MOBBUS__ENVELOPE__BODY_CONNECTIVITY)
			*msg = connectivity_term(menv, env->connectivity);
		else
			*msg = enif_make_tuple2(
			    menv, mbb_atom.mob_device,
			    lifecycle_atom(env->lifecycle->event));
		return 0;
	case MBB_K_WAKE:
		*msg = enif_make_tuple2(menv, mbb_atom.wake_fired,
		                        mbb_binary(menv, env->wake->id));
		return 0;
	case MBB_K_CONN:
		*msg = enif_make_tuple3(
		    menv, mbb_atom.conn, mbb_binary(menv, env->conn->name),
		    env->conn->up ? mbb_atom.up : mbb_atom.down);
		return 0;
	case MBB_K_KEEP_ALIVE:
		*msg = enif_make_tuple2(
		    menv, mbb_atom.keep_alive,
		    env->keep_alive->ok
		        ? mbb_atom.ok
		        : enif_make_tuple2(
		              menv, mbb_atom.refused,
		              mbb_budget_atom(
		                  menv, env->keep_alive->reason,
		                  strlen(env->keep_alive->reason))));
		return 0;
	case MBB_K_ERROR:
		*msg = error_term(menv, env->error);
		return 0;
	case MBB_K_EFFECT:
		*msg = effect_term(menv, env->effect);
		return 0;
	default:
		return -1;
	}
}
