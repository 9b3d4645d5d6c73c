/* SPDX-License-Identifier: MIT */
/*
 * bench.c - wake-to-handle latency and throughput of mobbus, side by side
 * with its baselines, measured in the same run on the same machine.
 *
 * Latency is one-way: the producer stamps CLOCK_MONOTONIC on entry to the
 * bridge call and the consumer's handler reads the clock on entry. Events
 * go one at a time after a random idle gap, so this measures how fast a
 * wake becomes a handled event, not queueing. Every case also reports the
 * share of samples whose consumer ran on the producer's CPU, since on these
 * machines that alone moves a wake-up from ~3 us to ~45 us, and both modes
 * of that bimodal latency.
 *
 * Cases: 1 a direct call (the floor), 2 eventfd between two threads, 3 raw
 * nng inproc PUB/SUB (the transport), 4 mobbus with the C consumer, 5
 * mobbus with the BEAM consumer beside a direct enif_send (beam.c: inside
 * an erl). Ratios are to 3 and to 5's enif_send.
 */
#include <errno.h>
#include <libgen.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>

#include "beam.h"
#include "drive.h"
#include "mobbus.h"
#include "stats.h"

/* Latency cases in the table, the plot and the scratch folder. */
#define LAT_MAX 8

struct cfg {
	size_t samples;
	size_t warmup;
	size_t tput_events;
	size_t rss_events;
	size_t rss_warm_events;
	size_t cold_events;
	const char *json_path;
	const char *plot_path;
	const char *dir;      /* scratch files */
	int quick;
};

/* 1. A direct function call: the floor. */
static void
direct_fire(void *arg)
{
	probe_handled(arg);
}

/* 2. eventfd between two threads: the physical floor for crossing threads. */
struct efd_case {
	struct probe *p;
	int fd;
	_Atomic int stop;
};

static void *
efd_consumer(void *arg)
{
	struct efd_case *e = arg;
	uint64_t v;

	while (read(e->fd, &v, sizeof(v)) == sizeof(v) && !atomic_load(&e->stop))
		probe_handled(e->p);
	return NULL;
}

static void
efd_fire(void *arg)
{
	struct efd_case *e = arg;
	uint64_t one = 1;

	if (write(e->fd, &one, sizeof(one)) != sizeof(one))
		abort();
}

/* 3. raw nng inproc PUB/SUB, a subscriber thread blocked in nng_recvmsg. */
struct nng_case {
	struct probe *p;
	nng_socket pub, sub;
};

static void *
nng_consumer(void *arg)
{
	struct nng_case *n = arg;
	nng_msg *m;

	while (nng_recvmsg(n->sub, &m, 0) == 0) {
		int stop = nng_msg_len(m) > 0 && ((char *)nng_msg_body(m))[0] == 'q';
		nng_msg_free(m);
		if (stop)
			break;
		probe_handled(n->p);
	}
	return NULL;
}

static void
nng_fire(void *arg)
{
	struct nng_case *n = arg;
	nng_msg *m;

	if (nng_msg_alloc(&m, 0) != 0 || nng_msg_append(m, "x", 2) != 0 ||
	    nng_sendmsg(n->pub, m, 0) != 0)
		abort();
}

/* 4. mobbus: a bridge call through the bus, the deliver actor and the
 * durable store, to the C consumer. */
struct bus_case {
	struct probe *p;
	mb_bus *bus;
	mb_store *store;
	mb_pub *pub;
	mb_actor *deliver;
	uint64_t n;
};

static int
bus_consumer_cb(void *arg, const mb_envelope *env)
{
	struct bus_case *b = arg;

	if (env->body_case == MOBBUS__ENVELOPE__BODY_NOTIFICATION)
		probe_handled(b->p);
	return MB_OK;
}

/* Envelopes in a throughput batch: one nng message each (mb_publish_batch). */
#define TPUT_BATCH 64
/* Envelopes in flight, over all subscribers, before the producer holds
 * back: half of what one subscriber's queue holds (8192 messages of 64), so
 * even when one subscriber (the store's journal, say) holds all of them its
 * queue cannot overflow. */
#define TPUT_WINDOW (8192 * TPUT_BATCH / 2)

static int
publish_batch(mb_pub *pub, const char *topic, uint64_t first, size_t n)
{
	Mobbus__Notification no[TPUT_BATCH];
	mb_envelope env[TPUT_BATCH], *ptr[TPUT_BATCH];
	char id[TPUT_BATCH][32];

	for (size_t i = 0; i < n; i++) {
		bench_notification(&env[i], &no[i], id[i], first + i);
		ptr[i] = &env[i];
	}
	return mb_publish_batch(pub, topic, ptr, n);
}

static void
bus_fire(void *arg)
{
	struct bus_case *b = arg;

	if (bench_notify(b->pub, MB_TOPIC_NOTIFY_ARRIVAL, b->n++) != MB_OK)
		abort();
}

static int
subscribe_consumer(mb_pub *pub)
{
	Mobbus__AppCommand c = MOBBUS__APP_COMMAND__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;

	c.do_ = MOBBUS__APP_COMMAND__DO__SUBSCRIBE;
	env.body_case = MOBBUS__ENVELOPE__BODY_APP;
	env.app = &c;
	return mb_publish(pub, "cmd/subscribe", &env);
}

