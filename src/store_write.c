/* SPDX-License-Identifier: MIT */
/*
 * store_write.c - the store's writes: the op queue, the group-commit writer
 * thread that applies a batch in one transaction with prepared statements,
 * checkpoints on its own schedule, and mb_flush. See store.c for the design
 * and the lock order.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "store.h"

#define STORE_JOURNAL_KEEP 100000
/* Identities remembered on disk: the newest this many notifications. */
#define STORE_INBOX_KEEP 100000
/* Checkpoint once the WAL holds this many pages (~4 MB), so neither the
 * file nor its mapped index grows without bound between backgroundings. */
#define STORE_WAL_FRAMES 1000

static const char *const store_sql[ST_COUNT] = {
	[ST_JOURNAL] = "INSERT INTO journal(at_ms, topic, envelope) VALUES(?1, ?2, ?3)",
	[ST_OUT_ADD] = "INSERT OR REPLACE INTO outbox(seq, topic, note_id, state,"
	               " envelope) VALUES(?1, ?2, ?3, ?5, ?4)",
	[ST_OUT_SET] = "UPDATE outbox SET state = ?2, envelope = ?3 WHERE seq = ?1",
	[ST_OUT_SET_STATE] = "UPDATE outbox SET state = ?2 WHERE seq = ?1",
	[ST_OUT_DEL] = "DELETE FROM outbox WHERE seq = ?1",
	[ST_ACK_OUT] = "DELETE FROM outbox WHERE note_id = ?1 AND state = 1",
	[ST_ACK_NOTE] = "UPDATE inbox SET acked_ms = ?2 WHERE id = ?1",
	[ST_NOTE] = "INSERT INTO inbox(id, collapse_id, arrival, tap, received_ms)"
	            " VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(id) DO UPDATE SET"
	            " arrival = max(arrival, excluded.arrival),"
	            " tap = max(tap, excluded.tap)",
	[ST_TOKEN] = "INSERT OR REPLACE INTO tokens(os, acked) VALUES(?1, ?2)",
	[ST_SEEN] = "INSERT INTO seen(hash, id, first_ms, by_hash, generation)"
	            " VALUES(?1, ?2, ?3, ?4, ?5)",
	[ST_KV_PUT] = "INSERT OR REPLACE INTO kv(key, value, updated_ms)"
	              " VALUES(?1, ?2, ?3)",
	[ST_KV_DEL] = "DELETE FROM kv WHERE key = ?1",
	[ST_DELIVERED] = "UPDATE inbox SET delivered_ms = ?2,"
	                 " redeliveries = redeliveries + ?3 WHERE id = ?1",
	[ST_DELIVERED_ACK] = "UPDATE inbox SET delivered_ms = ?2, acked_ms = ?2,"
	                     " redeliveries = redeliveries + ?3 WHERE id = ?1",
	/* Prepared like the rest: a commit is parsed once, not every time. */
	[ST_BEGIN] = "BEGIN",
	[ST_COMMIT] = "COMMIT",
};


void
mbi_op_free(struct mbi_op *op)
{
	if (op == NULL)
		return;
	free(op->s1);
	free(op->s2);
	free(op->blob);
	free(op);
}

struct mbi_op *
mbi_op_new(enum mbi_op_kind kind)
{
	struct mbi_op *op = calloc(1, sizeof(*op));

	if (op != NULL)
		op->kind = kind;
	return op;
}

int
mbi_op_blob(struct mbi_op *op, const mb_envelope *env)
{
	size_t n = mobbus__envelope__get_packed_size(env);

	if ((op->blob = malloc(n ? n : 1)) == NULL)
		return MB_ENOMEM;
	op->bloblen = mobbus__envelope__pack(env, op->blob);
	return MB_OK;
}

uint64_t
mbi_store_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Report a database failure once per kind on bus/error; the store stops
 * writing and the bus goes on from memory. */
