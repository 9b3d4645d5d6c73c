/* SPDX-License-Identifier: MIT */
/*
 * beam_publish.c - mobbus:publish/2: a platform moment from the BEAM side,
 * published exactly as a native bridge would publish it (a local
 * notification an Erlang plugin fired, a test's push). Kind names the
 * moment, Fields its map:
 *
 *   notification  #{id := binary(), title, body, action := binary() | nil,
 *                   data := map() | JSON binary, source := push | local,
 *                   presentation := foreground | tap | background,
 *                   push_id, priority, collapse_id := binary(),
 *                   budget_ms := integer(), payload := map() | JSON binary,
 *                   cold_start := boolean()}
 *   push_token    #{token := binary(), os => ios | android}
 *   device        #{event := did_become_active | will_resign_active |
 *                   did_enter_background | will_enter_foreground |
 *                   will_terminate | launch | suspend}
 *   connectivity  #{online, transport, expensive, ...}: the platform's fields
 *   wake          #{id := binary(), budget_ms => integer()}: a task opens
 *   wake_expire   #{id := binary()}
 *
 * Only id (and token, event) are required. A field of the wrong type, an
 * unknown key's absence aside, is a wrong argument (MB_EINVAL: badarg).
 */
#include <stdlib.h>
#include <string.h>

#include "beam_nif.h"
#include "json.h"

struct ctx {
	ErlNifEnv *env;
	ERL_NIF_TERM map;
	struct mbb_strs strs;
	char *json[2]; /* dumped JSON texts, freed at the end */
};

/* Optional binary field; 0 when absent (and *out untouched), 1 when set,
 * -1 when of the wrong type. nil counts as absent when nil_ok. */
static int
field_str(struct ctx *c, ERL_NIF_TERM key, int nil_ok, char **out)
{
	ERL_NIF_TERM v;

	if (!enif_get_map_value(c->env, c->map, key, &v))
		return 0;
	if (nil_ok && enif_is_identical(v, mbb_atom.nil))
		return 0;
	if (!enif_is_binary(c->env, v) ||
	    mbb_get_str(c->env, v, &c->strs, out) != 0)
		return -1;
	return 1;
}

static int
field_uint(struct ctx *c, ERL_NIF_TERM key, uint32_t *out)
{
	ERL_NIF_TERM v;
	unsigned u;

	if (!enif_get_map_value(c->env, c->map, key, &v))
		return 0;
	if (!enif_get_uint(c->env, v, &u))
		return -1;
	*out = u;
	return 1;
}

static int
field_bool(struct ctx *c, ERL_NIF_TERM key, protobuf_c_boolean *out)
{
	ERL_NIF_TERM v;

	if (!enif_get_map_value(c->env, c->map, key, &v))
		return 0;
	if (enif_is_identical(v, mbb_atom.atom_true))
		*out = 1;
	else if (enif_is_identical(v, mbb_atom.atom_false))
		*out = 0;
	else
		return -1;
	return 1;
}

/* One of the atoms in choices (index into it), or -1 if absent, -2 if wrong. */
static int
field_choice(struct ctx *c, ERL_NIF_TERM key, const ERL_NIF_TERM *choices,
             int n)
{
	ERL_NIF_TERM v;

	if (!enif_get_map_value(c->env, c->map, key, &v))
		return -1;
	for (int i = 0; i < n; i++)
		if (enif_is_identical(v, choices[i]))
			return i;
	return -2;
}

/* A JSON object given as a map or as JSON text; compact, in *out. */
static int
field_json(struct ctx *c, ERL_NIF_TERM key, int slot, char **out)
{
	ERL_NIF_TERM v;
	ErlNifBinary b;
	json_error_t err;
	json_t *j;

	if (!enif_get_map_value(c->env, c->map, key, &v))
		return 0;
	if (enif_is_map(c->env, v))
		j = mbb_term_json(c->env, v);
	else if (enif_inspect_binary(c->env, v, &b))
		j = mbi_json_load((const char *)b.data, b.size, &err);
	else
		return -1;
	if (j == NULL || !json_is_object(j)) {
		json_decref(j);
		return -1;
	}
	c->json[slot] = mbi_json_dump(j);
	json_decref(j);
	if (c->json[slot] == NULL)
		return -1;
	*out = c->json[slot];
	return 1;
}

