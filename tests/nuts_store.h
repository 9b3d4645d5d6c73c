/* SPDX-License-Identifier: MIT */
/*
 * nuts_store.h - helpers shared by the store and crash tests: the envelopes a
 * bridge and a consumer publish, an app (bus, store, deliver, sink and a
 * bus/ watcher) that records what it is handed, forked children that report
 * over a pipe, and reading the database through a separate sqlite3
 * connection.
 *
 * Children: a test that forks must not have touched nng first (nng's threads
 * do not survive fork), so such tests keep CK_FORK on and do everything
 * mobbus in the child. A child cannot use ck_assert (it is not the process
 * Check waits for): it uses NUTS_CHILD_ASSERT, which writes "F <where>: <why>"
 * on its report pipe and exits 1; nuts_child_run turns that into a failure
 * of the test.
 */
#ifndef MOBBUS_NUTS_STORE_H
#define MOBBUS_NUTS_STORE_H

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "mobbus.h"
#include "nuts.h"

/* ---- envelopes --------------------------------------------------------- */

/* nuts_pub_note - a foreground push notification arrival with id. */
static inline int
nuts_pub_note(mb_pub *pub, const char *id)
{
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	Mobbus__Notification n = MOBBUS__NOTIFICATION__INIT;

	n.id = (char *)id;
	n.presentation = MOBBUS__NOTIFICATION__PRESENTATION__FOREGROUND;
	n.source = MOBBUS__NOTIFICATION__SOURCE__PUSH;
	n.data_json = "{}";
	env.body_case = MOBBUS__ENVELOPE__BODY_NOTIFICATION;
	env.notification = &n;
	return (mb_publish(pub, MB_TOPIC_NOTIFY_ARRIVAL, &env));
}

/* nuts_pub_cmd - a consumer command: subscribe, restart, or ack of id. */
static inline int
nuts_pub_cmd(mb_pub *pub, Mobbus__AppCommand__Do what, const char *id)
{
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	Mobbus__AppCommand c = MOBBUS__APP_COMMAND__INIT;
	const char *topic;

	switch (what) {
	case MOBBUS__APP_COMMAND__DO__SUBSCRIBE:
		topic = "cmd/subscribe";
		break;
	case MOBBUS__APP_COMMAND__DO__RESTART:
		topic = "cmd/restart";
		break;
	case MOBBUS__APP_COMMAND__DO__ACK:
		topic = "cmd/ack";
		break;
	default:
		topic = "cmd/other";
		break;
	}
	c.do_ = what;
	if (id != NULL) {
		c.id = (char *)id;
	}
	env.body_case = MOBBUS__ENVELOPE__BODY_APP;
	env.app = &c;
	return (mb_publish(pub, topic, &env));
}

/* nuts_pub_background - what a bridge publishes when the app goes to the
 * background (after which the OS may freeze or kill it). */
static inline int
nuts_pub_background(mb_pub *pub)
{
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	Mobbus__Lifecycle l = MOBBUS__LIFECYCLE__INIT;

	l.event = MOBBUS__LIFECYCLE__EVENT__DID_ENTER_BACKGROUND;
	l.os = MOBBUS__OS__OS_IOS;
	env.body_case = MOBBUS__ENVELOPE__BODY_LIFECYCLE;
	env.lifecycle = &l;
	return (mb_publish(pub, "lifecycle/did_enter_background", &env));
}

/* ---- an app that records ------------------------------------------------ */

struct nuts_got {
	char id[32];
	bool redelivered;
};

struct nuts_buserr {
	char code[32];
	char message[512];
};

/* What the sink was handed and what bus/error said; under mtx. */
struct nuts_rec {
	pthread_mutex_t mtx;
	pthread_cond_t cv;    /* broadcast at each hand-off */
	struct nuts_got *got; /* notifications handed, in order */
	size_t ngot;
	size_t cap;
	size_t other; /* anything else on app/ or effect/ */
	struct nuts_buserr errs[32];
	size_t nerrs; /* may exceed 32; the first 32 are kept */
};

