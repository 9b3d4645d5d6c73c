/* SPDX-License-Identifier: MIT */
/*
 * bus.c - the bus: one nng inproc PUB socket, publishers that stamp and send
 * envelopes, and the inflight count that mb_bus_drain waits on.
 *
 * DESIGN
 * An nng message is the topic, a NUL, and the packed Envelope, so that nng
 * sub0's prefix filter works on the topic alone. Each publisher numbers its
 * envelopes per topic from 1; pub0 drops the oldest message of a full
 * per-subscriber queue instead of blocking, and the receiving actor turns the
 * resulting hole in the numbers into a "bus/gap" report and settles the lost
 * envelopes. See bus.h for how drain accounting stays exact.
 *
 * THREAD SAFETY
 * Locks, in the order they may be taken:
 *   b_start_mtx  serialises actor starts (dial, wait for the pipe, register).
 *   p_mtx        one per publisher: its sequence table and send aio. Held
 *                from reading the next seq until the message is sent, so one
 *                publisher's envelopes leave in seq order.
 *   b_mtx        the bus: actor and publisher lists, inflight, stats, pipe
 *                count. Held across the nng send, so that counting the
 *                receivers, committing the seq and sending are one step as
 *                seen by a registering actor (pub0 never blocks, and nng
 *                completes the send without calling back into the bus).
 * A publisher's p_seq is written with both p_mtx and b_mtx held, so either
 * lock is enough to read it. b_clock_ms is atomic. No lock is held while
 * actor callbacks run.
 *
 * MEMORY
 * A freed publisher leaves its last sequence number per topic behind in
 * b_retired until the bus closes, so that a registration or probe snapshot
 * still knows where its streams ended: bytes grow with publishers x topics.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>

#include "bus.h"

#define BUS_DEFAULT_BUF 8192
#define BUS_MAX_BUF 8192 /* nng's own limit for SENDBUF/RECVBUF */
#define BUS_PIPE_WAIT_MS 10000
#define BUS_PROBE_MS 20 /* drain probes after this long without progress */

struct mb_pub {
	mb_bus *p_bus;
	uint32_t p_id;
	pthread_mutex_t p_mtx;
	struct mbi_seqtab p_seq; /* keyed (0, topic) */
	nng_aio *p_aio;          /* send aio, reused under p_mtx */
	struct mb_pub *p_next;   /* on b_pubs, under b_mtx */
	struct mb_pub *p_prev;
};

struct mb_bus {
	pthread_mutex_t b_start_mtx;
	pthread_mutex_t b_mtx;
	pthread_cond_t b_drain_cv; /* inflight reached 0 */
	pthread_cond_t b_pipe_cv;  /* b_pipes grew */
	nng_socket b_sock;
	bool b_sock_open;
	bool b_closing;
	char b_url[64];
	unsigned b_recvbuf;
	_Atomic int64_t b_clock_ms; /* < 0: CLOCK_MONOTONIC */
	uint64_t b_inflight;
	uint64_t b_pipes; /* PUB pipes attached so far */
	uint32_t b_next_pub;
	uint64_t b_probe_gen;
	/* Freed publishers' last seq per (id, topic), for snapshots. */
	struct mbi_seqtab b_retired;
	struct mb_bus_stats b_stats;
	struct mbi_sub *b_subs;
	struct mb_pub *b_pubs;
};

static void bus_probe(mb_bus *bus);

/* ---- sequence tables ---------------------------------------------------- */

static uint64_t
seqtab_hash(uint32_t pub, const char *topic)
{
	uint64_t h = 1469598103934665603u; /* FNV-1a */

	for (int i = 0; i < 4; i++) {
		h ^= (pub >> (8 * i)) & 0xffu;
		h *= 1099511628211u;
	}
	for (; *topic != '\0'; topic++) {
		h ^= (unsigned char)*topic;
		h *= 1099511628211u;
	}
	return (h);
}

static struct mbi_seqent *
seqtab_slot(struct mbi_seqent *ents, size_t cap, uint32_t pub,
            const char *topic)
{
	size_t i = (size_t)seqtab_hash(pub, topic) & (cap - 1);

	while (ents[i].e_used &&
	       (ents[i].e_pub != pub || strcmp(ents[i].e_topic, topic) != 0)) {
		i = (i + 1) & (cap - 1);
	}
	return (&ents[i]);
}

