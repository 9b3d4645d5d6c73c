/* SPDX-License-Identifier: MIT */
/*
 * actor.c - the actor runtime: a SUB socket mailbox whose receive callback
 * decodes, checks sequence numbers, runs the handler and supervises it.
 *
 * DESIGN
 * There is no actor thread. The handler runs in the completion callback of
 * nng_recv_aio on the mailbox, which re-arms the receive when the handler
 * returns (callback -> unpack -> handle -> re-arm). nng sub0 even completes
 * that receive synchronously from its pipe callback when the aio is waiting,
 * so a message costs one hop from the publisher, not two. One receive is
 * outstanding at a time, so one actor never runs two callbacks at once.
 *
 * Each envelope is settled exactly once with the bus (see bus.h): handed to
 * the handler, discarded after the restart limit, rejected as malformed, or
 * counted lost when a later sequence number or a drain probe shows a hole. A
 * handler that fails is terminated and initialised again; too many failures
 * within the window stop it for good, but the mailbox keeps draining so that
 * mb_bus_drain still returns.
 *
 * An actor with inline_ok can also run on a publisher's thread when it is
 * idle (bus.h, INLINE RUNS): the handler sees no difference, and its mailbox
 * drops the copy it gets of that envelope by sequence number.
 *
 * THREAD SAFETY
 * After mb_actor_start returns, an actor's fields are used only by whoever
 * has it running: its callback chain (one callback at a time) or a
 * publisher that claimed it, never both, as s_running under s_run_mtx
 * decides (for an actor without inline_ok only the chain exists); then by
 * mb_actor_stop, once nng_aio_stop has waited for the chain and no claim is
 * left. It takes the bus's locks only through mb_publish and the mbi_bus_
 * calls, and holds none while user callbacks run.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include "bus.h"

#define ACTOR_DEFAULT_RESTARTS 5
#define ACTOR_DEFAULT_WINDOW_MS 10000
#define ACTOR_MAX_RESTARTS 65535

struct mb_actor {
	struct mbi_sub a_sub; /* registration on the bus */
	bool a_registered;
	mb_bus *a_bus;
	mb_pub *a_pub;
	struct mb_actor_ops a_ops; /* a copy, defaults filled in */
	const char *a_name;
	void *a_arg;
	void *a_state;
	nng_socket a_sock;
	bool a_sock_open;
	nng_aio *a_aio;
	struct mbi_seqtab a_last; /* last seq per (publisher, topic) */
	bool a_live;              /* init succeeded: terminate is owed */
	bool a_dead;              /* restart limit reached */
	const uint8_t *a_wire;    /* the envelope being handled, encoded */
	size_t a_wirelen;
	uint64_t *a_fails;        /* ring: last max_restarts+1 failures, ms */
	unsigned a_nfails;
	unsigned a_fail_next;
};

static uint64_t
actor_now_ms(void)
{
	return (mbi_mono_ns() / 1000000u);
}

/* actor_lost - k envelopes of (pub, topic) up to seq are gone: report them
 * on "bus/gap" and settle them with d. */
static void
actor_lost(mb_actor *a, uint32_t pub, const char *topic, uint64_t seq,
           uint64_t k, struct mbi_done *d)
{
	Mobbus__BusError be = MOBBUS__BUS_ERROR__INIT;
	mb_envelope gap = MOBBUS__ENVELOPE__INIT;
	char msg[192];

	snprintf(msg, sizeof(msg),
	         "actor %.40s: %" PRIu64 " envelopes lost on %s from publisher "
	         "%" PRIu32 ", seq %" PRIu64 "..%" PRIu64,
	         a->a_name, k, topic, pub, seq - k + 1, seq);
	be.code = (char *)mb_err_name(MB_EGAP);
	be.message = msg;
	be.publisher = pub;
	be.missed = k;
	gap.body_case = MOBBUS__ENVELOPE__BODY_ERROR;
	gap.error = &be;
	(void)mb_publish(a->a_pub, "bus/gap", &gap);
	d->gaps++;
	d->missed += k;
	d->settled += k;
}

