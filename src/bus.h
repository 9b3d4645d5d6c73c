/* SPDX-License-Identifier: MIT */
/*
 * bus.h - internals the bus shares with the actor runtime: sequence tables,
 * mailbox registration and drain accounting.
 *
 * DRAIN ACCOUNTING
 * Every running actor is registered on its bus as a struct mbi_sub. Under the
 * bus lock, mb_publish counts the registered subs whose prefixes match the
 * topic (at most once each), adds one to each one's s_pending and the total
 * to the bus's inflight counter, commits the sequence number and sends. An
 * actor settles each envelope once: handled, discarded, malformed, or counted
 * lost inside a sequence gap (mbi_bus_done). A registration snapshots the
 * last sequence number of every stream it matches, from live and from freed
 * ("retired") publishers, under that same lock: exactly the envelopes with a
 * higher seq were counted for the new actor, and anything older that still
 * arrives is dropped unsettled and unhandled.
 *
 * PROBES
 * A pipe's queue is shared by every stream, and pub0 drops its oldest entry,
 * so the tail of one stream can vanish with no later envelope on that stream
 * to show the hole. When mb_bus_drain sees no progress it sends a probe: a
 * message "\0" + 8-byte generation that every mailbox subscribes to (a topic
 * never starts with NUL), after snapshotting, for each actor still owing
 * envelopes, the last seq of each of its streams. Pipes are FIFO, so when an
 * actor reads the probe everything sent before it has arrived or is gone, and
 * whatever of the snapshot it has not seen is lost: it reports and settles it.
 *
 * INLINE RUNS
 * An actor whose ops have inline_ok can be claimed by a publisher: under the
 * bus lock, when the actor owes nothing (s_pending was 0) and no handler of
 * it is running, mb_publish marks it running (s_running), counts the
 * envelope for it as usual, and after dropping its locks runs the handler
 * itself and settles. The actor's mailbox callback marks it running too, and
 * waits while a publisher has it, so one handler runs at a time and in
 * order: everything counted before the claim was settled, and whatever is
 * counted while it is claimed waits in the mailbox. When every matching
 * actor was claimed nothing is sent; otherwise the message goes out as
 * always and a claimed actor drops its own copy by sequence number.
 */
#ifndef MOBBUS_BUS_H
#define MOBBUS_BUS_H

#include <stdbool.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include <nng/nng.h>

#include "mobbus.h"

/* Topics are shorter than this, including the terminating NUL. */
#define MBI_TOPIC_MAX 64

/* mbi_seqtab - last sequence number per (publisher id, topic); an open
 * addressing hash table that only grows. Not thread-safe. */
struct mbi_seqent {
	uint64_t e_seq;
	uint32_t e_pub;
	bool e_used;
	bool e_unheard; /* a publisher's: its last send matched nobody */
	bool e_inline;  /* a publisher's: its last send ran inline only */
	char e_topic[MBI_TOPIC_MAX];
};

struct mbi_seqtab {
	struct mbi_seqent *t_ents;
	size_t t_cap; /* 0 or a power of two */
	size_t t_len;
};

/*
 * mbi_seqtab_get - the sequence slot of (pub, topic), or NULL if there is
 * none and create is false, or if creating it ran out of memory. A created
 * slot holds 0. The pointer is valid until the next create.
 */
uint64_t *mbi_seqtab_get(struct mbi_seqtab *t, uint32_t pub, const char *topic,
                         bool create);
/* mbi_seqtab_entry - the same, as the whole entry. */
struct mbi_seqent *mbi_seqtab_entry(struct mbi_seqtab *t, uint32_t pub,
                                    const char *topic, bool create);
void mbi_seqtab_fini(struct mbi_seqtab *t);

/* mbi_sub - an actor's registration on its bus; embedded in the actor. */
struct mbi_sub {
	struct mbi_sub *s_next; /* on the bus list, under the bus lock */
	struct mbi_sub *s_prev;
	const char *const *s_topics; /* the actor's prefixes */
	mb_actor *s_actor;
	uint64_t s_pending;        /* counted, not yet settled; bus lock */
	struct mbi_seqtab *s_last; /* gets the registration snapshot */
	/* The snapshot for probe s_probe_gen (0: none); bus lock. */
	struct mbi_seqtab s_probe;
	uint64_t s_probe_gen;
	/* Inline runs (see above). s_running is taken by compare-and-swap;
	 * whoever has to wait for it counts itself in s_waiters and sleeps
	 * on s_run_cv under s_run_mtx, which is never held while taking
	 * another lock. */
	bool s_inline; /* the actor has inline_ok; set before registering */
	_Atomic bool s_running;
	_Atomic unsigned s_waiters;
	pthread_mutex_t s_run_mtx;
	pthread_cond_t s_run_cv;
};

struct mbi_done;

/* Most actors one publish can claim for inline runs. */
#define MBI_INLINE_MAX 8

/*
 * mbi_bus_count_claim - mbi_bus_count(bus, buf, len, true, 1), and also
 * claim each matching actor that can run inline now, up to MBI_INLINE_MAX,
 * into claims (*nclaims of them). b_mtx held.
 */
uint64_t mbi_bus_count_claim(mb_bus *bus, const void *buf, size_t len,
    struct mbi_sub **claims, size_t *nclaims);

/* actor.c: mbi_sub_inline_ok - whether claimed s takes env inline. */
bool mbi_sub_inline_ok(struct mbi_sub *s, const mb_envelope *env);
/* actor.c: mbi_sub_run - handle env inline on claimed s, adding what it
 * settled to *d (for mbi_bus_done_all); wire (len bytes, or NULL) is env
 * encoded, for mbi_actor_wire. */
