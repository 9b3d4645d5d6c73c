/* SPDX-License-Identifier: MIT */
/*
 * mobbus.h - the one public header of libmobbus, the in-process event bus of a
 * BEAM-on-device mobile app.
 *
 * DESIGN
 * Platform bridges publish protobuf Envelopes (proto/mobbus.proto) on one nng
 * inproc PUB socket. Actors each own one SUB socket (their mailbox) that
 * subscribes to topic prefixes; an actor's handler runs from the completion
 * callback of its receive aio, so one actor never runs two handlers at once and
 * never blocks another. nng PUB/SUB drops when a subscriber's queue is full,
 * so every envelope carries a sequence number per (publisher, topic) and each
 * actor reports holes on "bus/gap".
 *
 * THREADS
 * Unless a function says otherwise it may be called from any thread. Actor
 * callbacks run on nng's callback threads, one at a time per actor.
 */
#ifndef MOBBUS_H
#define MOBBUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr_storage;

#include "mobbus.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes. Numbers are stable; add new ones at the end. */
#define MB_ERR_MAP(X)                                                          \
	X(OK, 0, "ok", "ok")                                                   \
	X(ENOMEM, 1, "out_of_memory", "out of memory")                         \
	X(EINVAL, 2, "invalid_argument", "invalid argument")                   \
	X(ETRANSPORT, 3, "transport", "bus transport failure")                 \
	X(ETIMEDOUT, 4, "timed_out", "timed out")                              \
	X(ECLOSED, 5, "closed", "bus or actor is closed")                      \
	X(EPROTO, 6, "bad_envelope", "malformed protobuf envelope")            \
	X(EJSON, 7, "invalid_json", "invalid JSON")                            \
	X(ECALLBACK, 8, "unknown_callback", "unknown callback")                \
	X(EFIELD, 9, "missing_field", "missing or mistyped field")             \
	X(ETIME, 10, "time_backwards", "time goes backwards")                  \
	X(ETOOLARGE, 11, "payload_too_large", "payload over the platform limit") \
	X(EIO, 12, "io", "input/output error")                                 \
	X(EHANDLER, 13, "handler_failed", "actor handler failed")              \
	X(ERESTARTS, 14, "restart_limit", "actor restart limit reached")       \
	X(EHEADER, 15, "bad_header", "invalid trace header")                   \
	X(EUTF8, 16, "invalid_utf8", "invalid UTF-8")                          \
	X(EDB, 17, "database", "database error")                               \
	X(EMISMATCH, 18, "mismatch", "transcript differs from expectation")    \
	X(EGAP, 19, "gap", "envelopes lost: sequence gap")

enum mb_err {
#define MB_ERR_ENUM_(name, num, code, msg) MB_##name = num,
	MB_ERR_MAP(MB_ERR_ENUM_)
#undef MB_ERR_ENUM_
};

/* mb_strerror - a sentence for an error code; never NULL. */
const char *mb_strerror(int err);
/* mb_err_name - the stable snake_case name of an error code ("payload_too_large"
 * for MB_ETOOLARGE), used as the code on bus/ error events; never NULL. */
const char *mb_err_name(int err);

typedef Mobbus__Envelope mb_envelope;
typedef struct mb_bus mb_bus;
typedef struct mb_pub mb_pub;
typedef struct mb_actor mb_actor;
typedef struct mb_store mb_store;

struct mb_bus_opts {
	size_t size;          /* sizeof(struct mb_bus_opts) */
	unsigned sendbuf;     /* PUB per-subscriber queue, messages; 0: 8192 */
	unsigned recvbuf;     /* SUB queue, messages; 0: 8192 */
	int no_inline;        /* 1: actors never run on a publisher's thread
	                       * (see mb_actor_ops.inline_ok) */
};

/*
 * mb_bus_open - create a bus. opts may be NULL for defaults. On success *busp
 * owns the bus until mb_bus_close. Errors: MB_ENOMEM, MB_ETRANSPORT, MB_EINVAL.
 */
int mb_bus_open(mb_bus **busp, const struct mb_bus_opts *opts);

/*
 * mb_bus_close - stop every actor still running (waiting for their
 * callbacks), free every publisher still allocated, then free the bus.
 * NULL is a no-op. Must not be called from an actor callback.
 */
void mb_bus_close(mb_bus *bus);