/*
 * actor_track - check env's sequence number against the last one seen from
 * its publisher on its topic. Returns false for an envelope that was
 * published before this actor registered (it was not counted for us, so it
 * is neither handled nor settled). A hole is reported and added to d.
 */
static bool
actor_track(mb_actor *a, const mb_envelope *env, struct mbi_done *d)
{
	uint64_t *last;

	/* A stream missing from the registration snapshot began after it. */
	last = mbi_seqtab_get(&a->a_last, env->publisher, env->topic, true);
	if (last == NULL) {
		return (true); /* no memory to track it: just deliver */
	}
	if (env->seq <= *last) {
		return (false);
	}
	if (env->seq > *last + 1) {
		actor_lost(a, env->publisher, env->topic, env->seq - 1,
		           env->seq - *last - 1, d);
	}
	*last = env->seq;
	return (true);
}

/* actor_probe - everything sent before this probe has arrived or is lost:
 * settle what the bus's snapshot has and we never saw. */
static void
actor_probe(mb_actor *a, const uint8_t *buf)
{
	struct mbi_seqtab snap = {0};
	struct mbi_done d = {0};
	uint64_t gen = 0;

	for (int i = 0; i < 8; i++) {
		gen |= (uint64_t)buf[1 + i] << (8 * i);
	}
	if (!mbi_bus_probe_take(a->a_bus, &a->a_sub, gen, &snap)) {
		return; /* not for us, or a newer probe follows */
	}
	for (size_t i = 0; i < snap.t_cap; i++) {
		struct mbi_seqent *e = &snap.t_ents[i];
		uint64_t *last;

		if (!e->e_used) {
			continue;
		}
		last = mbi_seqtab_get(&a->a_last, e->e_pub, e->e_topic, true);
		if (last != NULL && *last < e->e_seq) {
			actor_lost(a, e->e_pub, e->e_topic, e->e_seq,
			           e->e_seq - *last, &d);
			*last = e->e_seq;
		}
	}
	mbi_seqtab_fini(&snap);
	if (d.settled > 0) {
		mbi_bus_done(a->a_bus, &a->a_sub, &d);
	}
}

/* actor_note_failure - remember a failure now; true if it is one more than
 * max_restarts within restart_window_ms. */
static bool
actor_note_failure(mb_actor *a)
{
	unsigned cap = a->a_ops.max_restarts + 1;
	uint64_t now = actor_now_ms();

	a->a_fails[a->a_fail_next] = now;
	a->a_fail_next = (a->a_fail_next + 1) % cap;
	if (a->a_nfails < cap) {
		a->a_nfails++;
	}
	/* When the ring is full, a_fail_next is the oldest of the last cap. */
	return (a->a_nfails == cap &&
	        now - a->a_fails[a->a_fail_next] <= a->a_ops.restart_window_ms);
}

static void
actor_terminate(mb_actor *a)
{
	if (a->a_live && a->a_ops.terminate != NULL) {
		a->a_ops.terminate(a, a->a_state);
	}
	a->a_live = false;
	a->a_state = NULL;
}

static int
actor_init(mb_actor *a)
{
	int rv = MB_OK;

	if (a->a_ops.init != NULL) {
		rv = a->a_ops.init(a, a->a_arg, &a->a_state);
	} else {
		a->a_state = a->a_arg;
	}
	a->a_live = (rv == MB_OK);
	return (rv);
}

/* actor_supervise - the handler returned rv: restart it, or give up. */
static void
actor_supervise(mb_actor *a, int rv, const mb_envelope *env, struct mbi_done *d)
{
	(void)mb_publish_error(
	    a->a_pub, MB_EHANDLER,
	    "actor %.40s: handler returned %d on %s seq %" PRIu64, a->a_name,
	    rv, env->topic, env->seq);
	for (;;) {
		actor_terminate(a);
		if (actor_note_failure(a)) {
			a->a_dead = true;
			(void)mb_publish_error(
			    a->a_pub, MB_ERESTARTS,
			    "actor %.40s: more than %u failures within %u ms; "
			    "stopped",
			    a->a_name, a->a_ops.max_restarts,
			    a->a_ops.restart_window_ms);
			return;
		}
		d->restarts++;
		if ((rv = actor_init(a)) == MB_OK) {
			return;
		}
		/* A failed re-init counts as one more failure. */
		(void)mb_publish_error(
		    a->a_pub, MB_EHANDLER,
		    "actor %.40s: init returned %d on restart", a->a_name, rv);
	}
}

