/* SPDX-License-Identifier: MIT */
/*
 * beam_consumer.c - the BEAM consumer: receive callback, queue, delivery
 * thread.
 *
 * DESIGN
 * The receive callback runs where the deliver actor's handler runs: on an
 * nng callback thread, or, when the actor was idle, on the native thread
 * of the bridge call that published (bus.h, INLINE RUNS). Neither is a
 * scheduler, and either runs one callback of that actor at a time (the
 * NIF's own publisher, called from schedulers, never runs actors inline).
 * So for a small envelope with nothing queued before it, the
 * callback itself builds the message in the consumer's env and
 * enif_send()s it to every subscriber that asked for its kind: one wake-up
 * (the receiving process's) between the bus and the app, not two.
 * Otherwise it packs the envelope (its wire form is the cheapest deep copy)
 * onto a FIFO, and the consumer's own thread (enif_thread_create) unpacks
 * each one and sends it the same way: envelopes past MBB_DIRECT_MAX, whose
 * JSON is turned into terms recursively and would need more stack than an
 * nng thread has on a phone; envelopes that arrive while the thread still
 * has some queued; markers (replay's #K, mobbus:sync/0), queued by other
 * threads; and any call from a scheduler thread, which must not
 * enif_send(NULL, ...).
 * The sender's role (the envs and the pid array) is held by one thread at a
 * time (c->sending), and the callback sends directly only when the FIFO is
 * empty and nobody holds it, so each subscriber still sees the bus order,
 * and a marker queued after a drain arrives after every message before it.
 * enif_clear_env() reuses the envs. A failed send means the process is
 * gone; its monitor removes it.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "beam_consumer.h"
#include "beam_terms.h"

/* The delivery thread's stack, in kilowords (8 MB): JSON is turned into
 * terms recursively, and jansson accepts nesting 2048 deep. */
#define MBB_STACK_KWORDS 1024

/* The largest envelope (packed bytes) the deliver actor's thread turns into
 * a term itself: its JSON then nests at most a few hundred deep, a few tens
 * of kilobytes of stack. */
#define MBB_DIRECT_MAX 1024

enum item_kind { ITEM_ENVELOPE, ITEM_LINE, ITEM_SYNC };

struct item {
	struct item *next;
	enum item_kind kind;
	unsigned msg_kind; /* envelopes: enum mbb_kind */
	ErlNifPid pid;     /* sync: to whom */
	int64_t token;     /* sync */
	size_t len;
	uint8_t data[];
};

struct sub {
	ErlNifPid pid;
	unsigned kinds;
	int has_mon;
	ErlNifMonitor mon;
};

struct mbb_consumer {
	ErlNifMutex *lock;
	ErlNifCond *cv;
	struct item *head, *tail;
	struct sub *subs;
	size_t nsubs, capsubs;
	unsigned want; /* union of the subscribers' kinds */
	unsigned flags;
	int stopping;
	int joined;
	int sending; /* a thread holds the sender's role (the fields below) */
	ErlNifTid tid;
	struct mbb_consumer_stats st;
	/* The sender's: the delivery thread's, or the receive callback's while
	 * it sends directly. */
	ErlNifEnv *env, *copy_env;
	ErlNifPid *pids;
	size_t cappids;
};

static atomic_long envs_live;

long
mbb_envs_live(void)
{
	return atomic_load(&envs_live);
}

static ErlNifEnv *
env_alloc(void)
{
	ErlNifEnv *e = enif_alloc_env();

	if (e != NULL)
		atomic_fetch_add(&envs_live, 1);
	return e;
}

static void
env_free(ErlNifEnv *e)
{
	if (e == NULL)
		return;
	enif_free_env(e);
	atomic_fetch_sub(&envs_live, 1);
}

static void
want_update(struct mbb_consumer *c)
{
	c->want = 0;
	for (size_t i = 0; i < c->nsubs; i++)
		c->want |= c->subs[i].kinds;
}

static void
enqueue(struct mbb_consumer *c, struct item *it)
{
	it->next = NULL;
	if (c->tail != NULL)
		c->tail->next = it;
	else
		c->head = it;
	c->tail = it;
	c->st.queued++;
	enif_cond_signal(c->cv);
}