/*
 * mb_bus_set_clock - use simulated time: envelopes published from now on are
 * stamped with at_ms = now_ms (replay). A negative value returns to the real
 * CLOCK_MONOTONIC in ms.
 */
void mb_bus_set_clock(mb_bus *bus, int64_t now_ms);
/* mb_bus_now_ms - the time mb_publish stamps into at_ms. */
int64_t mb_bus_now_ms(mb_bus *bus);

/*
 * mb_bus_wake_at - ask for a "time/tick" envelope when the bus clock reaches
 * at_ms. Only the earliest request is kept: an actor waiting for a deadline
 * asks again each time it handles a tick. A bus thread, started at the first
 * request, sleeps until then. Under a simulated clock (mb_bus_set_clock) the
 * caller of set_clock publishes the ticks and this does nothing. Any thread,
 * actor callbacks included. Errors: MB_EINVAL, MB_ECLOSED, MB_ENOMEM.
 */
int mb_bus_wake_at(mb_bus *bus, int64_t at_ms);

/*
 * mb_bus_drain - wait until every envelope published so far has been handled
 * (or counted as lost) by every actor it was addressed to, including what
 * those handlers published in turn. Returns MB_OK, or MB_ETIMEDOUT after
 * timeout_ms (negative: wait forever). Must not be called from an actor
 * callback (it would wait for itself).
 */
int mb_bus_drain(mb_bus *bus, int timeout_ms);

struct mb_bus_stats {
	uint64_t published;  /* envelopes sent by mb_publish */
	uint64_t handled;    /* envelopes handed to actor handlers */
	uint64_t gaps;       /* holes detected (each hole may hide many) */
	uint64_t missed;     /* envelopes lost inside those holes */
	uint64_t restarts;   /* actor restarts by the supervisor */
	uint64_t inflight;   /* published, not yet handled or counted lost: a
	                      * bulk producer can hold back while this is high
	                      * instead of overrunning the subscribers' queues */
	uint64_t inline_runs; /* deliveries run on the publisher's thread */
	uint64_t unsent;      /* envelopes every receiver took inline, so no
	                       * nng message was sent */
};
/* mb_bus_stats - a snapshot of the bus counters. */
void mb_bus_stats(mb_bus *bus, struct mb_bus_stats *st);

/*
 * mb_pub_alloc - a publisher: an id and its own sequence numbers. The bus
 * keeps a pointer and frees it at close if the caller did not. A publisher is
 * safe to use from several threads (sequence numbers are taken under its lock).
 */
int mb_pub_alloc(mb_bus *bus, mb_pub **pubp);
/* mb_pub_free - release a publisher. NULL is a no-op. */
void mb_pub_free(mb_pub *pub);
/* mb_pub_id - the publisher id stamped into envelopes. */
uint32_t mb_pub_id(const mb_pub *pub);
/*
 * mb_pub_inline - whether pub's publishes may run idle actors on the calling
 * thread (mb_actor_ops.inline_ok); on by default. Turn it off for a
 * publisher called from threads that should not run actor handlers (an
 * Erlang scheduler, for one): its envelopes then always go through the
 * actors' mailboxes. Not while another thread publishes on pub.
 */
void mb_pub_inline(mb_pub *pub, bool allow);

/*
 * mb_publish - stamp env (topic, publisher, seq, ts_ns, at_ms) and send it.
 * Never blocks on a subscriber: a full subscriber queue drops (and the
 * subscriber reports the gap). env stays owned by the caller; its topic field
 * is set to point at topic for the duration of the call and restored after.
 * topic must be non-empty and shorter than 64 bytes.
 * Errors: MB_EINVAL, MB_ENOMEM, MB_ECLOSED, MB_ETRANSPORT.
 */
int mb_publish(mb_pub *pub, const char *topic, mb_envelope *env);

/*
 * mb_publish_batch - publish n envelopes on one topic as one bus message:
 * the way to sustain hundreds of thousands of envelopes a second, since the
 * transport's cost is per message. Each envelope gets its own sequence number
 * (consecutive) and is handled as a separate delivery; the same ownership
 * and errors as mb_publish. n == 1 is mb_publish.
 */
int mb_publish_batch(mb_pub *pub, const char *topic, mb_envelope *const *envs,
    size_t n);

