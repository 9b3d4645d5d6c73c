/* SPDX-License-Identifier: MIT */
/* deliver.h - the deliver actor's state (private to deliver.c and its tests). */
#ifndef MB_DELIVER_H
#define MB_DELIVER_H

#include <stdint.h>

#include "mobbus.h"

#define MBI_SEEN_MAX 1024
#define MBI_UNACKED_MAX 4096

/* What has been handed for one notification identity. */
struct mbi_note {
	char *id;
	unsigned arrival : 1;  /* handed (or queued) as foreground/push_fired */
	unsigned tap : 1;      /* handed (or queued) as a tap */
};

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
	int manual_ack;
	int consumer_up;
	struct mbi_out *queue;
	size_t nqueue, capqueue;
	struct mbi_note *notes;
	size_t nnotes, capnotes;
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
	int os_slot;                  /* this device's platform: 0 iOS, 1 Android */
	char token_acked[2][512];     /* [0] iOS, [1] Android */
	char token_announced[2][512];
};

#endif