/* actor_handle - track and handle one decoded envelope. */
static void
actor_handle(mb_actor *a, const mb_envelope *env, struct mbi_done *d)
{
	int rv;

	if (!actor_track(a, env, d)) {
		return;
	}
	d->settled++;
	if (!a->a_dead) {
		d->handled++;
		if ((rv = a->a_ops.handle(a, a->a_state, env)) != 0) {
			actor_supervise(a, rv, env, d);
		}
	}
}

/* actor_deliver_one - unpack, track and handle one envelope of topic. */
static void
actor_deliver_one(mb_actor *a, const char *topic, const uint8_t *p,
    size_t len, struct mbi_done *d)
{
	mb_envelope *env;

	env = mobbus__envelope__unpack(NULL, len, p);
	if (env == NULL || env->seq == 0 || env->publisher == 0 ||
	    strcmp(env->topic, topic) != 0) {
		d->settled++;
		(void)mb_publish_error(a->a_pub, MB_EPROTO,
		                       "actor %.40s: malformed envelope (%zu bytes)",
		                       a->a_name, len);
	} else {
		a->a_wire = p;
		a->a_wirelen = len;
		actor_handle(a, env, d);
		a->a_wire = NULL;
	}
	if (env != NULL) {
		mobbus__envelope__free_unpacked(env, NULL);
	}
}

/*
 * actor_deliver - one nng message: a probe, one envelope, or a batch
 * (topic, NUL, a 0 byte, then 4-byte little-endian lengths and envelopes;
 * see mb_publish_batch). A batch cut short settles what it holds and
 * reports the rest as malformed.
 */
static void
actor_deliver(mb_actor *a, const uint8_t *buf, size_t len)
{
	struct mbi_done d = {0};
	const uint8_t *nul;
	size_t tlen, off;

	if (len == MBI_PROBE_LEN && buf[0] == '\0') {
		actor_probe(a, buf);
		return;
	}
	nul = memchr(buf, '\0', len < MBI_TOPIC_MAX ? len : MBI_TOPIC_MAX);
	if (nul == NULL || nul == buf) {
		d.settled++;
		(void)mb_publish_error(a->a_pub, MB_EPROTO,
		                       "actor %.40s: malformed envelope (%zu bytes)",
		                       a->a_name, len);
		goto out;
	}
	tlen = (size_t)(nul - buf);
	if (len > tlen + 1 && buf[tlen + 1] == 0) {
		for (off = tlen + 2; off < len;) {
			size_t n = 0;
			if (len - off < 4) {
				break;
			}
			for (int b = 0; b < 4; b++) {
				n |= (size_t)buf[off + (size_t)b] << (8 * b);
			}
			off += 4;
			if (n > len - off) {
				break;
			}
			actor_deliver_one(a, (const char *)buf, buf + off, n, &d);
			off += n;
		}
		if (off != len) {
			d.settled++;
			(void)mb_publish_error(a->a_pub, MB_EPROTO,
			    "actor %.40s: batch cut short at byte %zu of %zu",
			    a->a_name, off, len);
		}
		goto out;
	}
	actor_deliver_one(a, (const char *)buf, nul + 1, len - tlen - 1, &d);
out:
	/* Settle last: whatever the handler published is counted by now, so
	 * mb_bus_drain also waits for those follow-ups. */
	if (d.settled > 0 || d.restarts > 0) {
		mbi_bus_done(a->a_bus, &a->a_sub, &d);
	}
}

