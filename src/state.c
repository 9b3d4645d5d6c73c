/* SPDX-License-Identifier: MIT */
/*
 * state.c - reading the store: the key-value state API for the app and
 * plugins, and the loaders a starting actor uses to rebuild its memory.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"

/* Prepare on the read connection; NULL when the store has no database. */
static sqlite3_stmt *
state_prepare(mb_store *st, const char *sql)
{
	sqlite3_stmt *s = NULL;

	if (st->rdb == NULL ||
	    sqlite3_prepare_v2(st->rdb, sql, -1, &s, NULL) != SQLITE_OK)
		return NULL;
	return s;
}

static int
state_done(sqlite3_stmt *s, int rc)
{
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? MB_OK : MB_EDB;
}

int
mbi_store_load_outbox(mb_store *st, int64_t after, int64_t upto, int limit,
    void (*fn)(void *arg, const struct mbi_out_row *row), void *arg)
{
	sqlite3_stmt *s;
	int rc;

	if (st == NULL)
		return MB_OK;
	pthread_mutex_lock(&st->rlock);
	if ((s = state_prepare(st, "SELECT seq, topic, note_id, state, envelope"
	                           " FROM outbox WHERE seq > ?1 AND seq <= ?2"
	                           " ORDER BY seq LIMIT ?3")) == NULL) {
		pthread_mutex_unlock(&st->rlock);
		return MB_EDB;
	}
	sqlite3_bind_int64(s, 1, after);
	sqlite3_bind_int64(s, 2, upto);
	sqlite3_bind_int(s, 3, limit);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct mbi_out_row r = {
			.seq = sqlite3_column_int64(s, 0),
			.topic = (const char *)sqlite3_column_text(s, 1),
			.note_id = (const char *)sqlite3_column_text(s, 2),
			.state = sqlite3_column_int(s, 3),
			.env = sqlite3_column_blob(s, 4),
			.envlen = (size_t)sqlite3_column_bytes(s, 4),
		};
		if (r.topic != NULL)
			fn(arg, &r);
	}
	rc = state_done(s, rc);
	pthread_mutex_unlock(&st->rlock);
	return rc;
}

int
mbi_store_outbox_max(mb_store *st, int64_t *max)
{
	sqlite3_stmt *s;
	int rc;

	*max = 0;
	if (st == NULL)
		return MB_OK;
	pthread_mutex_lock(&st->rlock);
	if ((s = state_prepare(st, "SELECT coalesce(max(seq), 0) FROM outbox")) ==
	    NULL) {
		pthread_mutex_unlock(&st->rlock);
		return MB_EDB;
	}
	if ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		*max = sqlite3_column_int64(s, 0);
		rc = SQLITE_DONE;
	}
	rc = state_done(s, rc);
	pthread_mutex_unlock(&st->rlock);
	return rc;
}

int
mbi_store_note(mb_store *st, const char *id, int *arrival, int *tap)
{
	sqlite3_stmt *s;
	int rc, rv;

	if (st == NULL)
		return MB_EFIELD;
	pthread_mutex_lock(&st->rlock);
	if ((s = state_prepare(st, "SELECT arrival, tap FROM inbox"
	                           " WHERE id = ?1")) == NULL) {
		pthread_mutex_unlock(&st->rlock);
		return MB_EDB;
	}
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*arrival = sqlite3_column_int(s, 0);
		*tap = sqlite3_column_int(s, 1);
		rv = MB_OK;
	} else {
		rv = rc == SQLITE_DONE ? MB_EFIELD : MB_EDB;
	}
	sqlite3_finalize(s);
	pthread_mutex_unlock(&st->rlock);
	return rv;
}

int
mbi_store_load_notes(mb_store *st, int limit,
    void (*fn)(void *arg, const char *id, int arrival, int tap), void *arg)
{
	sqlite3_stmt *s;
	int rc;

	if (st == NULL)
		return MB_OK;
	pthread_mutex_lock(&st->rlock);
	/* The newest, oldest first, so they are the last a cache evicts. */
	if ((s = state_prepare(st, "SELECT id, arrival, tap FROM (SELECT rowid,"
	                           " id, arrival, tap FROM inbox ORDER BY rowid"
	                           " DESC LIMIT ?1) ORDER BY rowid")) == NULL) {
		pthread_mutex_unlock(&st->rlock);
		return MB_EDB;
	}
	sqlite3_bind_int(s, 1, limit);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		fn(arg, (const char *)sqlite3_column_text(s, 0),
		    sqlite3_column_int(s, 1), sqlite3_column_int(s, 2));
	rc = state_done(s, rc);
	pthread_mutex_unlock(&st->rlock);
	return rc;
}

