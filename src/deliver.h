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

/* A message waiting for the consumer. */
struct mbi_out {
	char topic[32];
	mb_envelope *env;
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
	mb_envelope *unacked[MBI_UNACKED_MAX];
	size_t nunacked;
	char token_acked[512];
	char token_announced[512];
};

#endif
