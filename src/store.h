/* SPDX-License-Identifier: MIT */
/*
 * store.h - the durable store's write queue and loaders, shared by the store
 * actor (journal, key-value state) and the deliver actor (inbox, outbox,
 * tokens, payload hashes).
 */
#ifndef MB_STORE_H
#define MB_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <pthread.h>

#include <sqlite3.h>

#include "mobbus.h"

/* The schema this mobbus writes (PRAGMA user_version). */
#define STORE_SCHEMA_VERSION 1

/* One write. Strings and blob are owned by the op once submitted. */
enum mbi_op_kind {
	MBI_OP_JOURNAL,     /* s1 topic, i1 at_ms, blob envelope */
	MBI_OP_OUT_ADD,     /* i1 seq, i2 state, s1 topic, s2 note id, blob */
	MBI_OP_OUT_SET,     /* i1 seq, i2 state, blob envelope or NULL */
	MBI_OP_OUT_DEL,     /* i1 seq */
	MBI_OP_ACK,         /* s1 note id, i1 at_ms: every handed copy */
	MBI_OP_NOTE,        /* s1 id, s2 collapse id, i1 arrival, i2 tap,
	                     * i3 received_ms */
	MBI_OP_TOKEN_ACK,   /* s1 os, s2 token */
	MBI_OP_SEEN,        /* s1 hash, s2 id, i1 first_ms, i2 by_hash,
	                     * i3 generation */
	MBI_OP_KV_PUT,      /* s1 key, blob value, i1 at_ms */
	MBI_OP_KV_DEL,      /* s1 key */
	MBI_OP_DELIVERED,   /* s1 note id, i1 at_ms, i2 1 if a redelivery */
	MBI_OP_DELIVERED_ACK, /* both at once (ack "auto"): s1, i1, i2 */
};

struct mbi_op {
	enum mbi_op_kind kind;
	int64_t i1, i2, i3;
	char *s1, *s2;
	void *blob;
	size_t bloblen;
	struct mbi_op *next;
};

/* The writer ticks every commit delay while writes keep coming, and
 * sleeps once this many ticks in a row found none. */
#define MBI_STORE_LINGER_TICKS 8

/* Outbox states: what a waiting or handed message is. */
#define MBI_OUT_WAITING 0   /* not yet handed to a consumer */
#define MBI_OUT_HANDED 1    /* handed, waiting for its ack (manual) */

/*
 * mbi_store_submit - queue op for the next group commit and return at once.
 * Takes ownership of op and its strings (heap-allocated, freed with free()).
 * A store that has failed still takes ops and drops them (the bus keeps
 * delivering from memory). st may be NULL: the op is freed.
 */
void mbi_store_submit(mb_store *st, struct mbi_op *op);

/*
 * mbi_store_wake_hold, mbi_store_wake_release - between the two, this
 * thread's submits to one store are kept aside and the release queues them
 * at once, in order, waking the writer then. The deliver actor writes as it
 * goes and hands a message to the consumer in between: this queues its
 * writes with one lock and keeps the writer's wake-up behind the
 * consumer's. They nest; a handler must release before it returns.
 */
void mbi_store_wake_hold(void);
void mbi_store_wake_release(void);

/* mbi_op_new - a zeroed op of kind; NULL when out of memory. */
struct mbi_op *mbi_op_new(enum mbi_op_kind kind);
/* mbi_op_blob - copy an envelope's wire form into op->blob. */
int mbi_op_blob(struct mbi_op *op, const mb_envelope *env);

/* Loaders for a starting actor: call fn once per row, in order. They read
 * through the store's own read connection; any thread. */
struct mbi_out_row {
	int64_t seq;
	const char *topic;
	const char *note_id;
	int state;
	const void *env;
	size_t envlen;
};
/* Outbox rows with after < seq <= upto, at most limit, in seq order. */
int mbi_store_load_outbox(mb_store *st, int64_t after, int64_t upto, int limit,
    void (*fn)(void *arg, const struct mbi_out_row *row), void *arg);