int
mbi_store_load_seen(mb_store *st,
    void (*fn)(void *arg, const char *hash, const char *id, int64_t first,
        int by_hash, int generation),
    void *arg)
{
	sqlite3_stmt *s;
	int rc;

	if (st == NULL)
		return MB_OK;
	pthread_mutex_lock(&st->rlock);
	if ((s = state_prepare(st, "SELECT hash, id, first_ms, by_hash,"
	                           " generation FROM seen ORDER BY rowid")) ==
	    NULL) {
		pthread_mutex_unlock(&st->rlock);
		return MB_EDB;
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		fn(arg, (const char *)sqlite3_column_text(s, 0),
		    (const char *)sqlite3_column_text(s, 1),
		    sqlite3_column_int64(s, 2), sqlite3_column_int(s, 3),
		    sqlite3_column_int(s, 4));
	rc = state_done(s, rc);
	pthread_mutex_unlock(&st->rlock);
	return rc;
}

int
mbi_store_token_acked(mb_store *st, const char *os, char *buf, size_t len)
{
	sqlite3_stmt *s;
	int rc;

	buf[0] = '\0';
	if (st == NULL)
		return MB_OK;
	pthread_mutex_lock(&st->rlock);
	if ((s = state_prepare(st, "SELECT acked FROM tokens WHERE os = ?1")) ==
	    NULL) {
		pthread_mutex_unlock(&st->rlock);
		return MB_EDB;
	}
	sqlite3_bind_text(s, 1, os, -1, SQLITE_STATIC);
	if ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *v = (const char *)sqlite3_column_text(s, 0);
		snprintf(buf, len, "%s", v ? v : "");
		rc = SQLITE_DONE;
	}
	rc = state_done(s, rc);
	pthread_mutex_unlock(&st->rlock);
	return rc;
}

static int
state_key_ok(const char *key)
{
	return key != NULL && *key != '\0' && strlen(key) < 1024;
}

int
mb_state_put(mb_store *st, const char *key, const void *val, size_t len)
{
	struct mbi_op *op;

	if (st == NULL || !state_key_ok(key) || (val == NULL && len > 0))
		return MB_EINVAL;
	if ((op = mbi_op_new(MBI_OP_KV_PUT)) == NULL ||
	    (op->s1 = strdup(key)) == NULL ||
	    (op->blob = malloc(len ? len : 1)) == NULL) {
		if (op != NULL) {
			free(op->s1);
			free(op);
		}
		return MB_ENOMEM;
	}
	if (len)
		memcpy(op->blob, val, len);
	op->bloblen = len;
	op->i1 = mb_bus_now_ms(st->bus);
	mbi_store_submit(st, op);
	return MB_OK;
}

int
mb_state_delete(mb_store *st, const char *key)
{
	struct mbi_op *op;

	if (st == NULL || !state_key_ok(key))
		return MB_EINVAL;
	if ((op = mbi_op_new(MBI_OP_KV_DEL)) == NULL ||
	    (op->s1 = strdup(key)) == NULL) {
		free(op);
		return MB_ENOMEM;
	}
	mbi_store_submit(st, op);
	return MB_OK;
}

/* The newest queued or in-flight write of key, or NULL. Under st->lock. */
static const struct mbi_op *
state_pending(mb_store *st, const char *key)
{
	const struct mbi_op *hit = NULL;
	const struct mbi_op *lists[2] = { st->batch, st->head };

	for (int i = 0; i < 2; i++)
		for (const struct mbi_op *op = lists[i]; op; op = op->next)
			if ((op->kind == MBI_OP_KV_PUT ||
			        op->kind == MBI_OP_KV_DEL) &&
			    strcmp(op->s1, key) == 0)
				hit = op;
	return hit;
}

static int
state_copy(const void *src, size_t len, void **val, size_t *lenp)
{
	if ((*val = malloc(len ? len : 1)) == NULL)
		return MB_ENOMEM;
	if (len)
		memcpy(*val, src, len);
	*lenp = len;
	return MB_OK;
}