static int
seqtab_grow(struct mbi_seqtab *t)
{
	size_t cap = t->t_cap != 0 ? t->t_cap * 2 : 8;
	struct mbi_seqent *ents;

	if ((ents = calloc(cap, sizeof(*ents))) == NULL) {
		return (MB_ENOMEM);
	}
	for (size_t i = 0; i < t->t_cap; i++) {
		struct mbi_seqent *e = &t->t_ents[i];

		if (e->e_used) {
			*seqtab_slot(ents, cap, e->e_pub, e->e_topic) = *e;
		}
	}
	free(t->t_ents);
	t->t_ents = ents;
	t->t_cap = cap;
	return (MB_OK);
}

uint64_t *
mbi_seqtab_get(struct mbi_seqtab *t, uint32_t pub, const char *topic,
               bool create)
{
	struct mbi_seqent *e;

	if (t->t_cap != 0) {
		e = seqtab_slot(t->t_ents, t->t_cap, pub, topic);
		if (e->e_used) {
			return (&e->e_seq);
		}
	}
	if (!create || strlen(topic) >= MBI_TOPIC_MAX) {
		return (NULL);
	}
	/* Keep the load at or under 3/4 so that probes stay short. */
	if ((t->t_len + 1) * 4 > t->t_cap * 3 && seqtab_grow(t) != MB_OK) {
		return (NULL);
	}
	e = seqtab_slot(t->t_ents, t->t_cap, pub, topic);
	e->e_used = true;
	e->e_pub = pub;
	e->e_seq = 0;
	strcpy(e->e_topic, topic);
	t->t_len++;
	return (&e->e_seq);
}

void
mbi_seqtab_fini(struct mbi_seqtab *t)
{
	free(t->t_ents);
	t->t_ents = NULL;
	t->t_cap = 0;
	t->t_len = 0;
}

/* ---- helpers ------------------------------------------------------------ */

static int
bus_nng_err(int rv)
{
	switch (rv) {
	case 0:
		return (MB_OK);
	case NNG_ENOMEM:
		return (MB_ENOMEM);
	case NNG_ECLOSED:
		return (MB_ECLOSED);
	default:
		return (MB_ETRANSPORT);
	}
}

static void
bus_cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &attr);
	pthread_condattr_destroy(&attr);
}

/* bus_wait_until - wait on cv (with b_mtx held) until deadline_ns; returns
 * ETIMEDOUT once the deadline has passed. */
static int
bus_wait_until(mb_bus *bus, pthread_cond_t *cv, uint64_t deadline_ns)
{
	struct timespec ts;

	if (mbi_mono_ns() >= deadline_ns) {
		return (ETIMEDOUT);
	}
	ts.tv_sec = (time_t)(deadline_ns / 1000000000u);
	ts.tv_nsec = (long)(deadline_ns % 1000000000u);
	return (pthread_cond_timedwait(cv, &bus->b_mtx, &ts));
}

bool
mbi_bus_match(const char *const *topics, const void *buf, size_t len)
{
	if (topics == NULL) {
		return (false);
	}
	for (; *topics != NULL; topics++) {
		size_t tl = strlen(*topics);

		if (tl <= len && memcmp(*topics, buf, tl) == 0) {
			return (true);
		}
	}
	return (false);
}

/* bus_count - add (or take back) one pending envelope on every registered
 * actor whose prefixes match buf; returns how many did. b_mtx held. */
static uint64_t
bus_count(mb_bus *bus, const void *buf, size_t len, bool add, uint64_t k)
{
	uint64_t n = 0;

	for (struct mbi_sub *s = bus->b_subs; s != NULL; s = s->s_next) {
		if (mbi_bus_match(s->s_topics, buf, len)) {
			if (add) {
				s->s_pending += k;
			} else {
				s->s_pending -= k;
			}
			n++;
		}
	}
	return (n);
}

static void
bus_settle(mb_bus *bus, uint64_t n)
{
	bus->b_inflight -= n;
	if (bus->b_inflight == 0 && n > 0) {
		pthread_cond_broadcast(&bus->b_drain_cv);
	}
}

