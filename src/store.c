/* SPDX-License-Identifier: MIT */
/*
 * store.c - the durable store: SQLite in WAL mode behind a group-commit
 * writer thread.
 *
 * DESIGN
 * Nothing on a bridge or delivery path touches SQLite. Actors describe each
 * state change as an op and queue it (mbi_store_submit, a mutex and a list
 * append). The writer thread takes everything queued, waits at most
 * commit_delay_ms for more (or batch_max ops), and applies the batch in one
 * transaction with prepared statements. mb_flush drains the bus and then
 * waits for the commit that covers everything queued before it; the store
 * actor asks for an early commit on the lifecycle moments after which the OS
 * may freeze the process. Checkpoints run on the writer thread at those
 * moments, never automatically inside a commit on someone else's thread.
 * Reads use a second, read-only connection, which WAL lets run beside the
 * writer.
 *
 * THREAD SAFETY
 * st->lock guards the op queue, the batch in flight, the counters, closed
 * and refs.
 * st->rlock guards the read connection. Lock order: rlock, then lock.
 * The write connection belongs to the writer thread alone (and to open and
 * close, before it starts and after it ends).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"

#define STORE_SCHEMA_VERSION 1
#define STORE_JOURNAL_KEEP 100000
/* Identities remembered on disk: the newest this many notifications. */
#define STORE_INBOX_KEEP 100000
/* Checkpoint once the WAL holds this many pages (~4 MB), so neither the
 * file nor its mapped index grows without bound between backgroundings. */
#define STORE_WAL_FRAMES 1000

/* Migrations: element i takes user_version i to i + 1. */
static const char *const store_migrations[] = {
	"CREATE TABLE journal(seq INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL,"
	"  topic TEXT NOT NULL, envelope BLOB NOT NULL);"
	"CREATE TABLE kv(key TEXT PRIMARY KEY, value BLOB NOT NULL,"
	"  updated_ms INTEGER NOT NULL);"
	"CREATE TABLE inbox(id TEXT PRIMARY KEY, collapse_id TEXT,"
	"  arrival INTEGER NOT NULL DEFAULT 0, tap INTEGER NOT NULL DEFAULT 0,"
	"  received_ms INTEGER, delivered_ms INTEGER, acked_ms INTEGER,"
	"  redeliveries INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE outbox(seq INTEGER PRIMARY KEY, topic TEXT NOT NULL,"
	"  note_id TEXT, state INTEGER NOT NULL, envelope BLOB NOT NULL);"
	"CREATE INDEX outbox_note ON outbox(note_id);"
	"CREATE TABLE tokens(os TEXT PRIMARY KEY, acked TEXT NOT NULL);"
	"CREATE TABLE seen(hash TEXT NOT NULL, id TEXT NOT NULL,"
	"  first_ms INTEGER NOT NULL, by_hash INTEGER NOT NULL,"
	"  generation INTEGER NOT NULL);",
};


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
};


static void
op_free(struct mbi_op *op)
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

static uint64_t
store_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Report a database failure once per kind on bus/error; the store stops
 * writing and the bus goes on from memory. */
static void
store_fail(mb_store *st, const char *what, const char *msg, int rc)
{
	int first;

	pthread_mutex_lock(&st->lock);
	first = st->ok;
	st->ok = 0;
	pthread_cond_broadcast(&st->done_cv);
	pthread_mutex_unlock(&st->lock);
	if (first && st->pub != NULL)
		(void)mb_publish_error(st->pub, MB_EDB,
		    "%s: %s: %s (%s); delivering from memory", st->path, what,
		    msg ? msg : sqlite3_errstr(rc), sqlite3_errstr(rc));
}

static int
store_exec(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static int
store_migrate(mb_store *st)
{
	sqlite3_stmt *s;
	int version = 0, rc;

	rc = sqlite3_prepare_v2(st->wdb, "PRAGMA user_version", -1, &s, NULL);
	if (rc != SQLITE_OK)
		return rc;
	if ((rc = sqlite3_step(s)) == SQLITE_ROW)
		version = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW)
		return rc;
	if (version > STORE_SCHEMA_VERSION)
		return SQLITE_MISMATCH; /* written by a newer mobbus */
	for (; version < STORE_SCHEMA_VERSION; version++) {
		char bump[48];
		snprintf(bump, sizeof(bump), "PRAGMA user_version = %d",
		    version + 1);
		if ((rc = store_exec(st->wdb, "BEGIN IMMEDIATE")) != SQLITE_OK)
			return rc;
		if ((rc = store_exec(st->wdb, store_migrations[version])) !=
		        SQLITE_OK ||
		    (rc = store_exec(st->wdb, bump)) != SQLITE_OK) {
			store_exec(st->wdb, "ROLLBACK");
			return rc;
		}
		if ((rc = store_exec(st->wdb, "COMMIT")) != SQLITE_OK)
			return rc;
	}
	return SQLITE_OK;
}

