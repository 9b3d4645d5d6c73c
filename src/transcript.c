/* SPDX-License-Identifier: MIT */
/*
 * transcript.c - render what the consumer received as transcript lines: one
 * JSON object per BEAM message ({notification, Map}, {push_token, Os, T}, ...)
 * or per effect carried out on the platform.
 */
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "mobbus.h"

static const char *
os_name(Mobbus__Os os)
{
	return os == MOBBUS__OS__OS_ANDROID ? "android" : "ios";
}

static const char *
lifecycle_name(Mobbus__Lifecycle__Event ev)
{
	switch (ev) {
	case MOBBUS__LIFECYCLE__EVENT__DID_BECOME_ACTIVE:
		return "did_become_active";
	case MOBBUS__LIFECYCLE__EVENT__WILL_RESIGN_ACTIVE:
		return "will_resign_active";
	case MOBBUS__LIFECYCLE__EVENT__DID_ENTER_BACKGROUND:
		return "did_enter_background";
	case MOBBUS__LIFECYCLE__EVENT__WILL_ENTER_FOREGROUND:
		return "will_enter_foreground";
	case MOBBUS__LIFECYCLE__EVENT__WILL_TERMINATE:
		return "will_terminate";
	default:
		return NULL;
	}
}

/* A JSON text carried in a string field, or an empty object/null. */
static json_t *
embedded_json(const char *text, int null_if_empty)
{
	json_error_t err;
	json_t *v;

	if (text == NULL || *text == '\0')
		return null_if_empty ? json_null() : json_object();
	v = mbi_json_load(text, strlen(text), &err);
	return v != NULL ? v : json_string(text);
}

static json_t *
str_or_null(int set, const char *s)
{
	return set ? json_string(s) : json_null();
}

static json_t *
render_notification(const Mobbus__Notification *n)
{
	json_t *o = json_object();

	if (n->presentation == MOBBUS__NOTIFICATION__PRESENTATION__BACKGROUND) {
		json_object_set_new(o, "msg", json_string("push_fired"));
		json_object_set_new(o, "id", json_string(n->id));
		json_object_set_new(o, "push_id",
		    *n->push_id ? json_string(n->push_id) : json_null());
		json_object_set_new(o, "payload", embedded_json(n->payload_json, 0));
		return o;
	}
	json_object_set_new(o, "msg", json_string("notification"));
	json_object_set_new(o, "id", json_string(n->id));
	json_object_set_new(o, "title",
	    str_or_null(n->title_or_null_case ==
	            MOBBUS__NOTIFICATION__TITLE_OR_NULL_TITLE,
	        n->title));
	json_object_set_new(o, "body",
	    str_or_null(n->body_or_null_case ==
	            MOBBUS__NOTIFICATION__BODY_OR_NULL_BODY,
	        n->body));
	json_object_set_new(o, "data", embedded_json(n->data_json, 0));
	json_object_set_new(o, "source",
	    json_string(n->source == MOBBUS__NOTIFICATION__SOURCE__LOCAL
	            ? "local"
	            : "push"));
	json_object_set_new(o, "presentation",
	    json_string(n->presentation == MOBBUS__NOTIFICATION__PRESENTATION__TAP
	            ? "tap"
	            : "foreground"));
	json_object_set_new(o, "action",
	    str_or_null(n->action_or_null_case ==
	            MOBBUS__NOTIFICATION__ACTION_OR_NULL_ACTION,
	        n->action));
	json_object_set_new(o, "cold_start", json_boolean(n->cold_start));
	json_object_set_new(o, "redelivered", json_boolean(n->redelivered));
	return o;
}

