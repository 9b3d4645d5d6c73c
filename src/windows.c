/* SPDX-License-Identifier: MIT */
/*
 * windows.c - fetch windows and background tasks: each completed exactly
 * once, by the consumer, by the bridge's own rule, or at its budget; and the
 * completion effect ordered after the message that caused it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliver.h"
#include "mobbus.h"
#include "store.h"

mb_envelope *
mbi_effect_new(Mobbus__Effect__Kind kind)
{
	mb_envelope *env = calloc(1, sizeof(*env));
	Mobbus__Effect *e = calloc(1, sizeof(*e));

	if (env == NULL || e == NULL) {
		free(env);
		free(e);
		return NULL;
	}
	mobbus__envelope__init(env);
	mobbus__effect__init(e);
	e->kind = kind;
	env->body_case = MOBBUS__ENVELOPE__BODY_EFFECT;
	env->effect = e;
	return env;
}

/* The free that matches effect_new and env_dup alike. */
void
mbi_effect_free(mb_envelope *env)
{
	free(env->effect);
	free(env);
}

/*
 * Send an effect. With after_queued set it was caused by the message just
 * queued (a bridge-side completion after its hand-off, a failed completion
 * after its error line) and must not overtake it; otherwise it happens now,
 * even before older messages still waiting (a budget that ran out before
 * the consumer was up: reading 8).
 */
void
mbi_effect_send(struct mbi_deliver *d, mb_envelope *env, const char *topic,
    int after_queued)
{
	if (after_queued && d->nqueue > 0 && !d->consumer_up) {
		mb_envelope *copy = mbi_env_dup(env);
		if (copy != NULL)
			mbi_out_put(d, topic, copy, 1, 0);
	} else {
		mbi_emit(d, topic, env);
	}
	mbi_effect_free(env);
}

void
mbi_complete_push(struct mbi_deliver *d, struct mbi_window *w, const char *result,
    int after_queued)
{
	mb_envelope *env;

	if (w->done)
		return;
	w->done = 1;
	if ((env = mbi_effect_new(MOBBUS__EFFECT__KIND__PUSH_COMPLETION)) == NULL)
		return;
	env->effect->push_id = w->push_id;
	env->effect->result = (char *)result;
	mbi_effect_send(d, env, "effect/push_completion", after_queued);
}

void
mbi_complete_task(struct mbi_deliver *d, struct mbi_window *w, int success)
{
	mb_envelope *env;

	if (w->done)
		return;
	w->done = 1;
	if ((env = mbi_effect_new(MOBBUS__EFFECT__KIND__TASK_COMPLETED)) == NULL)
		return;
	env->effect->identifier = w->id;
	env->effect->success = success;
	mbi_effect_send(d, env, "effect/task_completed", 0);
}

struct mbi_window *
mbi_window_add(struct mbi_deliver *d, int task, const char *push_id,
    const char *id, int64_t deadline)
{
	struct mbi_window *w;

	if (d->nwindows == d->capwindows) {
		size_t cap = d->capwindows ? d->capwindows * 2 : 8;
		struct mbi_window *nw = realloc(d->windows, cap * sizeof(*nw));
		if (nw == NULL)
			return NULL;
		d->windows = nw;
		d->capwindows = cap;
	}
	w = &d->windows[d->nwindows++];
	memset(w, 0, sizeof(*w));
	w->task = task;
	w->push_id = mbi_xstrdup(push_id);
	w->id = mbi_xstrdup(id);
	w->deadline = deadline;
	(void)mb_bus_wake_at(d->bus, deadline);
	return w;
}

struct mbi_window *
mbi_window_find(struct mbi_deliver *d, const char *push_id, const char *id)
{
	for (size_t i = 0; i < d->nwindows; i++) {
		struct mbi_window *w = &d->windows[i];
		if (w->done)
			continue;
		if (push_id && *push_id && strcmp(w->push_id, push_id) == 0)
			return w;
		if (id && *id && strcmp(w->id, id) == 0)
			return w;
	}
	return NULL;
}

/* time/tick: complete every window whose budget ran out, oldest first. */
void
mbi_fire_timers(struct mbi_deliver *d, int64_t now)
{
	int64_t next = -1;

	for (;;) {
		struct mbi_window *due = NULL;
		for (size_t i = 0; i < d->nwindows; i++) {
			struct mbi_window *w = &d->windows[i];
			if (!w->done && w->deadline <= now &&
			    (due == NULL || w->deadline < due->deadline))
				due = w;
		}
		if (due == NULL)
			break;
		if (due->task)
			mbi_complete_task(d, due, 0);
		else
			mbi_complete_push(d, due, "failed", 0);
	}
	/* Forget finished windows (a late completion for one is ignored
	 * anyway), and ask to be woken for the next budget still running. */
	for (size_t i = 0; i < d->nwindows;) {
		struct mbi_window *w = &d->windows[i];
		if (w->done) {
			free(w->push_id);
			free(w->id);
			*w = d->windows[--d->nwindows];
			continue;
		}
		if (next < 0 || w->deadline < next)
			next = w->deadline;
		i++;
	}
	if (next >= 0)
		(void)mb_bus_wake_at(d->bus, next);
}

