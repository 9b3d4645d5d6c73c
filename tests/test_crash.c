/* SPDX-License-Identifier: MIT */
/*
 * test_crash.c - the store under SIGKILL: hundreds of runs, each a child
 * process (bus, store, deliver with manual ack, sink) killed at a random
 * moment of a burst of 1,000 notifications, then recovered on the same file.
 *
 * What the killed child knows for certain it reports over a pipe, one line
 * per write(2), so a line is whole or absent:
 *   S             the burst starts (the kill clock starts here)
 *   U             the consumer is about to subscribe
 *   C k           producer: mb_flush returned after notifications n0..n(k-1)
 *                 were published: each is stored, waiting, handed or acked
 *   D i j ...     consumer: mb_flush returned after it took i, j, ... from
 *                 the sink: their hand-off (outbox state 1) is committed
 *   P i j ...     consumer: about to publish acks for i, j, ... (from here an
 *                 ack may be committed by any group commit)
 *   A i j ...     consumer: mb_flush returned after those acks: committed
 *   E             the burst ended (every notification handed and acked)
 *   F where: why  a check inside the child failed
 * The parent asserts only what these reports imply about the recovery:
 *   - an acked id (A) is never handed again;
 *   - an id below the largest C whose ack was never sent (no P) is handed;
 *   - a committed hand-off (D) without an ack sent (no P) is handed, as
 *     redelivered; anything D is redelivered if handed at all;
 *   - with no U, nothing was handed before: none is redelivered;
 *   - nothing is handed twice, and what is handed comes in id order, the
 *     redelivered ones before the ones never handed (hand-offs are made
 *     and committed in order);
 *   - after acking all of it, a third process is handed nothing;
 *   - PRAGMA integrity_check is "ok" on a separate connection.
 * MB_CRASH_SEED repeats a sequence of runs; MB_CRASH_RUNS changes how many.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mobbus.h"
#include "nuts.h"
#include "nuts_store.h"

#define WAIT_MS 30000
#define NOTES 1000   /* the burst */
#define C_EVERY 50   /* the producer flushes and reports this often */
#define ACK_BATCH 25 /* the consumer acks this many per flush */
#if defined(__SANITIZE_THREAD__)
#define RUNS_DEFAULT 50 /* TSan makes each child several times slower */
#else
#define RUNS_DEFAULT 200
#endif

/* ---- the child that gets killed ----------------------------------------- */

struct run_cfg {
	char path[600];
	int sub_at; /* the consumer subscribes once this many are published */
};

struct burst {
	const struct run_cfg *cfg;
	struct nuts_app app;
	mb_pub *cpub; /* the consumer's */
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	int published;
};

static int
note_index(const char *id)
{
	char *end;
	long v;

	if (id[0] != 'n') {
		return (-1);
	}
	v = strtol(id + 1, &end, 10);
	return (*end == '\0' && v >= 0 && v < NOTES ? (int)v : -1);
}

/* report_ids - one line "tag i j ..." for n ids. */
static void
report_ids(char tag, const int *ids, int n)
{
	char line[1024];
	int len = snprintf(line, sizeof(line), "%c", tag);

	for (int i = 0; i < n; i++) {
		len += snprintf(line + len, sizeof(line) - (size_t)len, " %d",
		                ids[i]);
	}
	nuts_child_report("%s", line);
}

static void *
producer_main(void *arg)
{
	struct burst *b = arg;
	char id[32];

	for (int i = 0; i < NOTES; i++) {
		snprintf(id, sizeof(id), "n%d", i);
		NUTS_CHILD_PASS(nuts_pub_note(b->app.pub, id));
		pthread_mutex_lock(&b->mtx);
		b->published = i + 1;
		pthread_cond_broadcast(&b->cv);
		pthread_mutex_unlock(&b->mtx);
		if ((i + 1) % C_EVERY == 0) {
			NUTS_CHILD_PASS(mb_flush(b->app.st, WAIT_MS));
			nuts_child_report("C %d", i + 1);
		}
	}
	return (NULL);
}

