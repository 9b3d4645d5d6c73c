/* SPDX-License-Identifier: MIT */
/*
 * beam_consumer.h - the BEAM consumer: the deliver actor's consumer (or a
 * sink on the bus), which turns messages into terms and sends them to the
 * subscribed Erlang processes, from the deliver actor's thread or its own.
 *
 * THREAD SAFETY
 * One mutex per consumer guards its queue, its subscriber table and the
 * sender's role (sending). The receive callback (the deliver actor's
 * thread) and the NIF entry points (schedulers) only take it briefly; terms
 * are built and sent by whichever thread holds the sender's role (the
 * receive callback for a small envelope with nothing queued, else the
 * delivery thread) with no lock held except while it copies the table.
 */
#ifndef MB_BEAM_CONSUMER_H
#define MB_BEAM_CONSUMER_H

#include <stdint.h>

#include <erl_nif.h>

#include "mobbus.h"

struct mbb_consumer;

/* The consumer's receive (mb_deliver_opts.consumer or mb_sink_start); its
 * arg is the consumer. */
extern const struct mb_sink_ops mbb_consumer_sink_ops;

/*
 * mbb_consumer_alloc - a consumer and its delivery thread. flags are
 * mbb_message's (MBB_F_DELIVERY_INFO). Errors: MB_ENOMEM.
 */
int mbb_consumer_alloc(struct mbb_consumer **cp, unsigned flags);

/*
 * mbb_consumer_stop - deliver what is queued and stop the thread; the
 * subscriber table stays. Call it after the sink that feeds it has stopped.
 * Idempotent.
 */
void mbb_consumer_stop(struct mbb_consumer *c);

/* mbb_consumer_free - mbb_consumer_stop, then free. NULL is a no-op. */
void mbb_consumer_free(struct mbb_consumer *c);

/*
 * mbb_consumer_add - subscribe pid to kinds (enum mbb_kind bits), or change
 * the kinds of a pid already subscribed. mon is stored with a new entry
 * (NULL: none). *added tells whether the pid was new, *first whether the
 * table was empty before. Errors: MB_ENOMEM.
 */
int mbb_consumer_add(struct mbb_consumer *c, const ErlNifPid *pid,
    unsigned kinds, const ErlNifMonitor *mon, int *added, int *first);

/*
 * mbb_consumer_remove - drop the subscriber with this pid (mon NULL) or this
 * monitor (pid NULL). Returns 1 when one was removed, filling *mon_out (if
 * not NULL) with its monitor and *has_mon with whether it had one;
 * *now_empty tells whether none is left.
 */
int mbb_consumer_remove(struct mbb_consumer *c, const ErlNifPid *pid,
    const ErlNifMonitor *mon, ErlNifMonitor *mon_out, int *has_mon,
    int *now_empty);

/*
 * mbb_consumer_prune - drop subscribers that are no longer alive (their
 * monitor may not have fired yet). env: the calling NIF's. Returns how many
 * remain.
 */
size_t mbb_consumer_prune(struct mbb_consumer *c, ErlNifEnv *env);

/*
 * mbb_consumer_clear - drop every subscriber; the monitors they had are
 * copied into *mons (malloc'd, caller frees; NULL when none), *nmons.
 */
void mbb_consumer_clear(struct mbb_consumer *c, ErlNifMonitor **mons,
    size_t *nmons);

/* mbb_consumer_line - queue {mobbus_replay, Line} for subscribers of
 * MBB_K_OUT, after everything queued before. */
int mbb_consumer_line(struct mbb_consumer *c, const char *line, size_t len);

/* mbb_consumer_sync - queue {mobbus_sync, Token} for pid, after everything
 * queued before. */
int mbb_consumer_sync(struct mbb_consumer *c, const ErlNifPid *pid,
    int64_t token);

struct mbb_consumer_stats {
	uint64_t received;     /* envelopes the sink took */
	uint64_t direct;       /* of which the receive callback sent itself */
	uint64_t sent;         /* messages enif_send accepted (not markers) */
	uint64_t send_failed;  /* sends to a process already gone */
	uint64_t dropped;      /* envelopes no subscriber wanted */
	uint64_t queued;       /* waiting for the delivery thread now */
	uint64_t subscribers;
};
void mbb_consumer_stats(struct mbb_consumer *c, struct mbb_consumer_stats *st);

/* Live process-independent envs the consumers hold (leak measurement). */
long mbb_envs_live(void);

#endif