/* Copy the pids that want kind into the thread's array; returns how many. */
static size_t
targets(struct mbb_consumer *c, unsigned kind)
{
	size_t n = 0;

	enif_mutex_lock(c->lock);
	if (c->cappids < c->nsubs) {
		ErlNifPid *np = realloc(c->pids, c->nsubs * sizeof(*np));
		if (np != NULL) {
			c->pids = np;
			c->cappids = c->nsubs;
		}
	}
	for (size_t i = 0; i < c->nsubs && n < c->cappids; i++)
		if (c->subs[i].kinds & kind)
			c->pids[n++] = c->subs[i].pid;
	enif_mutex_unlock(c->lock);
	return n;
}

/* Send msg (built in c->env) to n pids: copies for all but the last, which
 * takes the env's own terms. Leaves both envs cleared. Markers are not
 * counted as messages. */
static void
send_all(struct mbb_consumer *c, ERL_NIF_TERM msg, const ErlNifPid *pids,
         size_t n, int count)
{
	uint64_t sent = 0, failed = 0;

	for (size_t i = 0; i < n; i++) {
		int ok;
		if (i + 1 < n) {
			ERL_NIF_TERM cp = enif_make_copy(c->copy_env, msg);
			ok = enif_send(NULL, &pids[i], c->copy_env, cp);
			enif_clear_env(c->copy_env);
		} else {
			ok = enif_send(NULL, &pids[i], c->env, msg);
		}
		if (ok)
			sent++;
		else
			failed++;
	}
	enif_clear_env(c->env);
	if (!count)
		return;
	enif_mutex_lock(c->lock);
	c->st.sent += sent;
	c->st.send_failed += failed;
	enif_mutex_unlock(c->lock);
}

/* Build env's message once and send it to every subscriber of kind. The
 * caller holds the sender's role. */
static void
deliver_envelope(struct mbb_consumer *c, const mb_envelope *env, unsigned kind)
{
	ERL_NIF_TERM msg;
	size_t n;

	if ((n = targets(c, kind)) == 0)
		return;
	if (mbb_message(c->env, env, c->flags, &msg) == 0)
		send_all(c, msg, c->pids, n, 1);
	else
		enif_clear_env(c->env);
}

static void
deliver_item(struct mbb_consumer *c, struct item *it)
{
	ERL_NIF_TERM msg, bin;
	mb_envelope *env;
	unsigned char *p;
	size_t n;

	switch (it->kind) {
	case ITEM_SYNC:
		msg = enif_make_tuple2(c->env, mbb_atom.mobbus_sync,
		                       enif_make_int64(c->env, it->token));
		send_all(c, msg, &it->pid, 1, 0);
		return;
	case ITEM_LINE:
		if ((n = targets(c, MBB_K_OUT)) == 0)
			return;
		p = enif_make_new_binary(c->env, it->len, &bin);
		if (it->len > 0)
			memcpy(p, it->data, it->len);
		msg = enif_make_tuple2(c->env, mbb_atom.mobbus_replay, bin);
		send_all(c, msg, c->pids, n, 0);
		return;
	case ITEM_ENVELOPE:
		if ((env = mobbus__envelope__unpack(NULL, it->len, it->data)) ==
		    NULL)
			return;
		deliver_envelope(c, env, it->msg_kind);
		mobbus__envelope__free_unpacked(env, NULL);
		return;
	}
}

/* Take the sender's role for the receive callback, when sending now keeps
 * the order: nothing queued and nobody sending. Under c->lock. */
static int
direct_claim(struct mbb_consumer *c)
{
	if (c->head != NULL || c->sending)
		return 0;
	c->sending = 1;
	return 1;
}

/* Give the role back; what was queued meanwhile is the thread's. */
static void
direct_release(struct mbb_consumer *c)
{
	enif_mutex_lock(c->lock);
	c->sending = 0;
	if (c->head != NULL)
		enif_cond_signal(c->cv);
	enif_mutex_unlock(c->lock);
}