/* The consumer: a plain thread (mb_flush may not run in an actor). */
static void *
consumer_main(void *arg)
{
	struct burst *b = arg;
	struct nuts_rec *r = &b->app.rec;
	int ids[ACK_BATCH];
	char id[32];
	size_t next = 0;

	pthread_mutex_lock(&b->mtx);
	while (b->published < b->cfg->sub_at) {
		pthread_cond_wait(&b->cv, &b->mtx);
	}
	pthread_mutex_unlock(&b->mtx);
	nuts_child_report("U");
	NUTS_CHILD_PASS(
	    nuts_pub_cmd(b->cpub, MOBBUS__APP_COMMAND__DO__SUBSCRIBE, NULL));

	while (next < NOTES) {
		int n = 0;

		pthread_mutex_lock(&r->mtx);
		while (r->ngot - next < ACK_BATCH && r->ngot < NOTES) {
			pthread_cond_wait(&r->cv, &r->mtx);
		}
		for (; next < r->ngot && n < ACK_BATCH; next++) {
			const struct nuts_got *g = &r->got[next];

			/* First process: every one new, in order. */
			NUTS_CHILD_ASSERT(note_index(g->id) == (int)next &&
			                      !g->redelivered,
			                  "hand-off %zu is %s (redelivered %d)",
			                  next, g->id, g->redelivered);
			ids[n++] = (int)next;
		}
		pthread_mutex_unlock(&r->mtx);

		NUTS_CHILD_PASS(mb_flush(b->app.st, WAIT_MS));
		report_ids('D', ids, n);
		report_ids('P', ids, n);
		for (int i = 0; i < n; i++) {
			snprintf(id, sizeof(id), "n%d", ids[i]);
			NUTS_CHILD_PASS(nuts_pub_cmd(
			    b->cpub, MOBBUS__APP_COMMAND__DO__ACK, id));
		}
		NUTS_CHILD_PASS(mb_flush(b->app.st, WAIT_MS));
		report_ids('A', ids, n);
	}
	return (NULL);
}

static void
burst_child(void *arg)
{
	struct burst b;
	pthread_t prod, cons;

	memset(&b, 0, sizeof(b));
	b.cfg = arg;
	pthread_mutex_init(&b.mtx, NULL);
	pthread_cond_init(&b.cv, NULL);
	NUTS_CHILD_PASS(nuts_app_open(&b.app, b.cfg->path, 1, 0));
	NUTS_CHILD_PASS(mb_pub_alloc(b.app.bus, &b.cpub));
	nuts_child_report("S");
	NUTS_CHILD_ASSERT(pthread_create(&cons, NULL, consumer_main, &b) == 0,
	                  "consumer thread");
	NUTS_CHILD_ASSERT(pthread_create(&prod, NULL, producer_main, &b) == 0,
	                  "producer thread");
	pthread_join(prod, NULL);
	pthread_join(cons, NULL);
	NUTS_CHILD_ASSERT(b.app.rec.nerrs == 0, "bus/error %s: %s",
	                  b.app.rec.errs[0].code, b.app.rec.errs[0].message);
	nuts_child_report("E");
	nuts_app_close(&b.app);
}

/* ---- recovery, in another child ----------------------------------------- */

/*
 * Open the killed child's file as the next process would, subscribe, and
 * report every hand-off as "R i:redelivered ..."; then ack them all, close,
 * and report how many a third process is handed ("Z n").
 */
static void
recover_child(void *arg)
{
	const struct run_cfg *cfg = arg;
	struct nuts_app app;
	char line[1024], id[32];
	size_t ngot;
	int len = 0;

	NUTS_CHILD_PASS(nuts_app_open(&app, cfg->path, 1, 0));
	NUTS_CHILD_PASS(
	    nuts_pub_cmd(app.pub, MOBBUS__APP_COMMAND__DO__SUBSCRIBE, NULL));
	NUTS_CHILD_PASS(mb_bus_drain(app.bus, WAIT_MS));
	NUTS_CHILD_ASSERT(app.rec.nerrs == 0, "bus/error %s: %s",
	                  app.rec.errs[0].code, app.rec.errs[0].message);
	ngot = app.rec.ngot;
	for (size_t i = 0; i < ngot; i++) {
		const struct nuts_got *g = &app.rec.got[i];
		int k = note_index(g->id);

		NUTS_CHILD_ASSERT(k >= 0, "recovered an unknown id %s", g->id);
		if (len == 0) {
			len = snprintf(line, sizeof(line), "R");
		}
		len += snprintf(line + len, sizeof(line) - (size_t)len,
		                " %d:%d", k, g->redelivered ? 1 : 0);
		if (len > 900 || i + 1 == ngot) {
			nuts_child_report("%s", line);
			len = 0;
		}
		snprintf(id, sizeof(id), "n%d", k);
		NUTS_CHILD_PASS(
		    nuts_pub_cmd(app.pub, MOBBUS__APP_COMMAND__DO__ACK, id));
	}
	NUTS_CHILD_PASS(mb_flush(app.st, WAIT_MS));
	nuts_app_close(&app);

	NUTS_CHILD_PASS(nuts_app_open(&app, cfg->path, 1, 0));
	NUTS_CHILD_PASS(
	    nuts_pub_cmd(app.pub, MOBBUS__APP_COMMAND__DO__SUBSCRIBE, NULL));
	NUTS_CHILD_PASS(mb_bus_drain(app.bus, WAIT_MS));
	NUTS_CHILD_ASSERT(app.rec.nerrs == 0, "bus/error %s: %s",
	                  app.rec.errs[0].code, app.rec.errs[0].message);
	nuts_child_report("Z %zu", app.rec.ngot);
	nuts_app_close(&app);
}

