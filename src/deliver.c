/* SPDX-License-Identifier: MIT */
/*
 * deliver.c - the deliver actor: what the consumer receives, once and in order.
 *
 * DESIGN
 * Bridges publish every copy of every platform moment; this actor decides what
 * the consumer sees. A notification's copies are merged by identity (the
 * explicit id the bridge found, else an earlier copy of the same payload within
 * ten minutes, else the iOS request id, else the payload hash). Arrival
 * (foreground notification or push_fired) and tap are handed at most once
 * each. While no consumer is subscribed, messages wait in an ordered queue, and
 * a tap still waiting can take a later copy's action. Fetch windows and
 * background tasks are completed exactly once: by the consumer, by the bridge's
 * own rule, or when their budget runs out on a time/tick.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliver.h"
#include "mobbus.h"
#include "store.h"

#define HASH_WINDOW_MS (10 * 60 * 1000)

static const char *const deliver_topics[] = { "notify/", MB_TOPIC_TOKEN,
	MB_TOPIC_LIFECYCLE, MB_TOPIC_WAKE, "conn/net", MB_TOPIC_CMD,
	MB_TOPIC_TIME, MB_TOPIC_OUT, NULL };

static void persist_str(struct mbi_deliver *d, enum mbi_op_kind kind,
    const char *s1, const char *s2, int64_t i1, int64_t i2, int64_t i3);

/* Deep copy of an envelope through its wire form. */
static mb_envelope *
env_dup(const mb_envelope *env)
{
	size_t n = mobbus__envelope__get_packed_size(env);
	uint8_t *buf = malloc(n ? n : 1);
	mb_envelope *copy;

	if (buf == NULL)
		return NULL;
	mobbus__envelope__pack(env, buf);
	copy = mobbus__envelope__unpack(NULL, n, buf);
	free(buf);
	return copy;
}

static char *
xstrdup(const char *s)
{
	return strdup(s ? s : "");
}

/* Replace a string field of an unpacked message. protobuf-c leaves absent
 * proto3 strings pointing at its shared empty string, which is not ours to
 * free. */
static void
pb_str_set(char **field, const char *v)
{
	if (*field != NULL && *field != protobuf_c_empty_string)
		free(*field);
	*field = xstrdup(v);
}

/*
 * The record of id: from the cache, else from the store's inbox (an
 * identity older than the cache), else a new one.
 */
static struct mbi_note *
note_get(struct mbi_deliver *d, const char *id)
{
	struct mbi_note *n = mbi_notes_find(&d->notes, id);
	int arrival = 0, tap = 0, known;

	if (n != NULL)
		return n;
	known = d->store != NULL && mbi_notes_maybe_older(&d->notes, id) &&
	    mbi_store_note(d->store, id, &arrival, &tap) == MB_OK;
	if ((n = mbi_notes_add(&d->notes, id)) != NULL && known) {
		n->arrival = arrival != 0;
		n->tap = tap != 0;
	}
	return n;
}

/*
 * Identity, reading 1 of spec/semantics.md. The bridge already put the
 * platform's explicit id (the app's id key, FCM's message id) into n->id.
 */
static int
identity_resolve(struct mbi_deliver *d, const Mobbus__Notification *n,
    int64_t now, char *out, size_t outlen)
{
	struct mbi_seen *hit = NULL, *slot;
	unsigned generation = 0;

	for (size_t i = 0; i < d->nseen && *n->content_hash; i++) {
		struct mbi_seen *s = &d->seen[i];
		if (strcmp(s->hash, n->content_hash) != 0)
			continue;
		if (now - s->first_at < HASH_WINDOW_MS) {
			if (*n->request_id == '\0' || s->by_hash)
				hit = s;
		} else if (s->generation >= generation) {
			generation = s->generation + 1;
		}
	}
	if (*n->id)
		snprintf(out, outlen, "%s", n->id);
	else if (hit != NULL)
		snprintf(out, outlen, "%s", hit->id);
	else if (*n->request_id)
		snprintf(out, outlen, "%s", n->request_id);
	else if (generation == 0)
		snprintf(out, outlen, "h:%s", n->content_hash);
	else /* the same payload after its window is a new notification */
		snprintf(out, outlen, "h:%s.%u", n->content_hash, generation);
	if (hit != NULL || *n->content_hash == '\0')
		return MB_OK;
	/* Remember this copy; when full, the oldest entry makes room. */
	if (d->nseen < MBI_SEEN_MAX) {
		slot = &d->seen[d->nseen++];
	} else {
		slot = &d->seen[0];
		for (size_t i = 1; i < d->nseen; i++)
			if (d->seen[i].first_at < slot->first_at)
				slot = &d->seen[i];
	}
	snprintf(slot->hash, sizeof(slot->hash), "%s", n->content_hash);
	snprintf(slot->id, sizeof(slot->id), "%s", out);
	slot->first_at = now;
	slot->generation = generation;
	slot->by_hash = *n->id == '\0' && *n->request_id == '\0';
	persist_str(d, MBI_OP_SEEN, slot->hash, slot->id, now, slot->by_hash,
	    generation);
	return MB_OK;
}

