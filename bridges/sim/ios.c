/* SPDX-License-Identifier: MIT */
/*
 * ios.c - iOS callbacks into envelopes, with APNs payload rules: the alert as
 * a string or a dict, custom keys outside "aps" as data, the visible-alert and
 * content-available readings, and the 4096-byte limit at every entry point.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "sim.h"

static int
nonempty(const json_t *v)
{
	return json_is_string(v) && json_string_length(v) > 0;
}

/* Reading 3: a visible alert is a non-empty string or a dict with at least
 * one non-empty title, subtitle, body, loc-key or title-loc-key. */
static int
visible_alert(const json_t *payload)
{
	const json_t *alert = json_object_get(json_object_get(payload, "aps"), "alert");
	static const char *const keys[] = { "title", "subtitle", "body",
		"loc-key", "title-loc-key", NULL };

	if (json_is_string(alert))
		return json_string_length(alert) > 0;
	for (int i = 0; json_is_object(alert) && keys[i]; i++)
		if (nonempty(json_object_get(alert, keys[i])))
			return 1;
	return 0;
}

/* The explicit id of a copy: the app's id key, else FCM's message id. */
static void
explicit_id(const struct mb_trace *t, const json_t *payload, char *out,
    size_t len)
{
	const json_t *v = NULL;

	out[0] = '\0';
	if (t->id_key != NULL)
		v = json_object_get(payload, t->id_key);
	if (v == NULL || json_is_null(v))
		v = json_object_get(payload, "gcm.message_id");
	if (json_is_string(v) && json_string_length(v) == 0 &&
	    v != json_object_get(payload, "gcm.message_id"))
		v = json_object_get(payload, "gcm.message_id"); /* "" is no id */
	if (json_is_string(v))
		snprintf(out, len, "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(out, len, "%lld", (long long)json_integer_value(v));
}

static void
set_text(Mobbus__Notification *n, const json_t *title, const json_t *body)
{
	if (json_is_string(title)) {
		n->title = (char *)json_string_value(title);
		n->title_or_null_case = MOBBUS__NOTIFICATION__TITLE_OR_NULL_TITLE;
	}
	if (json_is_string(body)) {
		n->body = (char *)json_string_value(body);
		n->body_or_null_case = MOBBUS__NOTIFICATION__BODY_OR_NULL_BODY;
	}
}

/* Reading 6: content when the line has it, else aps.alert. */
static void
render_text(Mobbus__Notification *n, const json_t *payload,
    const json_t *content)
{
	const json_t *alert;

	if (json_is_object(content)) {
		set_text(n, json_object_get(content, "title"),
		    json_object_get(content, "body"));
		return;
	}
	alert = json_object_get(json_object_get(payload, "aps"), "alert");
	if (json_is_string(alert))
		set_text(n, NULL, alert);
	else if (json_is_object(alert))
		set_text(n, json_object_get(alert, "title"),
		    json_object_get(alert, "body"));
}

/*
 * Publish one copy of an APNs notification. presentation says what the
 * platform moment was; push_id/budget describe the fetch window it opened.
 */
static int
ios_notification(struct mb_sim *s, const struct mb_trace_line *l,
    const json_t *payload, Mobbus__Notification__Presentation pres,
    const char *action, const char *push_id, uint32_t budget, int complete_now)
{
	Mobbus__Notification n = MOBBUS__NOTIFICATION__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	json_t *data = json_object();
	char id[256], hash[17];
	char *compact = mbi_json_dump(payload), *data_json = NULL;
	const char *key, *topic;
	json_t *v;
	size_t bytes;
	int rv;

	if (compact == NULL || data == NULL) {
		free(compact);
		json_decref(data);
		return MB_ENOMEM;
	}
	bytes = strlen(compact);
	if (bytes > MB_PAYLOAD_LIMIT) {
		free(compact);
		json_decref(data);
		return mbi_sim_too_large(s, l, bytes, push_id);
	}
	explicit_id(s->trace, payload, id, sizeof(id));
	mbi_sim_hash(compact, hash);
	json_object_foreach((json_t *)payload, key, v)
		if (strcmp(key, "aps") != 0)
			json_object_set(data, key, v);
	data_json = mbi_sim_strip_reserved(data);

	n.id = id;
	n.request_id = (char *)(mbi_json_str(l->obj, "request_id") ?
	        mbi_json_str(l->obj, "request_id") : "");
	n.content_hash = hash;
	n.source = MOBBUS__NOTIFICATION__SOURCE__PUSH;
	n.presentation = pres;
	n.data_json = data_json ? data_json : "{}";
	n.payload_json = compact;
	n.push_id = (char *)(push_id ? push_id : "");
	n.budget_ms = budget;
	n.complete_now = complete_now;
	n.line = l->lineno;
	n.cold_start = pres == MOBBUS__NOTIFICATION__PRESENTATION__TAP &&
	    s->launch_phase;
	if (action != NULL) {
		n.action = (char *)action;
		n.action_or_null_case = MOBBUS__NOTIFICATION__ACTION_OR_NULL_ACTION;
	}
	render_text(&n, payload, json_object_get(l->obj, "content"));
	env.body_case = MOBBUS__ENVELOPE__BODY_NOTIFICATION;
	env.notification = &n;
	topic = pres == MOBBUS__NOTIFICATION__PRESENTATION__TAP ?
	    MB_TOPIC_NOTIFY_TAP :
	    pres == MOBBUS__NOTIFICATION__PRESENTATION__BACKGROUND ?
	    MB_TOPIC_NOTIFY_BACKGROUND :
	    MB_TOPIC_NOTIFY_ARRIVAL;
	rv = mbi_sim_publish(s, topic, &env, l);
	free(compact);
	free(data_json);
	json_decref(data);
	return rv;
}

static int
did_receive_remote(struct mb_sim *s, const struct mb_trace_line *l)
{
	const json_t *payload = json_object_get(l->obj, "payload");
	const json_t *b = json_object_get(l->obj, "budget_ms");
	uint32_t budget = json_is_integer(b) ? (uint32_t)json_integer_value(b) :
	                                       30000;
	char push_id[24];

	snprintf(push_id, sizeof(push_id), "L%u", l->lineno);
	/* Reading 3: in an active app a visible alert is the foreground
	 * notification, and the bridge completes the handler itself. */
	if (s->active && visible_alert(payload))
		return ios_notification(s, l, payload,
		    MOBBUS__NOTIFICATION__PRESENTATION__FOREGROUND, NULL, push_id,
		    budget, 1);
	return ios_notification(s, l, payload,
	    MOBBUS__NOTIFICATION__PRESENTATION__BACKGROUND, NULL, push_id, budget,
	    0);
}

int
mbi_sim_ios(struct mb_sim *s, const struct mb_trace_line *l)
{
	const json_t *o = l->obj, *rn;
	Mobbus__PushToken tok = MOBBUS__PUSH_TOKEN__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	int rv;

	if (l->cb == MB_CB_LAUNCH) {
		if ((rv = mbi_sim_process_start(s)) != MB_OK)
			return rv;
		rn = json_object_get(json_object_get(o, "options"),
		    "remote_notification");
		if (json_is_object(rn))
			return ios_notification(s, l, rn,
			    MOBBUS__NOTIFICATION__PRESENTATION__TAP, "default",
			    NULL, 0, 0);
		return MB_OK;
	}
	if (!s->alive)
		return MB_OK; /* no process: the OS drops what needs the app */
	switch (l->cb) {
	case MB_CB_DID_BECOME_ACTIVE:
		s->active = 1;
		s->launch_phase = 0;
		mbi_sim_lifecycle(s, MOBBUS__LIFECYCLE__EVENT__DID_BECOME_ACTIVE, l);
		return MB_OK;
	case MB_CB_WILL_RESIGN_ACTIVE:
		s->active = 0;
		mbi_sim_lifecycle(s, MOBBUS__LIFECYCLE__EVENT__WILL_RESIGN_ACTIVE, l);
		return MB_OK;
	case MB_CB_DID_ENTER_BACKGROUND:
		s->active = 0;
		mbi_sim_lifecycle(s, MOBBUS__LIFECYCLE__EVENT__DID_ENTER_BACKGROUND, l);
		return MB_OK;
	case MB_CB_WILL_ENTER_FOREGROUND:
		mbi_sim_lifecycle(s, MOBBUS__LIFECYCLE__EVENT__WILL_ENTER_FOREGROUND, l);
		return MB_OK;
	case MB_CB_WILL_TERMINATE:
		mbi_sim_lifecycle(s, MOBBUS__LIFECYCLE__EVENT__WILL_TERMINATE, l);
		return MB_OK;
	case MB_CB_DID_REGISTER_REMOTE:
		tok.os = MOBBUS__OS__OS_IOS;
		tok.token = (char *)mbi_json_str(o, "token");
		tok.fresh = 1;
		env.body_case = MOBBUS__ENVELOPE__BODY_PUSH_TOKEN;
		env.push_token = &tok;
		return mbi_sim_publish(s, "token/ios", &env, l);
	case MB_CB_DID_FAIL_REGISTER:
		return mb_publish_error(s->pub, MB_EIO,
		    "line %u: registration for remote notifications failed",
		    l->lineno);
	case MB_CB_WILL_PRESENT:
		return ios_notification(s, l, json_object_get(o, "payload"),
		    MOBBUS__NOTIFICATION__PRESENTATION__FOREGROUND, NULL, NULL, 0,
		    0);
	case MB_CB_DID_RECEIVE_RESPONSE:
		return ios_notification(s, l, json_object_get(o, "payload"),
		    MOBBUS__NOTIFICATION__PRESENTATION__TAP,
		    mbi_json_str(o, "action") ? mbi_json_str(o, "action") :
		                                "default",
		    NULL, 0, 0);
	case MB_CB_DID_RECEIVE_REMOTE:
		return did_receive_remote(s, l);
	default:
		return mbi_sim_common(s, l);
	}
}