static int
publish_notification(struct ctx *c, struct mbb_bus *b)
{
	Mobbus__Notification n = MOBBUS__NOTIFICATION__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	const ERL_NIF_TERM sources[] = {mbb_atom.push, mbb_atom.local};
	const ERL_NIF_TERM pres[] = {mbb_atom.foreground, mbb_atom.tap,
	                             mbb_atom.background};
	static const char *const topics[] = {MB_TOPIC_NOTIFY_ARRIVAL,
	                                     MB_TOPIC_NOTIFY_TAP,
	                                     MB_TOPIC_NOTIFY_BACKGROUND};
	int src, p, r;

	if (field_str(c, mbb_atom.id, 0, &n.id) != 1 || *n.id == '\0')
		return MB_EINVAL;
	if ((r = field_str(c, mbb_atom.title, 1, &n.title)) < 0)
		return MB_EINVAL;
	if (r)
		n.title_or_null_case =
		    MOBBUS__NOTIFICATION__TITLE_OR_NULL_TITLE;
	if ((r = field_str(c, mbb_atom.body, 1, &n.body)) < 0)
		return MB_EINVAL;
	if (r)
		n.body_or_null_case = MOBBUS__NOTIFICATION__BODY_OR_NULL_BODY;
	if ((r = field_str(c, mbb_atom.action, 1, &n.action)) < 0)
		return MB_EINVAL;
	if (r)
		n.action_or_null_case =
		    MOBBUS__NOTIFICATION__ACTION_OR_NULL_ACTION;
	if ((src = field_choice(c, mbb_atom.source, sources, 2)) == -2 ||
	    (p = field_choice(c, mbb_atom.presentation, pres, 3)) == -2)
		return MB_EINVAL;
	n.source = src == 1 ? MOBBUS__NOTIFICATION__SOURCE__LOCAL
	                    : MOBBUS__NOTIFICATION__SOURCE__PUSH;
	p = p < 0 ? 0 : p;
	n.presentation = p == 1 ? MOBBUS__NOTIFICATION__PRESENTATION__TAP
	                 : p == 2
	                     ? MOBBUS__NOTIFICATION__PRESENTATION__BACKGROUND
	                     : MOBBUS__NOTIFICATION__PRESENTATION__FOREGROUND;
	if (field_json(c, mbb_atom.data, 0, &n.data_json) < 0 ||
	    field_json(c, mbb_atom.payload, 1, &n.payload_json) < 0 ||
	    field_str(c, mbb_atom.push_id, 0, &n.push_id) < 0 ||
	    field_str(c, mbb_atom.priority, 0, &n.priority) < 0 ||
	    field_str(c, mbb_atom.collapse_id, 0, &n.collapse_id) < 0 ||
	    field_uint(c, mbb_atom.budget_ms, &n.budget_ms) < 0 ||
	    field_bool(c, mbb_atom.cold_start, &n.cold_start) < 0)
		return MB_EINVAL;
	if (*n.data_json == '\0')
		n.data_json = "{}";
	if (*n.payload_json == '\0')
		n.payload_json = n.data_json; /* a data-only push: its data */
	env.body_case = MOBBUS__ENVELOPE__BODY_NOTIFICATION;
	env.notification = &n;
	return mb_publish(b->pub, topics[p], &env);
}

static int
publish_token(struct ctx *c, struct mbb_bus *b)
{
	Mobbus__PushToken t = MOBBUS__PUSH_TOKEN__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	const ERL_NIF_TERM oses[] = {mbb_atom.ios, mbb_atom.android};
	int os;

	if (field_str(c, mbb_atom.token, 0, &t.token) != 1 ||
	    *t.token == '\0' ||
	    (os = field_choice(c, mbb_atom.os, oses, 2)) == -2)
		return MB_EINVAL;
	t.os = os == 1 || (os < 0 && b->os == MOBBUS__OS__OS_ANDROID)
	           ? MOBBUS__OS__OS_ANDROID
	           : MOBBUS__OS__OS_IOS;
	t.fresh = 1;
	env.body_case = MOBBUS__ENVELOPE__BODY_PUSH_TOKEN;
	env.push_token = &t;
	return mb_publish(b->pub,
	                  t.os == MOBBUS__OS__OS_ANDROID ? "token/android"
	                                                 : "token/ios",
	                  &env);
}