static inline int
nuts_rec_receive_cb(void *arg, const mb_envelope *env)
{
	struct nuts_rec *r = arg;

	pthread_mutex_lock(&r->mtx);
	if (env->body_case == MOBBUS__ENVELOPE__BODY_NOTIFICATION) {
		if (r->ngot == r->cap) {
			size_t cap = r->cap != 0 ? r->cap * 2 : 64;
			struct nuts_got *g = realloc(r->got, cap * sizeof(*g));

			if (g == NULL) {
				pthread_mutex_unlock(&r->mtx);
				return (MB_ENOMEM);
			}
			r->got = g;
			r->cap = cap;
		}
		snprintf(r->got[r->ngot].id, sizeof(r->got[0].id), "%s",
		         env->notification->id);
		r->got[r->ngot].redelivered = env->notification->redelivered;
		r->ngot++;
		pthread_cond_broadcast(&r->cv);
	} else {
		r->other++;
	}
	pthread_mutex_unlock(&r->mtx);
	return (0);
}

static inline int
nuts_watch_init_cb(mb_actor *a, void *arg, void **statep)
{
	(void)a;
	*statep = arg;
	return (MB_OK);
}

static inline int
nuts_watch_handle_cb(mb_actor *a, void *state, const mb_envelope *env)
{
	struct nuts_rec *r = state;

	(void)a;
	if (env->body_case != MOBBUS__ENVELOPE__BODY_ERROR ||
	    strcmp(env->topic, "bus/error") != 0) {
		return (0);
	}
	pthread_mutex_lock(&r->mtx);
	if (r->nerrs < sizeof(r->errs) / sizeof(r->errs[0])) {
		struct nuts_buserr *e = &r->errs[r->nerrs];

		snprintf(e->code, sizeof(e->code), "%s", env->error->code);
		snprintf(e->message, sizeof(e->message), "%s",
		         env->error->message);
	}
	r->nerrs++;
	pthread_mutex_unlock(&r->mtx);
	return (0);
}

static inline void
nuts_watch_terminate_cb(mb_actor *a, void *state)
{
	(void)a;
	(void)state;
}

static const char *const nuts_watch_topics[] = {MB_TOPIC_BUS, NULL};

static const struct mb_actor_ops nuts_watch_ops = {
    .size = sizeof(struct mb_actor_ops),
    .name = "watch",
    .topics = nuts_watch_topics,
    .init = nuts_watch_init_cb,
    .handle = nuts_watch_handle_cb,
    .terminate = nuts_watch_terminate_cb,
};

static const struct mb_sink_ops nuts_rec_sink_ops = {
    .size = sizeof(struct mb_sink_ops),
    .receive = nuts_rec_receive_cb,
};

/* A consumer's whole process: bus, bus/ watcher, sink, store, deliver. */
struct nuts_app {
	mb_bus *bus;
	mb_store *st;
	mb_actor *deliver;
	mb_actor *sink;
	mb_actor *watch;
	mb_pub *pub; /* the bridge's and the consumer's publisher */
	struct nuts_rec rec;
};

/*
 * nuts_app_open - start an app on the database at path (NULL: no store).
 * The watcher and the sink start first, so they see the store's own errors
 * and every hand-off. Returns the first error.
 */
static inline int
nuts_app_open(struct nuts_app *app, const char *path, int manual_ack,
              unsigned commit_delay_ms)
{
	int rv;

	memset(app, 0, sizeof(*app));
	pthread_mutex_init(&app->rec.mtx, NULL);
	nuts_cond_init(&app->rec.cv);
	if ((rv = mb_bus_open(&app->bus, NULL)) != MB_OK ||
	    (rv = mb_actor_start(app->bus, &nuts_watch_ops, &app->rec,
	                         &app->watch)) != MB_OK ||
	    (rv = mb_sink_start(app->bus, &nuts_rec_sink_ops, &app->rec,
	                        &app->sink)) != MB_OK) {
		return (rv);
	}
	if (path != NULL &&
	    (rv = mb_store_open(
	         app->bus,
	         &(struct mb_store_opts){.size = sizeof(struct mb_store_opts),
	                                 .path = path,
	                                 .commit_delay_ms = commit_delay_ms},
	         &app->st)) != MB_OK) {
		return (rv);
	}
	if ((rv = mb_deliver_start(app->bus,
	                           &(struct mb_deliver_opts){
	                               .size = sizeof(struct mb_deliver_opts),
	                               .manual_ack = manual_ack,
	                               .store = app->st},
	                           &app->deliver)) != MB_OK) {
		return (rv);
	}
	return (mb_pub_alloc(app->bus, &app->pub));
}