/* After each commit on the writer's connection: how big the WAL is. */
static int
store_wal_cb(void *arg, sqlite3 *db, const char *name, int frames)
{
	mb_store *st = arg;

	(void)db;
	(void)name;
	st->wal_frames = frames;
	return SQLITE_OK;
}

/* Open both connections; returns an SQLite code and what failed. */
static int
store_open_db(mb_store *st, const char **what)
{
	int fd, rc;

	/* Create the file ourselves so it is 0600 whatever the umask;
	 * SQLite gives the -wal and -shm files the same mode. */
	*what = "create";
	if ((fd = open(st->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		if (errno != EACCES && errno != EROFS)
			return SQLITE_CANTOPEN;
	} else {
		close(fd);
	}
	*what = "open";
	rc = sqlite3_open_v2(st->path, &st->wdb,
	    SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK)
		return rc;
	sqlite3_busy_timeout(st->wdb, 2000);
	*what = "configure";
	if ((rc = store_exec(st->wdb, "PRAGMA journal_mode = WAL")) != SQLITE_OK ||
	    (rc = store_exec(st->wdb, "PRAGMA synchronous = NORMAL")) != SQLITE_OK ||
	    (rc = store_exec(st->wdb, "PRAGMA wal_autocheckpoint = 0")) != SQLITE_OK)
		return rc;
	sqlite3_wal_hook(st->wdb, store_wal_cb, st);
	*what = "migrate";
	if ((rc = store_migrate(st)) != SQLITE_OK) {
		if (rc == SQLITE_MISMATCH)
			*what = "migrate: schema is newer than this mobbus";
		return rc;
	}
	*what = "prepare";
	for (int i = 0; i < ST_COUNT; i++)
		if ((rc = sqlite3_prepare_v3(st->wdb, store_sql[i], -1,
		         SQLITE_PREPARE_PERSISTENT, &st->stmt[i], NULL)) !=
		    SQLITE_OK)
			return rc;
	*what = "open for reading";
	rc = sqlite3_open_v2(st->path, &st->rdb,
	    SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc == SQLITE_OK)
		sqlite3_busy_timeout(st->rdb, 2000);
	return rc;
}

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

static int
store_apply(mb_store *st, const struct mbi_op *op)
{
	sqlite3_stmt *s;
	int rc;

	switch (op->kind) {
	case MBI_OP_JOURNAL:
		s = st->stmt[ST_JOURNAL];
		sqlite3_bind_int64(s, 1, op->i1);
		bind_text(s, 2, op->s1);
		sqlite3_bind_blob(s, 3, op->blob, (int)op->bloblen, SQLITE_STATIC);
		return stmt_run(s);
	case MBI_OP_OUT_ADD:
		s = st->stmt[ST_OUT_ADD];
		sqlite3_bind_int64(s, 1, op->i1);
		bind_text(s, 2, op->s1);
		bind_text(s, 3, op->s2);
		sqlite3_bind_blob(s, 4, op->blob, (int)op->bloblen, SQLITE_STATIC);
		sqlite3_bind_int64(s, 5, op->i2);
		return stmt_run(s);
	case MBI_OP_OUT_SET:
		s = st->stmt[op->blob ? ST_OUT_SET : ST_OUT_SET_STATE];
		sqlite3_bind_int64(s, 1, op->i1);
		sqlite3_bind_int64(s, 2, op->i2);
		if (op->blob)
			sqlite3_bind_blob(s, 3, op->blob, (int)op->bloblen,
			    SQLITE_STATIC);
		return stmt_run(s);
	case MBI_OP_OUT_DEL:
		s = st->stmt[ST_OUT_DEL];
		sqlite3_bind_int64(s, 1, op->i1);
		return stmt_run(s);
	case MBI_OP_ACK:
		s = st->stmt[ST_ACK_OUT];
		bind_text(s, 1, op->s1);
		if ((rc = stmt_run(s)) != SQLITE_OK)
			return rc;
		s = st->stmt[ST_ACK_NOTE];
		bind_text(s, 1, op->s1);
		sqlite3_bind_int64(s, 2, op->i1);
		return stmt_run(s);
	case MBI_OP_NOTE:
		s = st->stmt[ST_NOTE];
		bind_text(s, 1, op->s1);
		bind_text(s, 2, op->s2);
		sqlite3_bind_int64(s, 3, op->i1);
		sqlite3_bind_int64(s, 4, op->i2);
		sqlite3_bind_int64(s, 5, op->i3);
		return stmt_run(s);
	case MBI_OP_DELIVERED:
		s = st->stmt[ST_DELIVERED];
		bind_text(s, 1, op->s1);
		sqlite3_bind_int64(s, 2, op->i1);
		sqlite3_bind_int64(s, 3, op->i2);
		return stmt_run(s);
	case MBI_OP_TOKEN_ACK:
		s = st->stmt[ST_TOKEN];
		bind_text(s, 1, op->s1);
		bind_text(s, 2, op->s2);
		return stmt_run(s);
	case MBI_OP_SEEN:
		s = st->stmt[ST_SEEN];
		bind_text(s, 1, op->s1);
		bind_text(s, 2, op->s2);
		sqlite3_bind_int64(s, 3, op->i1);
		sqlite3_bind_int64(s, 4, op->i2);
		sqlite3_bind_int64(s, 5, op->i3);
		return stmt_run(s);
	case MBI_OP_KV_PUT:
		s = st->stmt[ST_KV_PUT];
		bind_text(s, 1, op->s1);
		sqlite3_bind_blob(s, 2, op->blob ? op->blob : "", (int)op->bloblen,
		    SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, op->i1);
		return stmt_run(s);
	case MBI_OP_KV_DEL:
		s = st->stmt[ST_KV_DEL];
		bind_text(s, 1, op->s1);
		return stmt_run(s);
	}
	return SQLITE_MISUSE;
}

/* Apply one batch in one transaction. */
static void
store_commit(mb_store *st, struct mbi_op *batch, int checkpoint)
{
	int rc = store_exec(st->wdb, "BEGIN");

	for (struct mbi_op *op = batch; op && rc == SQLITE_OK; op = op->next)
		rc = store_apply(st, op);
	if (rc == SQLITE_OK)
		rc = store_exec(st->wdb, "COMMIT");
	if (rc != SQLITE_OK) {
		int xrc = sqlite3_extended_errcode(st->wdb);
		char msg[256];
		/* Take the message before ROLLBACK replaces it. */
		snprintf(msg, sizeof(msg), "%s", sqlite3_errmsg(st->wdb));
		store_exec(st->wdb, "ROLLBACK");
		store_fail(st, "commit", msg, xrc ? xrc : rc);
		return;
	}
	if (checkpoint || st->wal_frames >= STORE_WAL_FRAMES) {
		char trim[160];
		snprintf(trim, sizeof(trim),
		    "DELETE FROM journal WHERE seq <= "
		    "(SELECT max(seq) FROM journal) - %d",
		    STORE_JOURNAL_KEEP);
		(void)store_exec(st->wdb, trim);
		snprintf(trim, sizeof(trim),
		    "DELETE FROM inbox WHERE rowid <= "
		    "(SELECT max(rowid) FROM inbox) - %d",
		    STORE_INBOX_KEEP);
		(void)store_exec(st->wdb, trim);
		/* On the writer's own thread: never inside a commit a bridge
		 * or the delivery path waits for. */
		(void)sqlite3_wal_checkpoint_v2(st->wdb, NULL,
		    SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
		st->wal_frames = 0;
	}
}

static void *
store_writer(void *arg)
{
	mb_store *st = arg;

	pthread_mutex_lock(&st->lock);
	for (;;) {
		struct mbi_op *batch;
		uint64_t upto;
		int checkpoint;

		while (st->head == NULL && !st->closing && !st->checkpoint)
			pthread_cond_wait(&st->wake_cv, &st->lock);
		if (st->head == NULL && st->closing)
			break;
		/* Group commit: give more writes a moment to join. */
		if (!st->flush_now && !st->closing && st->head != NULL) {
			uint64_t until = store_now_ns() +
			    (uint64_t)st->delay_ms * 1000000u;
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
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
			op_free(batch);
			batch = next;
		}
		pthread_mutex_lock(&st->lock);
	}
	pthread_mutex_unlock(&st->lock);
	return NULL;
}

void
mbi_store_submit(mb_store *st, struct mbi_op *op)
{
	if (op == NULL)
		return;
	if (st == NULL) {
		op_free(op);
		return;
	}
	op->next = NULL;
	pthread_mutex_lock(&st->lock);
	if (st->closed) { /* an actor still running after mb_store_close */
		pthread_mutex_unlock(&st->lock);
		op_free(op);
		return;
	}
	if (st->tail)
		st->tail->next = op;
	else
		st->head = op;
	st->tail = op;
	st->queued++;
	if (++st->nqueued == 1 || st->nqueued >= st->batch_max)
		pthread_cond_signal(&st->wake_cv);
	pthread_mutex_unlock(&st->lock);
}

/* Wait for the commit covering everything queued now. */
int
mbi_store_commit_wait(mb_store *st, int checkpoint, int timeout_ms)
{
	uint64_t deadline = store_now_ns() + (uint64_t)timeout_ms * 1000000u;
	uint64_t target;
	int rv = MB_OK;

	pthread_mutex_lock(&st->lock);
	target = st->queued;
	st->flush_now = 1;
	st->checkpoint |= checkpoint;
	pthread_cond_signal(&st->wake_cv);
	while (st->committed < target && st->thr_started) {
		struct timespec ts;
		if (timeout_ms >= 0 && store_now_ns() >= deadline) {
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
mbi_store_ok(mb_store *st)
{
	int ok;

	if (st == NULL)
		return 0;
	pthread_mutex_lock(&st->lock);
	ok = st->ok && !st->closed;
	pthread_mutex_unlock(&st->lock);
	return ok;
}

void
mbi_store_hold(mb_store *st)
{
	if (st == NULL)
		return;
	pthread_mutex_lock(&st->lock);
	st->refs++;
	pthread_mutex_unlock(&st->lock);
}

void
mbi_store_release(mb_store *st)
{
	int last;

	if (st == NULL)
		return;
	pthread_mutex_lock(&st->lock);
	last = --st->refs == 0;
	pthread_mutex_unlock(&st->lock);
	if (!last)
		return;
	pthread_cond_destroy(&st->wake_cv);
	pthread_cond_destroy(&st->done_cv);
	pthread_mutex_destroy(&st->lock);
	pthread_mutex_destroy(&st->rlock);
	free(st);
}

/* The store actor: journal every platform moment, and commit early when
 * the OS may be about to freeze or end the process. */
static const char *const store_topics[] = { "notify/", MB_TOPIC_LIFECYCLE,
	MB_TOPIC_TOKEN, MB_TOPIC_WAKE, MB_TOPIC_CMD, "conn/", MB_TOPIC_KEEPALIVE,
	NULL };

static int
store_moment(const mb_envelope *env)
{
	if (env->body_case == MOBBUS__ENVELOPE__BODY_LIFECYCLE) {
		switch (env->lifecycle->event) {
		case MOBBUS__LIFECYCLE__EVENT__DID_ENTER_BACKGROUND:
		case MOBBUS__LIFECYCLE__EVENT__SUSPEND:
		case MOBBUS__LIFECYCLE__EVENT__WILL_TERMINATE:
			return 1;
		default:
			return 0;
		}
	}
	return env->body_case == MOBBUS__ENVELOPE__BODY_WAKE &&
	    env->wake->phase != MOBBUS__WAKE_WINDOW__PHASE__OPEN;
}

static int
store_handle_cb(mb_actor *a, void *state, const mb_envelope *env)
{
	mb_store *st = state;
	struct mbi_op *op = mbi_op_new(MBI_OP_JOURNAL);

	(void)a;
	if (op == NULL || (op->s1 = strdup(env->topic)) == NULL ||
	    mbi_op_blob(op, env) != MB_OK) {
		op_free(op);
		return MB_ENOMEM;
	}
	op->i1 = env->at_ms;
	mbi_store_submit(st, op);
	if (store_moment(env)) {
		pthread_mutex_lock(&st->lock);
		st->flush_now = 1;
		st->checkpoint = 1;
		pthread_cond_signal(&st->wake_cv);
		pthread_mutex_unlock(&st->lock);
	}
	return MB_OK;
}

static int
store_init_cb(mb_actor *a, void *arg, void **statep)
{
	(void)a;
	*statep = arg;
	return MB_OK;
}

static void
store_terminate_cb(mb_actor *a, void *state)
{
	(void)a;
	(void)state;
}

static const struct mb_actor_ops store_ops = {
	.size = sizeof(struct mb_actor_ops),
	.name = "store",
	.topics = store_topics,
	.init = store_init_cb,
	.handle = store_handle_cb,
	.terminate = store_terminate_cb,
};

static int
store_cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t attr;
	int rv;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	rv = pthread_cond_init(cv, &attr);
	pthread_condattr_destroy(&attr);
	return rv;
}

int
mb_store_open(mb_bus *bus, const struct mb_store_opts *opts, mb_store **stp)
{
	mb_store *st;
	const char *what = "open";
	int rc, rv;

	if (bus == NULL || opts == NULL || opts->path == NULL || stp == NULL)
		return MB_EINVAL;
	if ((st = calloc(1, sizeof(*st))) == NULL)
		return MB_ENOMEM;
	st->bus = bus;
	st->delay_ms = opts->commit_delay_ms ? opts->commit_delay_ms : 2;
	st->batch_max = opts->batch_max ? opts->batch_max : 512;
	st->ok = 1;
	st->refs = 1;
	pthread_mutex_init(&st->lock, NULL);
	pthread_mutex_init(&st->rlock, NULL);
	store_cond_init(&st->wake_cv);
	store_cond_init(&st->done_cv);
	if ((st->path = strdup(opts->path)) == NULL) {
		rv = MB_ENOMEM;
		goto fail;
	}
	if ((rv = mb_pub_alloc(bus, &st->pub)) != MB_OK)
		goto fail;
	if ((rc = store_open_db(st, &what)) != SQLITE_OK) {
		/* The connection's own error, unless SQLite did not fail (a
		 * schema too new is our verdict, not SQLite's). */
		int xrc = st->wdb ? sqlite3_extended_errcode(st->wdb) : SQLITE_OK;
		store_fail(st, what, xrc != SQLITE_OK ? sqlite3_errmsg(st->wdb) :
		    NULL, xrc != SQLITE_OK ? xrc : rc);
	}
	if (pthread_create(&st->thr, NULL, store_writer, st) != 0) {
		rv = MB_ENOMEM;
		goto fail;
	}
	st->thr_started = 1;
	if ((rv = mb_actor_start(bus, &store_ops, st, &st->actor)) != MB_OK)
		goto fail;
	*stp = st;
	return MB_OK;
fail:
	mb_store_close(st);
	return rv;
}

void
mb_store_close(mb_store *st)
{
	if (st == NULL)
		return;
	if (st->actor != NULL)
		mb_actor_stop(st->actor);
	st->actor = NULL;
	/* From here on, ops from actors still running are dropped; what is
	 * queued is committed by the writer on its way out. */
	pthread_mutex_lock(&st->lock);
	st->closing = 1;
	st->closed = 1;
	pthread_cond_signal(&st->wake_cv);
	pthread_mutex_unlock(&st->lock);
	if (st->thr_started) {
		pthread_join(st->thr, NULL);
		st->thr_started = 0;
	}
	while (st->head != NULL) { /* only when the writer never ran */
		struct mbi_op *next = st->head->next;
		op_free(st->head);
		st->head = next;
	}
	st->tail = NULL;
	for (int i = 0; i < ST_COUNT; i++) {
		sqlite3_finalize(st->stmt[i]);
		st->stmt[i] = NULL;
	}
	/* The reader goes first, so that the writer is the last connection:
	 * its close checkpoints and removes the -wal and -shm files, leaving
	 * one self-contained file (which a process that may only read it can
	 * then open). */
	pthread_mutex_lock(&st->rlock);
	sqlite3_close_v2(st->rdb);
	st->rdb = NULL;
	pthread_mutex_unlock(&st->rlock);
	if (st->wdb != NULL) {
		if (st->ok)
			(void)sqlite3_wal_checkpoint_v2(st->wdb, NULL,
			    SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
		sqlite3_close_v2(st->wdb);
		st->wdb = NULL;
	}
	mb_pub_free(st->pub);
	st->pub = NULL;
	free(st->path);
	st->path = NULL;
	mbi_store_release(st);
}