static int
publish_device(struct ctx *c, struct mbb_bus *b)
{
	static const Mobbus__Lifecycle__Event evs[] = {
	    MOBBUS__LIFECYCLE__EVENT__DID_BECOME_ACTIVE,
	    MOBBUS__LIFECYCLE__EVENT__WILL_RESIGN_ACTIVE,
	    MOBBUS__LIFECYCLE__EVENT__DID_ENTER_BACKGROUND,
	    MOBBUS__LIFECYCLE__EVENT__WILL_ENTER_FOREGROUND,
	    MOBBUS__LIFECYCLE__EVENT__WILL_TERMINATE,
	    MOBBUS__LIFECYCLE__EVENT__LAUNCH,
	    MOBBUS__LIFECYCLE__EVENT__SUSPEND,
	};
	const ERL_NIF_TERM names[] = {mbb_atom.did_become_active,
	                              mbb_atom.will_resign_active,
	                              mbb_atom.did_enter_background,
	                              mbb_atom.will_enter_foreground,
	                              mbb_atom.will_terminate,
	                              mbb_atom.launch,
	                              mbb_atom.suspend};
	Mobbus__Lifecycle lc = MOBBUS__LIFECYCLE__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	int i = field_choice(c, mbb_atom.event, names, 7);

	if (i < 0)
		return MB_EINVAL;
	lc.event = evs[i];
	lc.os = b->os;
	env.body_case = MOBBUS__ENVELOPE__BODY_LIFECYCLE;
	env.lifecycle = &lc;
	return mb_publish(b->pub, MB_TOPIC_LIFECYCLE, &env);
}

static int
publish_connectivity(struct ctx *c, struct mbb_bus *b)
{
	Mobbus__Connectivity k = MOBBUS__CONNECTIVITY__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	json_t *fields = mbb_term_json(c->env, c->map);
	int rv;

	if (fields == NULL)
		return MB_EINVAL;
	k.online = json_is_true(json_object_get(fields, "online"));
	k.transport = (char *)(mbi_json_str(fields, "transport")
	                           ? mbi_json_str(fields, "transport")
	                           : "");
	k.expensive = json_is_true(json_object_get(fields, "expensive"));
	k.validated = json_is_true(json_object_get(fields, "validated"));
	k.constrained = json_is_true(json_object_get(fields, "constrained"));
	k.fields_json = c->json[0] = mbi_json_dump(fields);
	if (k.fields_json == NULL) {
		json_decref(fields);
		return MB_ENOMEM;
	}
	env.body_case = MOBBUS__ENVELOPE__BODY_CONNECTIVITY;
	env.connectivity = &k;
	rv = mb_publish(b->pub, "conn/net", &env);
	json_decref(fields); /* after the publish: transport points into it */
	return rv;
}

static int
publish_wake(struct ctx *c, struct mbb_bus *b, int open)
{
	Mobbus__WakeWindow w = MOBBUS__WAKE_WINDOW__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;

	if (field_str(c, mbb_atom.id, 0, &w.id) != 1 || *w.id == '\0' ||
	    field_uint(c, mbb_atom.budget_ms, &w.budget_ms) < 0)
		return MB_EINVAL;
	if (open && w.budget_ms == 0)
		w.budget_ms = 30000;
	w.kind = MOBBUS__WAKE_WINDOW__KIND__TASK;
	w.phase = open ? MOBBUS__WAKE_WINDOW__PHASE__OPEN
	               : MOBBUS__WAKE_WINDOW__PHASE__EXPIRE;
	env.body_case = MOBBUS__ENVELOPE__BODY_WAKE;
	env.wake = &w;
	return mb_publish(b->pub, open ? "wake/open" : "wake/expire", &env);
}

int
mbb_publish(ErlNifEnv *env, struct mbb_bus *b, ERL_NIF_TERM kind,
            ERL_NIF_TERM fields)
{
	struct ctx c = {.env = env, .map = fields};
	int rv;

	if (enif_is_identical(kind, mbb_atom.notification))
		rv = publish_notification(&c, b);
	else if (enif_is_identical(kind, mbb_atom.push_token))
		rv = publish_token(&c, b);
	else if (enif_is_identical(kind, mbb_atom.device))
		rv = publish_device(&c, b);
	else if (enif_is_identical(kind, mbb_atom.connectivity))
		rv = publish_connectivity(&c, b);
	else if (enif_is_identical(kind, mbb_atom.wake))
		rv = publish_wake(&c, b, 1);
	else if (enif_is_identical(kind, mbb_atom.wake_expire))
		rv = publish_wake(&c, b, 0);
	else
		rv = MB_EINVAL;
	mbb_strs_free(&c.strs);
	free(c.json[0]);
	free(c.json[1]);
	return rv;
}
