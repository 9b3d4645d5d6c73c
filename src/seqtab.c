/* SPDX-License-Identifier: MIT */
/* seqtab.c - last sequence number per (publisher, topic): open addressing. */
#include <stdlib.h>
#include <string.h>

#include "bus.h"


static uint64_t
seqtab_hash(uint32_t pub, const char *topic)
{
	uint64_t h = 1469598103934665603u; /* FNV-1a */

	for (int i = 0; i < 4; i++) {
		h ^= (pub >> (8 * i)) & 0xffu;
		h *= 1099511628211u;
	}
	for (; *topic != '\0'; topic++) {
		h ^= (unsigned char)*topic;
		h *= 1099511628211u;
	}
	return (h);
}

static struct mbi_seqent *
seqtab_slot(struct mbi_seqent *ents, size_t cap, uint32_t pub,
            const char *topic)
{
	size_t i = (size_t)seqtab_hash(pub, topic) & (cap - 1);

	while (ents[i].e_used &&
	       (ents[i].e_pub != pub || strcmp(ents[i].e_topic, topic) != 0)) {
		i = (i + 1) & (cap - 1);
	}
	return (&ents[i]);
}

static int
seqtab_grow(struct mbi_seqtab *t)
{
	size_t cap = t->t_cap != 0 ? t->t_cap * 2 : 8;
	struct mbi_seqent *ents;

	if ((ents = calloc(cap, sizeof(*ents))) == NULL) {
		return (MB_ENOMEM);
	}
	for (size_t i = 0; i < t->t_cap; i++) {
		struct mbi_seqent *e = &t->t_ents[i];

		if (e->e_used) {
			*seqtab_slot(ents, cap, e->e_pub, e->e_topic) = *e;
		}
	}
	free(t->t_ents);
	t->t_ents = ents;
	t->t_cap = cap;
	return (MB_OK);
}

struct mbi_seqent *
mbi_seqtab_entry(struct mbi_seqtab *t, uint32_t pub, const char *topic,
                 bool create)
{
	struct mbi_seqent *e;

	if (t->t_cap != 0) {
		e = seqtab_slot(t->t_ents, t->t_cap, pub, topic);
		if (e->e_used) {
			return (e);
		}
	}
	if (!create || strlen(topic) >= MBI_TOPIC_MAX) {
		return (NULL);
	}
	/* Keep the load at or under 3/4 so that probes stay short. */
	if ((t->t_len + 1) * 4 > t->t_cap * 3 && seqtab_grow(t) != MB_OK) {
		return (NULL);
	}
	e = seqtab_slot(t->t_ents, t->t_cap, pub, topic);
	e->e_used = true;
	e->e_pub = pub;
	e->e_seq = 0;
	e->e_unheard = false;
	e->e_inline = false;
	strcpy(e->e_topic, topic);
	t->t_len++;
	return (e);
}

uint64_t *
mbi_seqtab_get(struct mbi_seqtab *t, uint32_t pub, const char *topic,
               bool create)
{
	struct mbi_seqent *e = mbi_seqtab_entry(t, pub, topic, create);

	return (e != NULL ? &e->e_seq : NULL);
}

void
mbi_seqtab_fini(struct mbi_seqtab *t)
{
	free(t->t_ents);
	t->t_ents = NULL;
	t->t_cap = 0;
	t->t_len = 0;
}

