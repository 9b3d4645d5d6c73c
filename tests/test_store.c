/* SPDX-License-Identifier: MIT */
/*
 * test_store.c - the durable store: group commit and mb_flush, what survives
 * a close and reopen, the file's mode and schema, a database that is newer,
 * corrupt, read-only or full (reported, and delivery goes on from memory),
 * and the key-value state API. Every look at the file is through a separate
 * sqlite3 connection, never through mobbus.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "mobbus.h"
#include "nuts.h"
#include "nuts_store.h"

#define WAIT_MS 30000
#define NOTES 500

/* A test's database: dir/mobbus.db in a fresh directory. */
struct tdb {
	char dir[512];
	char path[600];
};

static void
tdb_init(struct tdb *t)
{
	nuts_tmpdir(t->dir, sizeof(t->dir));
	snprintf(t->path, sizeof(t->path), "%s/mobbus.db", t->dir);
}

static void
tdb_fini(struct tdb *t)
{
	nuts_db_unlink(t->path);
	(void)rmdir(t->dir);
}

static long long
count(const char *path, const char *sql)
{
	char err[512];
	long long n = nuts_sql_int(path, sql, err, sizeof(err));

	ck_assert_msg(n >= 0, "%s: %s", sql, err);
	return (n);
}

static void
note_id(char *buf, size_t len, int i)
{
	snprintf(buf, len, "n%03d", i);
}

static void
publish_notes(mb_pub *pub, int from, int to)
{
	char id[32];

	for (int i = from; i < to; i++) {
		note_id(id, sizeof(id), i);
		NUTS_PASS(nuts_pub_note(pub, id));
	}
}

/* subscribe - the consumer comes up; returns once everything it was handed
 * has reached the sink (the hand-offs are published by the handler of the
 * subscribe, so a drain covers them). */
static void
subscribe(struct nuts_app *app)
{
	NUTS_PASS(
	    nuts_pub_cmd(app->pub, MOBBUS__APP_COMMAND__DO__SUBSCRIBE, NULL));
	NUTS_PASS(mb_bus_drain(app->bus, WAIT_MS));
}

/* expect_got - the sink was handed exactly ids from..to-1, in order, each
 * with this redelivered flag. */
static void
expect_got(struct nuts_app *app, int from, int to, bool redelivered)
{
	char id[32];

	pthread_mutex_lock(&app->rec.mtx);
	ck_assert_uint_eq(app->rec.ngot, (size_t)(to - from));
	for (int i = from; i < to; i++) {
		const struct nuts_got *g = &app->rec.got[i - from];

		note_id(id, sizeof(id), i);
		ck_assert_str_eq(g->id, id);
		ck_assert_msg(g->redelivered == redelivered,
		              "%s: redelivered %d, want %d", id, g->redelivered,
		              redelivered);
	}
	pthread_mutex_unlock(&app->rec.mtx);
}

/* expect_db_error - exactly one bus/error "database", naming the file. */
static void
expect_db_error(struct nuts_app *app, const char *path)
{
	NUTS_PASS(mb_bus_drain(app->bus, WAIT_MS));
	pthread_mutex_lock(&app->rec.mtx);
	ck_assert_uint_eq(app->rec.nerrs, 1);
	ck_assert_str_eq(app->rec.errs[0].code, mb_err_name(MB_EDB));
	ck_assert_str_eq(app->rec.errs[0].code, "database");
	ck_assert_msg(strstr(app->rec.errs[0].message, path) != NULL,
	              "message does not name %s: %s", path,
	              app->rec.errs[0].message);
	printf("bus/error: %s\n", app->rec.errs[0].message);
	pthread_mutex_unlock(&app->rec.mtx);
}

/* expect_memory_delivery - with the store failed, the consumer still gets
 * what arrives (auto ack); n is how many it had before. */
static void
expect_memory_delivery(struct nuts_app *app, size_t n)
{
	NUTS_PASS(nuts_pub_note(app->pub, "mem-1"));
	NUTS_PASS(nuts_pub_note(app->pub, "mem-2"));
	NUTS_PASS(mb_bus_drain(app->bus, WAIT_MS));
	pthread_mutex_lock(&app->rec.mtx);
	ck_assert_uint_eq(app->rec.ngot, n + 2);
	ck_assert_str_eq(app->rec.got[n].id, "mem-1");
	ck_assert_str_eq(app->rec.got[n + 1].id, "mem-2");
	pthread_mutex_unlock(&app->rec.mtx);
}

/* ---- group commit and mb_flush ----------------------------------------- */