/* bus_send_locked - send a copy of buf, unstamped. b_mtx held. */
static int
bus_send_locked(mb_bus *bus, const void *buf, size_t len)
{
	nng_msg *msg;
	int rv;

	if (nng_msg_alloc(&msg, len) != 0) {
		return (MB_ENOMEM);
	}
	if (len > 0) {
		memcpy(nng_msg_body(msg), buf, len);
	}
	if ((rv = nng_sendmsg(bus->b_sock, msg, NNG_FLAG_NONBLOCK)) != 0) {
		nng_msg_free(msg);
	}
	return (bus_nng_err(rv));
}

static void
bus_pipe_cb(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
	mb_bus *bus = arg;

	(void)pipe;
	(void)ev;
	pthread_mutex_lock(&bus->b_mtx);
	bus->b_pipes++;
	pthread_cond_broadcast(&bus->b_pipe_cv);
	pthread_mutex_unlock(&bus->b_mtx);
}

/* ---- the bus ------------------------------------------------------------ */

static void
bus_free(mb_bus *bus)
{
	if (bus->b_sock_open) {
		nng_close(bus->b_sock);
	}
	mbi_seqtab_fini(&bus->b_retired);
	pthread_cond_destroy(&bus->b_pipe_cv);
	pthread_cond_destroy(&bus->b_drain_cv);
	pthread_mutex_destroy(&bus->b_mtx);
	pthread_mutex_destroy(&bus->b_start_mtx);
	free(bus);
}

int
mb_bus_open(mb_bus **busp, const struct mb_bus_opts *opts)
{
	static atomic_uint bus_serial;
	struct mb_bus_opts o = {0};
	mb_bus *bus;
	int rv;

	if (busp == NULL) {
		return (MB_EINVAL);
	}
	*busp = NULL;
	if (opts != NULL) {
		if (opts->size == 0) {
			return (MB_EINVAL);
		}
		memcpy(&o, opts,
		       opts->size < sizeof(o) ? opts->size : sizeof(o));
	}
	o.sendbuf = o.sendbuf != 0 ? o.sendbuf : BUS_DEFAULT_BUF;
	o.recvbuf = o.recvbuf != 0 ? o.recvbuf : BUS_DEFAULT_BUF;
	if (o.sendbuf > BUS_MAX_BUF || o.recvbuf > BUS_MAX_BUF) {
		return (MB_EINVAL);
	}
	if ((bus = calloc(1, sizeof(*bus))) == NULL) {
		return (MB_ENOMEM);
	}
	pthread_mutex_init(&bus->b_start_mtx, NULL);
	pthread_mutex_init(&bus->b_mtx, NULL);
	bus_cond_init(&bus->b_drain_cv);
	bus_cond_init(&bus->b_pipe_cv);
	atomic_init(&bus->b_clock_ms, -1);
	bus->b_recvbuf = o.recvbuf;
	bus->b_next_pub = 1;
	snprintf(bus->b_url, sizeof(bus->b_url), "inproc://mobbus-%u-%p",
	         atomic_fetch_add(&bus_serial, 1), (void *)bus);

	if ((rv = nng_pub0_open(&bus->b_sock)) != 0) {
		goto fail;
	}
	bus->b_sock_open = true;
	if ((rv = nng_socket_set_int(bus->b_sock, NNG_OPT_SENDBUF,
	                             (int)o.sendbuf)) != 0 ||
	    (rv = nng_pipe_notify(bus->b_sock, NNG_PIPE_EV_ADD_POST,
	                          bus_pipe_cb, bus)) != 0 ||
	    (rv = nng_listen(bus->b_sock, bus->b_url, NULL, 0)) != 0) {
		goto fail;
	}
	*busp = bus;
	return (MB_OK);

fail:
	bus_free(bus);
	return (rv == NNG_ENOMEM ? MB_ENOMEM : MB_ETRANSPORT);
}