/*
 * An actor: a mailbox subscribed to topic prefixes and three callbacks.
 * init runs once on start and again after each restart; handle runs once per
 * envelope, serially; terminate runs before a restart and at stop. A handler
 * that returns non-zero "fails": the supervisor terminates and re-inits the
 * actor, and after max_restarts failures within restart_window_ms it stops the
 * actor for good and publishes "bus/error" with code "restart_limit".
 * The envelope passed to handle is valid only during the call.
 */
struct mb_actor_ops {
	size_t size;                   /* sizeof(struct mb_actor_ops) */
	const char *name;              /* for errors and stats */
	const char *const *topics;     /* NULL-terminated prefixes, e.g. "notify/" */
	int (*init)(mb_actor *a, void *arg, void **statep);
	int (*handle)(mb_actor *a, void *state, const mb_envelope *env);
	void (*terminate)(mb_actor *a, void *state);
	unsigned max_restarts;         /* 0: 5 */
	unsigned restart_window_ms;    /* 0: 10000 */
	void (*release)(void *arg);    /* optional: frees arg after the last
	                                * terminate, at stop */
	/*
	 * inline_ok - optional. An idle actor (nothing owed, no handler
	 * running) may handle a single envelope on the publishing thread,
	 * before mb_publish returns, instead of waiting for its mailbox
	 * thread: one thread hop less from a bridge call to the handler.
	 * mb_publish asks this first, with the actor claimed (so state may be
	 * read, not written; it must not call into the bus) and env decoded;
	 * true lets the handler run there. Only for handlers that never
	 * block (no SQLite reads, no network, no waiting on another actor),
	 * as they then run on the bridge's thread (ARCHITECTURE rule 1).
	 * Order is kept: while the actor is claimed its mailbox waits, and
	 * the mailbox's own copy of the envelope is dropped by its sequence
	 * number. mb_inline_always serves a handler that never blocks on any
	 * envelope.
	 */
	bool (*inline_ok)(mb_actor *a, void *state, const mb_envelope *env);
};

/* mb_inline_always - an inline_ok that takes every envelope. */
bool mb_inline_always(mb_actor *a, void *state, const mb_envelope *env);

/*
 * mb_actor_start - create the actor's mailbox, run init, and start receiving.
 * Returns once the mailbox is connected, so every envelope published after
 * the return reaches it. ops and the strings it points to must outlive the
 * actor. On success *ap is owned by the bus (stopped at close at the latest).
 * Errors: MB_EINVAL, MB_ENOMEM, MB_ETRANSPORT, or init's own error.
 */
int mb_actor_start(mb_bus *bus, const struct mb_actor_ops *ops, void *arg,
    mb_actor **ap);

/*
 * mb_actor_stop - stop receiving, wait for a running handler, run terminate,
 * and free the actor. Must not be called from that actor's own callbacks.
 */
void mb_actor_stop(mb_actor *a);

/* mb_actor_pub - the actor's own publisher, for use inside its callbacks. */
mb_pub *mb_actor_pub(mb_actor *a);
/* mb_actor_bus - the bus the actor runs on. */
mb_bus *mb_actor_bus(mb_actor *a);
/* mb_actor_name - ops->name. */
const char *mb_actor_name(const mb_actor *a);

/*
 * mb_publish_error - publish a BusError on "bus/error" with code
 * mb_err_name(err) and a formatted message. Convenience for actors and
 * bridges; the same rules as mb_publish.
 */