static int
is_notification(const mb_envelope *env)
{
	return env->body_case == MOBBUS__ENVELOPE__BODY_NOTIFICATION &&
	    env->notification->presentation !=
	    MOBBUS__NOTIFICATION__PRESENTATION__BACKGROUND;
}

/* Outbox writes; each a no-op without a store. */
static void
persist_out(struct mbi_deliver *d, enum mbi_op_kind kind, int64_t seq,
    int state, const char *topic, const mb_envelope *env)
{
	struct mbi_op *op;

	if (d->store == NULL || seq == 0 || (op = mbi_op_new(kind)) == NULL)
		return;
	op->i1 = seq;
	op->i2 = state;
	if (topic != NULL)
		op->s1 = strdup(topic);
	if (env != NULL && env->body_case == MOBBUS__ENVELOPE__BODY_NOTIFICATION)
		op->s2 = strdup(env->notification->id);
	if (env != NULL)
		(void)mbi_op_blob(op, env);
	mbi_store_submit(d->store, op);
}

static void
persist_note(struct mbi_deliver *d, const struct mbi_note *n,
    const char *collapse_id, int64_t at)
{
	struct mbi_op *op;

	if (d->store == NULL || (op = mbi_op_new(MBI_OP_NOTE)) == NULL)
		return;
	op->s1 = strdup(n->id);
	op->s2 = collapse_id && *collapse_id ? strdup(collapse_id) : NULL;
	op->i1 = n->arrival;
	op->i2 = n->tap;
	op->i3 = at;
	mbi_store_submit(d->store, op);
}

static void
persist_str(struct mbi_deliver *d, enum mbi_op_kind kind, const char *s1,
    const char *s2, int64_t i1, int64_t i2, int64_t i3)
{
	struct mbi_op *op;

	if (d->store == NULL || (op = mbi_op_new(kind)) == NULL)
		return;
	op->s1 = s1 ? strdup(s1) : NULL;
	op->s2 = s2 ? strdup(s2) : NULL;
	op->i1 = i1;
	op->i2 = i2;
	op->i3 = i3;
	mbi_store_submit(d->store, op);
}

/*
 * Give the consumer one message or effect: first straight to the attached
 * consumer, on this thread (no second hop between the bus and the app), then
 * on the bus for anyone else who listens.
 */
static void
emit(struct mbi_deliver *d, const char *topic, mb_envelope *env)
{
	if (d->consumer != NULL)
		(void)d->consumer->receive(d->consumer_arg, env);
	(void)mb_publish(d->pub, topic, env);
}

/*
 * Hand one message to the consumer. A notification under manual ack stays
 * in the unacked list (and in the outbox as handed) until its ack; anything
 * else is done with. Takes over o->env.
 */
static void
hand(struct mbi_deliver *d, struct mbi_out *o, int queued)
{
	mb_envelope *env = o->env;
	int keep = d->manual_ack && is_notification(env) &&
	    d->nunacked < MBI_UNACKED_MAX;

	if (is_notification(env)) {
		env->notification->redelivered = o->earlier;
		persist_str(d, MBI_OP_DELIVERED, env->notification->id, NULL,
		    env->at_ms, o->earlier, 0);
	}
	emit(d, o->topic, env);
	if (keep) {
		struct mbi_out *u = &d->unacked[d->nunacked++];
		*u = *o;
		u->earlier = 0;
		if (queued)
			persist_out(d, MBI_OP_OUT_SET, o->seq, MBI_OUT_HANDED,
			    NULL, NULL);
		else
			persist_out(d, MBI_OP_OUT_ADD, o->seq, MBI_OUT_HANDED,
			    o->topic, env);
		return;
	}
	if (queued)
		persist_out(d, MBI_OP_OUT_DEL, o->seq, 0, NULL, NULL);
	mobbus__envelope__free_unpacked(env, NULL);
}