void
mb_bus_close(mb_bus *bus)
{
	if (bus == NULL) {
		return;
	}
	pthread_mutex_lock(&bus->b_mtx);
	bus->b_closing = true;
	pthread_mutex_unlock(&bus->b_mtx);

	/* mb_actor_stop unregisters (and frees the actor's own publisher), so
	 * take the head again each time rather than walk a changing list. */
	for (;;) {
		struct mbi_sub *s;

		pthread_mutex_lock(&bus->b_mtx);
		s = bus->b_subs;
		pthread_mutex_unlock(&bus->b_mtx);
		if (s == NULL) {
			break;
		}
		mb_actor_stop(s->s_actor);
	}
	for (;;) {
		mb_pub *p;

		pthread_mutex_lock(&bus->b_mtx);
		p = bus->b_pubs;
		pthread_mutex_unlock(&bus->b_mtx);
		if (p == NULL) {
			break;
		}
		mb_pub_free(p);
	}
	bus_free(bus);
}

void
mb_bus_set_clock(mb_bus *bus, int64_t now_ms)
{
	atomic_store(&bus->b_clock_ms, now_ms < 0 ? -1 : now_ms);
}

int64_t
mb_bus_now_ms(mb_bus *bus)
{
	int64_t ms = atomic_load(&bus->b_clock_ms);

	return (ms >= 0 ? ms : (int64_t)(mbi_mono_ns() / 1000000u));
}

int
mb_bus_drain(mb_bus *bus, int timeout_ms)
{
	uint64_t now = mbi_mono_ns();
	uint64_t deadline =
	    now + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000u;
	uint64_t probe_at = now + BUS_PROBE_MS * 1000000u;
	uint64_t seen;
	int rv = MB_OK;

	if (bus == NULL) {
		return (MB_EINVAL);
	}
	pthread_mutex_lock(&bus->b_mtx);
	seen = bus->b_inflight;
	while (bus->b_inflight > 0) {
		uint64_t until = probe_at;

		if (timeout_ms >= 0 && deadline < until) {
			until = deadline;
		}
		(void)bus_wait_until(bus, &bus->b_drain_cv, until);
		if (bus->b_inflight == 0) {
			break;
		}
		now = mbi_mono_ns();
		if (timeout_ms >= 0 && now >= deadline) {
			rv = MB_ETIMEDOUT;
			break;
		}
		if (now >= probe_at) {
			/* Stuck: maybe only lost tails are left. */
			if (bus->b_inflight == seen) {
				bus_probe(bus);
			}
			seen = bus->b_inflight;
			probe_at = now + BUS_PROBE_MS * 1000000u;
		}
	}
	pthread_mutex_unlock(&bus->b_mtx);
	return (rv);
}

void
mb_bus_stats(mb_bus *bus, struct mb_bus_stats *st)
{
	pthread_mutex_lock(&bus->b_mtx);
	*st = bus->b_stats;
	pthread_mutex_unlock(&bus->b_mtx);
}

unsigned
mbi_bus_recvbuf(const mb_bus *bus)
{
	return (bus->b_recvbuf);
}

/* bus_snapshot_add - set (id, topic) in tab to seq if the topic matches. */
static int
bus_snapshot_add(struct mbi_seqtab *tab, const char *const *topics, uint32_t id,
                 const struct mbi_seqent *e)
{
	uint64_t *slot;

	if (!e->e_used || e->e_seq == 0 ||
	    !mbi_bus_match(topics, e->e_topic, strlen(e->e_topic))) {
		return (MB_OK);
	}
	if ((slot = mbi_seqtab_get(tab, id, e->e_topic, true)) == NULL) {
		return (MB_ENOMEM);
	}
	*slot = e->e_seq;
	return (MB_OK);
}

/* bus_snapshot - put into tab the last seq of every stream, from live and
 * retired publishers, whose topic matches topics. b_mtx held. */
static int
bus_snapshot(mb_bus *bus, const char *const *topics, struct mbi_seqtab *tab)
{
	const struct mbi_seqtab *r = &bus->b_retired;
	int rv;

	for (mb_pub *p = bus->b_pubs; p != NULL; p = p->p_next) {
		for (size_t i = 0; i < p->p_seq.t_cap; i++) {
			rv = bus_snapshot_add(tab, topics, p->p_id,
			                      &p->p_seq.t_ents[i]);
			if (rv != MB_OK) {
				return (rv);
			}
		}
	}
	for (size_t i = 0; i < r->t_cap; i++) {
		rv = bus_snapshot_add(tab, topics, r->t_ents[i].e_pub,
		                      &r->t_ents[i]);
		if (rv != MB_OK) {
			return (rv);
		}
	}
	return (MB_OK);
}