START_TEST(test_flush)
{
	struct tdb t;
	struct nuts_app app;
	long long before;

	tdb_init(&t);
	NUTS_PASS(nuts_app_open(&app, t.path, 1, 0));
	publish_notes(app.pub, 0, NOTES);
	/* Right after publishing, part may still be queued in the bus or the
	 * store: nothing to assert but the bound. */
	before = count(t.path, "SELECT count(*) FROM outbox");
	printf("flush: %lld of %d outbox rows committed before mb_flush\n",
	       before, NOTES);
	ck_assert_int_le(before, NOTES);

	/* What a bridge's transition handler does. */
	NUTS_PASS(nuts_pub_background(app.pub));
	NUTS_PASS(mb_flush(app.st, WAIT_MS));
	ck_assert_int_eq(count(t.path, "SELECT count(*) FROM outbox"), NOTES);
	ck_assert_int_eq(count(t.path, "SELECT count(*) FROM inbox"), NOTES);
	ck_assert_int_eq(count(t.path, "SELECT count(*) FROM outbox WHERE "
	                               "state = 0 AND note_id LIKE 'n%'"),
	                 NOTES);
	ck_assert_int_eq(count(t.path, "SELECT count(*) FROM inbox WHERE "
	                               "arrival = 1 AND delivered_ms IS NULL"),
	                 NOTES);
	/* The store actor journals every platform moment: 500 arrivals and
	 * the lifecycle event. */
	ck_assert_int_eq(count(t.path, "SELECT count(*) FROM journal"),
	                 NOTES + 1);
	ck_assert_uint_eq(app.rec.ngot, 0); /* nobody subscribed */
	ck_assert_uint_eq(app.rec.nerrs, 0);
	nuts_app_close(&app);
	tdb_fini(&t);
}
END_TEST

/* ---- close and reopen --------------------------------------------------- */

START_TEST(test_reopen_manual)
{
	struct tdb t;
	struct nuts_app app;

	tdb_init(&t);
	/* 1: they arrive while no consumer is up. */
	NUTS_PASS(nuts_app_open(&app, t.path, 1, 0));
	publish_notes(app.pub, 0, NOTES);
	NUTS_PASS(mb_flush(app.st, WAIT_MS));
	nuts_app_close(&app);

	/* 2: a later process hands all of them, in order, as never handed
	 * before; the consumer does not acknowledge. */
	NUTS_PASS(nuts_app_open(&app, t.path, 1, 0));
	subscribe(&app);
	expect_got(&app, 0, NOTES, false);
	NUTS_PASS(mb_flush(app.st, WAIT_MS));
	ck_assert_int_eq(count(t.path, "SELECT count(*) FROM outbox WHERE "
	                               "state = 1"),
	                 NOTES);
	nuts_app_close(&app);

	/* 3: handed and unacknowledged: handed again, marked redelivered.
	 * The consumer acknowledges the first half. */
	NUTS_PASS(nuts_app_open(&app, t.path, 1, 0));
	subscribe(&app);
	expect_got(&app, 0, NOTES, true);
	for (int i = 0; i < NOTES / 2; i++) {
		char id[32];

		note_id(id, sizeof(id), i);
		NUTS_PASS(
		    nuts_pub_cmd(app.pub, MOBBUS__APP_COMMAND__DO__ACK, id));
	}
	NUTS_PASS(mb_flush(app.st, WAIT_MS));
	ck_assert_int_eq(count(t.path, "SELECT count(*) FROM outbox"),
	                 NOTES / 2);
	ck_assert_int_eq(count(t.path, "SELECT count(*) FROM inbox WHERE "
	                               "acked_ms IS NOT NULL"),
	                 NOTES / 2);
	nuts_app_close(&app);

	/* 4: acknowledged ones never again, the rest again; a late copy of
	 * an acknowledged one is not a new notification. */
	NUTS_PASS(nuts_app_open(&app, t.path, 1, 0));
	subscribe(&app);
	expect_got(&app, NOTES / 2, NOTES, true);
	NUTS_PASS(nuts_pub_note(app.pub, "n000"));
	NUTS_PASS(mb_bus_drain(app.bus, WAIT_MS));
	expect_got(&app, NOTES / 2, NOTES, true);
	for (int i = NOTES / 2; i < NOTES; i++) {
		char id[32];

		note_id(id, sizeof(id), i);
		NUTS_PASS(
		    nuts_pub_cmd(app.pub, MOBBUS__APP_COMMAND__DO__ACK, id));
	}
	NUTS_PASS(mb_flush(app.st, WAIT_MS));
	nuts_app_close(&app);

	/* 5: nothing is left. */
	NUTS_PASS(nuts_app_open(&app, t.path, 1, 0));
	subscribe(&app);
	expect_got(&app, 0, 0, false);
	NUTS_PASS(mb_flush(app.st, WAIT_MS));
	ck_assert_int_eq(count(t.path, "SELECT count(*) FROM outbox"), 0);
	ck_assert_int_eq(count(t.path, "SELECT sum(redeliveries) FROM inbox"),
	                 NOTES + NOTES / 2);
	ck_assert_uint_eq(app.rec.nerrs, 0);
	nuts_app_close(&app);
	tdb_fini(&t);
}
END_TEST

START_TEST(test_reopen_auto)
{
	struct tdb t;
	struct nuts_app app;

	tdb_init(&t);
	/* A long commit delay: after the drain, the writes sit in the store's
	 * queue (but for full batches), and close commits them. */
	NUTS_PASS(nuts_app_open(&app, t.path, 0, 60000));
	publish_notes(app.pub, 0, NOTES);
	NUTS_PASS(mb_bus_drain(app.bus, WAIT_MS));
	nuts_app_close(&app);

	NUTS_PASS(nuts_app_open(&app, t.path, 0, 0));
	subscribe(&app);
	expect_got(&app, 0, NOTES, false);
	NUTS_PASS(mb_flush(app.st, WAIT_MS));
	/* A hand-off acknowledges: the outbox is empty. */
	ck_assert_int_eq(count(t.path, "SELECT count(*) FROM outbox"), 0);
	nuts_app_close(&app);

	NUTS_PASS(nuts_app_open(&app, t.path, 0, 0));
	subscribe(&app);
	publish_notes(app.pub, 0, 10); /* late copies */
	NUTS_PASS(mb_bus_drain(app.bus, WAIT_MS));
	expect_got(&app, 0, 0, false);
	ck_assert_uint_eq(app.rec.nerrs, 0);
	nuts_app_close(&app);
	tdb_fini(&t);
}
END_TEST