/*
 * Hand env to the consumer now, or queue it (in order, durably when persist
 * is set) until one subscribes. Takes over env.
 */
static int
out_put(struct mbi_deliver *d, const char *topic, mb_envelope *env,
    int force_queue, int persist)
{
	struct mbi_out o = { .seq = persist ? d->next_seq++ : 0, .env = env };

	snprintf(o.topic, sizeof(o.topic), "%s", topic);
	if (d->consumer_up && !force_queue && d->nqueue == 0) {
		hand(d, &o, 0);
		return MB_OK;
	}
	if (d->nqueue == d->capqueue) {
		size_t cap = d->capqueue ? d->capqueue * 2 : 32;
		struct mbi_out *nq = realloc(d->queue, cap * sizeof(*nq));
		if (nq == NULL) {
			mobbus__envelope__free_unpacked(env, NULL);
			return MB_ENOMEM;
		}
		d->queue = nq;
		d->capqueue = cap;
	}
	d->queue[d->nqueue++] = o;
	persist_out(d, MBI_OP_OUT_ADD, o.seq, MBI_OUT_WAITING, topic, env);
	return MB_OK;
}

static void
backlog_row_cb(void *arg, const struct mbi_out_row *r)
{
	struct mbi_deliver *d = arg;
	mb_envelope *env = mobbus__envelope__unpack(NULL, r->envlen, r->env);
	struct mbi_out o = { .seq = r->seq, .env = env };

	d->backlog_after = r->seq;
	if (env == NULL) {
		/* An unreadable row: say so and drop it, nothing else. */
		(void)mb_publish_error(d->pub, MB_EPROTO,
		    "outbox row %lld is not an envelope; dropped",
		    (long long)r->seq);
		persist_out(d, MBI_OP_OUT_DEL, r->seq, 0, NULL, NULL);
		return;
	}
	snprintf(o.topic, sizeof(o.topic), "%s", r->topic);
	/* Handed by an earlier process and never acknowledged: again, as a
	 * redelivery (reading 15). */
	o.earlier = r->state == MBI_OUT_HANDED;
	if (o.earlier && !is_notification(env)) {
		persist_out(d, MBI_OP_OUT_DEL, r->seq, 0, NULL, NULL);
		mobbus__envelope__free_unpacked(env, NULL);
		return;
	}
	hand(d, &o, 1);
}

/*
 * The consumer is up: hand what earlier processes left (a page at a time,
 * from the store), then everything waiting in memory, in the order it was
 * stored.
 */
static void
flush_queue(struct mbi_deliver *d)
{
	while (d->backlog_after < d->backlog_end) {
		int64_t before = d->backlog_after;
		if (mbi_store_load_outbox(d->store, d->backlog_after,
		        d->backlog_end, MBI_BACKLOG_PAGE, backlog_row_cb,
		        d) != MB_OK ||
		    d->backlog_after == before)
			d->backlog_after = d->backlog_end; /* nothing more */
	}
	for (size_t i = 0; i < d->nqueue; i++)
		hand(d, &d->queue[i], 1);
	d->nqueue = 0;
}

static mb_envelope *
effect_new(Mobbus__Effect__Kind kind)
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
static void
effect_free(mb_envelope *env)
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
static void
effect_send(struct mbi_deliver *d, mb_envelope *env, const char *topic,
    int after_queued)
{
	if (after_queued && d->nqueue > 0 && !d->consumer_up) {
		mb_envelope *copy = env_dup(env);
		if (copy != NULL)
			out_put(d, topic, copy, 1, 0);
	} else {
		emit(d, topic, env);
	}
	effect_free(env);
}

static void
complete_push(struct mbi_deliver *d, struct mbi_window *w, const char *result,
    int after_queued)
{
	mb_envelope *env;

	if (w->done)
		return;
	w->done = 1;
	if ((env = effect_new(MOBBUS__EFFECT__KIND__PUSH_COMPLETION)) == NULL)
		return;
	env->effect->push_id = w->push_id;
	env->effect->result = (char *)result;
	effect_send(d, env, "effect/push_completion", after_queued);
}

