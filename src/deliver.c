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
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliver.h"
#include "mobbus.h"
#include "store.h"

static const char *const deliver_topics[] = { "notify/", MB_TOPIC_TOKEN,
	MB_TOPIC_LIFECYCLE, MB_TOPIC_WAKE, "conn/net", MB_TOPIC_CMD,
	MB_TOPIC_TIME, MB_TOPIC_OUT, NULL };

static int
on_notification(struct mbi_deliver *d, const mb_envelope *in, const char *topic)
{
	const Mobbus__Notification *n = in->notification;
	Mobbus__Notification nv;
	char id[256];
	struct mbi_note *note;
	mb_envelope env;
	int bg = n->presentation == MOBBUS__NOTIFICATION__PRESENTATION__BACKGROUND;
	int tap = n->presentation == MOBBUS__NOTIFICATION__PRESENTATION__TAP;
	struct mbi_window *w = NULL;

	(void)topic;
	mbi_identity_resolve(d, n, in->at_ms, id, sizeof(id));
	if ((note = mbi_note_get(d, id)) == NULL)
		return MB_ENOMEM;
	if (*n->push_id && n->budget_ms && !tap)
		w = mbi_window_add(d, 0, n->push_id, id, in->at_ms + n->budget_ms);
	if (tap) {
		if (note->tap) {
			struct mbi_out *o = mbi_queued_tap(d, id);
			Mobbus__Notification *q = o ? o->env->notification : NULL;
			/* A later copy of a tap still waiting gives its action
			 * (reading 5). */
			if (q != NULL && n->action_or_null_case ==
			        MOBBUS__NOTIFICATION__ACTION_OR_NULL_ACTION) {
				if (q->action_or_null_case !=
				    MOBBUS__NOTIFICATION__ACTION_OR_NULL_ACTION)
					q->action = NULL;
				mbi_pb_str_set(&q->action, n->action);
				q->action_or_null_case =
				    MOBBUS__NOTIFICATION__ACTION_OR_NULL_ACTION;
				mbi_persist_out(d, MBI_OP_OUT_SET, o->seq,
				    MBI_OUT_WAITING, NULL, o->env);
			}
			return MB_OK;
		}
		note->tap = 1;
		mbi_persist_note(d, note, n->collapse_id, in->at_ms);
	} else {
		if (note->arrival) {
			/* Already handed as an arrival: this copy adds nothing,
			 * and its fetch window closes at once. */
			if (w != NULL)
				mbi_complete_push(d, w, "no_data", 0);
			return MB_OK;
		}
		note->arrival = 1;
		mbi_persist_note(d, note, n->collapse_id, in->at_ms);
	}
	/* What the consumer gets: this copy under its identity. */
	nv = *n;
	nv.id = id;
	env = *in;
	env.notification = &nv;
	if (mbi_out_put_copy(d, bg ? "app/push_fired" : "app/notification",
	        &env, 1) != MB_OK)
		return MB_ENOMEM;
	if (w != NULL && n->complete_now)
		mbi_complete_push(d, w, "no_data", 1);
	return MB_OK;
}

static int
on_rejected(struct mbi_deliver *d, const mb_envelope *in)
{
	mb_envelope *env = mbi_env_dup(in);
	struct mbi_window *w;

	if (env == NULL)
		return MB_ENOMEM;
	mbi_out_put(d, "app/error", env, 0, 0);
	if (*in->error->push_id &&
	    (w = mbi_window_add(d, 0, in->error->push_id, "", in->at_ms)) != NULL)
		mbi_complete_push(d, w, "failed", 1);
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
	mbi_strlcpy(d->token_announced[k], tok, sizeof(d->token_announced[k]));
	if ((env = mbi_env_dup(in)) == NULL)
		return MB_ENOMEM;
	return mbi_out_put(d, "app/push_token", env, 0, 0);
}

/* A token ack names the token by value; it belongs to the platform whose
 * token it is (the last one announced with that value, else this device's). */