/*
 * The documented order closes the store while the deliver actor still runs
 * (the bus stops it): what it hands on afterwards must not touch the closed
 * store (under ASan this was a heap-use-after-free), and is not written.
 */
START_TEST(test_close_racing)
{
	struct tdb t;
	struct nuts_app app;
	char id[32], res[64];

	tdb_init(&t);
	NUTS_PASS(nuts_app_open(&app, t.path, 1, 0));
	publish_notes(app.pub, 0, 2000);
	mb_store_close(app.st);
	app.st = NULL;
	for (int i = 0; i < 1000; i++) {
		snprintf(id, sizeof(id), "late-%d", i);
		NUTS_PASS(nuts_pub_note(app.pub, id));
	}
	NUTS_PASS(mb_bus_drain(app.bus, WAIT_MS));
	NUTS_PASS(
	    nuts_pub_cmd(app.pub, MOBBUS__APP_COMMAND__DO__SUBSCRIBE, NULL));
	nuts_app_close(&app);

	ck_assert_int_eq(
	    nuts_sql_text(t.path, "PRAGMA integrity_check", res, sizeof(res)),
	    SQLITE_OK);
	ck_assert_str_eq(res, "ok");
	ck_assert_int_le(count(t.path, "SELECT count(*) FROM outbox"), 2000);
	ck_assert_int_eq(count(t.path, "SELECT count(*) FROM outbox WHERE "
	                               "note_id LIKE 'late-%'"),
	                 0);
	ck_assert_int_eq(count(t.path, "SELECT count(*) FROM inbox WHERE "
	                               "id LIKE 'late-%'"),
	                 0);
	tdb_fini(&t);
}
END_TEST

/* ---- the file ----------------------------------------------------------- */

/* A clean close leaves one self-contained file: no -wal or -shm. */
START_TEST(test_close_clean)
{
	static const char *const sfx[] = {"-wal", "-shm"};
	struct tdb t;
	struct nuts_app app;

	tdb_init(&t);
	NUTS_PASS(nuts_app_open(&app, t.path, 1, 0));
	publish_notes(app.pub, 0, NOTES);
	NUTS_PASS(mb_flush(app.st, WAIT_MS));
	nuts_app_close(&app);
	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		char p[700];
		struct stat sb;

		snprintf(p, sizeof(p), "%s%s", t.path, sfx[i]);
		ck_assert_msg(stat(p, &sb) != 0 && errno == ENOENT,
		              "%s is left after close", p);
	}
	ck_assert_int_eq(count(t.path, "SELECT count(*) FROM outbox"), NOTES);
	tdb_fini(&t);
}
END_TEST

START_TEST(test_file_mode)
{
	static const char *const sfx[] = {"", "-wal", "-shm"};
	struct tdb t;
	struct nuts_app app;
	mode_t old = umask(022);

	tdb_init(&t);
	NUTS_PASS(nuts_app_open(&app, t.path, 1, 0));
	publish_notes(app.pub, 0, 10);
	NUTS_PASS(mb_flush(app.st, WAIT_MS));
	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		char p[700];
		struct stat sb;

		snprintf(p, sizeof(p), "%s%s", t.path, sfx[i]);
		ck_assert_msg(stat(p, &sb) == 0, "%s: %s", p, strerror(errno));
		ck_assert_msg((sb.st_mode & 07777) == 0600, "%s: mode %04o", p,
		              (unsigned)(sb.st_mode & 07777));
	}
	nuts_app_close(&app);
	umask(old);
	tdb_fini(&t);
}
END_TEST

START_TEST(test_schema)
{
	struct tdb t;
	struct nuts_app app;
	char mode[64];

	tdb_init(&t);
	NUTS_PASS(nuts_app_open(&app, t.path, 1, 0));
	NUTS_PASS(mb_flush(app.st, WAIT_MS));
	ck_assert_int_eq(count(t.path, "PRAGMA user_version"), 1);
	ck_assert_int_eq(
	    nuts_sql_text(t.path, "PRAGMA journal_mode", mode, sizeof(mode)),
	    SQLITE_OK);
	ck_assert_str_eq(mode, "wal");
	ck_assert_int_eq(count(t.path, "SELECT count(*) FROM sqlite_master "
	                               "WHERE type = 'table' AND name IN "
	                               "('journal', 'kv', 'inbox', 'outbox', "
	                               "'tokens', 'seen')"),
	                 6);
	nuts_app_close(&app);

	/* Reopening a current file migrates nothing. */
	NUTS_PASS(nuts_app_open(&app, t.path, 1, 0));
	NUTS_PASS(mb_flush(app.st, WAIT_MS));
	ck_assert_uint_eq(app.rec.nerrs, 0);
	nuts_app_close(&app);
	ck_assert_int_eq(count(t.path, "PRAGMA user_version"), 1);
	tdb_fini(&t);
}
END_TEST

