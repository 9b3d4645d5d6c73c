/* SPDX-License-Identifier: MIT */
/*
 * policy.c - the policy actor: whether keep_alive may run, and what the
 * bridge must do for it (a foreground service on Android, an audio session on
 * iOS). Keeping the platform rules here means bridges stay translations.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mobbus.h"

#define POLICY_MODES_MAX 8

struct policy {
	Mobbus__Os os;
	int android_sdk;
	unsigned exempt_ms;
	char modes[POLICY_MODES_MAX][32];
	int nmodes;
	mb_pub *pub;
	/* state */
	int foreground;
	int running;           /* the keep-alive service or session is on */
	int64_t high_at;       /* last message delivered at high priority */
	int have_high;
};

static const char *const policy_topics[] = { "cmd/keep_alive", "notify/",
	MB_TOPIC_LIFECYCLE, MB_TOPIC_KEEPALIVE, NULL };

static int
policy_has_mode(const struct policy *p, const char *m)
{
	for (int i = 0; i < p->nmodes; i++)
		if (strcmp(p->modes[i], m) == 0)
			return 1;
	return 0;
}

static void
policy_effect(struct policy *p, Mobbus__Effect__Kind kind, int active,
    const char *notification_json)
{
	Mobbus__Effect e = MOBBUS__EFFECT__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	const char *topic = kind == MOBBUS__EFFECT__KIND__FGS_START ?
	    "out/effect/fgs_start" :
	    kind == MOBBUS__EFFECT__KIND__FGS_STOP ? "out/effect/fgs_stop" :
	                                             "out/effect/audio_session";

	e.kind = kind;
	e.active = active;
	if (notification_json != NULL)
		e.notification_json = (char *)notification_json;
	env.body_case = MOBBUS__ENVELOPE__BODY_EFFECT;
	env.effect = &e;
	(void)mb_publish(p->pub, topic, &env);
}

static void
policy_result(struct policy *p, int ok, const char *reason)
{
	Mobbus__KeepAlive k = MOBBUS__KEEP_ALIVE__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;

	k.start = 1;
	k.ok = ok;
	k.reason = (char *)(reason ? reason : "");
	env.body_case = MOBBUS__ENVELOPE__BODY_KEEP_ALIVE;
	env.keep_alive = &k;
	(void)mb_publish(p->pub, "out/app/keep_alive", &env);
}

/* Why a keep-alive may not start now, or NULL when it may. */
static const char *
policy_refusal(const struct policy *p, int64_t now)
{
	if (p->os == MOBBUS__OS__OS_IOS) {
		if (policy_has_mode(p, "audio") || policy_has_mode(p, "location") ||
		    policy_has_mode(p, "bluetooth-central") ||
		    policy_has_mode(p, "bluetooth-peripheral"))
			return NULL;
		return "no_background_mode";
	}
	if (p->foreground || p->android_sdk < 31)
		return NULL;
	if (p->have_high && now - p->high_at <= (int64_t)p->exempt_ms)
		return NULL;
	return "background_start_not_allowed";
}

static void
policy_keep_alive(struct policy *p, int64_t now)
{
	const char *why;

	if (p->running) {
		policy_result(p, 1, NULL);
		return;
	}
	if ((why = policy_refusal(p, now)) != NULL) {
		policy_result(p, 0, why);
		return;
	}
	/* The effect comes first: on Android 12+ the start itself can fail
	 * (reading 8). */
	if (p->os == MOBBUS__OS__OS_IOS) {
		if (policy_has_mode(p, "audio"))
			policy_effect(p, MOBBUS__EFFECT__KIND__AUDIO_SESSION, 1, NULL);
	} else {
		policy_effect(p, MOBBUS__EFFECT__KIND__FGS_START, 0,
		    "{\"channel\":\"mobbus.keep_alive\",\"ongoing\":true}");
	}
	p->running = 1;
	policy_result(p, 1, NULL);
}

static void
policy_keep_alive_stop(struct policy *p)
{
	if (!p->running)
		return;
	p->running = 0;
	if (p->os == MOBBUS__OS__OS_IOS) {
		if (policy_has_mode(p, "audio"))
			policy_effect(p, MOBBUS__EFFECT__KIND__AUDIO_SESSION, 0, NULL);
	} else {
		policy_effect(p, MOBBUS__EFFECT__KIND__FGS_STOP, 0, NULL);
	}
}

