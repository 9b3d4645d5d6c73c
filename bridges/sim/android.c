/* SPDX-License-Identifier: MIT */
/*
 * android.c - Android callbacks into envelopes, with FCM rules: the data map
 * minus reserved keys, notification-block rendering in the foreground only,
 * data-only background messages as push_fired, tray-tap extras with null
 * title and body, and intents that are never taps (Recents, restored state).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "sim.h"

static int
has_flag(const json_t *line, const char *flag)
{
	size_t i;
	json_t *v;

	json_array_foreach(json_object_get(line, "flags"), i, v)
		if (json_is_string(v) && strcmp(json_string_value(v), flag) == 0)
			return 1;
	return 0;
}

/* The message id a tray tap's extras carry: google.message_id, else
 * message_id; a number is taken as its digits, an empty string as no id. */
static const char *
extras_id(const json_t *extras, char *buf, size_t len)
{
	static const char *const keys[] = { "google.message_id", "message_id" };

	for (int i = 0; i < 2; i++) {
		const json_t *v = json_object_get(extras, keys[i]);
		if (json_is_string(v) && json_string_length(v) > 0)
			return json_string_value(v);
		if (json_is_integer(v)) {
			snprintf(buf, len, "%lld", (long long)json_integer_value(v));
			return buf;
		}
	}
	return NULL;
}

/* A tray tap: the intent's extras carry the message id (reading 5). */
static int
tap_from_extras(struct mb_sim *s, const struct mb_trace_line *l,
    const json_t *extras)
{
	Mobbus__Notification n = MOBBUS__NOTIFICATION__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	char idbuf[32];
	const char *id = extras_id(extras, idbuf, sizeof(idbuf));
	char *data;
	int rv;

	if (id == NULL || has_flag(l->obj, "launched_from_history"))
		return MB_OK;
	if ((data = mbi_sim_strip_reserved((json_t *)extras)) == NULL)
		return MB_ENOMEM;
	n.id = (char *)id;
	n.source = MOBBUS__NOTIFICATION__SOURCE__PUSH;
	n.presentation = MOBBUS__NOTIFICATION__PRESENTATION__TAP;
	n.action = "default";
	n.action_or_null_case = MOBBUS__NOTIFICATION__ACTION_OR_NULL_ACTION;
	n.data_json = data;
	n.cold_start = s->launch_phase;
	n.line = l->lineno;
	env.body_case = MOBBUS__ENVELOPE__BODY_NOTIFICATION;
	env.notification = &n;
	rv = mbi_sim_publish(s, MB_TOPIC_NOTIFY_TAP, &env, l);
	free(data);
	return rv;
}

static int
on_message_received(struct mb_sim *s, const struct mb_trace_line *l)
{
	const json_t *m = json_object_get(l->obj, "message");
	const json_t *data = json_object_get(m, "data");
	const json_t *notif = json_object_get(m, "notification");
	Mobbus__Notification n = MOBBUS__NOTIFICATION__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	json_t *sized = json_object(), *empty = json_object();
	char *compact, *payload, *data_json, push_id[24], hash[17];
	size_t bytes;
	int rv;

	if (!json_is_object(data))
		data = empty;
	/* Reading 11: measured as {"data":…,"notification":…}, the
	 * notification only when the message has one. */
	json_object_set(sized, "data", (json_t *)data);
	if (json_is_object(notif))
		json_object_set(sized, "notification", (json_t *)notif);
	compact = mbi_json_dump(sized);
	payload = mbi_json_dump(data);
	data_json = mbi_sim_strip_reserved((json_t *)data);
	json_decref(sized);
	if (compact == NULL || payload == NULL || data_json == NULL) {
		rv = MB_ENOMEM;
		goto out;
	}
	if ((bytes = strlen(compact)) > MB_PAYLOAD_LIMIT) {
		rv = mbi_sim_too_large(s, l, bytes, NULL);
		goto out;
	}
	snprintf(push_id, sizeof(push_id), "L%u", l->lineno);
	n.id = (char *)(mbi_json_str(m, "message_id") ?
	        mbi_json_str(m, "message_id") : "");
	mbi_sim_hash(compact, hash);
	n.content_hash = hash;
	n.source = MOBBUS__NOTIFICATION__SOURCE__PUSH;
	n.data_json = data_json;
	n.payload_json = payload;
	n.push_id = push_id;
	n.line = l->lineno;
	n.priority = (char *)(mbi_json_str(m, "priority") ?
	        mbi_json_str(m, "priority") : "");
	env.body_case = MOBBUS__ENVELOPE__BODY_NOTIFICATION;
	env.notification = &n;
	if (s->foreground) {
		/* Reading 4: in the foreground every message, data-only
		 * included, is a foreground notification. */
		n.presentation = MOBBUS__NOTIFICATION__PRESENTATION__FOREGROUND;
		if (json_is_string(json_object_get(notif, "title"))) {
			n.title = (char *)mbi_json_str(notif, "title");
			n.title_or_null_case =
			    MOBBUS__NOTIFICATION__TITLE_OR_NULL_TITLE;
		}
		if (json_is_string(json_object_get(notif, "body"))) {
			n.body = (char *)mbi_json_str(notif, "body");
			n.body_or_null_case =
			    MOBBUS__NOTIFICATION__BODY_OR_NULL_BODY;
		}
		rv = mbi_sim_publish(s, MB_TOPIC_NOTIFY_ARRIVAL, &env, l);
	} else {
		n.presentation = MOBBUS__NOTIFICATION__PRESENTATION__BACKGROUND;
		rv = mbi_sim_publish(s, MB_TOPIC_NOTIFY_BACKGROUND, &env, l);
	}
out:
	free(compact);
	free(payload);
	free(data_json);
	json_decref(empty);
	return rv;
}

