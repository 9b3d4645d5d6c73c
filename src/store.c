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

#include "bus.h"
#include "store.h"


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


void
mbi_store_fail(mb_store *st, const char *what, const char *msg, int rc)
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

int
mbi_store_exec(sqlite3 *db, const char *sql)
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
		if ((rc = mbi_store_exec(st->wdb, "BEGIN IMMEDIATE")) != SQLITE_OK)
			return rc;
		if ((rc = mbi_store_exec(st->wdb, store_migrations[version])) !=
		        SQLITE_OK ||
		    (rc = mbi_store_exec(st->wdb, bump)) != SQLITE_OK) {
			mbi_store_exec(st->wdb, "ROLLBACK");
			return rc;
		}
		if ((rc = mbi_store_exec(st->wdb, "COMMIT")) != SQLITE_OK)
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
	if ((rc = mbi_store_exec(st->wdb, "PRAGMA journal_mode = WAL")) != SQLITE_OK ||
	    (rc = mbi_store_exec(st->wdb, "PRAGMA synchronous = NORMAL")) != SQLITE_OK ||
	    (rc = mbi_store_exec(st->wdb, "PRAGMA wal_autocheckpoint = 0")) != SQLITE_OK)
		return rc;
	sqlite3_wal_hook(st->wdb, store_wal_cb, st);
	*what = "migrate";
	if ((rc = store_migrate(st)) != SQLITE_OK) {
		if (rc == SQLITE_MISMATCH)
			*what = "migrate: schema is newer than this mobbus";
		return rc;
	}
	*what = "prepare";
	if ((rc = mbi_store_prepare(st)) != SQLITE_OK)
		return rc;
	*what = "open for reading";
	rc = sqlite3_open_v2(st->path, &st->rdb,
	    SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc == SQLITE_OK)
		sqlite3_busy_timeout(st->rdb, 2000);
	return rc;
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
	const uint8_t *wire;
	size_t len;

	if (op == NULL || (op->s1 = strdup(env->topic)) == NULL) {
		mbi_op_free(op);
		return MB_ENOMEM;
	}
	/* The bytes that came over the bus are the envelope's encoding. */
	if ((wire = mbi_actor_wire(a, &len)) != NULL) {
		if ((op->blob = malloc(len ? len : 1)) != NULL) {
			memcpy(op->blob, wire, len);
			op->bloblen = len;
		}
	} else {
		(void)mbi_op_blob(op, env);
	}
	if (op->blob == NULL) {
		mbi_op_free(op);
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
	/* Journalling queues an op for the writer thread and never
	 * blocks, so it may run on a publisher's thread. */
	.inline_ok = mb_inline_always,
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
	st->idle_ticks = MBI_STORE_LINGER_TICKS;
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
		mbi_store_fail(st, what, xrc != SQLITE_OK ? sqlite3_errmsg(st->wdb) :
		    NULL, xrc != SQLITE_OK ? xrc : rc);
	}
	if (pthread_create(&st->thr, NULL, mbi_store_writer, st) != 0) {
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
		mbi_op_free(st->head);
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