static int
sink_receive_cb(void *arg, const mb_envelope *env)
{
	struct mbb_consumer *c = arg;
	unsigned kind = mbb_kind_of(env);
	size_t n;
	int small;
	struct item *it;

	if (kind == MBB_K_NONE)
		return MB_OK;
	n = mobbus__envelope__get_packed_size(env);
	small =
	    n <= MBB_DIRECT_MAX && enif_thread_type() == ERL_NIF_THR_UNDEFINED;
	enif_mutex_lock(c->lock);
	if (!(c->want & kind)) {
		c->st.dropped++;
		enif_mutex_unlock(c->lock);
		return MB_OK;
	}
	if (small && direct_claim(c)) {
		c->st.received++;
		c->st.direct++;
		enif_mutex_unlock(c->lock);
		deliver_envelope(c, env, kind);
		direct_release(c);
		return MB_OK;
	}
	enif_mutex_unlock(c->lock);
	if ((it = malloc(sizeof(*it) + n)) == NULL)
		return MB_ENOMEM;
	memset(it, 0, sizeof(*it));
	it->kind = ITEM_ENVELOPE;
	it->msg_kind = kind;
	it->len = mobbus__envelope__pack(env, it->data);
	enif_mutex_lock(c->lock);
	c->st.received++;
	enqueue(c, it);
	enif_mutex_unlock(c->lock);
	return MB_OK;
}

const struct mb_sink_ops mbb_consumer_sink_ops = {
    .size = sizeof(struct mb_sink_ops),
    .receive = sink_receive_cb,
};

static void *
delivery_main(void *arg)
{
	struct mbb_consumer *c = arg;
	struct item *it;

	for (;;) {
		enif_mutex_lock(c->lock);
		while ((c->head == NULL && !c->stopping) || c->sending)
			enif_cond_wait(c->cv, c->lock);
		if ((it = c->head) == NULL) {
			enif_mutex_unlock(c->lock);
			break; /* stopping, and everything is sent */
		}
		if ((c->head = it->next) == NULL)
			c->tail = NULL;
		c->st.queued--;
		c->sending = 1;
		enif_mutex_unlock(c->lock);
		deliver_item(c, it);
		free(it);
		enif_mutex_lock(c->lock);
		c->sending = 0;
		enif_mutex_unlock(c->lock);
	}
	return NULL;
}

int
mbb_consumer_alloc(struct mbb_consumer **cp, unsigned flags)
{
	struct mbb_consumer *c = calloc(1, sizeof(*c));
	ErlNifThreadOpts *topts = enif_thread_opts_create("mobbus_deliver");
	int trv;

	if (c == NULL || topts == NULL) {
		free(c);
		if (topts != NULL)
			enif_thread_opts_destroy(topts);
		return MB_ENOMEM;
	}
	topts->suggested_stack_size = MBB_STACK_KWORDS;
	c->flags = flags;
	c->lock = enif_mutex_create("mobbus_consumer");
	c->cv = enif_cond_create("mobbus_consumer");
	c->env = env_alloc();
	c->copy_env = env_alloc();
	trv = c->lock == NULL || c->cv == NULL || c->env == NULL ||
	      c->copy_env == NULL ||
	      enif_thread_create("mobbus_deliver", &c->tid, delivery_main, c,
	                         topts) != 0;
	enif_thread_opts_destroy(topts);
	if (trv) {
		env_free(c->env);
		env_free(c->copy_env);
		if (c->cv)
			enif_cond_destroy(c->cv);
		if (c->lock)
			enif_mutex_destroy(c->lock);
		free(c);
		return MB_ENOMEM;
	}
	*cp = c;
	return MB_OK;
}

void
mbb_consumer_stop(struct mbb_consumer *c)
{
	int joined;

	enif_mutex_lock(c->lock);
	c->stopping = 1;
	joined = c->joined;
	c->joined = 1;
	enif_cond_signal(c->cv);
	enif_mutex_unlock(c->lock);
	if (!joined)
		enif_thread_join(c->tid, NULL);
}

void
mbb_consumer_free(struct mbb_consumer *c)
{
	if (c == NULL)
		return;
	mbb_consumer_stop(c);
	env_free(c->env);
	env_free(c->copy_env);
	enif_cond_destroy(c->cv);
	enif_mutex_destroy(c->lock);
	free(c->subs);
	free(c->pids);
	free(c);
}

