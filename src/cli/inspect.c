/* SPDX-License-Identifier: MIT */
/* inspect.c - mobbus inspect: print what a store file holds, readably. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "inspect.h"
#include "mobbus.h"

static int
inspect_rows(sqlite3 *db, FILE *out, const char *title, const char *sql,
    void (*row)(sqlite3_stmt *s, FILE *out))
{
	sqlite3_stmt *s;
	int rc, n = 0;

	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
		fprintf(stderr, "mobbus: database: %s\n", sqlite3_errmsg(db));
		return MB_EDB;
	}
	fprintf(out, "%s:\n", title);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		row(s, out);
		n++;
	}
	if (n == 0)
		fprintf(out, "  (none)\n");
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		fprintf(stderr, "mobbus: database: %s\n", sqlite3_errmsg(db));
		return MB_EDB;
	}
	return MB_OK;
}

static const char *
col(sqlite3_stmt *s, int i)
{
	const char *v = (const char *)sqlite3_column_text(s, i);
	return v ? v : "-";
}

static void
outbox_row(sqlite3_stmt *s, FILE *out)
{
	const void *blob = sqlite3_column_blob(s, 4);
	mb_envelope *env = mobbus__envelope__unpack(NULL,
	    (size_t)sqlite3_column_bytes(s, 4), blob);
	char *line = env ? mb_transcript_line(env) : NULL;

	fprintf(out, "  #%lld %-8s %-18s %s\n", sqlite3_column_int64(s, 0),
	    sqlite3_column_int(s, 3) ? "handed" : "waiting", col(s, 1),
	    line ? line : "(unreadable envelope)");
	free(line);
	if (env)
		mobbus__envelope__free_unpacked(env, NULL);
}

static void
inbox_row(sqlite3_stmt *s, FILE *out)
{
	fprintf(out, "  %s%s%s received=%s delivered=%s acked=%s "
	             "redeliveries=%d\n",
	    col(s, 0), sqlite3_column_int(s, 1) ? " arrival" : "",
	    sqlite3_column_int(s, 2) ? " tap" : "", col(s, 3), col(s, 4),
	    col(s, 5), sqlite3_column_int(s, 6));
}

static void
token_row(sqlite3_stmt *s, FILE *out)
{
	fprintf(out, "  %-8s acked %s\n", col(s, 0), col(s, 1));
}

static void
kv_row(sqlite3_stmt *s, FILE *out)
{
	const unsigned char *v = sqlite3_column_blob(s, 1);
	int n = sqlite3_column_bytes(s, 1), printable = 1;

	for (int i = 0; i < n; i++)
		if (v[i] < 0x20 && v[i] != '\n' && v[i] != '\t')
			printable = 0;
	if (printable)
		fprintf(out, "  %s = %.*s\n", col(s, 0), n, (const char *)v);
	else
		fprintf(out, "  %s = (%d bytes of binary)\n", col(s, 0), n);
}

static void
journal_row(sqlite3_stmt *s, FILE *out)
{
	fprintf(out, "  #%lld at %lld ms  %s\n", sqlite3_column_int64(s, 0),
	    sqlite3_column_int64(s, 1), col(s, 2));
}

static void
count_row(sqlite3_stmt *s, FILE *out)
{
	fprintf(out, "  %s\n", col(s, 0));
}

/* is_store - whether db has the store's tables; says why not on stderr. */
static int
is_store(sqlite3 *db, const char *path)
{
	sqlite3_stmt *s = NULL;
	int rc, ours = -1;

	rc = sqlite3_prepare_v2(db,
	    "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
	    " AND name IN ('outbox', 'inbox', 'journal', 'kv', 'tokens')",
	    -1, &s, NULL);
	if (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
		ours = sqlite3_column_int(s, 0);
	if (ours < 0)
		fprintf(stderr, "mobbus: database: %s: %s\n", path,
		    sqlite3_errmsg(db));
	else if (ours < 5)
		fprintf(stderr, "mobbus: database: %s: %s\n", path,
		    ours == 0 ? "not a mobbus store (no store tables)" :
		                "an SQLite database, but not a mobbus store");
	sqlite3_finalize(s);
	return ours == 5;
}

int
mb_inspect(const char *path, FILE *out)
{
	struct stat sb;
	sqlite3 *db = NULL;
	int rv, rc;

	if (stat(path, &sb) != 0) {
		fprintf(stderr, "mobbus: database: %s: %s\n", path,
		    strerror(errno));
		return MB_EDB;
	}
	if (!S_ISREG(sb.st_mode)) {
		fprintf(stderr, "mobbus: database: %s: %s\n", path,
		    S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file");
		return MB_EDB;
	}
	rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
	if (rc != SQLITE_OK) {
		fprintf(stderr, "mobbus: database: %s: %s\n", path,
		    db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return MB_EDB;
	}
	if (!is_store(db, path)) {
		sqlite3_close(db);
		return MB_EDB;
	}
	fprintf(out, "store %s\n", path);
	if ((rv = inspect_rows(db, out, "schema",
	         "SELECT 'version ' || user_version FROM pragma_user_version",
	         count_row)) != MB_OK ||
	    (rv = inspect_rows(db, out, "integrity",
	         "PRAGMA integrity_check", count_row)) != MB_OK ||
	    (rv = inspect_rows(db, out, "outbox (waiting for the consumer, or "
	                                "handed and not yet acknowledged)",
	         "SELECT seq, topic, note_id, state, envelope FROM outbox "
	         "ORDER BY seq", outbox_row)) != MB_OK ||
	    (rv = inspect_rows(db, out, "inbox",
	         "SELECT id, arrival, tap, received_ms, delivered_ms, acked_ms,"
	         " redeliveries FROM inbox ORDER BY received_ms, id",
	         inbox_row)) != MB_OK ||
	    (rv = inspect_rows(db, out, "push tokens",
	         "SELECT os, acked FROM tokens ORDER BY os", token_row)) !=
	        MB_OK ||
	    (rv = inspect_rows(db, out, "state",
	         "SELECT key, value FROM kv ORDER BY key", kv_row)) != MB_OK ||
	    (rv = inspect_rows(db, out, "journal (last 20)",
	         "SELECT * FROM (SELECT seq, at_ms, topic FROM journal ORDER BY"
	         " seq DESC LIMIT 20) ORDER BY seq", journal_row)) != MB_OK) {
		sqlite3_close(db);
		return rv;
	}
	sqlite3_close(db);
	return MB_OK;
}
