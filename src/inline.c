/* SPDX-License-Identifier: MIT */
/*
 * inline.c - running idle actors on the publisher's thread (bus.h, INLINE
 * RUNS): which claimed actors take an envelope, running them, and whether a
 * caller's envelope can be handed to them as it is.
 *
 * A handler is written against decoded envelopes, in which protobuf-c never
 * leaves a string NULL. A publisher's own envelope usually looks the same,
 * and then it is handed over directly: no encoding and decoding between a
 * bridge call and the consumer. One that does not (a NULL string, a oneof
 * case whose message is missing) goes the long way, encoded and decoded.
 */
#include <stdbool.h>
#include <stdint.h>

#include "bus.h"

/* msg_whole - whether m reads like a decoded message (see above). */
static bool
msg_whole(const ProtobufCMessage *m, int depth)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;

	if (d == NULL || depth > 16) {
		return (false);
	}
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *p = (const char *)m + f->offset;

		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0 &&
		    *(const uint32_t *)((const char *)m +
		                        f->quantifier_offset) != f->id) {
			continue; /* not the case that is set */
		}
		if (f->type != PROTOBUF_C_TYPE_STRING &&
		    f->type != PROTOBUF_C_TYPE_MESSAGE) {
			continue;
		}
		/* Optional and repeated fields: decoding has its own rules
		 * there; let it apply them. */
		if (f->label != PROTOBUF_C_LABEL_NONE) {
			return (false);
		}
		if (f->type == PROTOBUF_C_TYPE_STRING) {
			if (*(const char *const *)p == NULL) {
				return (false);
			}
		} else {
			const ProtobufCMessage *sub =
			    *(const ProtobufCMessage *const *)p;
			/* An unset singular message decodes as NULL; a
			 * oneof case decodes with its message. */
			if (sub == NULL) {
				if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0) {
					return (false);
				}
			} else if (!msg_whole(sub, depth + 1)) {
				return (false);
			}
		}
	}
	return (true);
}

bool
mbi_inline_whole(const mb_envelope *env)
{
	return (msg_whole(&env->base, 0));
}

size_t
mbi_inline_keep(struct mbi_sub **claims, size_t n, const mb_envelope *env)
{
	size_t kept = 0;

	for (size_t i = 0; i < n; i++) {
		if (env != NULL && mbi_sub_inline_ok(claims[i], env)) {
			claims[kept++] = claims[i];
		} else {
			mbi_sub_unclaim(claims[i]);
		}
	}
	return (kept);
}

void
mbi_inline_run(mb_bus *bus, struct mbi_sub *const *claims, size_t n,
    const mb_envelope *env, const uint8_t *wire, size_t len)
{
	struct mbi_done dones[MBI_INLINE_MAX];

	/* In bus order; then they settle together, and only then are they
	 * free for their mailboxes and other publishers. */
	for (size_t i = 0; i < n; i++) {
		dones[i] = (struct mbi_done){0};
		mbi_sub_run(claims[i], env, wire, len, &dones[i]);
	}
	if (n > 0) {
		mbi_bus_done_all(bus, claims, dones, n);
	}
	for (size_t i = 0; i < n; i++) {
		mbi_sub_unclaim(claims[i]);
	}
}