int
mbb_consumer_add(struct mbb_consumer *c, const ErlNifPid *pid, unsigned kinds,
                 const ErlNifMonitor *mon, int *added, int *first)
{
	struct sub *s = NULL;

	enif_mutex_lock(c->lock);
	*first = c->nsubs == 0;
	*added = 0;
	for (size_t i = 0; i < c->nsubs; i++)
		if (enif_compare_pids(&c->subs[i].pid, pid) == 0)
			s = &c->subs[i];
	if (s == NULL) {
		if (c->nsubs == c->capsubs) {
			size_t cap = c->capsubs ? c->capsubs * 2 : 4;
			struct sub *ns = realloc(c->subs, cap * sizeof(*ns));
			if (ns == NULL) {
				enif_mutex_unlock(c->lock);
				return MB_ENOMEM;
			}
			c->subs = ns;
			c->capsubs = cap;
		}
		s = &c->subs[c->nsubs++];
		memset(s, 0, sizeof(*s));
		s->pid = *pid;
		if (mon != NULL) {
			s->mon = *mon;
			s->has_mon = 1;
		}
		*added = 1;
	}
	s->kinds = kinds;
	want_update(c);
	enif_mutex_unlock(c->lock);
	return MB_OK;
}

int
mbb_consumer_remove(struct mbb_consumer *c, const ErlNifPid *pid,
                    const ErlNifMonitor *mon, ErlNifMonitor *mon_out,
                    int *has_mon, int *now_empty)
{
	int removed = 0;

	enif_mutex_lock(c->lock);
	for (size_t i = 0; i < c->nsubs; i++) {
		struct sub *s = &c->subs[i];
		if (pid != NULL ? enif_compare_pids(&s->pid, pid) != 0
		                : !s->has_mon ||
		                      enif_compare_monitors(&s->mon, mon) != 0)
			continue;
		if (mon_out != NULL)
			*mon_out = s->mon;
		if (has_mon != NULL)
			*has_mon = s->has_mon;
		*s = c->subs[--c->nsubs];
		removed = 1;
		break;
	}
	want_update(c);
	if (now_empty != NULL)
		*now_empty = c->nsubs == 0;
	enif_mutex_unlock(c->lock);
	return removed;
}

size_t
mbb_consumer_prune(struct mbb_consumer *c, ErlNifEnv *env)
{
	size_t n;

	enif_mutex_lock(c->lock);
	for (size_t i = 0; i < c->nsubs;) {
		if (!enif_is_process_alive(env, &c->subs[i].pid))
			c->subs[i] = c->subs[--c->nsubs];
		else
			i++;
	}
	want_update(c);
	n = c->nsubs;
	enif_mutex_unlock(c->lock);
	return n;
}

void
mbb_consumer_clear(struct mbb_consumer *c, ErlNifMonitor **mons, size_t *nmons)
{
	size_t n = 0;

	enif_mutex_lock(c->lock);
	*mons = c->nsubs ? malloc(c->nsubs * sizeof(**mons)) : NULL;
	for (size_t i = 0; i < c->nsubs && *mons != NULL; i++)
		if (c->subs[i].has_mon)
			(*mons)[n++] = c->subs[i].mon;
	c->nsubs = 0;
	want_update(c);
	enif_mutex_unlock(c->lock);
	*nmons = n;
}

static struct item *
item_new(enum item_kind kind, const void *data, size_t len)
{
	struct item *it = malloc(sizeof(*it) + len);

	if (it == NULL)
		return NULL;
	memset(it, 0, sizeof(*it));
	it->kind = kind;
	it->len = len;
	if (len > 0)
		memcpy(it->data, data, len);
	return it;
}

int
mbb_consumer_line(struct mbb_consumer *c, const char *line, size_t len)
{
	struct item *it = item_new(ITEM_LINE, line, len);

	if (it == NULL)
		return MB_ENOMEM;
	enif_mutex_lock(c->lock);
	enqueue(c, it);
	enif_mutex_unlock(c->lock);
	return MB_OK;
}

int
mbb_consumer_sync(struct mbb_consumer *c, const ErlNifPid *pid, int64_t token)
{
	struct item *it = item_new(ITEM_SYNC, NULL, 0);

	if (it == NULL)
		return MB_ENOMEM;
	it->pid = *pid;
	it->token = token;
	enif_mutex_lock(c->lock);
	enqueue(c, it);
	enif_mutex_unlock(c->lock);
	return MB_OK;
}

void
mbb_consumer_stats(struct mbb_consumer *c, struct mbb_consumer_stats *st)
{
	enif_mutex_lock(c->lock);
	*st = c->st;
	st->subscribers = c->nsubs;
	enif_mutex_unlock(c->lock);
}
