/* SPDX-License-Identifier: MIT */
/*
 * outbox.c - handing messages to the consumer: at once when it is up, else
 * in order in the outbox (in memory, and in the store for what must survive a
 * kill), the consumer called first on the deliver actor's own thread.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliver.h"
#include "mobbus.h"
#include "store.h"

int
mbi_is_notification(const mb_envelope *env)
{
	return env->body_case == MOBBUS__ENVELOPE__BODY_NOTIFICATION &&
	    env->notification->presentation !=
	    MOBBUS__NOTIFICATION__PRESENTATION__BACKGROUND;
}

/* Outbox writes; each a no-op without a store. */
void
mbi_persist_out(struct mbi_deliver *d, enum mbi_op_kind kind, int64_t seq,
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

void
mbi_persist_note(struct mbi_deliver *d, const struct mbi_note *n,
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

void
mbi_persist_str(struct mbi_deliver *d, enum mbi_op_kind kind, const char *s1,
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
void
mbi_emit(struct mbi_deliver *d, const char *topic, mb_envelope *env)
{
	if (d->consumer != NULL)
		(void)d->consumer->receive(d->consumer_arg, env);
	(void)mb_publish(d->pub, topic, env);
}

/* Whether handing env keeps it: a notification under manual ack, until
 * its ack (while there is room to track it). */
static int
hand_keeps(const struct mbi_deliver *d, const mb_envelope *env)
{
	return d->manual_ack && mbi_is_notification(env) &&
	    d->nunacked < MBI_UNACKED_MAX;
}

/*
 * Hand one message to the consumer. A notification under manual ack stays
 * in the unacked list (and in the outbox as handed) until its ack; anything
 * else is done with. Takes over o->env when owned; otherwise o->env is the
 * caller's, and must not be one that hand_keeps.
 */
static void
hand(struct mbi_deliver *d, struct mbi_out *o, int queued, int owned)
{
	mb_envelope *env = o->env;
	int keep = hand_keeps(d, env);

	if (mbi_is_notification(env))
		env->notification->redelivered = o->earlier;
	/* The consumer first; the bookkeeping after, off its latency. */
	mbi_emit(d, o->topic, env);
	/* ack "auto": the hand-off is the acknowledgement, one write. */
	if (env->body_case == MOBBUS__ENVELOPE__BODY_NOTIFICATION)
		mbi_persist_str(d, d->manual_ack ? MBI_OP_DELIVERED :
		    MBI_OP_DELIVERED_ACK, env->notification->id, NULL,
		    env->at_ms, o->earlier, 0);
	if (keep) {
		struct mbi_out *u = &d->unacked[d->nunacked++];
		*u = *o;
		u->earlier = 0;
		if (queued)
			mbi_persist_out(d, MBI_OP_OUT_SET, o->seq, MBI_OUT_HANDED,
			    NULL, NULL);
		else
			mbi_persist_out(d, MBI_OP_OUT_ADD, o->seq, MBI_OUT_HANDED,
			    o->topic, env);
		return;
	}
	if (queued)
		mbi_persist_out(d, MBI_OP_OUT_DEL, o->seq, 0, NULL, NULL);
	if (owned)
		mobbus__envelope__free_unpacked(env, NULL);
}

void
mbi_hand(struct mbi_deliver *d, struct mbi_out *o, int queued)
{
	hand(d, o, queued, 1);
}

/*
 * mbi_out_put of a copy of env. When the consumer takes env at once and
 * nothing keeps it, env itself is handed and no copy is made: the common
 * case costs no encode and decode.
 */
int
mbi_out_put_copy(struct mbi_deliver *d, const char *topic, mb_envelope *env,
    int persist)
{
	mb_envelope *copy;

	if (d->consumer_up && d->nqueue == 0 && !hand_keeps(d, env)) {
		struct mbi_out o = { .seq = persist ? d->next_seq++ : 0,
			.env = env };
		mbi_strlcpy(o.topic, topic, sizeof(o.topic));
		hand(d, &o, 0, 0);
		return MB_OK;
	}
	if ((copy = mbi_env_dup(env)) == NULL)
		return MB_ENOMEM;
	return mbi_out_put(d, topic, copy, 0, persist);
}

/*
 * Hand env to the consumer now, or queue it (in order, durably when persist
 * is set) until one subscribes. Takes over env.
 */
int
mbi_out_put(struct mbi_deliver *d, const char *topic, mb_envelope *env,
    int force_queue, int persist)
{
	struct mbi_out o = { .seq = persist ? d->next_seq++ : 0, .env = env };

	mbi_strlcpy(o.topic, topic, sizeof(o.topic));
	if (d->consumer_up && !force_queue && d->nqueue == 0) {
		mbi_hand(d, &o, 0);
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
	mbi_persist_out(d, MBI_OP_OUT_ADD, o.seq, MBI_OUT_WAITING, topic, env);
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
		mbi_persist_out(d, MBI_OP_OUT_DEL, r->seq, 0, NULL, NULL);
		return;
	}
	mbi_strlcpy(o.topic, r->topic, sizeof(o.topic));
	/* Handed by an earlier process and never acknowledged: again, as a
	 * redelivery (reading 15). */
	o.earlier = r->state == MBI_OUT_HANDED;
	if (o.earlier && !mbi_is_notification(env)) {
		mbi_persist_out(d, MBI_OP_OUT_DEL, r->seq, 0, NULL, NULL);
		mobbus__envelope__free_unpacked(env, NULL);
		return;
	}
	mbi_hand(d, &o, 1);
}

/*
 * The consumer is up: hand what earlier processes left (a page at a time,
 * from the store), then everything waiting in memory, in the order it was
 * stored.
 */
void
mbi_flush_queue(struct mbi_deliver *d)
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
		mbi_hand(d, &d->queue[i], 1);
	d->nqueue = 0;
}

/* Find a queued, not yet handed tap of this id. */
struct mbi_out *
mbi_queued_tap(struct mbi_deliver *d, const char *id)
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