/* nuts_app_close - store first, then the bus (which stops the actors). */
static inline void
nuts_app_close(struct nuts_app *app)
{
	mb_store_close(app->st);
	mb_bus_close(app->bus);
	free(app->rec.got);
	pthread_cond_destroy(&app->rec.cv);
	pthread_mutex_destroy(&app->rec.mtx);
	memset(app, 0, sizeof(*app));
}

/* ---- files ------------------------------------------------------------- */

/* nuts_tmpdir - a fresh directory for databases; on tmpfs when there is
 * one (a process crash does not need a disk, and fsync is free there). */
static inline void
nuts_tmpdir(char *buf, size_t len)
{
	struct stat sb;
	const char *base =
	    stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) &&
	            access("/dev/shm", W_OK) == 0
	        ? "/dev/shm"
	        : (getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");

	snprintf(buf, len, "%s/mobbus-test-XXXXXX", base);
	ck_assert_ptr_nonnull(mkdtemp(buf));
}

/* nuts_db_unlink - remove a database and its -wal, -shm and -journal. */
static inline void
nuts_db_unlink(const char *path)
{
	static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
	char p[700];

	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", path, sfx[i]);
		(void)unlink(p);
	}
}

/*
 * nuts_sql_int - run sql on a separate connection to path (no mobbus code)
 * and return the first column of its first row, or -1 (with the reason in
 * err) when that fails. Read-write, so a database a killed process left is
 * recovered from its WAL as any later opener would.
 */
static inline long long
nuts_sql_int(const char *path, const char *sql, char *err, size_t errlen)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	long long v = -1;
	int rc;

	if (err != NULL && errlen > 0) {
		err[0] = '\0';
	}
	rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(db, 5000);
		rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
	}
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			v = sqlite3_column_int64(s, 0);
			rc = SQLITE_OK;
		}
	}
	if (rc != SQLITE_OK && err != NULL) {
		snprintf(err, errlen, "%s: %s",
		         db != NULL ? sqlite3_errmsg(db) : "open",
		         sqlite3_errstr(rc));
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	return (rc == SQLITE_OK ? v : -1);
}

/* nuts_sql_text - like nuts_sql_int for a text result, into buf. */
static inline int
nuts_sql_text(const char *path, const char *sql, char *buf, size_t len)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	int rc;

	buf[0] = '\0';
	rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(db, 5000);
		rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
	}
	if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(s, 0);

		snprintf(buf, len, "%s", t != NULL ? t : "");
		rc = SQLITE_OK;
	} else if (rc != SQLITE_OK) {
		snprintf(buf, len, "error: %s",
		         db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	return (rc);
}

/* ---- children ---------------------------------------------------------- */

static int nuts_child_fd = -1; /* the report pipe, in a child */

/* nuts_child_report - write one line (fmt, no newline) on the report pipe
 * with one write(2), so a line is whole even if the child dies next. */
static inline void __attribute__((format(printf, 1, 2)))
nuts_child_report(const char *fmt, ...)
{
	char line[4096];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0) {
		return;
	}
	if ((size_t)n > sizeof(line) - 2) {
		n = (int)sizeof(line) - 2;
	}
	line[n++] = '\n';
	for (const char *p = line; n > 0;) {
		ssize_t w = write(nuts_child_fd, p, (size_t)n);

		if (w < 0 && errno == EINTR) {
			continue;
		}
		if (w <= 0) {
			break;
		}
		p += w;
		n -= (int)w;
	}
}