/* ---- the parent --------------------------------------------------------- */

/* What one run's reports say. */
struct reports {
	bool started, subscribed, ended;
	int max_c;
	uint8_t d[NOTES], p[NOTES], a[NOTES];
	char fail[1024];
	uint64_t start_ns, end_ns;
	/* recovery */
	int rec_n;
	int rec_id[NOTES];
	uint8_t rec_redelivered[NOTES];
	long z;
};

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}

/* xorshift64*: a seeded sequence the seed repeats. */
static uint64_t
rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return (*s * 0x2545F4914F6CDD1DULL);
}

static void
parse_ids(uint8_t *set, const char *p)
{
	char *end;

	for (;;) {
		long v = strtol(p, &end, 10);

		if (end == p) {
			return;
		}
		if (v >= 0 && v < NOTES) {
			set[v] = 1;
		}
		p = end;
	}
}

static void
parse_line(struct reports *rep, const char *l)
{
	switch (l[0]) {
	case 'S':
		rep->started = true;
		rep->start_ns = now_ns();
		break;
	case 'U':
		rep->subscribed = true;
		break;
	case 'C': {
		int k = atoi(l + 1);

		if (k > rep->max_c) {
			rep->max_c = k;
		}
		break;
	}
	case 'D':
		parse_ids(rep->d, l + 1);
		break;
	case 'P':
		parse_ids(rep->p, l + 1);
		break;
	case 'A':
		parse_ids(rep->a, l + 1);
		break;
	case 'E':
		rep->ended = true;
		rep->end_ns = now_ns();
		break;
	case 'R':
		for (const char *p = l + 1; *p != '\0';) {
			int id, redelivered, used;

			if (sscanf(p, " %d:%d%n", &id, &redelivered, &used) !=
			    2) {
				break;
			}
			if (rep->rec_n < NOTES) {
				rep->rec_id[rep->rec_n] = id;
				rep->rec_redelivered[rep->rec_n] =
				    (uint8_t)redelivered;
			}
			rep->rec_n++;
			p += used;
		}
		break;
	case 'Z':
		rep->z = atol(l + 1);
		break;
	case 'F':
		if (rep->fail[0] == '\0') {
			snprintf(rep->fail, sizeof(rep->fail), "%s", l + 2);
		}
		break;
	default:
		break;
	}
}

/* Split buf[0..*len) into lines, parse the whole ones, keep the rest. */
static void
parse_buf(struct reports *rep, char *buf, size_t *len)
{
	char *start = buf;
	char *nl;
	size_t left;

	while ((nl = memchr(start, '\n', *len - (size_t)(start - buf))) !=
	       NULL) {
		*nl = '\0';
		parse_line(rep, start);
		start = nl + 1;
	}
	left = *len - (size_t)(start - buf);
	memmove(buf, start, left);
	*len = left;
}

/*
 * run_burst - run the burst child on cfg and SIGKILL it kill_ns after it
 * reports S (never when kill_ns is 0). Returns whether it was killed.
 */
static bool
run_burst(const struct run_cfg *cfg, uint64_t kill_ns, struct reports *rep)
{
	char buf[8192];
	size_t len = 0;
	int fd, status;
	bool sent = false;
	uint64_t safety = now_ns() + 120ull * 1000000000u;
	pid_t pid = nuts_child_start(burst_child, (void *)cfg, true, &fd);

	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int timeout = 1000;
		ssize_t n;

		if (rep->started && kill_ns != 0 && !sent) {
			uint64_t at = rep->start_ns + kill_ns, now = now_ns();

			if (now >= at) {
				ck_assert_int_eq(kill(pid, SIGKILL), 0);
				sent = true;
			} else {
				timeout = (int)((at - now + 999999) / 1000000);
			}
		}
		ck_assert_msg(now_ns() < safety, "burst child hangs");
		if (poll(&pfd, 1, timeout) <= 0) {
			continue;
		}
		n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			break;
		}
		len += (size_t)n;
		parse_buf(rep, buf, &len);
	}
	close(fd);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(rep->fail[0] == '\0', "burst child: %s", rep->fail);
	if (WIFSIGNALED(status)) {
		ck_assert_int_eq(WTERMSIG(status), SIGKILL);
		ck_assert(sent);
		return (true);
	}
	/* Finished before the kill. */
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	              "burst child ended with status %d", status);
	ck_assert(rep->ended);
	return (false);
}