/* bus_probe - snapshot the streams of every actor that still owes
 * envelopes, then send one probe behind everything sent so far. b_mtx held;
 * a failure only means no probe this time. */
static void
bus_probe(mb_bus *bus)
{
	uint8_t buf[MBI_PROBE_LEN];
	uint64_t gen = ++bus->b_probe_gen;
	bool any = false;

	for (struct mbi_sub *s = bus->b_subs; s != NULL; s = s->s_next) {
		mbi_seqtab_fini(&s->s_probe);
		s->s_probe_gen = 0;
		if (s->s_pending == 0) {
			continue;
		}
		if (bus_snapshot(bus, s->s_topics, &s->s_probe) != MB_OK) {
			mbi_seqtab_fini(&s->s_probe);
			continue;
		}
		s->s_probe_gen = gen;
		any = true;
	}
	if (!any) {
		return;
	}
	buf[0] = '\0';
	for (int i = 0; i < 8; i++) {
		buf[1 + i] = (uint8_t)(gen >> (8 * i));
	}
	(void)bus_send_locked(bus, buf, sizeof(buf));
}

bool
mbi_bus_probe_take(mb_bus *bus, struct mbi_sub *s, uint64_t gen,
                   struct mbi_seqtab *out)
{
	bool ok;

	pthread_mutex_lock(&bus->b_mtx);
	ok = gen != 0 && s->s_probe_gen == gen;
	if (ok) {
		*out = s->s_probe;
		s->s_probe_gen = 0;
		memset(&s->s_probe, 0, sizeof(s->s_probe));
	}
	pthread_mutex_unlock(&bus->b_mtx);
	return (ok);
}

int
mbi_bus_connect(mb_bus *bus, nng_socket sock, struct mbi_sub *s)
{
	uint64_t before;
	uint64_t deadline;
	int rv;

	pthread_mutex_lock(&bus->b_start_mtx);
	pthread_mutex_lock(&bus->b_mtx);
	before = bus->b_pipes;
	rv = bus->b_closing ? MB_ECLOSED : MB_OK;
	pthread_mutex_unlock(&bus->b_mtx);
	if (rv == MB_OK && nng_dial(sock, bus->b_url, NULL, 0) != 0) {
		rv = MB_ETRANSPORT;
	}
	if (rv != MB_OK) {
		pthread_mutex_unlock(&bus->b_start_mtx);
		return (rv);
	}

	/* The dial returns when the SUB side has its pipe; envelopes are only
	 * copied to it once pub0 has started its side (NNG_PIPE_EV_ADD_POST).
	 * Starts are serialised, so the next pipe to attach is ours. */
	deadline = mbi_mono_ns() + (uint64_t)BUS_PIPE_WAIT_MS * 1000000u;
	pthread_mutex_lock(&bus->b_mtx);
	while (bus->b_pipes == before &&
	       bus_wait_until(bus, &bus->b_pipe_cv, deadline) != ETIMEDOUT) {
	}
	if (bus->b_pipes == before) {
		rv = MB_ETRANSPORT;
	} else if (bus->b_closing) {
		rv = MB_ECLOSED;
	} else if ((rv = bus_snapshot(bus, s->s_topics, s->s_last)) == MB_OK) {
		s->s_pending = 0;
		s->s_prev = NULL;
		s->s_next = bus->b_subs;
		if (bus->b_subs != NULL) {
			bus->b_subs->s_prev = s;
		}
		bus->b_subs = s;
	}
	pthread_mutex_unlock(&bus->b_mtx);
	pthread_mutex_unlock(&bus->b_start_mtx);
	return (rv);
}

void
mbi_bus_detach(mb_bus *bus, struct mbi_sub *s)
{
	pthread_mutex_lock(&bus->b_mtx);
	if (s->s_prev != NULL) {
		s->s_prev->s_next = s->s_next;
	} else if (bus->b_subs == s) {
		bus->b_subs = s->s_next;
	}
	if (s->s_next != NULL) {
		s->s_next->s_prev = s->s_prev;
	}
	s->s_next = s->s_prev = NULL;
	bus_settle(bus, s->s_pending);
	s->s_pending = 0;
	mbi_seqtab_fini(&s->s_probe);
	s->s_probe_gen = 0;
	pthread_mutex_unlock(&bus->b_mtx);
}

