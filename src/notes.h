/* SPDX-License-Identifier: MIT */
/*
 * notes.h - the deliver actor's memory of recent notification identities:
 * what was handed for each (arrival, tap). A bounded cache: the oldest entry
 * makes room for a new one, and the store's inbox answers for older ones.
 */
#ifndef MB_NOTES_H
#define MB_NOTES_H

#include <stddef.h>
#include <stdint.h>

struct mbi_note {
	char *id;
	unsigned arrival : 1;  /* handed (or queued) as foreground/push_fired */
	unsigned tap : 1;      /* handed (or queued) as a tap */
	struct mbi_note *next; /* hash chain */
};

struct mbi_notes {
	struct mbi_note *ring;     /* cap entries, oldest at head */
	struct mbi_note **buckets; /* nbuckets chains */
	size_t cap, n, head, nbuckets;
	/* A Bloom filter of the ids the cache let go of, so that a miss on a
	 * brand-new id (nearly every miss) need not ask the store. */
	uint64_t *bloom;
	int saturated;             /* the store may know ids never cached */
	uint64_t evicted;          /* ids let go of so far */
};

int mbi_notes_init(struct mbi_notes *ns, size_t cap);
void mbi_notes_fini(struct mbi_notes *ns);
/* mbi_notes_find - the entry of id, or NULL. */
struct mbi_note *mbi_notes_find(struct mbi_notes *ns, const char *id);
/* mbi_notes_add - a new, zeroed entry for id (which must not be there yet),
 * evicting the oldest when full; NULL when out of memory. */
struct mbi_note *mbi_notes_add(struct mbi_notes *ns, const char *id);
/* mbi_notes_maybe_older - whether id may be one the cache no longer holds
 * (then ask the store); false means it is certainly new. */
int mbi_notes_maybe_older(const struct mbi_notes *ns, const char *id);
/* mbi_notes_all_cached - no id can be older than the cache: none was let
 * go of, and the store held no more than the cache at start. */
int mbi_notes_all_cached(const struct mbi_notes *ns);

#endif