/* actor_enter - wait until no publisher runs the actor, and run it. */
static void
actor_enter(mb_actor *a)
{
	struct mbi_sub *s = &a->a_sub;
	bool idle = false;

	if (atomic_compare_exchange_strong(&s->s_running, &idle, true)) {
		return;
	}
	pthread_mutex_lock(&s->s_run_mtx);
	atomic_fetch_add(&s->s_waiters, 1);
	for (;;) {
		idle = false;
		if (atomic_compare_exchange_strong(&s->s_running, &idle,
		                                   true)) {
			break;
		}
		pthread_cond_wait(&s->s_run_cv, &s->s_run_mtx);
	}
	atomic_fetch_sub(&s->s_waiters, 1);
	pthread_mutex_unlock(&s->s_run_mtx);
}

/* actor_leave - stop running the actor; wake whoever waits for it. Taking
 * s_run_mtx to broadcast means a waiter is either asleep on the condition
 * or has yet to try the compare-and-swap, which then succeeds. */
static void
actor_leave(mb_actor *a)
{
	struct mbi_sub *s = &a->a_sub;

	atomic_store(&s->s_running, false);
	if (atomic_load(&s->s_waiters) > 0) {
		pthread_mutex_lock(&s->s_run_mtx);
		pthread_cond_broadcast(&s->s_run_cv);
		pthread_mutex_unlock(&s->s_run_mtx);
	}
}

bool
mb_inline_always(mb_actor *a, void *state, const mb_envelope *env)
{
	(void)a;
	(void)state;
	(void)env;
	return (true);
}

bool
mbi_sub_inline_ok(struct mbi_sub *s, const mb_envelope *env)
{
	mb_actor *a = s->s_actor;

	/* A stopped handler takes nothing: settling is all there is. */
	return (a->a_dead || a->a_ops.inline_ok(a, a->a_state, env));
}

void
mbi_sub_run(struct mbi_sub *s, const mb_envelope *env, const uint8_t *wire,
    size_t len, struct mbi_done *d)
{
	mb_actor *a = s->s_actor;

	a->a_wire = wire;
	a->a_wirelen = len;
	actor_handle(a, env, d);
	a->a_wire = NULL;
}

const uint8_t *
mbi_actor_wire(const mb_actor *a, size_t *len)
{
	*len = a->a_wirelen;
	return (a->a_wire);
}

void
mbi_sub_unclaim(struct mbi_sub *s)
{
	actor_leave(s->s_actor);
}

static void
actor_recv_cb(void *arg)
{
	mb_actor *a = arg;
	nng_msg *msg;
	int rv;

	rv = nng_aio_result(a->a_aio);
	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
		return; /* stopping */
	}
	if (rv == 0) {
		msg = nng_aio_get_msg(a->a_aio);
		nng_aio_set_msg(a->a_aio, NULL);
		if (a->a_sub.s_inline) {
			actor_enter(a);
		}
		actor_deliver(a, nng_msg_body(msg), nng_msg_len(msg));
		if (a->a_sub.s_inline) {
			actor_leave(a);
		}
		nng_msg_free(msg);
	}
	/* After nng_aio_stop this fails at once without calling back. */
	nng_recv_aio(a->a_sock, a->a_aio);
}

/* actor_free - stop and free a started or half-built actor. */
static void
actor_free(mb_actor *a)
{
	if (a->a_aio != NULL) {
		nng_aio_stop(a->a_aio);
	}
	/* Envelopes counted for us from here on are forgotten in one go;
	 * once unregistered no publisher claims us, and one that did is
	 * waited for. */
	if (a->a_registered) {
		mbi_bus_detach(a->a_bus, &a->a_sub);
		actor_enter(a);
	}
	if (a->a_sock_open) {
		nng_close(a->a_sock);
	}
	actor_terminate(a);
	/* Only a started actor owns its arg: a failed start leaves it with
	 * the caller. */
	if (a->a_registered && a->a_ops.release != NULL) {
		a->a_ops.release(a->a_arg);
	}
	mb_pub_free(a->a_pub);
	nng_aio_free(a->a_aio);
	mbi_seqtab_fini(&a->a_last);
	pthread_cond_destroy(&a->a_sub.s_run_cv);
	pthread_mutex_destroy(&a->a_sub.s_run_mtx);
	free(a->a_fails);
	free(a);
}