static int
token(struct mb_sim *s, const struct mb_trace_line *l, int fresh)
{
	Mobbus__PushToken tok = MOBBUS__PUSH_TOKEN__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;

	tok.os = MOBBUS__OS__OS_ANDROID;
	tok.token = (char *)mbi_json_str(l->obj, "token");
	tok.fresh = fresh;
	env.body_case = MOBBUS__ENVELOPE__BODY_PUSH_TOKEN;
	env.push_token = &tok;
	return mbi_sim_publish(s, "token/android", &env, l);
}

int
mbi_sim_android(struct mb_sim *s, const struct mb_trace_line *l)
{
	const json_t *o = l->obj, *act;
	int rv;

	switch (l->cb) {
	case MB_CB_PROCESS_START:
		if ((rv = mbi_sim_process_start(s)) != MB_OK)
			return rv;
		act = json_object_get(o, "activity");
		if (json_is_false(act))
			return MB_OK; /* headless: no launch intent */
		return tap_from_extras(s, l, json_object_get(o, "extras"));
	case MB_CB_ON_MESSAGE_RECEIVED:
		/* Reading 16: with no process FCM starts one headless, unless
		 * the user force-stopped the app. */
		if (!s->alive) {
			if (s->force_stopped)
				return MB_OK;
			if ((rv = mbi_sim_process_start(s)) != MB_OK)
				return rv;
		}
		return on_message_received(s, l);
	default:
		break;
	}
	if (!s->alive)
		return MB_OK;
	switch (l->cb) {
	case MB_CB_ON_START:
		s->foreground = 1;
		mbi_sim_lifecycle(s, MOBBUS__LIFECYCLE__EVENT__WILL_ENTER_FOREGROUND, l);
		return MB_OK;
	case MB_CB_ON_RESUME:
		s->active = 1;
		s->launch_phase = 0;
		mbi_sim_lifecycle(s, MOBBUS__LIFECYCLE__EVENT__DID_BECOME_ACTIVE, l);
		return MB_OK;
	case MB_CB_ON_PAUSE:
		s->active = 0;
		mbi_sim_lifecycle(s, MOBBUS__LIFECYCLE__EVENT__WILL_RESIGN_ACTIVE, l);
		return MB_OK;
	case MB_CB_ON_STOP:
		s->foreground = 0;
		mbi_sim_lifecycle(s, MOBBUS__LIFECYCLE__EVENT__DID_ENTER_BACKGROUND, l);
		return MB_OK;
	case MB_CB_ON_NEW_TOKEN:
		return token(s, l, 1);
	case MB_CB_GET_TOKEN:
		return token(s, l, 0);
	case MB_CB_ON_NEW_INTENT:
		return tap_from_extras(s, l, json_object_get(o, "extras"));
	case MB_CB_ACTIVITY_CREATE:
		if (json_is_true(json_object_get(o, "restored")))
			return MB_OK; /* re-created with its old intent */
		return tap_from_extras(s, l, json_object_get(o, "extras"));
	case MB_CB_TRAY_POST:
		return MB_OK; /* posting a tray item is not a bus event */
	default:
		return mbi_sim_common(s, l);
	}
}