static void
complete_task(struct mbi_deliver *d, struct mbi_window *w, int success)
{
	mb_envelope *env;

	if (w->done)
		return;
	w->done = 1;
	if ((env = effect_new(MOBBUS__EFFECT__KIND__TASK_COMPLETED)) == NULL)
		return;
	env->effect->identifier = w->id;
	env->effect->success = success;
	effect_send(d, env, "effect/task_completed", 0);
}

static struct mbi_window *
window_add(struct mbi_deliver *d, int task, const char *push_id,
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
	w->push_id = xstrdup(push_id);
	w->id = xstrdup(id);
	w->deadline = deadline;
	(void)mb_bus_wake_at(d->bus, deadline);
	return w;
}

static struct mbi_window *
window_find(struct mbi_deliver *d, const char *push_id, const char *id)
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
static void
fire_timers(struct mbi_deliver *d, int64_t now)
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
			complete_task(d, due, 0);
		else
			complete_push(d, due, "failed", 0);
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

/* Find a queued, not yet handed tap of this id. */
static struct mbi_out *
queued_tap(struct mbi_deliver *d, const char *id)
{
	for (size_t i = 0; i < d->nqueue; i++) {
		mb_envelope *e = d->queue[i].env;
		if (e->body_case == MOBBUS__ENVELOPE__BODY_NOTIFICATION &&
		    e->notification->presentation ==
		        MOBBUS__NOTIFICATION__PRESENTATION__TAP &&
		    strcmp(e->notification->id, id) == 0)
			return &d->queue[i];
	}
	return NULL;
}

static int
on_notification(struct mbi_deliver *d, const mb_envelope *in, const char *topic)
{
	const Mobbus__Notification *n = in->notification;
	char id[256];
	struct mbi_note *note;
	mb_envelope *env;
	int bg = n->presentation == MOBBUS__NOTIFICATION__PRESENTATION__BACKGROUND;
	int tap = n->presentation == MOBBUS__NOTIFICATION__PRESENTATION__TAP;
	struct mbi_window *w = NULL;

	(void)topic;
	identity_resolve(d, n, in->at_ms, id, sizeof(id));
	if ((note = note_get(d, id)) == NULL)
		return MB_ENOMEM;
	if (*n->push_id && n->budget_ms && !tap)
		w = window_add(d, 0, n->push_id, id, in->at_ms + n->budget_ms);
	if (tap) {
		if (note->tap) {
			struct mbi_out *o = queued_tap(d, id);
			Mobbus__Notification *q = o ? o->env->notification : NULL;
			/* A later copy of a tap still waiting gives its action
			 * (reading 5). */
			if (q != NULL && n->action_or_null_case ==
			        MOBBUS__NOTIFICATION__ACTION_OR_NULL_ACTION) {
				if (q->action_or_null_case !=
				    MOBBUS__NOTIFICATION__ACTION_OR_NULL_ACTION)
					q->action = NULL;
				pb_str_set(&q->action, n->action);
				q->action_or_null_case =
				    MOBBUS__NOTIFICATION__ACTION_OR_NULL_ACTION;
				persist_out(d, MBI_OP_OUT_SET, o->seq,
				    MBI_OUT_WAITING, NULL, o->env);
			}
			return MB_OK;
		}
		note->tap = 1;
		persist_note(d, note, n->collapse_id, in->at_ms);
	} else {
		if (note->arrival) {
			/* Already handed as an arrival: this copy adds nothing,
			 * and its fetch window closes at once. */
			if (w != NULL)
				complete_push(d, w, "no_data", 0);
			return MB_OK;
		}
		note->arrival = 1;
		persist_note(d, note, n->collapse_id, in->at_ms);
	}
	if ((env = env_dup(in)) == NULL)
		return MB_ENOMEM;
	pb_str_set(&env->notification->id, id);
	out_put(d, bg ? "app/push_fired" : "app/notification", env, 0, 1);
	if (w != NULL && n->complete_now)
		complete_push(d, w, "no_data", 1);
	return MB_OK;
}