static void
db_path(const struct cfg *c, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", c->dir, name);
	unlink(buf);
	strncat(buf, "-wal", len - strlen(buf) - 1);
	unlink(buf);
	buf[strlen(buf) - 4] = '\0';
	strncat(buf, "-shm", len - strlen(buf) - 1);
	unlink(buf);
	buf[strlen(buf) - 4] = '\0';
}

/* The scratch files a run leaves in c->dir; scratch_clean removes them,
 * and the folder itself when the run made it. */
static const char *const scratch_dbs[] = { "latency.db", "latency-inline.db",
	"beam-latency.db",
	"tput.db", "cold.db", "cold-empty.db", "mem.db", NULL };

static void
scratch_clean(const struct cfg *c, int made_dir)
{
	char buf[600];

	for (int i = 0; scratch_dbs[i] != NULL; i++)
		db_path(c, scratch_dbs[i], buf, sizeof(buf));
	for (int i = 0; i < LAT_MAX; i++) {
		snprintf(buf, sizeof(buf), "%s/cdf-%d.dat", c->dir, i);
		unlink(buf);
	}
	if (made_dir)
		rmdir(c->dir);
}

/* For atexit: the run's config, once its scratch folder is settled. */
static const struct cfg *scratch_cfg;
static int scratch_made;

static void
scratch_atexit(void)
{
	if (scratch_cfg != NULL)
		scratch_clean(scratch_cfg, scratch_made);
}

/* Open bus + store + deliver with the C consumer attached. */
static int
bus_case_open(const struct cfg *c, struct bus_case *b, const char *db,
    int subscribe, int consumer_inline)
{
	struct mb_store_opts so = { .size = sizeof(so), .path = db };
	struct mb_deliver_opts dopts = { .size = sizeof(dopts) };
	struct mb_sink_ops sink = { .size = sizeof(sink),
		.receive = bus_consumer_cb };

	(void)c;
	if (mb_bus_open(&b->bus, NULL) != MB_OK ||
	    mb_store_open(b->bus, &so, &b->store) != MB_OK ||
	    mb_pub_alloc(b->bus, &b->pub) != MB_OK)
		return -1;
	dopts.store = b->store;
	dopts.consumer = &sink;
	dopts.consumer_arg = b;
	dopts.consumer_inline = consumer_inline;
	if (mb_deliver_start(b->bus, &dopts, &b->deliver) != MB_OK)
		return -1;
	if (subscribe && subscribe_consumer(b->pub) != MB_OK)
		return -1;
	return mb_bus_drain(b->bus, 10000) == MB_OK ? 0 : -1;
}

static void
bus_case_close(struct bus_case *b)
{
	mb_store_close(b->store);
	mb_bus_close(b->bus);
}

/* Throughput: counting actors, the store journaling every event. */
struct counter {
	_Atomic uint64_t n;
	_Atomic int busy_us;      /* simulated work per envelope */
};

static int
count_init_cb(mb_actor *a, void *arg, void **statep)
{
	(void)a;
	*statep = arg;
	return MB_OK;
}

static int
count_handle_cb(mb_actor *a, void *state, const mb_envelope *env)
{
	struct counter *k = state;
	int busy = atomic_load(&k->busy_us);

	(void)a;
	(void)env;
	if (busy > 0) {
		uint64_t until = now_ns() + (uint64_t)busy * 1000u;
		while (now_ns() < until)
			;
	}
	atomic_fetch_add(&k->n, 1);
	return MB_OK;
}

static void
count_terminate_cb(mb_actor *a, void *state)
{
	(void)a;
	(void)state;
}

static const char *const count_topics[] = { "notify/", NULL };
static const struct mb_actor_ops count_ops = {
	.size = sizeof(struct mb_actor_ops),
	.name = "counter",
	.topics = count_topics,
	.init = count_init_cb,
	.handle = count_handle_cb,
	.terminate = count_terminate_cb,
};

struct tput {
	int subscribers;
	double events_per_s;
	double persisted_per_s;
	uint64_t gaps, missed, handled;
};

static int
run_tput(const struct cfg *c, int nsub, struct tput *out)
{
	struct counter k[4] = { 0 };
	struct mb_store_opts so = { .size = sizeof(so) };
	struct mb_bus_stats st;
	char db[512];
	mb_bus *bus;
	mb_store *store;
	mb_pub *pub;
	mb_actor *a;
	uint64_t t0, t1, t2;

	db_path(c, "tput.db", db, sizeof(db));
	so.path = db;
	if (mb_bus_open(&bus, NULL) != MB_OK ||
	    mb_store_open(bus, &so, &store) != MB_OK ||
	    mb_pub_alloc(bus, &pub) != MB_OK)
		return -1;
	for (int i = 0; i < nsub; i++)
		if (mb_actor_start(bus, &count_ops, &k[i], &a) != MB_OK)
			return -1;
	t0 = now_ns();
	for (size_t i = 0; i < c->tput_events; i += TPUT_BATCH) {
		(void)publish_batch(pub, "notify/bench", i,
		    c->tput_events - i < TPUT_BATCH ? c->tput_events - i :
		                                      TPUT_BATCH);
		/* Flow control: a bulk producer holds back while the
		 * subscribers are far behind, rather than overrun their queues
		 * (nng would drop). The window stays well inside one queue. */
		if (i % (16 * TPUT_BATCH) == 0) {
			struct mb_bus_stats fs;
			mb_bus_stats(bus, &fs);
			while (fs.inflight > TPUT_WINDOW) {
				sleep_us(20);
				mb_bus_stats(bus, &fs);
			}
		}
	}
	(void)mb_bus_drain(bus, 120000);
	t1 = now_ns();
	(void)mb_flush(store, 120000);
	t2 = now_ns();
	mb_bus_stats(bus, &st);
	out->subscribers = nsub;
	out->events_per_s = (double)c->tput_events / ((double)(t1 - t0) / 1e9);
	out->persisted_per_s = (double)c->tput_events / ((double)(t2 - t0) / 1e9);
	out->gaps = st.gaps;
	out->missed = st.missed;
	out->handled = st.handled;
	mb_store_close(store);
	mb_bus_close(bus);
	return 0;
}

