/* SPDX-License-Identifier: MIT */
/* deliver.h - the deliver actor's state (private to deliver.c and its tests). */
#ifndef MB_DELIVER_H
#define MB_DELIVER_H

#include <stdint.h>

#include "mobbus.h"
#include "notes.h"
#include "store.h"

#define MBI_SEEN_MAX 1024
#define MBI_NOTES_MAX 16384
#define MBI_BACKLOG_PAGE 256
#define MBI_UNACKED_MAX 4096

/* A payload hash seen recently, and the identity its first copy took. */
struct mbi_seen {
	char hash[40];
	char id[256];
	int64_t first_at;
	int by_hash;           /* that copy had no explicit or request id */
	unsigned generation;   /* how many earlier windows this payload had */
};

/* An iOS fetch window or a background task run. */
struct mbi_window {
	int task;
	int done;
	char *push_id;
	char *id;              /* notification id or task identifier */
	int64_t deadline;      /* ms; completes failed / success:false then */
};

/* A message waiting for the consumer, or handed and waiting for its ack. */
struct mbi_out {
	int64_t seq;           /* outbox key; 0: not persisted (effects, device
	                        * events, tokens: stale in a later process) */
	char topic[32];
	mb_envelope *env;
	int earlier;           /* handed by an earlier process, unacked */
};

struct mbi_deliver {
	mb_pub *pub;
	mb_bus *bus;
	int manual_ack;
	int consumer_inline;          /* the consumer never blocks */
	int consumer_up;
	struct mbi_out *queue;
	size_t nqueue, capqueue;
	struct mbi_notes notes;       /* recent identities; older: the inbox */
	struct mbi_seen seen[MBI_SEEN_MAX];
	size_t nseen;
	struct mbi_window *windows;
	size_t nwindows, capwindows;
	struct mbi_out unacked[MBI_UNACKED_MAX];
	size_t nunacked;
	mb_store *store;
	const struct mb_sink_ops *consumer;
	void *consumer_arg;
	int64_t next_seq;
	/* Outbox rows an earlier process left, seq in (backlog_after,
	 * backlog_end]: read a page at a time when the consumer is up, so a
	 * cold start with a long backlog hands the first one at once. */
	int64_t backlog_after, backlog_end;
	int os_slot;                  /* this device's platform: 0 iOS, 1 Android */
	char token_acked[2][512];     /* [0] iOS, [1] Android */
	char token_announced[2][512];
};

/* Shared by deliver.c, identity.c, outbox.c and windows.c (one actor: all
 * run on its thread, one envelope at a time). */
/* identity.c: envelope copies, identities */
mb_envelope *mbi_env_dup(const mb_envelope *env);
char *mbi_xstrdup(const char *s);
/* mbi_strlcpy - copy src into dst (size bytes), cut to fit and always
 * terminated; returns strlen(src). What snprintf "%s" does, without
 * parsing a format on the delivery path. */
size_t mbi_strlcpy(char *dst, const char *src, size_t size);
void mbi_pb_str_set(char **field, const char *v);
struct mbi_note *mbi_note_get(struct mbi_deliver *d, const char *id);
/* mbi_identity_known - whether n's identity can be looked up without the
 * store (cached, certainly new, or no store); changes nothing. */
int mbi_identity_known(struct mbi_deliver *d, const Mobbus__Notification *n,
    int64_t now);
int mbi_identity_resolve(struct mbi_deliver *d, const Mobbus__Notification *n,
    int64_t now, char *out, size_t outlen);

/* outbox.c: handing to the consumer, now or in order later */
int mbi_is_notification(const mb_envelope *env);
void mbi_persist_out(struct mbi_deliver *d, enum mbi_op_kind kind, int64_t seq,
    int state, const char *topic, const mb_envelope *env);
void mbi_persist_note(struct mbi_deliver *d, const struct mbi_note *n,
    const char *collapse_id, int64_t at);
void mbi_persist_str(struct mbi_deliver *d, enum mbi_op_kind kind, const char *s1,
    const char *s2, int64_t i1, int64_t i2, int64_t i3);
void mbi_emit(struct mbi_deliver *d, const char *topic, mb_envelope *env);
void mbi_hand(struct mbi_deliver *d, struct mbi_out *o, int queued);
int mbi_out_put(struct mbi_deliver *d, const char *topic, mb_envelope *env,
    int force_queue, int persist);
int mbi_out_put_copy(struct mbi_deliver *d, const char *topic, mb_envelope *env,
    int persist);
void mbi_flush_queue(struct mbi_deliver *d);
struct mbi_out *mbi_queued_tap(struct mbi_deliver *d, const char *id);

/* windows.c: fetch windows, tasks, completion effects */
mb_envelope *mbi_effect_new(Mobbus__Effect__Kind kind);
void mbi_effect_free(mb_envelope *env);
void mbi_effect_send(struct mbi_deliver *d, mb_envelope *env, const char *topic,
    int after_queued);
void mbi_complete_push(struct mbi_deliver *d, struct mbi_window *w, const char *result,
    int after_queued);
void mbi_complete_task(struct mbi_deliver *d, struct mbi_window *w, int success);
struct mbi_window *mbi_window_add(struct mbi_deliver *d, int task, const char *push_id,
    const char *id, int64_t deadline);
struct mbi_window *mbi_window_find(struct mbi_deliver *d, const char *push_id, const char *id);
void mbi_fire_timers(struct mbi_deliver *d, int64_t now);

#endif