int
mb_state_get(mb_store *st, const char *key, void **val, size_t *len)
{
	const struct mbi_op *op;
	sqlite3_stmt *s;
	int rv, rc;

	if (st == NULL || !state_key_ok(key) || val == NULL || len == NULL)
		return MB_EINVAL;
	/* Read your own writes: a queued write wins over the file. */
	pthread_mutex_lock(&st->rlock);
	pthread_mutex_lock(&st->lock);
	if ((op = state_pending(st, key)) != NULL) {
		rv = op->kind == MBI_OP_KV_DEL ?
		    MB_EFIELD :
		    state_copy(op->blob, op->bloblen, val, len);
		pthread_mutex_unlock(&st->lock);
		pthread_mutex_unlock(&st->rlock);
		return rv;
	}
	pthread_mutex_unlock(&st->lock);
	if ((s = state_prepare(st, "SELECT value FROM kv WHERE key = ?1")) ==
	    NULL) {
		pthread_mutex_unlock(&st->rlock);
		return MB_EDB;
	}
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		rv = state_copy(sqlite3_column_blob(s, 0),
		    (size_t)sqlite3_column_bytes(s, 0), val, len);
	else
		rv = rc == SQLITE_DONE ? MB_EFIELD : MB_EDB;
	sqlite3_finalize(s);
	pthread_mutex_unlock(&st->rlock);
	return rv;
}

int
mb_state_match(mb_store *st, const char *prefix,
    int (*fn)(void *arg, const char *key, const void *val, size_t len),
    void *arg)
{
	sqlite3_stmt *s;
	int rc, rv = MB_OK;

	if (st == NULL || prefix == NULL || fn == NULL)
		return MB_EINVAL;
	/* A match sees the queued writes once they are committed. */
	if ((rv = mbi_store_commit_wait(st, 0, 5000)) != MB_OK)
		return rv;
	pthread_mutex_lock(&st->rlock);
	if ((s = state_prepare(st, "SELECT key, value FROM kv WHERE"
	                           " substr(key, 1, length(?1)) = ?1"
	                           " ORDER BY key")) == NULL) {
		pthread_mutex_unlock(&st->rlock);
		return MB_EDB;
	}
	sqlite3_bind_text(s, 1, prefix, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		if (fn(arg, (const char *)sqlite3_column_text(s, 0),
		        sqlite3_column_blob(s, 1),
		        (size_t)sqlite3_column_bytes(s, 1)) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	rv = state_done(s, rc);
	pthread_mutex_unlock(&st->rlock);
	return rv;
}

int
mb_store_check(const char *path, char *err, size_t errlen)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	int rc, fd, version = 0, tables = 0, ours = 0;
	struct stat sb;

	err[0] = '\0';
	if (path == NULL || *path == '\0') {
		snprintf(err, errlen, "no database path");
		return MB_EINVAL;
	}
	if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		return MB_EDB;
	}
	/* A new store is created 0600 whatever the umask, as mb_store_open
	 * would; SQLite alone would make it 0644. */
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) >= 0)
		close(fd);
	rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db,
		    "SELECT (SELECT user_version FROM pragma_user_version),"
		    " (SELECT count(*) FROM sqlite_master WHERE type = 'table'),"
		    " (SELECT count(*) FROM sqlite_master WHERE type = 'table'"
		    "  AND name IN ('outbox', 'inbox', 'journal', 'kv'))",
		    -1, &s, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		version = sqlite3_column_int(s, 0);
		tables = sqlite3_column_int(s, 1);
		ours = sqlite3_column_int(s, 2);
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_OK)
		snprintf(err, errlen, "%s: %s", path,
		    db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
	else if (tables > 0 && (version == 0 || ours < 4))
		snprintf(err, errlen,
		    "%s: an SQLite database, but not a mobbus store", path);
	else if (version > STORE_SCHEMA_VERSION)
		snprintf(err, errlen,
		    "%s: written by a newer mobbus (schema %d, this one knows "
		    "%d)", path, version, STORE_SCHEMA_VERSION);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return err[0] ? MB_EDB : MB_OK;
}

int
mb_store_waiting(const char *path, long *n)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	int rv = MB_EDB;

	*n = 0;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "SELECT count(*) FROM outbox WHERE state = 0",
	        -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW) {
		*n = (long)sqlite3_column_int64(s, 0);
		rv = MB_OK;
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	return rv;
}

int
mb_store_damaged(const char *path, char *why, size_t whylen)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	const char *res;
	int rc;

	why[0] = '\0';
	rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &s,
		    NULL);
	if (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW &&
	    (res = (const char *)sqlite3_column_text(s, 0)) != NULL) {
		if (strcmp(res, "ok") != 0) {
			snprintf(why, whylen, "%s", res);
			for (char *c = why; *c != '\0'; c++)
				if (*c == '\n')
					*c = ' '; /* one line for a note */
		}
	} else {
		snprintf(why, whylen, "%s",
		    db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	return why[0] != '\0';
}
