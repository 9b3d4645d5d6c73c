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

static void bus_probe(mb_bus *bus);

/* ---- helpers ------------------------------------------------------------ */

int
mbi_nng_err(int rv)
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
uint64_t
mbi_bus_count(mb_bus *bus, const void *buf, size_t len, bool add, uint64_t k)
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

/* bus_claim - mark s running for an inline run if it is free. */
static bool
bus_claim(struct mbi_sub *s)
{
	bool idle = false;

	return (atomic_compare_exchange_strong(&s->s_running, &idle, true));
}

uint64_t
mbi_bus_count_claim(mb_bus *bus, const void *buf, size_t len,
    struct mbi_sub **claims, size_t *nclaims)
{
	uint64_t n = 0;

	*nclaims = 0;
	for (struct mbi_sub *s = bus->b_subs; s != NULL; s = s->s_next) {
		if (!mbi_bus_match(s->s_topics, buf, len)) {
			continue;
		}
		/* Owing nothing: every envelope counted for s before this
		 * one is settled, so this one is next in every order. */
		if (s->s_inline && s->s_pending == 0 &&
		    *nclaims < MBI_INLINE_MAX && bus_claim(s)) {
			claims[(*nclaims)++] = s;
		}
		s->s_pending++;
		n++;
	}
	return (n);
}

void
mbi_bus_settle(mb_bus *bus, uint64_t n)
{
	bus->b_inflight -= n;
	if (bus->b_inflight == 0 && n > 0) {
		pthread_cond_broadcast(&bus->b_drain_cv);
	}
}

/* bus_send_locked - send a copy of buf, unstamped. b_mtx held. */
int
mbi_bus_send_locked(mb_bus *bus, const void *buf, size_t len)
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
	return (mbi_nng_err(rv));
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
	bus->b_inline = o.no_inline == 0;
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
	/* No new ticks while the actors stop. */
	mbi_timer_stop(bus->b_timer);
	bus->b_timer = NULL;

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
	st->inflight = bus->b_inflight;
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
	(void)mbi_bus_send_locked(bus, buf, sizeof(buf));
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
	mbi_bus_settle(bus, s->s_pending);
	s->s_pending = 0;
	mbi_seqtab_fini(&s->s_probe);
	s->s_probe_gen = 0;
	pthread_mutex_unlock(&bus->b_mtx);
}

/* bus_done - mbi_bus_done with b_mtx held. */
static void
bus_done(mb_bus *bus, struct mbi_sub *s, const struct mbi_done *d)
{
	uint64_t n = d->settled;

	/* Only a forged envelope (mbi_bus_send_raw) can settle more than was
	 * counted; never let that wrap the counters. */
	if (n > s->s_pending) {
		n = s->s_pending;
	}
	s->s_pending -= n;
	mbi_bus_settle(bus, n);
	bus->b_stats.handled += d->handled;
	bus->b_stats.gaps += d->gaps;
	bus->b_stats.missed += d->missed;
	bus->b_stats.restarts += d->restarts;
}

void
mbi_bus_done(mb_bus *bus, struct mbi_sub *s, const struct mbi_done *d)
{
	pthread_mutex_lock(&bus->b_mtx);
	bus_done(bus, s, d);
	pthread_mutex_unlock(&bus->b_mtx);
}

void
mbi_bus_done_all(mb_bus *bus, struct mbi_sub *const *s,
    const struct mbi_done *d, size_t n)
{
	pthread_mutex_lock(&bus->b_mtx);
	for (size_t i = 0; i < n; i++) {
		bus_done(bus, s[i], &d[i]);
	}
	pthread_mutex_unlock(&bus->b_mtx);
}