int mb_publish_error(mb_pub *pub, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Topics. Bridges publish platform moments; the consumer's commands come in
 * on "cmd/"; what the consumer receives goes out on "app/" and what a bridge
 * must do on the platform on "effect/".
 */
#define MB_TOPIC_LIFECYCLE "lifecycle/"
#define MB_TOPIC_NOTIFY_ARRIVAL "notify/arrival"
#define MB_TOPIC_NOTIFY_TAP "notify/tap"
#define MB_TOPIC_NOTIFY_BACKGROUND "notify/background"
#define MB_TOPIC_NOTIFY_REJECTED "notify/rejected"
#define MB_TOPIC_TOKEN "token/"
#define MB_TOPIC_WAKE "wake/"
#define MB_TOPIC_KEEPALIVE "keepalive/"
#define MB_TOPIC_CONN "conn/"
#define MB_TOPIC_CMD "cmd/"
#define MB_TOPIC_TIME "time/tick"
#define MB_TOPIC_APP "app/"
#define MB_TOPIC_EFFECT "effect/"
#define MB_TOPIC_BUS "bus/"
/* Actors other than deliver publish what the consumer must see under
 * "out/" ("out/app/conn", "out/effect/fgs_start"); deliver forwards it in
 * order with its own messages. */
#define MB_TOPIC_OUT "out/"

/*
 * The durable store: one SQLite file (WAL, synchronous=NORMAL, created 0600)
 * holding the event journal, the app's key-value state, the notification
 * inbox and outbox, and push tokens. Writes are queued and committed by the
 * store's own thread in one transaction per batch (group commit: at most
 * commit_delay_ms after the first queued write, or batch_max writes), so no
 * bridge or actor thread ever waits for the disk. The store actor journals
 * every platform moment and flushes before the process may stop running
 * (lifecycle background, suspend and terminate; wake windows ending).
 *
 * A database that cannot be opened, is corrupt, read-only or full is
 * reported on "bus/error" (code "database"); the bus keeps delivering from
 * memory.
 */
struct mb_store_opts {
	size_t size;               /* sizeof(struct mb_store_opts) */
	const char *path;          /* the database file; created 0600 */
	unsigned commit_delay_ms;  /* 0: 2 */
	unsigned batch_max;        /* 0: 512 */
};

/*
 * mb_store_open - open (creating or migrating) the database and start the
 * store's writer thread and its journal actor on bus. On success *stp is
 * owned by the caller until mb_store_close, which must come before
 * mb_bus_close. A database that fails to open still gives a store (MB_OK):
 * one that reports MB_EDB from mb_flush and keeps nothing, after a
 * "bus/error". Errors: MB_EINVAL, MB_ENOMEM, MB_ETRANSPORT.
 */
int mb_store_open(mb_bus *bus, const struct mb_store_opts *opts,
    mb_store **stp);

/*
 * mb_store_check - whether path can be this app's store: a new file (created
 * 0600 by mb_store_open), or a mobbus store of a schema this version reads.
 * Another program's SQLite file, a non-database, a directory or an
 * unopenable path is MB_EDB with the reason in err. For tools that must
 * refuse rather than fall back to memory; it may create an empty file.
 */
int mb_store_check(const char *path, char *err, size_t errlen);

/*
 * mb_store_waiting - how many messages in the store at path wait for a
 * consumer (never handed). Opens the file read-only. MB_EDB when it cannot.
 */
int mb_store_waiting(const char *path, long *n);
/*
 * mb_store_damaged - SQLite's quick_check of the store at path, read-only:
 * 0 with why "" when it is sound, 1 with what SQLite found in why (a
 * damaged file, or one that cannot be read as a database).
 */
int mb_store_damaged(const char *path, char *why, size_t whylen);

/* mb_store_close - commit what is queued, stop the writer, close the file.
 * NULL is a no-op. Not from an actor callback. */
void mb_store_close(mb_store *st);

/*
 * mb_flush - wait until everything published so far has been handled
 * (mb_bus_drain) and every write it caused is committed. Returns MB_OK,
 * MB_ETIMEDOUT, or MB_EDB when the store is not writing. Not from an actor
 * callback. Any other thread.
 */
int mb_flush(mb_store *st, int timeout_ms);

/*
 * Key-value state for the app and plugins (the role of Mob.State). Writes
 * are queued like every other write (durable at the next group commit or
 * mb_flush); reads see the caller's own queued writes. Any thread.
 * mb_state_get copies the value into a malloc'd buffer the caller frees;
 * MB_EFIELD when the key is absent. mb_state_match calls fn for every key
 * starting with prefix, in key order.
 */
int mb_state_put(mb_store *st, const char *key, const void *val, size_t len);
int mb_state_get(mb_store *st, const char *key, void **val, size_t *len);
int mb_state_delete(mb_store *st, const char *key);
int mb_state_match(mb_store *st, const char *prefix,
    int (*fn)(void *arg, const char *key, const void *val, size_t len),
    void *arg);

/*
 * The deliver actor: hands each notification, push, token and device event to
 * the consumer once, in order, holding them while no consumer is subscribed;
 * completes fetch windows and tasks exactly once. Subscribes to notify/,
 * token/, lifecycle/, wake/, conn/net, cmd/, time/ and out/; publishes on app/
 * and effect/, and calls the attached consumer first.
 */
struct mb_sink_ops;

struct mb_deliver_opts {
	size_t size;       /* sizeof(struct mb_deliver_opts) */
	int manual_ack;    /* 0: a hand-off acknowledges (ack "auto") */
	mb_store *store;   /* NULL: state lives in memory only */
	/* The app's consumer, called on the deliver actor's thread with every
	 * message and effect, in order, before the same envelope goes out on
	 * app/ or effect/ (copied; consumer_arg must outlive the actor). NULL:
	 * consumers subscribe on the bus (mb_sink_start). */
	const struct mb_sink_ops *consumer;
	void *consumer_arg;
	/* 1: the consumer's receive never blocks, so the actor may run on a
	 * publisher's thread when it is idle (mb_actor_ops.inline_ok). Without
	 * a consumer it may always. */
	int consumer_inline;
};
/* mb_deliver_start - start the deliver actor on bus; *ap as mb_actor_start. */
int mb_deliver_start(mb_bus *bus, const struct mb_deliver_opts *opts,
    mb_actor **ap);

/*
 * The policy actor: platform rules for keep_alive, in one place (ARCHITECTURE
 * rule 6). Android: a foreground service, allowed from the background on API
 * 31+ only within exempt_ms of a message delivered at high priority. iOS:
 * allowed only with a matching UIBackgroundModes entry. Subscribes to cmd/,
 * notify/, lifecycle/ and keepalive/; publishes out/app/keep_alive and
 * out/effect/ (the deliver actor forwards them to the consumer).
 */
struct mb_policy_opts {
	size_t size;                      /* sizeof(struct mb_policy_opts) */
	Mobbus__Os os;
	int android_sdk;                  /* 0: 34 */
	unsigned exempt_ms;               /* 0: 10000 */
	const char *const *background_modes; /* iOS, NULL-terminated; copied */
};
/* mb_policy_start - start the policy actor on bus; *ap as mb_actor_start. */
int mb_policy_start(mb_bus *bus, const struct mb_policy_opts *opts,
    mb_actor **ap);

/*
 * The connection actor: the app's sockets are disposable (ARCHITECTURE rule
 * 5). A connection the app asked for (cmd/connect) may be open only in the
 * foreground or while a wake window (fetch window or background task) is
 * open; it is closed synchronously when the app goes to the background with
 * no window open, when the last window's completion effect is sent, on
 * suspend, and when the network goes away; it is dialled on foreground, when
 * a window opens, and when the network comes back. Failed dials retry with
 * exponential backoff and full jitter, capped. Each change of state is one
 * "out/app/conn" message. Subscribes to cmd/, lifecycle/, notify/, wake/,
 * effect/, conn/net and time/.
 */
struct mb_conn_opts {
	size_t size;              /* sizeof(struct mb_conn_opts) */
	/* Where a named endpoint is: fill a TCP address; NULL resolves the
	 * URL's host and port. Called on the actor's thread. */
	int (*resolve)(void *arg, const char *name, const char *url,
	    struct sockaddr_storage *addr, unsigned *addrlen);
	void *resolve_arg;
	unsigned backoff_ms;      /* first retry ceiling; 0: 1000 */
	unsigned backoff_cap_ms;  /* 0: 60000 */
	uint64_t seed;            /* jitter; 0: from the clock */
};
/* mb_conn_start - start the connection actor; *ap as mb_actor_start. */
int mb_conn_start(mb_bus *bus, const struct mb_conn_opts *opts, mb_actor **ap);

/*
 * A consumer sink: receives what the consumer would receive (app/) and the
 * effects the bridge carries out (effect/), in bus order, on the sink actor's
 * thread. receive returning non-zero counts as a handler failure.
 */
struct mb_sink_ops {
	size_t size;       /* sizeof(struct mb_sink_ops) */
	int (*receive)(void *arg, const mb_envelope *env);
};
/* mb_sink_start - attach a sink; arg is passed to receive. */
int mb_sink_start(mb_bus *bus, const struct mb_sink_ops *ops, void *arg,
    mb_actor **ap);

/*
 * mb_transcript_line - the transcript line (trace-format.md) for an envelope
 * a sink received, as a malloc'd string the caller frees; NULL when the
 * envelope is not something the consumer sees. Any thread.
 */
char *mb_transcript_line(const mb_envelope *env);

#ifdef __cplusplus
}
#endif

#endif /* MOBBUS_H */
