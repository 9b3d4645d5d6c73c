/* SPDX-License-Identifier: MIT */
/* deliver.h - the deliver actor's state (private to deliver.c and its tests). */
#ifndef MB_DELIVER_H
#define MB_DELIVER_H

#include <stdint.h>

#include "mobbus.h"
#include "notes.h"

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

#endif