/*
 * Cold start: from process start to the first delivery. A first process
 * stores `stored` notifications that no consumer took (the outbox); then
 * the benchmark starts itself again as the next process (--cold-child),
 * which opens the bus, the store and the deliver actor, subscribes its
 * consumer and reports when the first notification reached it. The clock
 * starts before posix_spawn, so exec, loading and opening the database
 * count; CLOCK_MONOTONIC is one clock for both processes. The file was
 * just written, so it is in the page cache, as it is for an app that the
 * OS relaunches soon after it was killed.
 */
struct cold_case {
	_Atomic uint64_t first;
};

static int
cold_consumer_cb(void *arg, const mb_envelope *env)
{
	struct cold_case *cc = arg;
	uint64_t zero = 0;

	if (env->body_case == MOBBUS__ENVELOPE__BODY_NOTIFICATION)
		atomic_compare_exchange_strong(&cc->first, &zero, now_ns());
	return MB_OK;
}

/* cold_child - the next process: prints "first NS" and exits 0, or 1. */
static int
cold_child(const char *db, int stored)
{
	struct mb_store_opts so = { .size = sizeof(so), .path = db };
	struct mb_deliver_opts dopts = { .size = sizeof(dopts) };
	struct mb_sink_ops sink = { .size = sizeof(sink),
		.receive = cold_consumer_cb };
	struct cold_case cc = { 0 };
	uint64_t give_up = now_ns() + 60ull * 1000000000u;
	mb_bus *bus;
	mb_store *store;
	mb_pub *pub;
	mb_actor *d;

	if (mb_bus_open(&bus, NULL) != MB_OK ||
	    mb_store_open(bus, &so, &store) != MB_OK ||
	    mb_pub_alloc(bus, &pub) != MB_OK)
		return 1;
	dopts.store = store;
	dopts.consumer = &sink;
	dopts.consumer_arg = &cc;
	if (mb_deliver_start(bus, &dopts, &d) != MB_OK)
		return 1;
	if (!stored)
		(void)bench_notify(pub, MB_TOPIC_NOTIFY_ARRIVAL, 1);
	(void)subscribe_consumer(pub);
	while (atomic_load(&cc.first) == 0 && now_ns() < give_up)
		sleep_us(20);
	if (atomic_load(&cc.first) == 0)
		return 1;
	printf("first %llu\n", (unsigned long long)atomic_load(&cc.first));
	fflush(stdout);
	(void)mb_bus_drain(bus, 120000);
	mb_store_close(store);
	mb_bus_close(bus);
	return 0;
}