#define NUTS_CHILD_ASSERT(cond, ...)                                           \
	do {                                                                   \
		if (!(cond)) {                                                 \
			char nuts_m_[1024];                                    \
			snprintf(nuts_m_, sizeof(nuts_m_), __VA_ARGS__);       \
			nuts_child_report("F %s:%d: %s: %s", __FILE__,         \
			                  __LINE__, #cond, nuts_m_);           \
			_exit(1);                                              \
		}                                                              \
	} while (0)

#define NUTS_CHILD_PASS(expr)                                                  \
	do {                                                                   \
		int nuts_rv_ = (expr);                                         \
		NUTS_CHILD_ASSERT(nuts_rv_ == MB_OK, "%s: %s", #expr,          \
		                  mb_err_name(nuts_rv_));                      \
	} while (0)

/* nuts_child_skip - the child cannot run the test here: say why, exit 77. */
#define NUTS_CHILD_SKIP(...)                                                   \
	do {                                                                   \
		char nuts_m_[1024];                                            \
		snprintf(nuts_m_, sizeof(nuts_m_), __VA_ARGS__);               \
		nuts_child_report("S %s", nuts_m_);                            \
		_exit(77);                                                     \
	} while (0)

/* nuts_fork_ok - whether this test may fork children that use mobbus:
 * only when Check runs each test in its own process (nng untouched). */
static inline bool
nuts_fork_ok(void)
{
	const char *f = getenv("CK_FORK");

	if (f != NULL && strcmp(f, "no") == 0) {
		printf("skipped: forks children; needs CK_FORK (not \"no\")\n");
		return (false);
	}
	return (true);
}

/*
 * nuts_child_start - fork a child that runs fn(arg) with its report pipe in
 * nuts_child_fd and exits 0 when fn returns: with exit, so LSan checks the
 * child too, or with _exit when quick (children by the hundred, where a
 * leak check each would cost more than the test). Returns the pid; *fdp is
 * the parent's read end.
 */
static inline pid_t
nuts_child_start(void (*fn)(void *), void *arg, bool quick, int *fdp)
{
	int p[2];
	pid_t pid;

	ck_assert_int_eq(pipe(p), 0);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(p[0]);
		nuts_child_fd = p[1];
		fn(arg);
		if (quick) {
			_exit(0);
		}
		exit(0);
	}
	close(p[1]);
	*fdp = p[0];
	return (pid);
}

/*
 * nuts_child_run - run fn(arg) in a child (quick as for nuts_child_start)
 * to the end and check how it ended:
 * a failure fails the test with the child's message; a skip prints the
 * child's reason and returns 77. Other report lines go to out (may be
 * NULL). Returns 0 when the child passed.
 */
static inline int
nuts_child_run(void (*fn)(void *), void *arg, bool quick, char *out,
               size_t outlen)
{
	static char buf[65536];
	size_t len = 0;
	int fd, status;
	pid_t pid = nuts_child_start(fn, arg, quick, &fd);
	ssize_t n;

	for (;;) {
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			break;
		}
		len += (size_t)n;
		if (len == sizeof(buf) - 1) {
			break;
		}
	}
	buf[len] = '\0';
	close(fd);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	if (out != NULL) {
		snprintf(out, outlen, "%s", buf);
	}
	/* "I <text>": something the child wants shown. */
	for (const char *l = buf; *l != '\0';) {
		const char *e = strchr(l, '\n');
		int n = e != NULL ? (int)(e - l) : (int)strlen(l);

		if (n > 2 && l[0] == 'I' && l[1] == ' ') {
			printf("%.*s\n", n - 2, l + 2);
		}
		l += n + (e != NULL);
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
		const char *s = strstr(buf, "S ");

		printf("skipped: %s", s != NULL ? s + 2 : "(no reason)\n");
		return (77);
	}
	ck_assert_msg(
	    WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %s %d: %s",
	    WIFEXITED(status) ? "exited" : "killed by signal",
	    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
	    strstr(buf, "F ") != NULL ? strstr(buf, "F ") : buf);
	return (0);
}

#endif /* MOBBUS_NUTS_STORE_H */
