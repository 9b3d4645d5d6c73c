/* SPDX-License-Identifier: MIT */
/*
 * identity.c - when two copies of a notification are one: the identity rules
 * of the deliver actor (README "Identity"), and its memory of what was handed
 * for each identity. Copy helpers for envelopes live here too.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliver.h"
#include "mobbus.h"
#include "store.h"

#define HASH_WINDOW_MS (10 * 60 * 1000)

/* Deep copy of an envelope through its wire form. */
mb_envelope *
mbi_env_dup(const mb_envelope *env)
{
	size_t n = mobbus__envelope__get_packed_size(env);
	uint8_t *buf = malloc(n ? n : 1);
	mb_envelope *copy;

	if (buf == NULL)
		return NULL;
	mobbus__envelope__pack(env, buf);
	copy = mobbus__envelope__unpack(NULL, n, buf);
	free(buf);
	return copy;
}

size_t
mbi_strlcpy(char *dst, const char *src, size_t size)
{
	size_t n = strlen(src);

	if (size > 0) {
		size_t k = n < size - 1 ? n : size - 1;
		memcpy(dst, src, k);
		dst[k] = '\0';
	}
	return n;
}

char *
mbi_xstrdup(const char *s)
{
	return strdup(s ? s : "");
}

/* Replace a string field of an unpacked message. protobuf-c leaves absent
 * proto3 strings pointing at its shared empty string, which is not ours to
 * free. */
void
mbi_pb_str_set(char **field, const char *v)
{
	if (*field != NULL && *field != protobuf_c_empty_string)
		free(*field);
	*field = mbi_xstrdup(v);
}

/*
 * The record of id: from the cache, else from the store's inbox (an
 * identity older than the cache), else a new one.
 */
struct mbi_note *
mbi_note_get(struct mbi_deliver *d, const char *id)
{
	struct mbi_note *n = mbi_notes_find(&d->notes, id);
	int arrival = 0, tap = 0, known;

	if (n != NULL)
		return n;
	known = d->store != NULL && mbi_notes_maybe_older(&d->notes, id) &&
	    mbi_store_note(d->store, id, &arrival, &tap) == MB_OK;
	if ((n = mbi_notes_add(&d->notes, id)) != NULL && known) {
		n->arrival = arrival != 0;
		n->tap = tap != 0;
	}
	return n;
}

/*
 * Identity, reading 1 of spec/semantics.md. The bridge already put the
 * platform's explicit id (the app's id key, FCM's message id) into n->id.
 */
/* identity_pick - the identity of n into out, without remembering it; *hitp
 * and *genp say what the recent payloads gave. */
static void
identity_pick(const struct mbi_deliver *d, const Mobbus__Notification *n,
    int64_t now, char *out, size_t outlen, const struct mbi_seen **hitp,
    unsigned *genp)
{
	const struct mbi_seen *hit = NULL;
	unsigned generation = 0;

	for (size_t i = 0; i < d->nseen && *n->content_hash; i++) {
		const struct mbi_seen *s = &d->seen[i];
		if (strcmp(s->hash, n->content_hash) != 0)
			continue;
		if (now - s->first_at < HASH_WINDOW_MS) {
			if (*n->request_id == '\0' || s->by_hash)
				hit = s;
		} else if (s->generation >= generation) {
			generation = s->generation + 1;
		}
	}
	if (*n->id)
		mbi_strlcpy(out, n->id, outlen);
	else if (hit != NULL)
		mbi_strlcpy(out, hit->id, outlen);
	else if (*n->request_id)
		mbi_strlcpy(out, n->request_id, outlen);
	else if (generation == 0)
		snprintf(out, outlen, "h:%s", n->content_hash);
	else /* the same payload after its window is a new notification */
		snprintf(out, outlen, "h:%s.%u", n->content_hash, generation);
	*hitp = hit;
	*genp = generation;
}

int
mbi_identity_known(struct mbi_deliver *d, const Mobbus__Notification *n,
    int64_t now)
{
	const struct mbi_seen *hit;
	unsigned generation;
	char id[256];

	if (d->store == NULL || mbi_notes_all_cached(&d->notes))
		return 1;
	identity_pick(d, n, now, id, sizeof(id), &hit, &generation);
	return (mbi_notes_find(&d->notes, id) != NULL ||
	    !mbi_notes_maybe_older(&d->notes, id));
}

int
mbi_identity_resolve(struct mbi_deliver *d, const Mobbus__Notification *n,
    int64_t now, char *out, size_t outlen)
{
	const struct mbi_seen *hit;
	struct mbi_seen *slot;
	unsigned generation;

	identity_pick(d, n, now, out, outlen, &hit, &generation);
	if (hit != NULL || *n->content_hash == '\0')
		return MB_OK;
	/* Remember this copy; when full, the oldest entry makes room. */
	if (d->nseen < MBI_SEEN_MAX) {
		slot = &d->seen[d->nseen++];
	} else {
		slot = &d->seen[0];
		for (size_t i = 1; i < d->nseen; i++)
			if (d->seen[i].first_at < slot->first_at)
				slot = &d->seen[i];
	}
	mbi_strlcpy(slot->hash, n->content_hash, sizeof(slot->hash));
	mbi_strlcpy(slot->id, out, sizeof(slot->id));
	slot->first_at = now;
	slot->generation = generation;
	slot->by_hash = *n->id == '\0' && *n->request_id == '\0';
	mbi_persist_str(d, MBI_OP_SEEN, slot->hash, slot->id, now, slot->by_hash,
	    generation);
	return MB_OK;
}