static void
run_recovery(const struct run_cfg *cfg, struct reports *rep)
{
	static char out[65536];
	char *l = out;

	ck_assert_int_eq(
	    nuts_child_run(recover_child, (void *)cfg, true, out, sizeof(out)),
	    0);
	rep->z = -1;
	while (*l != '\0') {
		char *nl = strchr(l, '\n');

		if (nl != NULL) {
			*nl = '\0';
		}
		parse_line(rep, l);
		if (nl == NULL) {
			break;
		}
		l = nl + 1;
	}
}

struct totals {
	int runs, kills, finished, integrity_ok, never_subscribed;
	long acked, recovered, redelivered, waiting, ack_unreported;
	long committed; /* sum of the largest C */
};

/* check_run - what the reports of one run imply about its recovery. */
static void
check_run(int run, uint64_t seed, const struct reports *rep, struct totals *t)
{
	uint8_t seen[NOTES] = {0};
	int prev = -1, waiting_from = -1;

#define RUN_ASSERT(cond, ...)                                                  \
	do {                                                                   \
		if (!(cond)) {                                                 \
			char m_[512];                                          \
			snprintf(m_, sizeof(m_), __VA_ARGS__);                 \
			ck_abort_msg("run %d (seed %" PRIu64 "): %s", run,     \
			             seed, m_);                                \
		}                                                              \
	} while (0)

	RUN_ASSERT(rep->rec_n <= NOTES, "%d recovered", rep->rec_n);
	RUN_ASSERT(rep->z == 0, "a third process was handed %ld", rep->z);
	for (int i = 0; i < rep->rec_n; i++) {
		int id = rep->rec_id[i];

		RUN_ASSERT(id >= 0 && id < NOTES, "recovered id %d", id);
		RUN_ASSERT(!seen[id], "n%d handed twice in recovery", id);
		RUN_ASSERT(id > prev, "n%d handed after n%d", id, prev);
		RUN_ASSERT(!rep->a[id], "n%d was acked (A) and handed again",
		           id);
		if (rep->d[id]) {
			RUN_ASSERT(rep->rec_redelivered[i],
			           "n%d was handed (D) but is not redelivered",
			           id);
		}
		if (!rep->subscribed) {
			RUN_ASSERT(!rep->rec_redelivered[i],
			           "n%d is redelivered, but nothing was handed",
			           id);
		}
		/* Hand-offs are made and committed in id order, so what was
		 * handed (redelivered now) comes before what was waiting. */
		RUN_ASSERT(!rep->rec_redelivered[i] || waiting_from < 0,
		           "n%d is redelivered after n%d was waiting", id,
		           waiting_from);
		if (!rep->rec_redelivered[i] && waiting_from < 0) {
			waiting_from = id;
		}
		seen[id] = 1;
		prev = id;
		t->recovered++;
		if (rep->rec_redelivered[i]) {
			t->redelivered++;
		} else {
			t->waiting++;
		}
	}
	for (int id = 0; id < NOTES; id++) {
		if (rep->a[id]) {
			RUN_ASSERT(rep->p[id] && rep->d[id],
			           "n%d: A without D, P", id);
			t->acked++;
		}
		if (!rep->p[id] && id < rep->max_c) {
			RUN_ASSERT(seen[id],
			           "n%d was committed (C %d), never acked, and "
			           "is lost",
			           id, rep->max_c);
		}
		if (rep->d[id] && !rep->p[id]) {
			RUN_ASSERT(
			    seen[id],
			    "n%d was handed (D), never acked, and is lost", id);
		}
		if (rep->p[id] && !rep->a[id] && !seen[id]) {
			t->ack_unreported++;
		}
	}
	if (!rep->subscribed) {
		t->never_subscribed++;
	}
	t->committed += rep->max_c;
#undef RUN_ASSERT
}

/* integrity - PRAGMA integrity_check on a separate connection. */
static bool
integrity(const char *path, char *res, size_t len)
{
	return (nuts_sql_text(path, "PRAGMA integrity_check", res, len) ==
	            SQLITE_OK &&
	        strcmp(res, "ok") == 0);
}