void
mbi_bus_done(mb_bus *bus, struct mbi_sub *s, const struct mbi_done *d)
{
	uint64_t n = d->settled;

	pthread_mutex_lock(&bus->b_mtx);
	/* Only a forged envelope (mbi_bus_send_raw) can settle more than was
	 * counted; never let that wrap the counters. */
	if (n > s->s_pending) {
		n = s->s_pending;
	}
	s->s_pending -= n;
	bus_settle(bus, n);
	bus->b_stats.handled += d->handled;
	bus->b_stats.gaps += d->gaps;
	bus->b_stats.missed += d->missed;
	bus->b_stats.restarts += d->restarts;
	pthread_mutex_unlock(&bus->b_mtx);
}

/* ---- publishers --------------------------------------------------------- */

int
mb_pub_alloc(mb_bus *bus, mb_pub **pubp)
{
	mb_pub *pub;

	if (bus == NULL || pubp == NULL) {
		return (MB_EINVAL);
	}
	if ((pub = calloc(1, sizeof(*pub))) == NULL) {
		return (MB_ENOMEM);
	}
	if (nng_aio_alloc(&pub->p_aio, NULL, NULL) != 0) {
		free(pub);
		return (MB_ENOMEM);
	}
	/* pub0 finishes a send at once; a zero timeout documents that a
	 * publisher must never wait. */
	nng_aio_set_timeout(pub->p_aio, NNG_DURATION_ZERO);
	pthread_mutex_init(&pub->p_mtx, NULL);
	pub->p_bus = bus;

	pthread_mutex_lock(&bus->b_mtx);
	pub->p_id = bus->b_next_pub++;
	pub->p_next = bus->b_pubs;
	if (bus->b_pubs != NULL) {
		bus->b_pubs->p_prev = pub;
	}
	bus->b_pubs = pub;
	pthread_mutex_unlock(&bus->b_mtx);
	*pubp = pub;
	return (MB_OK);
}

void
mb_pub_free(mb_pub *pub)
{
	mb_bus *bus;

	if (pub == NULL) {
		return;
	}
	bus = pub->p_bus;
	pthread_mutex_lock(&bus->b_mtx);
	if (pub->p_prev != NULL) {
		pub->p_prev->p_next = pub->p_next;
	} else {
		bus->b_pubs = pub->p_next;
	}
	if (pub->p_next != NULL) {
		pub->p_next->p_prev = pub->p_prev;
	}
	/* Where its streams ended stays known to later snapshots. If that
	 * runs out of memory, a straggler of this publisher that reaches a
	 * later actor only looks like a hole to it. */
	for (size_t i = 0; i < pub->p_seq.t_cap; i++) {
		struct mbi_seqent *e = &pub->p_seq.t_ents[i];
		uint64_t *slot;

		if (e->e_used && e->e_seq > 0 &&
		    (slot = mbi_seqtab_get(&bus->b_retired, pub->p_id,
		                           e->e_topic, true)) != NULL) {
			*slot = e->e_seq;
		}
	}
	mbi_seqtab_fini(&pub->p_seq);
	pthread_mutex_unlock(&bus->b_mtx);

	nng_aio_free(pub->p_aio);
	pthread_mutex_destroy(&pub->p_mtx);
	free(pub);
}

uint32_t
mb_pub_id(const mb_pub *pub)
{
	return (pub->p_id);
}