START_TEST(test_schema_newer)
{
	struct tdb t;
	struct nuts_app app;
	sqlite3 *db;

	tdb_init(&t);
	/* A file a newer mobbus wrote. */
	ck_assert_int_eq(sqlite3_open(t.path, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db,
	                              "CREATE TABLE future(x); "
	                              "INSERT INTO future VALUES(42); "
	                              "PRAGMA user_version = 99;",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	sqlite3_close(db);

	NUTS_PASS(nuts_app_open(&app, t.path, 0, 0));
	expect_db_error(&app, t.path);
	ck_assert_msg(strstr(app.rec.errs[0].message, "newer") != NULL, "%s",
	              app.rec.errs[0].message);
	subscribe(&app);
	expect_memory_delivery(&app, 0);
	NUTS_FAIL(mb_flush(app.st, WAIT_MS), MB_EDB);
	nuts_app_close(&app);

	/* Left as the newer version wrote it. */
	ck_assert_int_eq(count(t.path, "PRAGMA user_version"), 99);
	ck_assert_int_eq(count(t.path, "SELECT x FROM future"), 42);
	ck_assert_int_eq(count(t.path, "SELECT count(*) FROM sqlite_master "
	                               "WHERE name = 'outbox'"),
	                 0);
	tdb_fini(&t);
}
END_TEST

START_TEST(test_corrupt)
{
	struct tdb t;
	struct nuts_app app;
	unsigned char junk[8192], back[8192 + 1];
	int fd;
	ssize_t n;

	tdb_init(&t);
	memset(junk, 0xAB, sizeof(junk));
	fd = open(t.path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);

	NUTS_PASS(nuts_app_open(&app, t.path, 0, 0));
	expect_db_error(&app, t.path);
	ck_assert_msg(strstr(app.rec.errs[0].message, "not a database") != NULL,
	              "%s", app.rec.errs[0].message);
	subscribe(&app);
	expect_memory_delivery(&app, 0);
	NUTS_FAIL(mb_flush(app.st, WAIT_MS), MB_EDB);
	publish_notes(app.pub, 0, 50);
	NUTS_FAIL(mb_flush(app.st, WAIT_MS), MB_EDB);
	pthread_mutex_lock(&app.rec.mtx);
	ck_assert_uint_eq(app.rec.ngot, 52);
	ck_assert_uint_eq(app.rec.nerrs, 1); /* reported once */
	pthread_mutex_unlock(&app.rec.mtx);
	nuts_app_close(&app);

	/* The bytes are still what they were: nothing was written over. */
	fd = open(t.path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	n = read(fd, back, sizeof(back));
	close(fd);
	ck_assert_int_eq(n, (ssize_t)sizeof(junk));
	ck_assert_int_eq(memcmp(back, junk, sizeof(junk)), 0);
	tdb_fini(&t);
}
END_TEST

START_TEST(test_open_fails)
{
	struct nuts_app app;

	/* A path that cannot be created at all. */
	NUTS_PASS(nuts_app_open(&app, "/nonexistent-dir/mobbus.db", 0, 0));
	expect_db_error(&app, "/nonexistent-dir/mobbus.db");
	subscribe(&app);
	expect_memory_delivery(&app, 0);
	NUTS_FAIL(mb_flush(app.st, WAIT_MS), MB_EDB);
	nuts_app_close(&app);
}
END_TEST

/* ---- read-only and full: in children ----------------------------------- */

struct child_db {
	char path[600];
	char dir[512];
	int notes;        /* waiting notifications the creator leaves */
	int dir_writable; /* readonly: the directory is writable */
};

/* Create a valid store holding c->notes waiting notifications. */
static void
create_child(void *arg)
{
	struct child_db *c = arg;
	struct nuts_app app;
	char id[32];

	NUTS_CHILD_PASS(nuts_app_open(&app, c->path, 1, 0));
	for (int i = 0; i < c->notes; i++) {
		note_id(id, sizeof(id), i);
		NUTS_CHILD_PASS(nuts_pub_note(app.pub, id));
	}
	NUTS_CHILD_PASS(mb_flush(app.st, WAIT_MS));
	NUTS_CHILD_ASSERT(app.rec.nerrs == 0, "%s", app.rec.errs[0].message);
	nuts_app_close(&app);
}

/* In a child whose store has failed: exactly one "database" error naming
 * the file, and the consumer still gets what arrives. */
static void
child_expect_failed(struct nuts_app *app, const char *path, size_t before,
                    const char *why1, const char *why2)
{
	NUTS_CHILD_PASS(mb_bus_drain(app->bus, WAIT_MS));
	pthread_mutex_lock(&app->rec.mtx);
	NUTS_CHILD_ASSERT(app->rec.nerrs == 1, "%zu bus errors",
	                  app->rec.nerrs);
	NUTS_CHILD_ASSERT(strcmp(app->rec.errs[0].code, "database") == 0,
	                  "code %s", app->rec.errs[0].code);
	NUTS_CHILD_ASSERT(strstr(app->rec.errs[0].message, path) != NULL,
	                  "message does not name the file: %s",
	                  app->rec.errs[0].message);
	/* The message gives SQLite's reason, not a later statement's. */
	NUTS_CHILD_ASSERT(strstr(app->rec.errs[0].message, why1) != NULL ||
	                      (why2 != NULL &&
	                       strstr(app->rec.errs[0].message, why2) != NULL),
	                  "message does not say \"%s\": %s", why1,
	                  app->rec.errs[0].message);
	nuts_child_report("I bus/error: %s", app->rec.errs[0].message);
	pthread_mutex_unlock(&app->rec.mtx);
	NUTS_CHILD_PASS(nuts_pub_note(app->pub, "mem-1"));
	NUTS_CHILD_PASS(mb_bus_drain(app->bus, WAIT_MS));
	pthread_mutex_lock(&app->rec.mtx);
	NUTS_CHILD_ASSERT(app->rec.ngot == before + 1, "%zu handed, want %zu",
	                  app->rec.ngot, before + 1);
	NUTS_CHILD_ASSERT(strcmp(app->rec.got[before].id, "mem-1") == 0,
	                  "got %s", app->rec.got[before].id);
	pthread_mutex_unlock(&app->rec.mtx);
	NUTS_CHILD_ASSERT(mb_flush(app->st, WAIT_MS) == MB_EDB, "flush");
}

/*
 * A database the process may read and not write. In a directory it may
 * write, SQLite opens the file read-only (the WAL index can be created
 * beside it): what was stored is still handed, and the first commit fails.
 * In a directory it may not write either, the WAL database cannot be opened
 * at all: the failure comes at open. Either way: one "database" error, and
 * delivery goes on from memory.
 */
static void
readonly_child(void *arg)
{
	struct child_db *c = arg;
	struct nuts_app app;
	char id[32];
	size_t handed;

	/* Root ignores file modes: become nobody. */
	if (geteuid() == 0 && (setgroups(0, NULL) != 0 || setgid(65534) != 0 ||
	                       setuid(65534) != 0)) {
		NUTS_CHILD_SKIP("cannot become uid/gid 65534: %s",
		                strerror(errno));
	}
	if (access(c->path, W_OK) == 0 || errno != EACCES) {
		NUTS_CHILD_SKIP("%s is still writable as uid %d", c->path,
		                (int)geteuid());
	}
	if (!c->dir_writable && access(c->dir, W_OK) == 0) {
		NUTS_CHILD_SKIP("%s is still writable as uid %d", c->dir,
		                (int)geteuid());
	}
	NUTS_CHILD_PASS(nuts_app_open(&app, c->path, 0, 0));
	NUTS_CHILD_PASS(mb_bus_drain(app.bus, WAIT_MS));
	if (c->dir_writable) {
		NUTS_CHILD_ASSERT(app.rec.nerrs == 0, "error at open: %s",
		                  app.rec.errs[0].message);
	}
	NUTS_CHILD_PASS(
	    nuts_pub_cmd(app.pub, MOBBUS__APP_COMMAND__DO__SUBSCRIBE, NULL));
	NUTS_CHILD_PASS(mb_bus_drain(app.bus, WAIT_MS));
	/* Readable: what the earlier process stored is handed, in order. */
	handed = c->dir_writable ? (size_t)c->notes : 0;
	NUTS_CHILD_ASSERT(app.rec.ngot == handed,
	                  "%zu stored notifications handed, want %zu",
	                  app.rec.ngot, handed);
	for (size_t i = 0; i < handed; i++) {
		note_id(id, sizeof(id), (int)i);
		NUTS_CHILD_ASSERT(strcmp(app.rec.got[i].id, id) == 0,
		                  "got %s, want %s", app.rec.got[i].id, id);
	}
	NUTS_CHILD_ASSERT(mb_flush(app.st, WAIT_MS) == MB_EDB,
	                  "flush of a read-only store");
	child_expect_failed(&app, c->path, handed, "readonly", NULL);
	nuts_app_close(&app);
}

static void
readonly_run(int dir_writable)
{
	struct tdb t;
	struct child_db c = {.notes = 5, .dir_writable = dir_writable};
	char res[64];

	if (!nuts_fork_ok()) {
		return;
	}
	tdb_init(&t);
	snprintf(c.path, sizeof(c.path), "%s", t.path);
	snprintf(c.dir, sizeof(c.dir), "%s", t.dir);
	ck_assert_int_eq(nuts_child_run(create_child, &c, false, NULL, 0), 0);
	ck_assert_int_eq(chmod(t.path, 0444), 0);
	ck_assert_int_eq(chmod(t.dir, dir_writable ? 0777 : 0555), 0);
	(void)nuts_child_run(readonly_child, &c, false, NULL, 0);
	ck_assert_int_eq(chmod(t.path, 0600), 0);
	ck_assert_int_eq(chmod(t.dir, 0700), 0);
	/* Still the file the creator left. */
	ck_assert_int_eq(count(t.path, "SELECT count(*) FROM outbox"), c.notes);
	ck_assert_int_eq(
	    nuts_sql_text(t.path, "PRAGMA integrity_check", res, sizeof(res)),
	    SQLITE_OK);
	ck_assert_str_eq(res, "ok");
	tdb_fini(&t);
}

START_TEST(test_readonly_file)
{
	readonly_run(1);
}
END_TEST

START_TEST(test_readonly_dir)
{
	readonly_run(0);
}
END_TEST

#define FSIZE_LIMIT (64 * 1024)

static void
full_child(void *arg)
{
	struct child_db *c = arg;
	struct nuts_app app;
	struct rlimit rl = {FSIZE_LIMIT, FSIZE_LIMIT};
	struct stat sb;

	/* A real limit: writes past it fail with EFBIG, as on a full disk,
	 * instead of killing the process. */
	signal(SIGXFSZ, SIG_IGN);
	NUTS_CHILD_ASSERT(setrlimit(RLIMIT_FSIZE, &rl) == 0, "setrlimit: %s",
	                  strerror(errno));
	NUTS_CHILD_ASSERT(stat(c->path, &sb) == 0 && sb.st_size < FSIZE_LIMIT,
	                  "the database is already %lld bytes",
	                  (long long)sb.st_size);
	NUTS_CHILD_PASS(nuts_app_open(&app, c->path, 0, 0));
	NUTS_CHILD_PASS(mb_bus_drain(app.bus, WAIT_MS));
	NUTS_CHILD_ASSERT(app.rec.nerrs == 0, "error at open: %s",
	                  app.rec.errs[0].message);
	NUTS_CHILD_PASS(
	    nuts_pub_cmd(app.pub, MOBBUS__APP_COMMAND__DO__SUBSCRIBE, NULL));
	for (int i = 0; i < 2000; i++) {
		char id[32];

		snprintf(id, sizeof(id), "full-%04d", i);
		NUTS_CHILD_PASS(nuts_pub_note(app.pub, id));
	}
	NUTS_CHILD_ASSERT(mb_flush(app.st, WAIT_MS) == MB_EDB,
	                  "flush past RLIMIT_FSIZE");
	NUTS_CHILD_ASSERT(app.rec.ngot == 2000, "%zu handed", app.rec.ngot);
	child_expect_failed(&app, c->path, 2000, "disk I/O error",
	                    "database or disk is full");
	nuts_app_close(&app);
}

START_TEST(test_full)
{
	struct tdb t;
	struct child_db c = {.notes = 0};
	char res[64];

	if (!nuts_fork_ok()) {
		return;
	}
	tdb_init(&t);
	snprintf(c.path, sizeof(c.path), "%s", t.path);
	ck_assert_int_eq(nuts_child_run(create_child, &c, false, NULL, 0), 0);
	ck_assert_int_eq(nuts_child_run(full_child, &c, false, NULL, 0), 0);
	/* The failed commits left no damage. */
	ck_assert_int_eq(
	    nuts_sql_text(t.path, "PRAGMA integrity_check", res, sizeof(res)),
	    SQLITE_OK);
	ck_assert_str_eq(res, "ok");
	tdb_fini(&t);
}
END_TEST

/* ---- key-value state ---------------------------------------------------- */

static int
match_none_cb(void *arg, const char *key, const void *val, size_t len)
{
	(void)arg;
	(void)key;
	(void)val;
	(void)len;
	return (0);
}

static void
expect_val(mb_store *st, const char *key, const void *want, size_t wantlen)
{
	void *v = NULL;
	size_t len = 12345;

	NUTS_PASS(mb_state_get(st, key, &v, &len));
	ck_assert_ptr_nonnull(v);
	ck_assert_uint_eq(len, wantlen);
	ck_assert_int_eq(memcmp(v, want, wantlen), 0);
	free(v);
}

static void
expect_absent(mb_store *st, const char *key)
{
	void *v = NULL;
	size_t len;

	NUTS_FAIL(mb_state_get(st, key, &v, &len), MB_EFIELD);
}

START_TEST(test_kv_basic)
{
	static const char bin[] = {'\0', 'x', '\0', 'y', '\0'};
	struct tdb t;
	struct nuts_app app;
	char longkey[1100];
	void *v;
	size_t len;

	tdb_init(&t);
	/* A long commit delay: until mb_flush, every write is still queued,
	 * so the reads below are the caller's own queued writes. */
	NUTS_PASS(nuts_app_open(&app, t.path, 1, 60000));
	mb_store *st = app.st;

	memset(longkey, 'k', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	NUTS_FAIL(mb_state_put(NULL, "k", "v", 1), MB_EINVAL);
	NUTS_FAIL(mb_state_put(st, NULL, "v", 1), MB_EINVAL);
	NUTS_FAIL(mb_state_put(st, "", "v", 1), MB_EINVAL);
	NUTS_FAIL(mb_state_put(st, longkey, "v", 1), MB_EINVAL);
	NUTS_FAIL(mb_state_put(st, "k", NULL, 1), MB_EINVAL);
	NUTS_FAIL(mb_state_get(NULL, "k", &v, &len), MB_EINVAL);
	NUTS_FAIL(mb_state_get(st, NULL, &v, &len), MB_EINVAL);
	NUTS_FAIL(mb_state_get(st, "", &v, &len), MB_EINVAL);
	NUTS_FAIL(mb_state_get(st, "k", NULL, &len), MB_EINVAL);
	NUTS_FAIL(mb_state_get(st, "k", &v, NULL), MB_EINVAL);
	NUTS_FAIL(mb_state_delete(NULL, "k"), MB_EINVAL);
	NUTS_FAIL(mb_state_delete(st, NULL), MB_EINVAL);
	NUTS_FAIL(mb_state_delete(st, ""), MB_EINVAL);
	NUTS_FAIL(mb_state_match(NULL, "", match_none_cb, NULL), MB_EINVAL);
	NUTS_FAIL(mb_state_match(st, NULL, match_none_cb, NULL), MB_EINVAL);
	NUTS_FAIL(mb_state_match(st, "", NULL, NULL), MB_EINVAL);
	expect_absent(st, "missing");

	/* Read your writes before any commit. */
	NUTS_PASS(mb_state_put(st, "greeting", "hello", 5));
	NUTS_PASS(mb_state_put(st, "bin", bin, sizeof(bin)));
	NUTS_PASS(mb_state_put(st, "empty", NULL, 0));
	NUTS_PASS(mb_state_put(st, "empty2", "", 0));
	NUTS_PASS(mb_state_put(st, "twice", "one", 3));
	NUTS_PASS(mb_state_put(st, "twice", "second", 6));
	NUTS_PASS(mb_state_put(st, "gone", "x", 1));
	NUTS_PASS(mb_state_delete(st, "gone"));
	NUTS_PASS(mb_state_delete(st, "never-there"));
	ck_assert_int_eq(count(t.path, "SELECT count(*) FROM kv"), 0);
	expect_val(st, "greeting", "hello", 5);
	expect_val(st, "bin", bin, sizeof(bin));
	expect_val(st, "empty", "", 0);
	expect_val(st, "empty2", "", 0);
	expect_val(st, "twice", "second", 6);
	expect_absent(st, "gone");
	expect_absent(st, "never-there");

	/* The same from the file. */
	NUTS_PASS(mb_flush(st, WAIT_MS));
	ck_assert_int_eq(count(t.path, "SELECT count(*) FROM kv"), 5);
	ck_assert_int_eq(count(t.path, "SELECT length(value) FROM kv WHERE "
	                               "key = 'bin'"),
	                 (long long)sizeof(bin));
	ck_assert_int_eq(count(t.path, "SELECT typeof(value) = 'blob' FROM kv "
	                               "WHERE key = 'empty'"),
	                 1);
	expect_val(st, "greeting", "hello", 5);
	expect_val(st, "bin", bin, sizeof(bin));
	expect_val(st, "empty", "", 0);
	expect_val(st, "empty2", "", 0);
	expect_val(st, "twice", "second", 6);
	expect_absent(st, "gone");

	/* A delete of a committed key: absent at once, and in the file after
	 * the commit. */
	NUTS_PASS(mb_state_delete(st, "greeting"));
	expect_absent(st, "greeting");
	ck_assert_int_eq(count(t.path, "SELECT count(*) FROM kv WHERE "
	                               "key = 'greeting'"),
	                 1);
	NUTS_PASS(mb_flush(st, WAIT_MS));
	expect_absent(st, "greeting");
	ck_assert_int_eq(count(t.path, "SELECT count(*) FROM kv WHERE "
	                               "key = 'greeting'"),
	                 0);
	ck_assert_uint_eq(app.rec.nerrs, 0);
	nuts_app_close(&app);
	tdb_fini(&t);
}
END_TEST

START_TEST(test_kv_persist)
{
	static const char bin[] = {'\0', '\0', 1, 2, '\0'};
	struct tdb t;
	struct nuts_app app;

	tdb_init(&t);
	NUTS_PASS(nuts_app_open(&app, t.path, 1, 60000));
	NUTS_PASS(mb_state_put(app.st, "a", "alpha", 5));
	NUTS_PASS(mb_state_put(app.st, "bin", bin, sizeof(bin)));
	NUTS_PASS(mb_state_put(app.st, "empty", NULL, 0));
	NUTS_PASS(mb_state_put(app.st, "del", "x", 1));
	NUTS_PASS(mb_flush(app.st, WAIT_MS));
	NUTS_PASS(mb_state_delete(app.st, "del"));
	NUTS_PASS(mb_state_put(app.st, "a", "alpha2", 6));
	nuts_app_close(&app); /* the queued delete and put commit at close */

	NUTS_PASS(nuts_app_open(&app, t.path, 1, 0));
	expect_val(app.st, "a", "alpha2", 6);
	expect_val(app.st, "bin", bin, sizeof(bin));
	expect_val(app.st, "empty", "", 0);
	expect_absent(app.st, "del");
	ck_assert_uint_eq(app.rec.nerrs, 0);
	nuts_app_close(&app);
	tdb_fini(&t);
}
END_TEST

#define KV_N 10000

struct match {
	char last[64];
	int n;
	int stop_at; /* 0: never */
	bool bad_order;
	bool bad_value;
};

static int
match_cb(void *arg, const char *key, const void *val, size_t len)
{
	struct match *m = arg;
	unsigned got;

	if (key == NULL) {
		m->bad_order = true;
		return (1);
	}
	if (m->n > 0 && strcmp(m->last, key) >= 0) {
		m->bad_order = true;
	}
	snprintf(m->last, sizeof(m->last), "%s", key);
	if (strncmp(key, "k/", 2) == 0) {
		if (len != sizeof(got)) {
			m->bad_value = true;
		} else {
			memcpy(&got, val, sizeof(got));
			if (got != (unsigned)strtoul(key + 2, NULL, 10)) {
				m->bad_value = true;
			}
		}
	}
	m->n++;
	return (m->stop_at != 0 && m->n == m->stop_at);
}

START_TEST(test_kv_match)
{
	struct tdb t;
	struct nuts_app app;
	struct match m;
	unsigned x = 12345;
	unsigned *order;

	tdb_init(&t);
	NUTS_PASS(nuts_app_open(&app, t.path, 1, 0));
	/* Put the keys in a scrambled order (a fixed permutation). */
	order = malloc(KV_N * sizeof(*order));
	ck_assert_ptr_nonnull(order);
	for (unsigned i = 0; i < KV_N; i++) {
		order[i] = i;
	}
	for (unsigned i = KV_N - 1; i > 0; i--) {
		unsigned j, tmp;

		x = x * 1103515245u + 12345u;
		j = (x >> 8) % (i + 1);
		tmp = order[i];
		order[i] = order[j];
		order[j] = tmp;
	}
	for (unsigned i = 0; i < KV_N; i++) {
		char key[32];

		snprintf(key, sizeof(key), "k/%05u", order[i]);
		NUTS_PASS(
		    mb_state_put(app.st, key, &order[i], sizeof(order[i])));
	}
	free(order);
	/* Neighbours that must not match "k/". */
	NUTS_PASS(mb_state_put(app.st, "k", "x", 1));
	NUTS_PASS(mb_state_put(app.st, "k0", "x", 1));
	NUTS_PASS(mb_state_put(app.st, "j/1", "x", 1));
	NUTS_PASS(mb_state_put(app.st, "l/1", "x", 1));
	NUTS_PASS(mb_state_put(app.st, "K/1", "x", 1));
	/* Prefixes are plain strings, not LIKE patterns. */
	NUTS_PASS(mb_state_put(app.st, "a%b", "x", 1));
	NUTS_PASS(mb_state_put(app.st, "a_b", "x", 1));
	NUTS_PASS(mb_state_put(app.st, "aXb", "x", 1));

	/* No flush: a match sees the writes queued before it. */
	memset(&m, 0, sizeof(m));
	NUTS_PASS(mb_state_match(app.st, "k/", match_cb, &m));
	ck_assert_int_eq(m.n, KV_N);
	ck_assert(!m.bad_order);
	ck_assert(!m.bad_value);
	ck_assert_str_eq(m.last, "k/09999");

	memset(&m, 0, sizeof(m));
	m.stop_at = 10;
	NUTS_PASS(mb_state_match(app.st, "k/", match_cb, &m));
	ck_assert_int_eq(m.n, 10);
	ck_assert_str_eq(m.last, "k/00009");

	memset(&m, 0, sizeof(m));
	NUTS_PASS(mb_state_match(app.st, "a%", match_cb, &m));
	ck_assert_int_eq(m.n, 1);
	ck_assert_str_eq(m.last, "a%b");
	memset(&m, 0, sizeof(m));
	NUTS_PASS(mb_state_match(app.st, "a_", match_cb, &m));
	ck_assert_int_eq(m.n, 1);
	memset(&m, 0, sizeof(m));
	NUTS_PASS(mb_state_match(app.st, "nothing/", match_cb, &m));
	ck_assert_int_eq(m.n, 0);
	memset(&m, 0, sizeof(m));
	NUTS_PASS(mb_state_match(app.st, "", match_cb, &m));
	ck_assert_int_eq(m.n, KV_N + 8);
	ck_assert(!m.bad_order);

	/* Deletes are seen by the next match. */
	NUTS_PASS(mb_state_delete(app.st, "k/00000"));
	NUTS_PASS(mb_state_delete(app.st, "k/05000"));
	memset(&m, 0, sizeof(m));
	NUTS_PASS(mb_state_match(app.st, "k/", match_cb, &m));
	ck_assert_int_eq(m.n, KV_N - 2);
	ck_assert_int_eq(count(t.path, "SELECT count(*) FROM kv WHERE "
	                               "substr(key, 1, 2) = 'k/'"),
	                 KV_N - 2);
	ck_assert_uint_eq(app.rec.nerrs, 0);
	nuts_app_close(&app);
	tdb_fini(&t);
}
END_TEST

NUTS_MAIN("store",
	{"flush", test_flush, 60},
	{"reopen_manual", test_reopen_manual, 120},
	{"reopen_auto", test_reopen_auto, 60},
	{"close_racing", test_close_racing, 60},
	{"close_clean", test_close_clean, 30},
	{"file_mode", test_file_mode, 30},
	{"schema", test_schema, 30},
	{"schema_newer", test_schema_newer, 30},
	{"corrupt", test_corrupt, 30},
	{"open_fails", test_open_fails, 30},
	{"readonly_file", test_readonly_file, 60},
	{"readonly_dir", test_readonly_dir, 60},
	{"full", test_full, 60},
	{"kv_basic", test_kv_basic, 30},
	{"kv_persist", test_kv_persist, 30},
	{"kv_match", test_kv_match, 120})