void mbi_sub_run(struct mbi_sub *s, const mb_envelope *env,
    const uint8_t *wire, size_t len, struct mbi_done *d);
/* actor.c: mbi_actor_wire - inside a handler, the envelope as it came over
 * the bus (*len bytes), or NULL when it is not at hand: the store journals
 * these bytes instead of encoding them again. */
const uint8_t *mbi_actor_wire(const mb_actor *a, size_t *len);
/* actor.c: mbi_sub_unclaim - give back a claim without running. */
void mbi_sub_unclaim(struct mbi_sub *s);

/* inline.c: mbi_inline_whole - whether a publisher's env can be handed to
 * handlers as it is, as if decoded. */
bool mbi_inline_whole(const mb_envelope *env);
/* inline.c: mbi_inline_keep - keep (in front) the claims whose inline_ok
 * takes env, give back the rest (all when env is NULL); returns how many
 * are kept. b_mtx held. */
size_t mbi_inline_keep(struct mbi_sub **claims, size_t n,
    const mb_envelope *env);
/* inline.c: mbi_inline_run - run the n kept claims on env, settle, and give
 * them back; wire as for mbi_sub_run. No lock held. */
void mbi_inline_run(mb_bus *bus, struct mbi_sub *const *claims, size_t n,
    const mb_envelope *env, const uint8_t *wire, size_t len);

/* What one delivery settled, for mbi_bus_done. */
struct mbi_done {
	uint64_t settled;  /* taken off s_pending and inflight */
	uint64_t handled;  /* handed to handle() */
	uint64_t gaps;     /* holes detected */
	uint64_t missed;   /* envelopes inside those holes */
	uint64_t restarts; /* supervisor restarts */
};

/*
 * mbi_bus_connect - dial sock (a SUB socket with its subscriptions set) to
 * the bus, wait until the PUB side has attached the pipe, then register s
 * (snapshotting the sequence numbers of its streams into s->s_last).
 * Actor starts are serialised here. Errors: MB_ECLOSED, MB_ETRANSPORT,
 * MB_ENOMEM. On error s is not registered (sock may be dialed).
 */
int mbi_bus_connect(mb_bus *bus, nng_socket sock, struct mbi_sub *s);

/* mbi_bus_detach - unregister s and forget what was still pending for it. */
void mbi_bus_detach(mb_bus *bus, struct mbi_sub *s);

/* mbi_bus_done - settle d->settled envelopes of s and add to the stats. */
void mbi_bus_done(mb_bus *bus, struct mbi_sub *s, const struct mbi_done *d);
/* mbi_bus_done_all - mbi_bus_done for n subs at once. */
void mbi_bus_done_all(mb_bus *bus, struct mbi_sub *const *s,
    const struct mbi_done *d, size_t n);

/* A probe: NUL, then the generation as 8 bytes little-endian. */
#define MBI_PROBE_LEN 9

/*
 * mbi_bus_probe_take - if gen is the probe s has a snapshot for, move that
 * snapshot into *out (the caller finis it) and return true.
 */
bool mbi_bus_probe_take(mb_bus *bus, struct mbi_sub *s, uint64_t gen,
                        struct mbi_seqtab *out);

/* mbi_bus_recvbuf - the SUB queue depth from the bus options. */
unsigned mbi_bus_recvbuf(const mb_bus *bus);

/* mbi_bus_match - whether buf (len bytes) starts with one of topics, the way
 * nng sub0 matches a message body. */
bool mbi_bus_match(const char *const *topics, const void *buf, size_t len);

/*
 * mbi_bus_send_raw - test hook: send len bytes as one nng message, counted
 * for the actors whose prefixes match the bytes exactly as mb_publish would,
 * but without stamping or encoding. Malformed input is what it is for.
 * Errors: MB_EINVAL, MB_ENOMEM, MB_ECLOSED, MB_ETRANSPORT.
 */
int mbi_bus_send_raw(mb_bus *bus, const void *buf, size_t len);

/* mbi_mono_ns - CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t
mbi_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}

/* The bus and its publishers; private to bus.c, pub.c and actor.c. */
struct mb_pub {
	mb_bus *p_bus;
	uint32_t p_id;
	pthread_mutex_t p_mtx;
	struct mbi_seqtab p_seq; /* keyed (0, topic) */
	nng_aio *p_aio;          /* send aio, reused under p_mtx */
	bool p_inline;           /* may run actors inline (mb_pub_inline) */
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
	bool b_inline; /* publishers may claim actors (not opts.no_inline) */
	/* Freed publishers' last seq per (id, topic), for snapshots. */
	struct mbi_seqtab b_retired;
	struct mb_bus_stats b_stats;
	struct mbi_sub *b_subs;
	struct mb_pub *b_pubs;
	struct mbi_timer *b_timer; /* started by mb_bus_wake_at, or NULL */
};

/* mbi_timer_stop - stop and free the bus's timer (timer.c). */
struct mbi_timer;
void mbi_timer_stop(struct mbi_timer *t);


/* Shared by bus.c and pub.c; see the lock order in bus.c. */
int mbi_nng_err(int rv);
/* Count (add) or uncount k envelopes for every actor matching buf; returns
 * how many actors matched. Under b_mtx. */
uint64_t mbi_bus_count(mb_bus *bus, const void *buf, size_t len, bool add,
    uint64_t k);
/* Settle n counted envelopes (drain accounting). Under b_mtx. */
void mbi_bus_settle(mb_bus *bus, uint64_t n);
/* Send len bytes as one message. Under b_mtx. */
int mbi_bus_send_locked(mb_bus *bus, const void *buf, size_t len);

#endif /* MOBBUS_BUS_H */