/* mbi_store_outbox_max - the highest outbox seq (0 when empty). */
int mbi_store_outbox_max(mb_store *st, int64_t *max);
/* The newest limit inbox entries, oldest first. */
int mbi_store_load_notes(mb_store *st, int limit,
    void (*fn)(void *arg, const char *id, int arrival, int tap), void *arg);
/* mbi_store_note - one inbox entry: MB_OK, MB_EFIELD when absent, MB_EDB. */
int mbi_store_note(mb_store *st, const char *id, int *arrival, int *tap);
int mbi_store_load_seen(mb_store *st,
    void (*fn)(void *arg, const char *hash, const char *id, int64_t first,
        int by_hash, int generation),
    void *arg);
/* mbi_store_token_acked - the last acknowledged token of os into buf ("" if
 * none). */
int mbi_store_token_acked(mb_store *st, const char *os, char *buf,
    size_t len);
/* mbi_store_ok - whether the store is writing (0 after a failure or
 * once closed). */
int mbi_store_ok(mb_store *st);

/*
 * mbi_store_hold, mbi_store_release - an actor that keeps st (the deliver
 * actor) holds it from its start to its release, because mb_store_close
 * comes before mb_bus_close stops that actor. A closed store drops what is
 * submitted; its memory goes with the last release. NULL is a no-op.
 */
void mbi_store_hold(mb_store *st);
void mbi_store_release(mb_store *st);

/* The store itself; private to store.c and state.c. */
enum store_stmt {
	ST_JOURNAL,
	ST_OUT_ADD,
	ST_OUT_SET,
	ST_OUT_SET_STATE,
	ST_OUT_DEL,
	ST_ACK_OUT,
	ST_ACK_NOTE,
	ST_NOTE,
	ST_TOKEN,
	ST_SEEN,
	ST_KV_PUT,
	ST_KV_DEL,
	ST_DELIVERED,
	ST_DELIVERED_ACK,
	ST_BEGIN,
	ST_COMMIT,
	ST_COUNT
};

struct mb_store {
	mb_bus *bus;
	mb_pub *pub;
	mb_actor *actor;
	char *path;
	unsigned delay_ms;
	unsigned batch_max;

	sqlite3 *wdb;                 /* writer thread only */
	sqlite3_stmt *stmt[ST_COUNT];
	sqlite3 *rdb;                 /* under rlock */
	pthread_mutex_t rlock;

	pthread_mutex_t lock;
	pthread_cond_t wake_cv;       /* writer: work or flush wanted */
	pthread_cond_t done_cv;       /* flushers: a commit finished */
	struct mbi_op *head, *tail;   /* queued */
	struct mbi_op *batch;         /* taken by the writer, not committed */
	uint64_t queued, committed;   /* op counts */
	unsigned nqueued;
	int sleeping;                 /* the writer waits to be woken */
	unsigned idle_ticks;          /* its ticks without writes in a row */
	int flush_now;
	int checkpoint;
	int closing;
	int closed;                   /* mb_store_close began: drop new ops */
	int refs;                     /* the owner and each holder */
	int ok;                       /* 0 once the database failed */
	int wal_frames;               /* writer thread only */
	pthread_t thr;
	int thr_started;
};

/* Between store.c (open, close, actor) and store_write.c (the writer). */
void mbi_op_free(struct mbi_op *op);
int mbi_store_exec(sqlite3 *db, const char *sql);
void mbi_store_fail(mb_store *st, const char *what, const char *msg, int rc);
void *mbi_store_writer(void *arg);
uint64_t mbi_store_now_ns(void);
int mbi_store_prepare(mb_store *st);

/* mbi_store_commit_wait - wait for the commit that covers every op queued
 * now (store.c). */
int mbi_store_commit_wait(mb_store *st, int checkpoint, int timeout_ms);

#endif