static json_t *
render_effect(const Mobbus__Effect *e)
{
	json_t *o = json_object();

	switch (e->kind) {
	case MOBBUS__EFFECT__KIND__PUSH_COMPLETION:
		json_object_set_new(o, "effect", json_string("push_completion"));
		json_object_set_new(o, "push_id", json_string(e->push_id));
		json_object_set_new(o, "result", json_string(e->result));
		break;
	case MOBBUS__EFFECT__KIND__TASK_COMPLETED:
		json_object_set_new(o, "effect", json_string("task_completed"));
		json_object_set_new(o, "identifier", json_string(e->identifier));
		json_object_set_new(o, "success", json_boolean(e->success));
		break;
	case MOBBUS__EFFECT__KIND__FGS_START:
		json_object_set_new(o, "effect", json_string("fgs_start"));
		json_object_set_new(o, "notification",
		    embedded_json(e->notification_json, 0));
		break;
	case MOBBUS__EFFECT__KIND__FGS_STOP:
		json_object_set_new(o, "effect", json_string("fgs_stop"));
		break;
	case MOBBUS__EFFECT__KIND__AUDIO_SESSION:
		json_object_set_new(o, "effect", json_string("audio_session"));
		json_object_set_new(o, "active", json_boolean(e->active));
		break;
	default:
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *
render_error(const Mobbus__BusError *e)
{
	json_t *o = json_object();

	json_object_set_new(o, "msg", json_string("error"));
	json_object_set_new(o, "code", json_string(e->code));
	if (e->line != 0)
		json_object_set_new(o, "line", json_integer(e->line));
	if (e->limit != 0) {
		json_object_set_new(o, "bytes", json_integer((json_int_t)e->bytes));
		json_object_set_new(o, "limit", json_integer((json_int_t)e->limit));
	}
	if (*e->message)
		json_object_set_new(o, "message", json_string(e->message));
	return o;
}

static json_t *
render_connectivity(const Mobbus__Connectivity *c)
{
	json_t *o = json_object();
	json_t *fields = embedded_json(c->fields_json, 0);

	json_object_set_new(o, "msg", json_string("device"));
	json_object_set_new(o, "event", json_string("connectivity_changed"));
	if (json_is_object(fields))
		json_object_update(o, fields);
	json_decref(fields);
	return o;
}

static json_t *
render(const mb_envelope *env)
{
	json_t *o;

	switch (env->body_case) {
	case MOBBUS__ENVELOPE__BODY_NOTIFICATION:
		return render_notification(env->notification);
	case MOBBUS__ENVELOPE__BODY_PUSH_TOKEN:
		o = json_object();
		json_object_set_new(o, "msg", json_string("push_token"));
		json_object_set_new(o, "os", json_string(os_name(env->push_token->os)));
		json_object_set_new(o, "token", json_string(env->push_token->token));
		return o;
	case MOBBUS__ENVELOPE__BODY_LIFECYCLE: {
		const char *ev = lifecycle_name(env->lifecycle->event);
		if (ev == NULL)
			return NULL;
		o = json_object();
		json_object_set_new(o, "msg", json_string("device"));
		json_object_set_new(o, "event", json_string(ev));
		return o;
	}
	case MOBBUS__ENVELOPE__BODY_CONNECTIVITY:
		return render_connectivity(env->connectivity);
	case MOBBUS__ENVELOPE__BODY_WAKE:
		o = json_object();
		json_object_set_new(o, "msg", json_string("wake_fired"));
		json_object_set_new(o, "id", json_string(env->wake->id));
		return o;
	case MOBBUS__ENVELOPE__BODY_CONN:
		o = json_object();
		json_object_set_new(o, "msg", json_string("conn"));
		json_object_set_new(o, "name", json_string(env->conn->name));
		json_object_set_new(o, "state", json_string(env->conn->up ? "up" : "down"));
		return o;
	case MOBBUS__ENVELOPE__BODY_KEEP_ALIVE:
		o = json_object();
		json_object_set_new(o, "msg", json_string("keep_alive"));
		json_object_set_new(o, "result",
		    json_string(env->keep_alive->ok ? "ok" : "refused"));
		if (!env->keep_alive->ok)
			json_object_set_new(o, "reason",
			    json_string(env->keep_alive->reason));
		return o;
	case MOBBUS__ENVELOPE__BODY_EFFECT:
		return render_effect(env->effect);
	case MOBBUS__ENVELOPE__BODY_ERROR:
		return render_error(env->error);
	default:
		return NULL;
	}
}

char *
mb_transcript_line(const mb_envelope *env)
{
	json_t *o = render(env);
	char *line;

	if (o == NULL)
		return NULL;
	line = mbi_json_dump(o);
	json_decref(o);
	return line;
}