static double
run_cold(const struct cfg *c, size_t stored)
{
	struct mb_store_opts so = { .size = sizeof(so) };
	struct mb_deliver_opts dopts = { .size = sizeof(dopts) };
	char db[512], line[128], self[4096];
	char *argv[5];
	unsigned long long first = 0;
	mb_bus *bus;
	mb_store *store;
	mb_pub *pub;
	mb_actor *d;
	uint64_t t0;
	ssize_t sl;
	int fds[2], st;
	pid_t pid;
	posix_spawn_file_actions_t fa;
	FILE *f;

	db_path(c, stored ? "cold.db" : "cold-empty.db", db, sizeof(db));
	so.path = db;
	/* Fill: a process whose consumer never came up. */
	if (mb_bus_open(&bus, NULL) != MB_OK ||
	    mb_store_open(bus, &so, &store) != MB_OK ||
	    mb_pub_alloc(bus, &pub) != MB_OK)
		return -1;
	dopts.store = store;
	if (mb_deliver_start(bus, &dopts, &d) != MB_OK)
		return -1;
	for (size_t i = 0; i < stored; i++) {
		(void)bench_notify(pub, MB_TOPIC_NOTIFY_ARRIVAL, i);
		if (i % 4096 == 4095)
			(void)mb_bus_drain(bus, 60000); /* stay under the queues */
	}
	if (mb_flush(store, 120000) != MB_OK) { /* nothing to start from */
		mb_store_close(store);
		mb_bus_close(bus);
		return -1;
	}
	mb_store_close(store);
	mb_bus_close(bus);

	/* The next process. */
	if ((sl = readlink("/proc/self/exe", self, sizeof(self) - 1)) <= 0 ||
	    pipe(fds) != 0)
		return -1;
	self[sl] = '\0';
	argv[0] = self;
	argv[1] = "--cold-child";
	argv[2] = db;
	argv[3] = stored ? "1" : "0";
	argv[4] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
	posix_spawn_file_actions_addclose(&fa, fds[0]);
	t0 = now_ns();
	st = posix_spawn(&pid, self, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(fds[1]);
	if (st != 0) {
		close(fds[0]);
		return -1;
	}
	if ((f = fdopen(fds[0], "r")) != NULL) {
		while (fgets(line, sizeof(line), f) != NULL)
			(void)sscanf(line, "first %llu", &first);
		fclose(f);
	} else {
		close(fds[0]);
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0 || first == 0)
		return -1;
	return (double)(first - t0) / 1e6;
}

/* The cost of a bridge call while every subscriber is busy. */
static int
run_call_cost(const struct cfg *c, struct lat *l)
{
	struct counter k[2] = { 0 };
	mb_bus *bus;
	mb_pub *pub;
	mb_actor *a;

	if (mb_bus_open(&bus, NULL) != MB_OK || mb_pub_alloc(bus, &pub) != MB_OK)
		return -1;
	for (int i = 0; i < 2; i++) {
		atomic_store(&k[i].busy_us, 50);
		if (mb_actor_start(bus, &count_ops, &k[i], &a) != MB_OK)
			return -1;
	}
	for (size_t i = 0; i < c->samples; i++) {
		uint64_t t0 = now_ns();
		(void)bench_notify(pub, "notify/cost", i);
		lat_add(l, now_ns() - t0, 1);
		if (i % 64 == 63)
			sleep_us(10);
	}
	atomic_store(&k[0].busy_us, 0);
	atomic_store(&k[1].busy_us, 0);
	(void)mb_bus_drain(bus, 120000);
	mb_bus_close(bus);
	lat_finish(l);
	return 0;
}

static long
rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

struct mem {
	long base_kb, start_kb, after_kb, peak_kb;
	long heap_start_kb, heap_after_kb; /* malloc'd and in use; -1: unknown */
	size_t warm_events, events;
};

/* heap_kb - bytes malloc has handed out and not had back, in kB: what the
 * bus holds, without the pages the allocator keeps for reuse; -1 where the
 * C library cannot say. */
static long
heap_kb(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
	struct mallinfo2 mi = mallinfo2();
	return (long)((mi.uordblks + mi.hblkhd) / 1024);
#else
	return -1;
#endif
}

/* mem_events - n more notifications through b, draining now and then so
 * the subscribers' queues never overflow, then a flush (what an app does
 * when it goes to the background). */
static void
mem_events(struct bus_case *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		bus_fire(b);
		if (i % 2048 == 2047)
			(void)mb_bus_drain(b->bus, 60000);
	}
	(void)mb_flush(b->store, 120000);
}

/*
 * RSS of the bus with its built-in actors, and after many events. Growth is
 * measured from a steady state: the warm-up fills what is bounded by design
 * (SQLite's page caches, the deliver actor's 16,384 remembered identities,
 * the WAL up to its checkpoint, the allocator's arenas at the depth the
 * store's write queue reaches under this load), so that what the 10 million
 * events add is what they leave behind. Heap in use is beside it: RSS also
 * holds pages the allocator keeps for reuse.
 */
static int
run_mem(const struct cfg *c, struct mem *m)
{
	struct bus_case b = { 0 };
	struct probe p = { 0 };
	struct lat sink;
	struct rusage ru;
	char db[512];

	lat_init(&sink, "mem", 1);
	p.lat = &sink;
	b.p = &p;
	m->base_kb = rss_kb();
	db_path(c, "mem.db", db, sizeof(db));
	if (bus_case_open(c, &b, db, 1, 0) != 0)
		return -1;
	m->warm_events = c->rss_warm_events;
	mem_events(&b, m->warm_events);
	m->start_kb = rss_kb();
	m->heap_start_kb = heap_kb();
	m->events = c->rss_events;
	mem_events(&b, m->events);
	m->after_kb = rss_kb();
	m->heap_after_kb = heap_kb();
	getrusage(RUSAGE_SELF, &ru);
	m->peak_kb = ru.ru_maxrss;
	bus_case_close(&b);
	lat_fini(&sink);
	return 0;
}

static void
print_lat(const struct lat *l, const struct lat *nng, const struct lat *send)
{
	printf("%-36s %8.2f %8.2f %8.2f %9.2f %9.2f %6.1f%%", l->name, l->p50,
	    l->p90, l->p99, l->p999, l->max,
	    l->n ? 100.0 * (double)l->same_cpu / (double)l->n : 0.0);
	if (nng != NULL && nng->n)
		printf("  %5.2fx %5.2fx", l->p50 / nng->p50, l->p99 / nng->p99);
	else
		printf("  %6s %6s", "-", "-");
	if (send != NULL && send->n)
		printf("  %5.2fx %5.2fx", l->p50 / send->p50,
		    l->p99 / send->p99);
	else
		printf("  %6s %6s", "-", "-");
	printf("\n");
}

/* Cases 2-4 take turns (drive_turns; see main). */
#define LAT_KINDS 4

/* The target: mobbus + BEAM p50 at most this times enif_send's. */
#define BEAM_TARGET 1.3

/* Wake-ups are bimodal here (a thread still spinning, or on the same CPU,
 * takes a wake in a few microseconds; one that slept on the other vCPU in
 * ~45): every case also reports its two modes, split here. */
#define MODE_SPLIT_US 20
#define STR_(x) #x
#define STR(x) STR_(x)

/* One latency case; its ratios to the baselines given (NULL or empty:
 * none). */