static int
on_rejected(struct mbi_deliver *d, const mb_envelope *in)
{
	mb_envelope *env = env_dup(in);
	struct mbi_window *w;

	if (env == NULL)
		return MB_ENOMEM;
	out_put(d, "app/error", env, 0, 0);
	if (*in->error->push_id &&
	    (w = window_add(d, 0, in->error->push_id, "", in->at_ms)) != NULL)
		complete_push(d, w, "failed", 1);
	return MB_OK;
}

static int
os_slot(Mobbus__Os os)
{
	return os == MOBBUS__OS__OS_ANDROID ? 1 : 0;
}

static int
on_token(struct mbi_deliver *d, const mb_envelope *in)
{
	const char *tok = in->push_token->token;
	int k = os_slot(in->push_token->os);
	mb_envelope *env;

	d->os_slot = k;
	/* Reading 12: compare by value with the last acknowledged token; at
	 * most once per process while unacknowledged. */
	if (strcmp(tok, d->token_acked[k]) == 0 ||
	    strcmp(tok, d->token_announced[k]) == 0)
		return MB_OK;
	snprintf(d->token_announced[k], sizeof(d->token_announced[k]), "%s",
	    tok);
	if ((env = env_dup(in)) == NULL)
		return MB_ENOMEM;
	return out_put(d, "app/push_token", env, 0, 0);
}

/* A token ack names the token by value; it belongs to the platform whose
 * token it is (the last one announced with that value, else this device's). */
static void
ack_token(struct mbi_deliver *d, const char *tok)
{
	int k = strcmp(d->token_announced[0], tok) == 0 ? 0 :
	    strcmp(d->token_announced[1], tok) == 0     ? 1 :
	                                                  d->os_slot;

	snprintf(d->token_acked[k], sizeof(d->token_acked[k]), "%s", tok);
	persist_str(d, MBI_OP_TOKEN_ACK, k ? "android" : "ios", tok, 0, 0, 0);
}

/* An ack covers every hand-off of that id made before it (reading 15). */
static void
ack_note(struct mbi_deliver *d, const char *id, int64_t at)
{
	for (size_t i = 0; i < d->nunacked;) {
		if (strcmp(d->unacked[i].env->notification->id, id) == 0) {
			mobbus__envelope__free_unpacked(d->unacked[i].env, NULL);
			d->unacked[i] = d->unacked[--d->nunacked];
		} else {
			i++;
		}
	}
	persist_str(d, MBI_OP_ACK, id, NULL, at, 0, 0);
}

static int
on_cmd(struct mbi_deliver *d, const mb_envelope *in)
{
	const Mobbus__AppCommand *c = in->app;
	struct mbi_window *w;

	switch (c->do_) {
	case MOBBUS__APP_COMMAND__DO__SUBSCRIBE:
		if (!d->consumer_up) {
			d->consumer_up = 1;
			flush_queue(d);
		}
		return MB_OK;
	case MOBBUS__APP_COMMAND__DO__UNSUBSCRIBE:
		/* The consumer is gone (its last process exited): hold
		 * messages again; its next subscribe is a RESTART. */
		d->consumer_up = 0;
		return MB_OK;
	case MOBBUS__APP_COMMAND__DO__RESTART:
		/* The consumer crashed and re-subscribed: what it had not
		 * acknowledged is handed again (reading 15). */
		d->consumer_up = 1;
		for (size_t i = 0; i < d->nunacked; i++) {
			struct mbi_out *u = &d->unacked[i];
			if (u->earlier)
				continue; /* flush_queue hands these */
			u->env->notification->redelivered = 1;
			persist_str(d, MBI_OP_DELIVERED, u->env->notification->id,
			    NULL, in->at_ms, 1, 0);
			emit(d, u->topic, u->env);
		}
		flush_queue(d);
		return MB_OK;
	case MOBBUS__APP_COMMAND__DO__ACK:
		if (*c->token)
			ack_token(d, c->token);
		else
			ack_note(d, c->id, in->at_ms);
		return MB_OK;
	case MOBBUS__APP_COMMAND__DO__COMPLETE:
		/* A late or unknown completion is ignored (reading 7). */
		if ((w = window_find(d, c->push_id, c->id)) == NULL)
			return MB_OK;
		if (w->task)
			complete_task(d, w, strcmp(c->result, "failed") != 0);
		else
			complete_push(d, w, c->result, 0);
		return MB_OK;
	default:
		return MB_OK;
	}
}