int
mb_publish(mb_pub *pub, const char *topic, mb_envelope *env)
{
	mb_bus *bus;
	nng_msg *msg;
	uint8_t *body;
	char *saved;
	uint64_t *slot;
	uint64_t seq;
	uint64_t n;
	size_t tlen;
	size_t plen;
	int rv;

	if (pub == NULL || topic == NULL || env == NULL) {
		return (MB_EINVAL);
	}
	tlen = strnlen(topic, MBI_TOPIC_MAX);
	if (tlen == 0 || tlen >= MBI_TOPIC_MAX) {
		return (MB_EINVAL);
	}
	bus = pub->p_bus;

	/* Encode under p_mtx only: nobody else can take this publisher's
	 * next seq meanwhile, so it is safe to pack it before committing. */
	pthread_mutex_lock(&pub->p_mtx);
	slot = mbi_seqtab_get(&pub->p_seq, 0, topic, false);
	seq = (slot != NULL ? *slot : 0) + 1;

	saved = env->topic;
	env->topic = (char *)topic;
	env->publisher = pub->p_id;
	env->seq = seq;
	env->ts_ns = mbi_mono_ns();
	env->at_ms = mb_bus_now_ms(bus);
	plen = mobbus__envelope__get_packed_size(env);
	if (nng_msg_alloc(&msg, tlen + 1 + plen) != 0) {
		env->topic = saved;
		pthread_mutex_unlock(&pub->p_mtx);
		return (MB_ENOMEM);
	}
	body = nng_msg_body(msg);
	memcpy(body, topic, tlen);
	body[tlen] = '\0';
	mobbus__envelope__pack(env, body + tlen + 1);
	env->topic = saved;

	pthread_mutex_lock(&bus->b_mtx);
	if ((slot = mbi_seqtab_get(&pub->p_seq, 0, topic, true)) == NULL) {
		pthread_mutex_unlock(&bus->b_mtx);
		pthread_mutex_unlock(&pub->p_mtx);
		nng_msg_free(msg);
		return (MB_ENOMEM);
	}
	/* Count before sending: a receiver may settle before we return. */
	n = bus_count(bus, topic, tlen, true, 1);
	bus->b_inflight += n;
	bus->b_stats.published++;
	*slot = seq;

	nng_aio_set_msg(pub->p_aio, msg);
	nng_send_aio(bus->b_sock, pub->p_aio);
	nng_aio_wait(pub->p_aio);
	if ((rv = nng_aio_result(pub->p_aio)) != 0) {
		/* Nobody has seen this seq: take everything back. */
		nng_msg_free(nng_aio_get_msg(pub->p_aio));
		nng_aio_set_msg(pub->p_aio, NULL);
		*slot = seq - 1;
		bus->b_stats.published--;
		(void)bus_count(bus, topic, tlen, false, 1);
		bus_settle(bus, n);
	}
	pthread_mutex_unlock(&bus->b_mtx);
	pthread_mutex_unlock(&pub->p_mtx);
	return (bus_nng_err(rv));
}

/*
 * mb_publish_batch - n envelopes on one topic as one nng message: topic, NUL,
 * a 0 byte (no protobuf field is numbered 0, so a single envelope never
 * starts that way), then each envelope as a 4-byte little-endian length and
 * its packed bytes. They take consecutive sequence numbers and arrive as n
 * separate deliveries; the per-message cost of nng is paid once.
 */