static json_t *
lat_json(const struct lat *l, const struct lat *nng, const struct lat *send)
{
	json_t *o = json_pack("{s:s, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f}",
	    "name", l->name, "samples", (json_int_t)l->n, "p50_us", l->p50,
	    "p90_us", l->p90, "p99_us", l->p99, "p999_us", l->p999, "max_us",
	    l->max, "mean_us", l->mean, "same_cpu_share",
	    l->n ? (double)l->same_cpu / (double)l->n : 0.0);
	double fast, fast50, slow50;

	lat_modes(l, MODE_SPLIT_US * 1000u, &fast, &fast50, &slow50);
	json_object_set_new(o, "fast_share", json_real(fast));
	json_object_set_new(o, "fast_p50_us", json_real(fast50));
	json_object_set_new(o, "slow_p50_us", json_real(slow50));

	if (nng != NULL && nng->n) {
		json_object_set_new(o, "ratio_p50_vs_nng",
		    json_real(l->p50 / nng->p50));
		json_object_set_new(o, "ratio_p99_vs_nng",
		    json_real(l->p99 / nng->p99));
	}
	if (send != NULL && send->n) {
		json_object_set_new(o, "ratio_p50_vs_enif_send",
		    json_real(l->p50 / send->p50));
		json_object_set_new(o, "ratio_p99_vs_enif_send",
		    json_real(l->p99 / send->p99));
	}
	return o;
}

static void
plot(const struct cfg *c, struct lat *cases, int n)
{
	char script[8192], data[LAT_MAX][600];
	size_t off = 0;
	FILE *g;

	for (int i = 0; i < n; i++) {
		snprintf(data[i], sizeof(data[i]), "%s/cdf-%d.dat", c->dir, i);
		lat_write_cdf(&cases[i], data[i]);
	}
	off += (size_t)snprintf(script + off, sizeof(script) - off,
	    "set terminal png size 1000,600 noenhanced\nset output '%s'\n"
	    "set title 'mobbus wake-to-handle latency (one-way, CDF)'\n"
	    "set xlabel 'latency (us, log scale)'\nset ylabel 'fraction of events'\n"
	    "set logscale x\nset grid\nset key bottom right\nplot ",
	    c->plot_path);
	for (int i = 0; i < n; i++)
		off += (size_t)snprintf(script + off, sizeof(script) - off,
		    "%s'%s' using 1:2 with lines lw 2 title '%s'", i ? ", " : "",
		    data[i], cases[i].name);
	snprintf(script + off, sizeof(script) - off, "\n");
	if (system("command -v gnuplot >/dev/null 2>&1") != 0 ||
	    (g = popen("gnuplot 2>/dev/null", "w")) == NULL) {
		fprintf(stderr, "bench: gnuplot not available: no plot\n");
		return;
	}
	fputs(script, g);
	if (pclose(g) != 0)
		fprintf(stderr, "bench: gnuplot failed: no plot\n");
	else
		printf("plot: %s\n", c->plot_path);
}

/* One target of the benchmark: a figure against its bound. */
struct target {
	const char *what;
	double value;
	double bound;
	int at_most; /* 1: value <= bound; 0: value >= bound */
	const char *unit;
	int known;   /* 0: not measured in this run (case 5 skipped, say) */
};

static int
target_met(const struct target *t)
{
	return t->known &&
	    (t->at_most ? t->value <= t->bound : t->value >= t->bound);
}