static int
actor_mailbox(mb_actor *a)
{
	const char *const *t;
	int rv;

	if ((rv = nng_sub0_open(&a->a_sock)) != 0) {
		return (rv);
	}
	a->a_sock_open = true;
	if ((rv = nng_socket_set_int(a->a_sock, NNG_OPT_RECVBUF,
	                             (int)mbi_bus_recvbuf(a->a_bus))) != 0) {
		return (rv);
	}
	/* Probes: no topic starts with NUL, so nothing else matches this. */
	if ((rv = nng_socket_set(a->a_sock, NNG_OPT_SUB_SUBSCRIBE, "", 1)) !=
	    0) {
		return (rv);
	}
	for (t = a->a_ops.topics; t != NULL && *t != NULL; t++) {
		rv = nng_socket_set(a->a_sock, NNG_OPT_SUB_SUBSCRIBE, *t,
		                    strlen(*t));
		if (rv != 0) {
			return (rv);
		}
	}
	return (0);
}

int
mb_actor_start(mb_bus *bus, const struct mb_actor_ops *ops, void *arg,
               mb_actor **ap)
{
	mb_actor *a;
	int rv;

	if (bus == NULL || ops == NULL || ap == NULL || ops->size == 0) {
		return (MB_EINVAL);
	}
	*ap = NULL;
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		return (MB_ENOMEM);
	}
	memcpy(&a->a_ops, ops,
	       ops->size < sizeof(a->a_ops) ? ops->size : sizeof(a->a_ops));
	if (a->a_ops.handle == NULL ||
	    a->a_ops.max_restarts > ACTOR_MAX_RESTARTS) {
		free(a);
		return (MB_EINVAL);
	}
	if (a->a_ops.max_restarts == 0) {
		a->a_ops.max_restarts = ACTOR_DEFAULT_RESTARTS;
	}
	if (a->a_ops.restart_window_ms == 0) {
		a->a_ops.restart_window_ms = ACTOR_DEFAULT_WINDOW_MS;
	}
	a->a_name = a->a_ops.name != NULL ? a->a_ops.name : "actor";
	a->a_bus = bus;
	a->a_arg = arg;
	a->a_sub.s_actor = a;
	a->a_sub.s_topics = a->a_ops.topics;
	a->a_sub.s_last = &a->a_last;
	a->a_sub.s_inline = a->a_ops.inline_ok != NULL;
	atomic_init(&a->a_sub.s_running, false);
	atomic_init(&a->a_sub.s_waiters, 0);
	pthread_mutex_init(&a->a_sub.s_run_mtx, NULL);
	pthread_cond_init(&a->a_sub.s_run_cv, NULL);

	a->a_fails = calloc(a->a_ops.max_restarts + 1, sizeof(*a->a_fails));
	if (a->a_fails == NULL) {
		rv = MB_ENOMEM;
		goto fail;
	}
	if ((rv = mb_pub_alloc(bus, &a->a_pub)) != MB_OK) {
		goto fail;
	}
	if (nng_aio_alloc(&a->a_aio, actor_recv_cb, a) != 0) {
		rv = MB_ENOMEM;
		goto fail;
	}
	if ((rv = actor_mailbox(a)) != 0) {
		rv = rv == NNG_ENOMEM ? MB_ENOMEM : MB_ETRANSPORT;
		goto fail;
	}
	if ((rv = actor_init(a)) != MB_OK) {
		goto fail;
	}
	if ((rv = mbi_bus_connect(bus, a->a_sock, &a->a_sub)) != MB_OK) {
		goto fail;
	}
	a->a_registered = true;
	nng_recv_aio(a->a_sock, a->a_aio);
	*ap = a;
	return (MB_OK);

fail:
	actor_free(a);
	return (rv);
}

void
mb_actor_stop(mb_actor *a)
{
	if (a != NULL) {
		actor_free(a);
	}
}

mb_pub *
mb_actor_pub(mb_actor *a)
{
	return (a->a_pub);
}

mb_bus *
mb_actor_bus(mb_actor *a)
{
	return (a->a_bus);
}

const char *
mb_actor_name(const mb_actor *a)
{
	return (a->a_name);
}