static void
ack_token(struct mbi_deliver *d, const char *tok)
{
	int k = strcmp(d->token_announced[0], tok) == 0 ? 0 :
	    strcmp(d->token_announced[1], tok) == 0     ? 1 :
	                                                  d->os_slot;

	mbi_strlcpy(d->token_acked[k], tok, sizeof(d->token_acked[k]));
	mbi_persist_str(d, MBI_OP_TOKEN_ACK, k ? "android" : "ios", tok, 0, 0, 0);
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
	mbi_persist_str(d, MBI_OP_ACK, id, NULL, at, 0, 0);
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
			mbi_flush_queue(d);
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
			mbi_persist_str(d, MBI_OP_DELIVERED, u->env->notification->id,
			    NULL, in->at_ms, 1, 0);
			mbi_emit(d, u->topic, u->env);
		}
		mbi_flush_queue(d);
		return MB_OK;
	case MOBBUS__APP_COMMAND__DO__ACK:
		if (*c->token)
			ack_token(d, c->token);
		else
			ack_note(d, c->id, in->at_ms);
		return MB_OK;
	case MOBBUS__APP_COMMAND__DO__COMPLETE:
		/* A late or unknown completion is ignored (reading 7). */
		if ((w = mbi_window_find(d, c->push_id, c->id)) == NULL)
			return MB_OK;
		if (w->task)
			mbi_complete_task(d, w, strcmp(c->result, "failed") != 0);
		else
			mbi_complete_push(d, w, c->result, 0);
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
		if (mbi_window_add(d, 1, "", ww->id, in->at_ms + ww->budget_ms) ==
		    NULL)
			return MB_ENOMEM;
		if ((env = mbi_env_dup(in)) == NULL)
			return MB_ENOMEM;
		return mbi_out_put(d, "app/wake_fired", env, 0, 0);
	}
	if (ww->phase == MOBBUS__WAKE_WINDOW__PHASE__EXPIRE &&
	    (w = mbi_window_find(d, NULL, ww->id)) != NULL && w->task)
		mbi_complete_task(d, w, 0);
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
	mb_envelope *env = mbi_env_dup(in);

	if (env == NULL)
		return MB_ENOMEM;
	if (strncmp(topic, MB_TOPIC_EFFECT, strlen(MB_TOPIC_EFFECT)) == 0) {
		if (d->nqueue > 0 && !d->consumer_up)
			return mbi_out_put(d, topic, env, 1, 0);
		mbi_emit(d, topic, env);
		mobbus__envelope__free_unpacked(env, NULL);
		return MB_OK;
	}
	return mbi_out_put(d, topic, env, 0, 0);
}

static int
deliver_handle(struct mbi_deliver *d, const mb_envelope *in)
{
	mb_envelope *env;

	if (strncmp(in->topic, MB_TOPIC_OUT, strlen(MB_TOPIC_OUT)) == 0)
		return forward(d, in);
	switch (in->body_case) {
	case MOBBUS__ENVELOPE__BODY_TICK:
		mbi_fire_timers(d, in->tick->now_ms);
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
		if ((env = mbi_env_dup(in)) == NULL)
			return MB_ENOMEM;
		return mbi_out_put(d, "app/device", env, 0, 0);
	default:
		return MB_OK;
	}
}

/*
 * Inline runs (mb_actor_ops.inline_ok): the handler never blocks, except
 * where it reads the store: an identity the cache let go of, and the
 * backlog an earlier process left, handed when the consumer subscribes.
 * Those, and a consumer that may block, wait for the actor's own thread.
 */
static bool
deliver_inline_ok_cb(mb_actor *a, void *state, const mb_envelope *in)
{
	struct mbi_deliver *d = state;

	(void)a;
	if (d->consumer != NULL && !d->consumer_inline)
		return false;
	if (in->body_case == MOBBUS__ENVELOPE__BODY_NOTIFICATION)
		return mbi_identity_known(d, in->notification, in->at_ms);
	if (in->body_case == MOBBUS__ENVELOPE__BODY_APP &&
	    (in->app->do_ == MOBBUS__APP_COMMAND__DO__SUBSCRIBE ||
	        in->app->do_ == MOBBUS__APP_COMMAND__DO__RESTART))
		return d->backlog_after >= d->backlog_end;
	return true;
}

static int
deliver_handle_cb(mb_actor *a, void *state, const mb_envelope *in)
{
	int rv;

	(void)a;
	/* What this envelope writes is queued as it goes; the writer is woken
	 * once the consumer has it. */
	mbi_store_wake_hold();
	rv = deliver_handle(state, in);
	mbi_store_wake_release();
	return rv;
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
	mbi_strlcpy(s->hash, hash, sizeof(s->hash));
	mbi_strlcpy(s->id, id, sizeof(s->id));
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
	d->consumer_inline = o->consumer_inline;
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
	.inline_ok = deliver_inline_ok_cb,
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
		if (opts->size >= offsetof(struct mb_deliver_opts,
		        consumer_inline) + sizeof(opts->consumer_inline))
			o->consumer_inline = opts->consumer_inline;
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