static int
on_wake(struct mbi_deliver *d, const mb_envelope *in)
{
	const Mobbus__WakeWindow *ww = in->wake;
	struct mbi_window *w;
	mb_envelope *env;

	if (ww->kind != MOBBUS__WAKE_WINDOW__KIND__TASK)
		return MB_OK;
	if (ww->phase == MOBBUS__WAKE_WINDOW__PHASE__OPEN) {
		if (window_add(d, 1, "", ww->id, in->at_ms + ww->budget_ms) ==
		    NULL)
			return MB_ENOMEM;
		if ((env = env_dup(in)) == NULL)
			return MB_ENOMEM;
		return out_put(d, "app/wake_fired", env, 0, 0);
	}
	if (ww->phase == MOBBUS__WAKE_WINDOW__PHASE__EXPIRE &&
	    (w = window_find(d, NULL, ww->id)) != NULL && w->task)
		complete_task(d, w, 0);
	return MB_OK;
}

/*
 * What other actors have for the consumer ("out/app/..." and
 * "out/effect/...") goes through here, so the consumer sees one order.
 * Effects go at once; messages wait for the consumer, in memory only.
 */
static int
forward(struct mbi_deliver *d, const mb_envelope *in)
{
	const char *topic = in->topic + strlen(MB_TOPIC_OUT);
	mb_envelope *env = env_dup(in);

	if (env == NULL)
		return MB_ENOMEM;
	if (strncmp(topic, MB_TOPIC_EFFECT, strlen(MB_TOPIC_EFFECT)) == 0) {
		if (d->nqueue > 0 && !d->consumer_up)
			return out_put(d, topic, env, 1, 0);
		emit(d, topic, env);
		mobbus__envelope__free_unpacked(env, NULL);
		return MB_OK;
	}
	return out_put(d, topic, env, 0, 0);
}

static int
deliver_handle_cb(mb_actor *a, void *state, const mb_envelope *in)
{
	struct mbi_deliver *d = state;
	mb_envelope *env;

	(void)a;
	if (strncmp(in->topic, MB_TOPIC_OUT, strlen(MB_TOPIC_OUT)) == 0)
		return forward(d, in);
	switch (in->body_case) {
	case MOBBUS__ENVELOPE__BODY_TICK:
		fire_timers(d, in->tick->now_ms);
		return MB_OK;
	case MOBBUS__ENVELOPE__BODY_NOTIFICATION:
		return on_notification(d, in, in->topic);
	case MOBBUS__ENVELOPE__BODY_ERROR:
		return on_rejected(d, in);
	case MOBBUS__ENVELOPE__BODY_PUSH_TOKEN:
		return on_token(d, in);
	case MOBBUS__ENVELOPE__BODY_APP:
		return on_cmd(d, in);
	case MOBBUS__ENVELOPE__BODY_WAKE:
		return on_wake(d, in);
	case MOBBUS__ENVELOPE__BODY_LIFECYCLE:
		if (in->lifecycle->event == MOBBUS__LIFECYCLE__EVENT__LAUNCH ||
		    in->lifecycle->event == MOBBUS__LIFECYCLE__EVENT__SUSPEND)
			return MB_OK;
		/* Device events wait for the consumer too. */
		__attribute__((fallthrough));
	case MOBBUS__ENVELOPE__BODY_CONNECTIVITY:
		if ((env = env_dup(in)) == NULL)
			return MB_ENOMEM;
		return out_put(d, "app/device", env, 0, 0);
	default:
		return MB_OK;
	}
}

static void
load_note_cb(void *arg, const char *id, int arrival, int tap)
{
	struct mbi_deliver *d = arg;
	struct mbi_note *n = mbi_notes_find(&d->notes, id);

	if (n == NULL)
		n = mbi_notes_add(&d->notes, id);
	if (n != NULL) {
		n->arrival = arrival != 0;
		n->tap = tap != 0;
	}
}

static void
load_seen_cb(void *arg, const char *hash, const char *id, int64_t first,
    int by_hash, int generation)
{
	struct mbi_deliver *d = arg;
	struct mbi_seen *s;

	if (d->nseen == MBI_SEEN_MAX) /* keep the newest */
		memmove(&d->seen[0], &d->seen[1], --d->nseen * sizeof(d->seen[0]));
	s = &d->seen[d->nseen++];
	snprintf(s->hash, sizeof(s->hash), "%s", hash);
	snprintf(s->id, sizeof(s->id), "%s", id);
	s->first_at = first;
	s->by_hash = by_hash;
	s->generation = (unsigned)generation;
}