int
mb_publish_batch(mb_pub *pub, const char *topic, mb_envelope *const *envs,
    size_t n)
{
	mb_bus *bus;
	nng_msg *msg;
	uint8_t *body;
	uint64_t *slot;
	uint64_t seq, first, count;
	size_t tlen, total, off;
	int64_t at;
	uint64_t ts;
	int rv;

	if (pub == NULL || topic == NULL || envs == NULL || n == 0) {
		return (MB_EINVAL);
	}
	if (n == 1) {
		return (mb_publish(pub, topic, envs[0]));
	}
	tlen = strnlen(topic, MBI_TOPIC_MAX);
	if (tlen == 0 || tlen >= MBI_TOPIC_MAX) {
		return (MB_EINVAL);
	}
	bus = pub->p_bus;
	pthread_mutex_lock(&pub->p_mtx);
	slot = mbi_seqtab_get(&pub->p_seq, 0, topic, false);
	first = (slot != NULL ? *slot : 0) + 1;
	ts = mbi_mono_ns();
	at = mb_bus_now_ms(bus);
	total = tlen + 2;
	for (size_t i = 0; i < n; i++) {
		char *saved = envs[i]->topic;
		envs[i]->topic = (char *)topic;
		envs[i]->publisher = pub->p_id;
		envs[i]->seq = first + i;
		envs[i]->ts_ns = ts;
		envs[i]->at_ms = at;
		total += 4 + mobbus__envelope__get_packed_size(envs[i]);
		envs[i]->topic = saved;
	}
	if (nng_msg_alloc(&msg, total) != 0) {
		pthread_mutex_unlock(&pub->p_mtx);
		return (MB_ENOMEM);
	}
	body = nng_msg_body(msg);
	memcpy(body, topic, tlen);
	body[tlen] = '\0';
	body[tlen + 1] = 0;
	off = tlen + 2;
	for (size_t i = 0; i < n; i++) {
		char *saved = envs[i]->topic;
		size_t len;
		envs[i]->topic = (char *)topic;
		len = mobbus__envelope__pack(envs[i], body + off + 4);
		envs[i]->topic = saved;
		for (int b = 0; b < 4; b++) {
			body[off + (size_t)b] = (uint8_t)(len >> (8 * b));
		}
		off += 4 + len;
	}

	pthread_mutex_lock(&bus->b_mtx);
	if ((slot = mbi_seqtab_get(&pub->p_seq, 0, topic, true)) == NULL) {
		pthread_mutex_unlock(&bus->b_mtx);
		pthread_mutex_unlock(&pub->p_mtx);
		nng_msg_free(msg);
		return (MB_ENOMEM);
	}
	count = bus_count(bus, topic, tlen, true, n) * n;
	bus->b_inflight += count;
	bus->b_stats.published += n;
	seq = first + n - 1;
	*slot = seq;

	nng_aio_set_msg(pub->p_aio, msg);
	nng_send_aio(bus->b_sock, pub->p_aio);
	nng_aio_wait(pub->p_aio);
	if ((rv = nng_aio_result(pub->p_aio)) != 0) {
		nng_msg_free(nng_aio_get_msg(pub->p_aio));
		nng_aio_set_msg(pub->p_aio, NULL);
		*slot = first - 1;
		bus->b_stats.published -= n;
		(void)bus_count(bus, topic, tlen, false, n);
		bus_settle(bus, count);
	}
	pthread_mutex_unlock(&bus->b_mtx);
	pthread_mutex_unlock(&pub->p_mtx);
	return (bus_nng_err(rv));
}

int
mbi_bus_send_raw(mb_bus *bus, const void *buf, size_t len)
{
	uint64_t n;
	int rv;

	if (bus == NULL || (buf == NULL && len > 0)) {
		return (MB_EINVAL);
	}
	pthread_mutex_lock(&bus->b_mtx);
	n = bus_count(bus, buf, len, true, 1);
	bus->b_inflight += n;
	if ((rv = bus_send_locked(bus, buf, len)) != MB_OK) {
		(void)bus_count(bus, buf, len, false, 1);
		bus_settle(bus, n);
	}
	pthread_mutex_unlock(&bus->b_mtx);
	return (rv);
}

/* utf8_trim - cut a multi-byte sequence that truncation left unfinished at
 * the end of s, so that the message stays valid UTF-8. */
static void
utf8_trim(char *s, size_t len)
{
	size_t i = len;

	while (i > 0 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) {
		i--;
	}
	if (i > 0 && ((unsigned char)s[i - 1] & 0xc0) == 0xc0) {
		unsigned char lead = (unsigned char)s[i - 1];
		size_t need = (lead & 0xe0) == 0xc0   ? 2
		              : (lead & 0xf0) == 0xe0 ? 3
		                                      : 4;

		if (len - (i - 1) < need) {
			s[i - 1] = '\0';
		}
	}
}

int
mb_publish_error(mb_pub *pub, int err, const char *fmt, ...)
{
	Mobbus__BusError be = MOBBUS__BUS_ERROR__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	char msg[256];
	va_list ap;
	int n;

	if (pub == NULL || fmt == NULL) {
		return (MB_EINVAL);
	}
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0) {
		msg[0] = '\0';
	} else if ((size_t)n >= sizeof(msg)) {
		utf8_trim(msg, sizeof(msg) - 1);
	}
	be.code = (char *)mb_err_name(err);
	be.message = msg;
	env.body_case = MOBBUS__ENVELOPE__BODY_ERROR;
	env.error = &be;
	return (mb_publish(pub, "bus/error", &env));
}
