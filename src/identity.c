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
int
mbi_identity_resolve(struct mbi_deliver *d, const Mobbus__Notification *n,
    int64_t now, char *out, size_t outlen)
{
	struct mbi_seen *hit = NULL, *slot;
	unsigned generation = 0;

	for (size_t i = 0; i < d->nseen && *n->content_hash; i++) {
		struct mbi_seen *s = &d->seen[i];
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
		snprintf(out, outlen, "%s", n->id);
	else if (hit != NULL)
		snprintf(out, outlen, "%s", hit->id);
	else if (*n->request_id)
		snprintf(out, outlen, "%s", n->request_id);
	else if (generation == 0)
		snprintf(out, outlen, "h:%s", n->content_hash);
	else /* the same payload after its window is a new notification */
		snprintf(out, outlen, "h:%s.%u", n->content_hash, generation);
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
	snprintf(slot->hash, sizeof(slot->hash), "%s", n->content_hash);
	snprintf(slot->id, sizeof(slot->id), "%s", out);
	slot->first_at = now;
	slot->generation = generation;
	slot->by_hash = *n->id == '\0' && *n->request_id == '\0';
	mbi_persist_str(d, MBI_OP_SEEN, slot->hash, slot->id, now, slot->by_hash,
	    generation);
	return MB_OK;
}

