/* SPDX-License-Identifier: MIT */
/* notes.c - a bounded, FIFO-evicting hash of recent notification ids. */
#include <stdlib.h>
#include <string.h>

#include "notes.h"

#define BLOOM_BITS (1u << 23) /* 1 MiB: ~1% false positives at 1M ids */
#define BLOOM_K 4

static uint64_t
notes_fnv(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	while (*s) {
		h ^= (unsigned char)*s++;
		h *= 1099511628211ULL;
	}
	return h;
}

static size_t
notes_hash(const char *s, size_t nbuckets)
{
	return (size_t)(notes_fnv(s) & (nbuckets - 1));
}

/* Bit i of the filter for id: double hashing from one 64-bit hash. */
static uint32_t
bloom_bit(uint64_t h, int i)
{
	uint32_t a = (uint32_t)h, b = (uint32_t)(h >> 32) | 1;
	return (a + (uint32_t)i * b) & (BLOOM_BITS - 1);
}

static void
bloom_add(struct mbi_notes *ns, const char *id)
{
	uint64_t h = notes_fnv(id) * 0x9e3779b97f4a7c15ULL;

	for (int i = 0; i < BLOOM_K; i++) {
		uint32_t bit = bloom_bit(h, i);
		ns->bloom[bit / 64] |= 1ULL << (bit % 64);
	}
}

int
mbi_notes_maybe_older(const struct mbi_notes *ns, const char *id)
{
	uint64_t h = notes_fnv(id) * 0x9e3779b97f4a7c15ULL;

	if (ns->saturated)
		return 1;
	for (int i = 0; i < BLOOM_K; i++) {
		uint32_t bit = bloom_bit(h, i);
		if (!(ns->bloom[bit / 64] & (1ULL << (bit % 64))))
			return 0;
	}
	return 1;
}

int
mbi_notes_all_cached(const struct mbi_notes *ns)
{
	return !ns->saturated && ns->evicted == 0;
}

int
mbi_notes_init(struct mbi_notes *ns, size_t cap)
{
	memset(ns, 0, sizeof(*ns));
	ns->nbuckets = 1;
	while (ns->nbuckets < cap * 2)
		ns->nbuckets <<= 1;
	ns->cap = cap;
	ns->ring = calloc(cap, sizeof(*ns->ring));
	ns->buckets = calloc(ns->nbuckets, sizeof(*ns->buckets));
	ns->bloom = calloc(BLOOM_BITS / 64, sizeof(*ns->bloom));
	if (ns->ring == NULL || ns->buckets == NULL || ns->bloom == NULL) {
		mbi_notes_fini(ns);
		return -1;
	}
	return 0;
}

void
mbi_notes_fini(struct mbi_notes *ns)
{
	for (size_t i = 0; ns->ring != NULL && i < ns->cap; i++)
		free(ns->ring[i].id);
	free(ns->ring);
	free(ns->buckets);
	free(ns->bloom);
	memset(ns, 0, sizeof(*ns));
}

struct mbi_note *
mbi_notes_find(struct mbi_notes *ns, const char *id)
{
	struct mbi_note *n;

	if (ns->buckets == NULL)
		return NULL;
	for (n = ns->buckets[notes_hash(id, ns->nbuckets)]; n; n = n->next)
		if (strcmp(n->id, id) == 0)
			return n;
	return NULL;
}

static void
notes_unlink(struct mbi_notes *ns, struct mbi_note *victim)
{
	struct mbi_note **pp = &ns->buckets[notes_hash(victim->id, ns->nbuckets)];

	while (*pp != NULL && *pp != victim)
		pp = &(*pp)->next;
	if (*pp != NULL)
		*pp = victim->next;
}

struct mbi_note *
mbi_notes_add(struct mbi_notes *ns, const char *id)
{
	struct mbi_note *n;
	char *copy;
	size_t slot;

	if (ns->ring == NULL || (copy = strdup(id)) == NULL)
		return NULL;
	if (ns->n < ns->cap) {
		slot = (ns->head + ns->n++) % ns->cap;
	} else {
		slot = ns->head; /* the oldest goes */
		ns->head = (ns->head + 1) % ns->cap;
		notes_unlink(ns, &ns->ring[slot]);
		bloom_add(ns, ns->ring[slot].id);
		ns->evicted++;
		free(ns->ring[slot].id);
	}
	n = &ns->ring[slot];
	memset(n, 0, sizeof(*n));
	n->id = copy;
	n->next = ns->buckets[notes_hash(id, ns->nbuckets)];
	ns->buckets[notes_hash(id, ns->nbuckets)] = n;
	return n;
}