static int
deliver_init_cb(mb_actor *a, void *arg, void **statep)
{
	const struct mb_deliver_opts *o = arg;
	struct mbi_deliver *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return MB_ENOMEM;
	if (mbi_notes_init(&d->notes, MBI_NOTES_MAX) != 0) {
		free(d);
		return MB_ENOMEM;
	}
	d->manual_ack = o->manual_ack;
	d->pub = mb_actor_pub(a);
	d->bus = mb_actor_bus(a);
	d->store = o->store;
	d->consumer = o->consumer;
	d->consumer_arg = o->consumer_arg;
	d->next_seq = 1;
	if (d->store != NULL && mbi_store_ok(d->store)) {
		/* What an earlier process left: its reads are the one place
		 * the store is on a delivery thread, once, at start. */
		(void)mbi_store_load_notes(d->store, MBI_NOTES_MAX, load_note_cb,
		    d);
		/* A full cache may have left older ids in the store. */
		d->notes.saturated = d->notes.n == d->notes.cap;
		(void)mbi_store_load_seen(d->store, load_seen_cb, d);
		(void)mbi_store_outbox_max(d->store, &d->backlog_end);
		d->next_seq = d->backlog_end + 1;
		(void)mbi_store_token_acked(d->store, "ios", d->token_acked[0],
		    sizeof(d->token_acked[0]));
		(void)mbi_store_token_acked(d->store, "android",
		    d->token_acked[1], sizeof(d->token_acked[1]));
	}
	*statep = d;
	return MB_OK;
}

static void
deliver_terminate_cb(mb_actor *a, void *state)
{
	struct mbi_deliver *d = state;

	(void)a;
	if (d == NULL)
		return;
	for (size_t i = 0; i < d->nqueue; i++)
		mobbus__envelope__free_unpacked(d->queue[i].env, NULL);
	for (size_t i = 0; i < d->nunacked; i++)
		mobbus__envelope__free_unpacked(d->unacked[i].env, NULL);
	mbi_notes_fini(&d->notes);
	for (size_t i = 0; i < d->nwindows; i++) {
		free(d->windows[i].push_id);
		free(d->windows[i].id);
	}
	free(d->queue);
	free(d->windows);
	free(d);
}

static void
deliver_release_cb(void *arg)
{
	struct mb_deliver_opts *o = arg;

	mbi_store_release(o->store);
	free(o);
}

static const struct mb_actor_ops deliver_ops = {
	.size = sizeof(struct mb_actor_ops),
	.name = "deliver",
	.topics = deliver_topics,
	.init = deliver_init_cb,
	.handle = deliver_handle_cb,
	.terminate = deliver_terminate_cb,
	.release = deliver_release_cb,
};

/* What the actor keeps of its options: the options and the consumer's ops,
 * copied so the caller's may go away. */
struct deliver_cfg {
	struct mb_deliver_opts o; /* first: the actor's arg */
	struct mb_sink_ops consumer;
};

int
mb_deliver_start(mb_bus *bus, const struct mb_deliver_opts *opts,
    mb_actor **ap)
{
	struct deliver_cfg *cfg = calloc(1, sizeof(*cfg));
	struct mb_deliver_opts *o;
	int rv;

	if (cfg == NULL)
		return MB_ENOMEM;
	o = &cfg->o;
	if (opts != NULL) {
		o->manual_ack = opts->manual_ack;
		o->store = opts->store;
		if (opts->consumer != NULL) {
			if (opts->consumer->receive == NULL) {
				free(cfg);
				return MB_EINVAL;
			}
			cfg->consumer = *opts->consumer;
			o->consumer = &cfg->consumer;
			o->consumer_arg = opts->consumer_arg;
		}
	}
	o->size = sizeof(*o);
	/* The store is closed before the bus stops this actor: hold it. */
	mbi_store_hold(o->store);
	if ((rv = mb_actor_start(bus, &deliver_ops, o, ap)) != MB_OK) {
		mbi_store_release(o->store);
		free(cfg);
	}
	return rv;
}