static void
one_run(int run, uint64_t seed, const char *dir, int sub_at, uint64_t kill_ns,
        struct totals *t, uint64_t *burst_ns)
{
	static struct reports rep;
	struct run_cfg cfg = {.sub_at = sub_at};
	char res[256];
	bool killed;

	memset(&rep, 0, sizeof(rep));
	snprintf(cfg.path, sizeof(cfg.path), "%s/run-%03d.db", dir, run);
	nuts_db_unlink(cfg.path);
	killed = run_burst(&cfg, kill_ns, &rep);
	if (killed) {
		t->kills++;
	} else {
		t->finished++;
		if (burst_ns != NULL) {
			*burst_ns = rep.end_ns - rep.start_ns;
		}
	}
	ck_assert_msg(integrity(cfg.path, res, sizeof(res)),
	              "run %d (seed %" PRIu64 "): integrity_check: %s", run,
	              seed, res);
	t->integrity_ok++;
	run_recovery(&cfg, &rep);
	check_run(run, seed, &rep, t);
	t->runs++;
	nuts_db_unlink(cfg.path);
}

START_TEST(test_kill_recover)
{
	struct totals t = {0};
	char dir[512];
	uint64_t seed, rng, burst_ns = 0, b, cal[3], sorted[3], t0 = now_ns();
	int runs = RUNS_DEFAULT;
	const char *e;

	if (!nuts_fork_ok()) {
		return;
	}
	if ((e = getenv("MB_CRASH_SEED")) != NULL) {
		seed = strtoull(e, NULL, 0);
	} else {
		seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	}
	if ((e = getenv("MB_CRASH_RUNS")) != NULL && atoi(e) > 0) {
		runs = atoi(e);
	}
	rng = seed != 0 ? seed : 1;
	printf("crash: seed %" PRIu64 " (MB_CRASH_SEED=%" PRIu64
	       " repeats it)\n",
	       seed, seed);
	fflush(stdout);
	nuts_tmpdir(dir, sizeof(dir));

	/* Three whole bursts first: they must end clean, and the middle one
	 * sets the range of kill moments. A run that still ends before its
	 * kill narrows the range to its own burst, so a slow start (a busy
	 * machine) does not leave most runs unkilled. */
	for (int i = 0; i < 3; i++) {
		one_run(-1 - i, seed, dir, i * NOTES / 2, 0, &t, &cal[i]);
	}
	ck_assert_int_eq(t.finished, 3);
	for (int i = 0; i < 3; i++) {
		sorted[i] = cal[i];
	}
	for (int i = 0; i < 2; i++) {
		for (int k = 0; k < 2 - i; k++) {
			if (sorted[k] > sorted[k + 1]) {
				b = sorted[k];
				sorted[k] = sorted[k + 1];
				sorted[k + 1] = b;
			}
		}
	}
	burst_ns = sorted[1];
	printf("crash: a whole burst takes %.1f ms (%.1f, %.1f, %.1f)\n",
	       burst_ns / 1e6, cal[0] / 1e6, cal[1] / 1e6, cal[2] / 1e6);
	memset(&t, 0, sizeof(t));

	for (int run = 0; run < runs; run++) {
		uint64_t r = rng_next(&rng);
		int sub_at;

		/* When the consumer comes up: at once, after the burst (all
		 * waiting), or somewhere inside it. */
		switch (r % 4) {
		case 0:
			sub_at = 0;
			break;
		case 1:
			sub_at = NOTES;
			break;
		default:
			sub_at = (int)((r >> 8) % NOTES);
			break;
		}
		b = 0;
		one_run(run, seed, dir, sub_at,
		        1 + rng_next(&rng) % (burst_ns + 1), &t, &b);
		if (b != 0 && b < burst_ns) {
			burst_ns = b;
		}
	}
	(void)rmdir(dir);
	printf("crash: %d runs, %d kills, %d finished before the kill; "
	       "acked-durable %ld, recovered %ld (redelivered %ld, waiting "
	       "%ld), acks sent but not reported and not recovered %ld, "
	       "never subscribed %d, mean committed C %.0f; integrity ok "
	       "%d/%d; %.1f s\n",
	       t.runs, t.kills, t.finished, t.acked, t.recovered, t.redelivered,
	       t.waiting, t.ack_unreported, t.never_subscribed,
	       t.runs ? (double)t.committed / t.runs : 0.0, t.integrity_ok,
	       t.runs, (now_ns() - t0) / 1e9);
	ck_assert_int_eq(t.integrity_ok, runs);
	ck_assert_int_ge(t.kills, runs / 2);
}
END_TEST

NUTS_MAIN("crash",
	{ "kill_recover", test_kill_recover, 600 })