static int
policy_handle_cb(mb_actor *a, void *state, const mb_envelope *env)
{
	struct policy *p = state;
	char json[160];

	(void)a;
	switch (env->body_case) {
	case MOBBUS__ENVELOPE__BODY_APP:
		if (env->app->do_ == MOBBUS__APP_COMMAND__DO__KEEP_ALIVE)
			policy_keep_alive(p, env->at_ms);
		else if (env->app->do_ == MOBBUS__APP_COMMAND__DO__KEEP_ALIVE_STOP)
			policy_keep_alive_stop(p);
		return MB_OK;
	case MOBBUS__ENVELOPE__BODY_NOTIFICATION:
		if (strcmp(env->notification->priority, "high") == 0) {
			p->have_high = 1;
			p->high_at = env->at_ms;
		}
		return MB_OK;
	case MOBBUS__ENVELOPE__BODY_LIFECYCLE:
		switch (env->lifecycle->event) {
		case MOBBUS__LIFECYCLE__EVENT__WILL_ENTER_FOREGROUND:
			p->foreground = 1;
			break;
		case MOBBUS__LIFECYCLE__EVENT__DID_BECOME_ACTIVE:
			p->foreground = 1;
			break;
		case MOBBUS__LIFECYCLE__EVENT__DID_ENTER_BACKGROUND:
			p->foreground = 0;
			break;
		default:
			break;
		}
		return MB_OK;
	case MOBBUS__ENVELOPE__BODY_KEEP_ALIVE:
		/* Reading 10: a service the OS started without a keep_alive
		 * (WorkManager expedited work below API 31) needs its
		 * notification from the bridge. */
		if (strcmp(env->topic, "keepalive/fgs_start") == 0) {
			snprintf(json, sizeof(json),
			    "{\"channel\":\"mobbus.work\",\"type\":\"%.64s\"}",
			    env->keep_alive->fgs_type);
			policy_effect(p, MOBBUS__EFFECT__KIND__FGS_START, 0, json);
		}
		return MB_OK;
	default:
		return MB_OK;
	}
}

static int
policy_init_cb(mb_actor *a, void *arg, void **statep)
{
	struct policy *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return MB_ENOMEM;
	*p = *(const struct policy *)arg;
	p->pub = mb_actor_pub(a);
	*statep = p;
	return MB_OK;
}

static void
policy_terminate_cb(mb_actor *a, void *state)
{
	(void)a;
	free(state);
}

static void
policy_release_cb(void *arg)
{
	free(arg);
}

static const struct mb_actor_ops policy_ops = {
	.size = sizeof(struct mb_actor_ops),
	.name = "policy",
	.topics = policy_topics,
	.init = policy_init_cb,
	.handle = policy_handle_cb,
	/* The rules are arithmetic on a few fields and publish effects:
	 * they never block, so they may run on a publisher's thread. */
	.inline_ok = mb_inline_always,
	.terminate = policy_terminate_cb,
	.release = policy_release_cb,
};

int
mb_policy_start(mb_bus *bus, const struct mb_policy_opts *opts, mb_actor **ap)
{
	struct policy *cfg;
	int rv;

	if (opts == NULL || (cfg = calloc(1, sizeof(*cfg))) == NULL)
		return opts == NULL ? MB_EINVAL : MB_ENOMEM;
	cfg->os = opts->os;
	cfg->android_sdk = opts->android_sdk ? opts->android_sdk : 34;
	cfg->exempt_ms = opts->exempt_ms ? opts->exempt_ms : 10000;
	for (int i = 0; opts->background_modes &&
	     opts->background_modes[i] && cfg->nmodes < POLICY_MODES_MAX; i++)
		snprintf(cfg->modes[cfg->nmodes++], sizeof(cfg->modes[0]), "%s",
		    opts->background_modes[i]);
	if ((rv = mb_actor_start(bus, &policy_ops, cfg, ap)) != MB_OK)
		free(cfg);
	return rv;
}