int
main(int argc, char **argv)
{
	struct cfg c = { .samples = 50000, .warmup = 2000,
		.tput_events = 1000000, .rss_events = 10000000,
		.rss_warm_events = 1000000,
		.cold_events = 100000, .dir = NULL,
		.plot_path = "bench-latency.png" };
	struct lat lat[LAT_MAX], cost;
	struct probe p = { .rng = 0x9e3779b97f4a7c15ULL };
	struct beam_result br = { .otp = "" };
	struct tput tp[2];
	struct mem mem;
	double cold_full, cold_empty;
	int nlat = 0, beam_rv, bus5 = -1, send = -1, failed = 0, made_dir = 0;
	char scratch[512];
	json_t *js;

	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 4 && strcmp(argv[1], "--cold-child") == 0)
		return cold_child(argv[2], atoi(argv[3]));
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0) {
			c.quick = 1;
			c.samples = 3000;
			c.warmup = 300;
			c.tput_events = 50000;
			c.rss_events = 100000;
			c.rss_warm_events = 20000;
			c.cold_events = 100000;
		} else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
			c.json_path = argv[++i];
		} else if (strcmp(argv[i], "--plot") == 0 && i + 1 < argc) {
			c.plot_path = argv[++i];
		} else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			c.dir = argv[++i];
		} else {
			fprintf(stderr, "mobbus-bench: %s \"%s\"\n",
			    argv[i][0] == '-' && i + 1 == argc &&
			            (strcmp(argv[i], "--json") == 0 ||
			                strcmp(argv[i], "--plot") == 0 ||
			                strcmp(argv[i], "--dir") == 0)
			        ? "no value after"
			        : "unknown argument",
			    argv[i]);
			fprintf(stderr, "usage: mobbus-bench [--quick] [--json FILE] "
			                "[--plot FILE.png] [--dir SCRATCH]\n");
			return 2;
		}
	}

	/* The stores go in c.dir, by default a folder of this run's own;
	 * refuse one that cannot take them now rather than run on a bus
	 * whose store fell back to memory. */
	if (c.dir == NULL) {
		const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
		snprintf(scratch, sizeof(scratch), "%s/mobbus-bench.XXXXXX", tmp);
		if (mkdtemp(scratch) == NULL) {
			fprintf(stderr, "bench: cannot make a scratch folder in "
			    "%s: %s\n", tmp, strerror(errno));
			return 2;
		}
		c.dir = scratch;
		made_dir = 1;
	}
	{
		char probe[600];
		int fd;
		snprintf(probe, sizeof(probe), "%s/mobbus-bench.XXXXXX", c.dir);
		if ((fd = mkstemp(probe)) < 0) {
			fprintf(stderr, "bench: scratch folder %s: %s\n", c.dir,
			    strerror(errno));
			return 2;
		}
		close(fd);
		unlink(probe);
	}
	scratch_cfg = &c;
	scratch_made = made_dir;
	atexit(scratch_atexit);
	/* And the outputs, before minutes of measuring. */
	for (int i = 0; i < 2; i++) {
		const char *out = i == 0 ? c.json_path : c.plot_path;
		char dir[4096];
		if (out == NULL)
			continue;
		snprintf(dir, sizeof(dir), "%s", out);
		if (access(dirname(dir), W_OK) != 0) {
			fprintf(stderr, "bench: cannot write %s: %s\n", out,
			    strerror(errno));
			return 2;
		}
	}

	/* 1. direct call */
	lat_init(&lat[nlat], "1 direct call (floor)", c.samples);
	p.lat = &lat[nlat];
	drive(&p, c.warmup, c.samples, direct_fire, &p);
	lat_finish(&lat[nlat++]);

	/*
	 * 2-4 take turns (drive_turns), so that the baselines and mobbus see
	 * the same machine. All are set up first:
	 *   2 eventfd between two threads;
	 *   3 raw nng PUB/SUB, one subscriber thread in nng_recvmsg;
	 *   4 mobbus with the C consumer and the store, first as a consumer
	 *     that may block (the deliver actor hands off on its own thread,
	 *     behind nng), then one that declares it never blocks
	 *     (consumer_inline: an idle deliver actor runs on the bridge's
	 *     thread). The ratios to nng are the first's.
	 */
	{
		struct efd_case e = { .p = &p, .fd = eventfd(0, EFD_CLOEXEC) };
		struct nng_case n = { .p = &p };
		struct bus_case b[2] = { { .p = &p }, { .p = &p } };
		pthread_t eth, nth;
		uint64_t one = 1;
		nng_msg *m;
		char db[512];
		int first = nlat;
		void (*const fire[LAT_KINDS])(void *) = { efd_fire, nng_fire,
			bus_fire, bus_fire };
		void *const arg[LAT_KINDS] = { &e, &n, &b[0], &b[1] };
		struct lat *const lats[LAT_KINDS] = { &lat[first],
			&lat[first + 1], &lat[first + 2], &lat[first + 3] };

		lat_init(&lat[nlat++], "2 eventfd hand-off", c.samples);
		lat_init(&lat[nlat++], "3 nng inproc PUB/SUB (transport)",
		    c.samples);
		lat_init(&lat[nlat++], "4 mobbus + C consumer, store on",
		    c.samples);
		lat_init(&lat[nlat++], "4 mobbus + C consumer inline", c.samples);
		pthread_create(&eth, NULL, efd_consumer, &e);
		nng_pub0_open(&n.pub);
		nng_sub0_open(&n.sub);
		nng_socket_set(n.sub, NNG_OPT_SUB_SUBSCRIBE, "", 0);
		nng_listen(n.pub, "inproc://mobbus-bench", NULL, 0);
		nng_dial(n.sub, "inproc://mobbus-bench", NULL, 0);
		sleep_us(20000); /* the pipe attaches asynchronously */
		pthread_create(&nth, NULL, nng_consumer, &n);
		for (int inl = 0; inl < 2; inl++) {
			db_path(&c, inl ? "latency-inline.db" : "latency.db", db,
			    sizeof(db));
			if (bus_case_open(&c, &b[inl], db, 1, inl) != 0) {
				fprintf(stderr, "bench: cannot open the bus\n");
				return 1;
			}
		}
		drive_turns(&p, c.warmup, c.samples, LAT_KINDS, lats, fire, arg,
		    NULL, NULL);
		bus_case_close(&b[0]);
		bus_case_close(&b[1]);
		nng_msg_alloc(&m, 0);
		nng_msg_append(m, "q", 1);
		nng_sendmsg(n.pub, m, 0);
		pthread_join(nth, NULL);
		nng_close(n.sub);
		nng_close(n.pub);
		atomic_store(&e.stop, 1);
		if (write(e.fd, &one, sizeof(one)) != sizeof(one))
			abort();
		pthread_join(eth, NULL);
		close(e.fd);
		for (int k = 0; k < LAT_KINDS; k++)
			lat_finish(&lat[first + k]);
	}

	/* 5. mobbus + the BEAM consumer, and a direct enif_send, in erl */
	lat_init(&br.bus, "5 mobbus + BEAM consumer, store on", c.samples);
	lat_init(&br.alone, "5 BEAM consumer alone, no bus", c.samples);
	lat_init(&br.send, "5 direct enif_send (Mob today)", c.samples);
	{
		char db[512];
		db_path(&c, "beam-latency.db", db, sizeof(db));
		beam_rv = beam_run(c.samples, c.warmup, p.rng, db, &br);
	}
	if (beam_rv == 0) {
		bus5 = nlat;
		lat[nlat++] = br.bus; /* lat[] owns the samples now */
		lat[nlat++] = br.alone;
		send = nlat;
		lat[nlat++] = br.send;
	} else {
		lat_fini(&br.bus);
		lat_fini(&br.alone);
		lat_fini(&br.send);
		fprintf(stderr, "bench: case 5 %s: %s\n",
		    beam_rv > 0 ? "skipped" : "FAILED", br.why);
	}

	if (run_tput(&c, 1, &tp[0]) != 0 || run_tput(&c, 4, &tp[1]) != 0) {
		fprintf(stderr, "bench: throughput run failed\n");
		return 1;
	}
	cold_full = run_cold(&c, c.cold_events);
	cold_empty = run_cold(&c, 0);
	lat_init(&cost, "bridge call, subscribers busy", c.samples);
	run_call_cost(&c, &cost);
	if (run_mem(&c, &mem) != 0) {
		fprintf(stderr, "bench: memory run failed\n");
		return 1;
	}

	printf("\nmobbus bench%s: %zu samples per latency case after %zu warm-up, "
	       "one event at a time, 20-200 us random idle gap\n",
	    c.quick ? " (quick)" : "", c.samples, c.warmup);
	printf("%-36s %8s %8s %8s %9s %9s %7s  %6s %6s  %6s %6s\n",
	    "latency (us)", "p50", "p90", "p99", "p99.9", "max", "samecpu",
	    "/nng50", "/nng99", "/send50", "/send99");
	for (int i = 0; i < nlat; i++)
		print_lat(&lat[i], &lat[2], send >= 0 ? &lat[send] : NULL);
	printf("\n%-36s %8s %8s %8s\n", "wake modes (fast: under "
	    STR(MODE_SPLIT_US) " us)", "fast", "fast p50", "slow p50");
	for (int i = 1; i < nlat; i++) {
		double fast, fast50, slow50;
		lat_modes(&lat[i], MODE_SPLIT_US * 1000u, &fast, &fast50,
		    &slow50);
		printf("%-36s %7.1f%% %8.2f %8.2f\n", lat[i].name, 100 * fast,
		    fast50, slow50);
	}
	if (send >= 0)
		printf("\ncase 5 in erl (OTP %s, %d schedulers): mobbus + BEAM "
		       "p50 = %.2fx direct enif_send p50 (target <= %.1fx: %s)\n",
		    br.otp, br.schedulers, lat[bus5].p50 / lat[send].p50,
		    BEAM_TARGET, lat[bus5].p50 / lat[send].p50 <= BEAM_TARGET ?
		        "met" : "MISSED");
	if (send >= 0)
		printf("  per bridge call: %.2f actors run inline on the bridge's "
		       "thread, %.2f bus messages sent (over %.0f calls)\n",
		    br.inline_per_call, br.sent_per_call, br.calls);
	else
		printf("\ncase 5 %s: %s\n", beam_rv > 0 ? "skipped" : "FAILED",
		    br.why);
	printf("\n%-34s %8.0f ns p50, %8.0f ns p99\n", "bridge call cost",
	    cost.p50 * 1000, cost.p99 * 1000);
	for (int i = 0; i < 2; i++)
		printf("throughput to %d subscriber%s (batches of %d): %10.0f "
		       "events/s, %llu gaps "
		       "(%llu lost), persisted %10.0f events/s\n",
		    tp[i].subscribers, tp[i].subscribers > 1 ? "s" : "",
		    TPUT_BATCH, tp[i].events_per_s, (unsigned long long)tp[i].gaps,
		    (unsigned long long)tp[i].missed, tp[i].persisted_per_s);
	if (cold_full < 0 || cold_empty < 0)
		printf("cold start: FAILED (the next process did not report a "
		       "first delivery)\n");
	else
		printf("cold start, process start to first delivery: %.2f ms "
		       "with %zu stored events, %.2f ms with an empty store\n",
		    cold_full, c.cold_events, cold_empty);
	printf("memory: RSS %ld kB before the bus, %ld kB running (after %zu "
	       "warm-up events), %ld kB after %zu more (growth %ld kB); heap in "
	       "use %ld -> %ld kB (growth %ld kB); peak RSS %ld kB\n",
	    mem.base_kb, mem.start_kb, mem.warm_events, mem.after_kb,
	    mem.events, mem.after_kb - mem.start_kb, mem.heap_start_kb,
	    mem.heap_after_kb, mem.heap_after_kb - mem.heap_start_kb,
	    mem.peak_kb);

	/* The targets, each with its verdict. */
	const double beam50 = send >= 0 ? lat[bus5].p50 / lat[send].p50 : 0;
	const struct target tg[] = {
		{ "mobbus + C consumer p50 / nng p50", lat[3].p50 / lat[2].p50,
		    1.2, 1, "x", 1 },
		{ "mobbus + C consumer p99 / nng p99", lat[3].p99 / lat[2].p99,
		    1.5, 1, "x", 1 },
		{ "mobbus + BEAM p50 / enif_send p50", beam50, BEAM_TARGET, 1,
		    "x", send >= 0 },
		{ "bridge call p99 (us)", cost.p99, 5, 1, "", 1 },
		{ "events/s to 1 subscriber, 0 gaps", tp[0].gaps ? 0 :
		    tp[0].events_per_s, 500000, 0, "", 1 },
		{ "persisted events/s", tp[0].persisted_per_s, 200000, 0, "", 1 },
		{ "cold start, stored events (ms)", cold_full, 50, 1, "",
		    cold_full >= 0 },
		/* Defined over 10 million events: a quick run has too few. */
		{ "RSS growth over 10 M events (kB)",
		    (double)(mem.after_kb - mem.start_kb), 1024, 1, "",
		    mem.events >= 10000000 },
	};
	const size_t ntg = sizeof(tg) / sizeof(tg[0]);
	size_t nmet = 0;

	printf("\n%-40s %14s %14s  %s\n", "targets", "this run", "target",
	    "verdict");
	for (size_t i = 0; i < ntg; i++) {
		nmet += target_met(&tg[i]) != 0;
		printf("%-40s %13.2f%s %s %11.2f%s  %s\n", tg[i].what,
		    tg[i].value, tg[i].unit, tg[i].at_most ? "<=" : ">=",
		    tg[i].bound, tg[i].unit,
		    !tg[i].known ? "not measured" :
		    target_met(&tg[i]) ? "met" : "MISSED");
	}
	printf("%zu of %zu targets met%s\n", nmet, ntg,
	    c.quick ? " (quick: few samples, indicative only)" : "");

	plot(&c, lat, nlat);
	if (c.json_path != NULL) {
		json_t *cases = json_array();
		json_t *beam;
		for (int i = 0; i < nlat; i++)
			json_array_append_new(cases, lat_json(&lat[i], &lat[2],
			    send >= 0 ? &lat[send] : NULL));
		js = json_pack("{s:b, s:o, s:o, s:f, s:f, s:f, s:f}", "quick",
		    c.quick, "latency", cases, "bridge_call",
		    lat_json(&cost, NULL, NULL), "ratio_p50_vs_nng",
		    lat[3].p50 / lat[2].p50,
		    "ratio_p99_vs_nng", lat[3].p99 / lat[2].p99,
		    "cold_start_ms_stored", cold_full, "cold_start_ms_empty",
		    cold_empty);
		json_object_set_new(js, "cold_start_stored_events",
		    json_integer((json_int_t)c.cold_events));
		for (int i = 0; i < 2; i++) {
			char key[48];
			snprintf(key, sizeof(key), "throughput_%d_subscribers",
			    tp[i].subscribers);
			json_object_set_new(js, key,
			    json_pack("{s:f, s:f, s:I, s:I}", "events_per_s",
			        tp[i].events_per_s, "persisted_per_s",
			        tp[i].persisted_per_s, "gaps",
			        (json_int_t)tp[i].gaps, "lost",
			        (json_int_t)tp[i].missed));
		}
		json_object_set_new(js, "memory",
		    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
		        "rss_before_bus_kb", (json_int_t)mem.base_kb,
		        "rss_running_kb", (json_int_t)mem.start_kb,
		        "rss_after_kb", (json_int_t)mem.after_kb,
		        "rss_growth_kb", (json_int_t)(mem.after_kb - mem.start_kb),
		        "heap_running_kb", (json_int_t)mem.heap_start_kb,
		        "heap_growth_kb",
		        (json_int_t)(mem.heap_after_kb - mem.heap_start_kb),
		        "warmup_events", (json_int_t)mem.warm_events,
		        "events", (json_int_t)mem.events,
		        "peak_kb", (json_int_t)mem.peak_kb));
		json_object_set_new(js, "mode_split_us",
		    json_integer(MODE_SPLIT_US));
		/* Case 5: mobbus + BEAM against the direct enif_send. */
		if (send >= 0) {
			double r50 = lat[bus5].p50 / lat[send].p50;
			json_object_set_new(js, "ratio_p50_vs_enif_send",
			    json_real(r50));
			json_object_set_new(js, "ratio_p99_vs_enif_send",
			    json_real(lat[bus5].p99 / lat[send].p99));
			beam = json_pack("{s:s, s:s, s:i, s:f, s:b, s:f, s:f}",
			    "status", "measured", "otp_release", br.otp,
			    "schedulers", br.schedulers,
			    "target_ratio_p50_vs_enif_send", BEAM_TARGET,
			    "target_met", r50 <= BEAM_TARGET,
			    "inline_actors_per_call", br.inline_per_call,
			    "bus_messages_per_call", br.sent_per_call);
		} else {
			json_object_set_new(js, "ratio_p50_vs_enif_send",
			    json_null());
			json_object_set_new(js, "ratio_p99_vs_enif_send",
			    json_null());
			beam = json_pack("{s:s, s:s}", "status",
			    beam_rv > 0 ? "skipped" : "failed", "reason",
			    br.why);
		}
		json_object_set_new(js, "beam", beam);
		json_t *tj = json_array();
		for (size_t i = 0; i < ntg; i++)
			json_array_append_new(tj, json_pack("{s:s, s:f, s:f, s:s, "
			    "s:o}", "what", tg[i].what, "value", tg[i].value,
			    "bound", tg[i].bound, "relation",
			    tg[i].at_most ? "<=" : ">=", "met",
			    tg[i].known ? json_boolean(target_met(&tg[i])) :
			                  json_null()));
		json_object_set_new(js, "targets", tj);
		if (json_dump_file(js, c.json_path, JSON_INDENT(2)) != 0) {
			fprintf(stderr, "bench: cannot write %s\n", c.json_path);
			failed = 1;
		}
		json_decref(js);
	}
	for (int i = 0; i < nlat; i++)
		lat_fini(&lat[i]);
	lat_fini(&cost);
	if (tp[0].gaps || tp[1].gaps)
		return 3;
	if (cold_full < 0 || cold_empty < 0)
		failed = 1;
	return beam_rv < 0 ? 4 : failed;
}