static void
bind_text(sqlite3_stmt *s, int i, const char *v)
{
	if (v == NULL)
		sqlite3_bind_null(s, i);
	else
		sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

static int
stmt_run(sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/*
 * What each op binds, parameter by parameter (?1, ?2, ...): 'a' s1, 'b' s2,
 * '1' i1, '2' i2, '3' i3, 'B' the blob. An ack runs two statements.
 */
static const struct {
	enum store_stmt stmt[2];
	const char *params[2];
} store_plan[] = {
	[MBI_OP_JOURNAL] = { { ST_JOURNAL }, { "1aB" } },
	[MBI_OP_OUT_ADD] = { { ST_OUT_ADD }, { "1abB2" } },
	[MBI_OP_OUT_SET] = { { ST_OUT_SET }, { "12B" } },
	[MBI_OP_OUT_DEL] = { { ST_OUT_DEL }, { "1" } },
	[MBI_OP_ACK] = { { ST_ACK_OUT, ST_ACK_NOTE }, { "a", "a1" } },
	[MBI_OP_NOTE] = { { ST_NOTE }, { "ab123" } },
	[MBI_OP_TOKEN_ACK] = { { ST_TOKEN }, { "ab" } },
	[MBI_OP_SEEN] = { { ST_SEEN }, { "ab123" } },
	[MBI_OP_KV_PUT] = { { ST_KV_PUT }, { "aB1" } },
	[MBI_OP_KV_DEL] = { { ST_KV_DEL }, { "a" } },
	[MBI_OP_DELIVERED] = { { ST_DELIVERED }, { "a12" } },
	[MBI_OP_DELIVERED_ACK] = { { ST_ACK_OUT, ST_DELIVERED_ACK },
	                           { "a", "a12" } },
};

static int
store_bind_run(sqlite3_stmt *s, const char *params, const struct mbi_op *op)
{
	for (int i = 0; params[i] != '\0'; i++) {
		switch (params[i]) {
		case 'a':
			bind_text(s, i + 1, op->s1);
			break;
		case 'b':
			bind_text(s, i + 1, op->s2);
			break;
		case '1':
			sqlite3_bind_int64(s, i + 1, op->i1);
			break;
		case '2':
			sqlite3_bind_int64(s, i + 1, op->i2);
			break;
		case '3':
			sqlite3_bind_int64(s, i + 1, op->i3);
			break;
		case 'B':
			sqlite3_bind_blob(s, i + 1, op->blob ? op->blob : "",
			    (int)op->bloblen, SQLITE_STATIC);
			break;
		}
	}
	return stmt_run(s);
}

static int
store_apply(mb_store *st, const struct mbi_op *op)
{
	int rc = SQLITE_OK;

	if ((size_t)op->kind >= sizeof(store_plan) / sizeof(store_plan[0]) ||
	    store_plan[op->kind].params[0] == NULL)
		return SQLITE_MISUSE;
	/* A state change without a new envelope keeps the stored one. */
	if (op->kind == MBI_OP_OUT_SET && op->blob == NULL)
		return store_bind_run(st->stmt[ST_OUT_SET_STATE], "12", op);
	for (int i = 0; i < 2 && store_plan[op->kind].params[i] && rc == SQLITE_OK;
	     i++)
		rc = store_bind_run(st->stmt[store_plan[op->kind].stmt[i]],
		    store_plan[op->kind].params[i], op);
	return rc;
}

/* Apply one batch in one transaction. */
static void
store_commit(mb_store *st, struct mbi_op *batch, int checkpoint)
{
	int rc = stmt_run(st->stmt[ST_BEGIN]);

	for (struct mbi_op *op = batch; op && rc == SQLITE_OK; op = op->next)
		rc = store_apply(st, op);
	if (rc == SQLITE_OK)
		rc = stmt_run(st->stmt[ST_COMMIT]);
	if (rc != SQLITE_OK) {
		int xrc = sqlite3_extended_errcode(st->wdb);
		char msg[256];
		/* Take the message before ROLLBACK replaces it. */
		snprintf(msg, sizeof(msg), "%s", sqlite3_errmsg(st->wdb));
		mbi_store_exec(st->wdb, "ROLLBACK");
		mbi_store_fail(st, "commit", msg, xrc ? xrc : rc);
		return;
	}
	if (checkpoint || st->wal_frames >= STORE_WAL_FRAMES) {
		char trim[160];
		snprintf(trim, sizeof(trim),
		    "DELETE FROM journal WHERE seq <= "
		    "(SELECT max(seq) FROM journal) - %d",
		    STORE_JOURNAL_KEEP);
		(void)mbi_store_exec(st->wdb, trim);
		snprintf(trim, sizeof(trim),
		    "DELETE FROM inbox WHERE rowid <= "
		    "(SELECT max(rowid) FROM inbox) - %d",
		    STORE_INBOX_KEEP);
		(void)mbi_store_exec(st->wdb, trim);
		/* On the writer's own thread: never inside a commit a bridge
		 * or the delivery path waits for. */
		(void)sqlite3_wal_checkpoint_v2(st->wdb, NULL,
		    SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
		st->wal_frames = 0;
	}
}

/* store_wait_ms - wait on wake_cv for at most ms, with st->lock held. */
static void
store_wait_ms(mb_store *st, unsigned ms)
{
	uint64_t until = mbi_store_now_ns() + (uint64_t)ms * 1000000u;
	struct timespec ts;

	ts.tv_sec = (time_t)(until / 1000000000u);
	ts.tv_nsec = (long)(until % 1000000000u);
	(void)pthread_cond_timedwait(&st->wake_cv, &st->lock, &ts);
}

void *
mbi_store_writer(void *arg)
{
	mb_store *st = arg;

	/* Named for debuggers and profilers (at most 15 characters). */
	(void)pthread_setname_np(pthread_self(), "mobbus:store");
	pthread_mutex_lock(&st->lock);
	for (;;) {
		struct mbi_op *batch;
		uint64_t upto;
		int checkpoint;
		int ticked = 0;

		/* Idle, the writer sleeps until a submit wakes it. While
		 * writes keep coming it wakes itself every delay_ms instead,
		 * so that they never have to: a wake-up sent from a bridge
		 * call lands just when the consumer's own is under way, and
		 * on two cores the two then compete. */
		while (st->head == NULL && !st->closing && !st->checkpoint) {
			if (st->idle_ticks >= MBI_STORE_LINGER_TICKS) {
				st->sleeping = 1;
				pthread_cond_wait(&st->wake_cv, &st->lock);
				st->sleeping = 0;
			} else {
				store_wait_ms(st, st->delay_ms);
				ticked = 1;
				if (st->head == NULL)
					st->idle_ticks++;
			}
		}
		if (st->head == NULL && st->closing)
			break;
		st->idle_ticks = 0;
		/* Group commit: writes that woke the writer get a moment for
		 * more to join; writes a tick found have had theirs. */
		if (!ticked && !st->flush_now && !st->closing &&
		    st->head != NULL) {
			uint64_t until = mbi_store_now_ns() +
			    (uint64_t)st->delay_ms * 1000000u;
			struct timespec ts;
			ts.tv_sec = (time_t)(until / 1000000000u);
			ts.tv_nsec = (long)(until % 1000000000u);
			while (!st->flush_now && !st->closing &&
			    st->nqueued < st->batch_max &&
			    pthread_cond_timedwait(&st->wake_cv, &st->lock,
			        &ts) == 0)
				;
		}
		batch = st->head;
		st->head = st->tail = NULL;
		st->nqueued = 0;
		st->batch = batch;
		upto = st->queued;
		checkpoint = st->checkpoint;
		st->flush_now = 0;
		st->checkpoint = 0;
		pthread_mutex_unlock(&st->lock);

		if (st->ok && (batch != NULL || checkpoint))
			store_commit(st, batch, checkpoint);

		pthread_mutex_lock(&st->lock);
		st->batch = NULL;
		st->committed = upto;
		pthread_cond_broadcast(&st->done_cv);
		pthread_mutex_unlock(&st->lock);
		while (batch != NULL) {
			struct mbi_op *next = batch->next;
			mbi_op_free(batch);
			batch = next;
		}
		pthread_mutex_lock(&st->lock);
	}
	pthread_mutex_unlock(&st->lock);
	return NULL;
}

/* What this thread holds back (mbi_store_wake_hold): how deep, and its
 * ops for one store (another store's go straight to it).
 *
 * Initial-exec TLS: the library is often dlopen()ed (the BEAM loads it
 * inside the NIF), where the default model reaches these through
 * __tls_get_addr and a lazily allocated block on each thread's first use;
 * 40 bytes of the static TLS reserve spare that on every submit, and the
 * leak checker's walk of dynamic TLS blocks (which crashes under ASan in
 * a dlopen()ed NIF) never sees them. */
#define MBI_TLS _Thread_local __attribute__((tls_model("initial-exec")))
static MBI_TLS unsigned tl_hold;
static MBI_TLS mb_store *tl_store;
static MBI_TLS struct mbi_op *tl_head, *tl_tail;
static MBI_TLS uint64_t tl_n;

/* queue_ops - append head..tail (n ops) to st's queue and wake the writer
 * when they are its first or fill a batch. */
static void
queue_ops(mb_store *st, struct mbi_op *head, struct mbi_op *tail, uint64_t n)
{
	pthread_mutex_lock(&st->lock);
	if (st->closed) { /* an actor still running after mb_store_close */
		pthread_mutex_unlock(&st->lock);
		while (head != NULL) {
			struct mbi_op *next = head->next;
			mbi_op_free(head);
			head = next;
		}
		return;
	}
	if (st->tail)
		st->tail->next = head;
	else
		st->head = head;
	st->tail = tail;
	st->queued += n;
	st->nqueued += n;
	if ((st->nqueued == n && st->sleeping) ||
	    st->nqueued >= st->batch_max)
		pthread_cond_signal(&st->wake_cv);
	pthread_mutex_unlock(&st->lock);
}

void
mbi_store_wake_hold(void)
{
	tl_hold++;
}

void
mbi_store_wake_release(void)
{
	if (--tl_hold > 0 || tl_store == NULL)
		return;
	queue_ops(tl_store, tl_head, tl_tail, tl_n);
	tl_store = NULL;
	tl_head = tl_tail = NULL;
	tl_n = 0;
}

void
mbi_store_submit(mb_store *st, struct mbi_op *op)
{
	if (op == NULL)
		return;
	if (st == NULL) {
		mbi_op_free(op);
		return;
	}
	op->next = NULL;
	if (tl_hold > 0 && (tl_store == NULL || tl_store == st)) {
		if (tl_tail != NULL)
			tl_tail->next = op;
		else
			tl_head = op;
		tl_tail = op;
		tl_store = st;
		tl_n++;
		return;
	}
	queue_ops(st, op, op, 1);
}

/* Wait for the commit covering everything queued now. */
int
mbi_store_commit_wait(mb_store *st, int checkpoint, int timeout_ms)
{
	uint64_t deadline = mbi_store_now_ns() + (uint64_t)timeout_ms * 1000000u;
	uint64_t target;
	int rv = MB_OK;

	pthread_mutex_lock(&st->lock);
	target = st->queued;
	st->flush_now = 1;
	st->checkpoint |= checkpoint;
	pthread_cond_signal(&st->wake_cv);
	while (st->committed < target && st->thr_started) {
		struct timespec ts;
		if (timeout_ms >= 0 && mbi_store_now_ns() >= deadline) {
			rv = MB_ETIMEDOUT;
			break;
		}
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += 5000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&st->done_cv, &st->lock, &ts);
	}
	if (rv == MB_OK && !st->ok)
		rv = MB_EDB;
	pthread_mutex_unlock(&st->lock);
	return rv;
}

int
mb_flush(mb_store *st, int timeout_ms)
{
	int rv;

	if (st == NULL)
		return MB_EINVAL;
	if ((rv = mb_bus_drain(st->bus, timeout_ms)) != MB_OK)
		return rv;
	return mbi_store_commit_wait(st, 1, timeout_ms);
}


int
mbi_store_prepare(mb_store *st)
{
	int rc;

	for (int i = 0; i < ST_COUNT; i++)
		if ((rc = sqlite3_prepare_v3(st->wdb, store_sql[i], -1,
		         SQLITE_PREPARE_PERSISTENT, &st->stmt[i], NULL)) !=
		    SQLITE_OK)
			return rc;
	return SQLITE_OK;
}
