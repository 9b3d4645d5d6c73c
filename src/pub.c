/* SPDX-License-Identifier: MIT */
/*
 * pub.c - publishers: stamp envelopes (topic, publisher, sequence number per
 * topic, clocks), encode them straight into an nng message, and send them on
 * the bus's PUB socket, one at a time or in batches. The lock order and the
 * drain accounting they take part in are described in bus.c and bus.h.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>

#include "bus.h"

/* ---- publishers --------------------------------------------------------- */

int
mb_pub_alloc(mb_bus *bus, mb_pub **pubp)
{
	mb_pub *pub;

	if (bus == NULL || pubp == NULL) {
		return (MB_EINVAL);
	}
	if ((pub = calloc(1, sizeof(*pub))) == NULL) {
		return (MB_ENOMEM);
	}
	if (nng_aio_alloc(&pub->p_aio, NULL, NULL) != 0) {
		free(pub);
		return (MB_ENOMEM);
	}
	/* pub0 finishes a send at once; a zero timeout documents that a
	 * publisher must never wait. */
	nng_aio_set_timeout(pub->p_aio, NNG_DURATION_ZERO);
	pthread_mutex_init(&pub->p_mtx, NULL);
	pub->p_bus = bus;
	pub->p_inline = true;

	pthread_mutex_lock(&bus->b_mtx);
	pub->p_id = bus->b_next_pub++;
	pub->p_next = bus->b_pubs;
	if (bus->b_pubs != NULL) {
		bus->b_pubs->p_prev = pub;
	}
	bus->b_pubs = pub;
	pthread_mutex_unlock(&bus->b_mtx);
	*pubp = pub;
	return (MB_OK);
}

void
mb_pub_free(mb_pub *pub)
{
	mb_bus *bus;

	if (pub == NULL) {
		return;
	}
	bus = pub->p_bus;
	pthread_mutex_lock(&bus->b_mtx);
	if (pub->p_prev != NULL) {
		pub->p_prev->p_next = pub->p_next;
	} else {
		bus->b_pubs = pub->p_next;
	}
	if (pub->p_next != NULL) {
		pub->p_next->p_prev = pub->p_prev;
	}
	/* Where its streams ended stays known to later snapshots. If that
	 * runs out of memory, a straggler of this publisher that reaches a
	 * later actor only looks like a hole to it. */
	for (size_t i = 0; i < pub->p_seq.t_cap; i++) {
		struct mbi_seqent *e = &pub->p_seq.t_ents[i];
		uint64_t *slot;

		if (e->e_used && e->e_seq > 0 &&
		    (slot = mbi_seqtab_get(&bus->b_retired, pub->p_id,
		                           e->e_topic, true)) != NULL) {
			*slot = e->e_seq;
		}
	}
	mbi_seqtab_fini(&pub->p_seq);
	pthread_mutex_unlock(&bus->b_mtx);

	nng_aio_free(pub->p_aio);
	pthread_mutex_destroy(&pub->p_mtx);
	free(pub);
}

uint32_t
mb_pub_id(const mb_pub *pub)
{
	return (pub->p_id);
}

void
mb_pub_inline(mb_pub *pub, bool allow)
{
	pub->p_inline = allow;
}

/*
 * pub_decode - the single envelope in msg, decoded for the actors in claims,
 * which keep it if their inline_ok takes it (the rest get msg from their
 * mailbox). Returns how many keep it; *envp is the decoded envelope then.
 * b_mtx held.
 */
static size_t
pub_decode(nng_msg *msg, size_t tlen, struct mbi_sub **claims, size_t n,
    mb_envelope **envp)
{
	const uint8_t *body = nng_msg_body(msg);
	size_t kept;

	*envp = mobbus__envelope__unpack(NULL, nng_msg_len(msg) - tlen - 1,
	                                 body + tlen + 1);
	if ((kept = mbi_inline_keep(claims, n, *envp)) == 0 && *envp != NULL) {
		mobbus__envelope__free_unpacked(*envp, NULL);
		*envp = NULL;
	}
	return (kept);
}

/*
 * pub_send - commit n sequence numbers from first on topic and send msg,
 * which carries those envelopes. Called with p_mtx held; releases it. Under
 * b_mtx the receivers are counted before the send (one may settle before we
 * return), and a failed send takes everything back: nobody saw those seqs.
 * A single envelope is handled here, after the locks are dropped, by every
 * idle actor that takes it inline (bus.h); it is sent only if some matching
 * actor was not claimed.
 */
static int
pub_send(mb_pub *pub, struct mbi_seqent *slot, nng_msg *msg,
    const char *topic, size_t tlen, uint64_t first, uint64_t n)
{
	mb_bus *bus = pub->p_bus;
	struct mbi_sub *claims[MBI_INLINE_MAX];
	mb_envelope *env = NULL;
	nng_msg *keep = NULL; /* msg, when it was not sent */
	size_t nclaims = 0;
	uint64_t matched, count;
	int rv = 0;

	pthread_mutex_lock(&bus->b_mtx);
	if (slot == NULL &&
	    (slot = mbi_seqtab_entry(&pub->p_seq, 0, topic, true)) == NULL) {
		pthread_mutex_unlock(&bus->b_mtx);
		pthread_mutex_unlock(&pub->p_mtx);
		nng_msg_free(msg);
		return (MB_ENOMEM);
	}
	if (n == 1 && bus->b_inline && pub->p_inline) {
		matched = mbi_bus_count_claim(bus, topic, tlen, claims,
		                              &nclaims);
		if (nclaims > 0) {
			nclaims = pub_decode(msg, tlen, claims, nclaims, &env);
		}
		slot->e_inline = matched > 0 && nclaims == matched;
	} else {
		matched = mbi_bus_count(bus, topic, tlen, true, n);
	}
	count = matched * n;
	bus->b_inflight += count;
	bus->b_stats.published += n;
	slot->e_seq = first + n - 1;
	slot->e_unheard = matched == 0;

	bus->b_stats.inline_runs += nclaims;
	if (nclaims == matched) {
		keep = msg; /* nobody needs the message itself */
		bus->b_stats.unsent++;
	} else {
		nng_aio_set_msg(pub->p_aio, msg);
		nng_send_aio(bus->b_sock, pub->p_aio);
		nng_aio_wait(pub->p_aio);
		rv = nng_aio_result(pub->p_aio);
	}
	if (rv != 0) {
		nng_msg_free(nng_aio_get_msg(pub->p_aio));
		nng_aio_set_msg(pub->p_aio, NULL);
		slot->e_seq = first - 1;
		bus->b_stats.published -= n;
		(void)mbi_bus_count(bus, topic, tlen, false, n);
		mbi_bus_settle(bus, count);
		bus->b_stats.inline_runs -= nclaims;
		for (size_t i = 0; i < nclaims; i++) {
			mbi_sub_unclaim(claims[i]);
		}
		nclaims = 0;
	}
	pthread_mutex_unlock(&bus->b_mtx);
	pthread_mutex_unlock(&pub->p_mtx);
	mbi_inline_run(bus, claims, nclaims, env,
	    keep != NULL ? (uint8_t *)nng_msg_body(keep) + tlen + 1 : NULL,
	    keep != NULL ? nng_msg_len(keep) - tlen - 1 : 0);
	if (env != NULL) {
		mobbus__envelope__free_unpacked(env, NULL);
	}
	if (keep != NULL) {
		nng_msg_free(keep);
	}
	return (mbi_nng_err(rv));
}

/*
 * pub_begin - check topic and take pub's lock, with the next sequence
 * number of topic in *first and its entry in *slot (NULL for a topic pub
 * has not published on; the entry stays put while p_mtx is held, as only
 * pub's own publishes add entries). Encoding happens under p_mtx only:
 * nobody else can take this publisher's next seq meanwhile, so it is safe
 * to pack it before pub_send commits it.
 */
static int
pub_begin(mb_pub *pub, const char *topic, size_t *tlen,
    struct mbi_seqent **slot, uint64_t *first)
{
	if (pub == NULL || topic == NULL) {
		return (MB_EINVAL);
	}
	*tlen = strnlen(topic, MBI_TOPIC_MAX);
	if (*tlen == 0 || *tlen >= MBI_TOPIC_MAX) {
		return (MB_EINVAL);
	}
	pthread_mutex_lock(&pub->p_mtx);
	*slot = mbi_seqtab_entry(&pub->p_seq, 0, topic, false);
	*first = (*slot != NULL ? (*slot)->e_seq : 0) + 1;
	return (MB_OK);
}

/* pub_at_ms - the bus clock at ts_ns, a CLOCK_MONOTONIC reading: the
 * simulated time when set (mb_bus_now_ms), without reading the clock twice
 * otherwise. */
static int64_t
pub_at_ms(mb_bus *bus, uint64_t ts_ns)
{
	int64_t ms = atomic_load(&bus->b_clock_ms);

	return (ms >= 0 ? ms : (int64_t)(ts_ns / 1000000u));
}

/*
 * pub_unheard - when the last envelope on topic reached no actor and none
 * has subscribed since, commit seq without encoding or sending anything (a
 * consumer hooked on the deliver actor leaves app/ unheard, for one).
 * Called with p_mtx held; releases it when it returns true.
 */
static bool
pub_unheard(mb_pub *pub, struct mbi_seqent *e, const char *topic,
    size_t tlen, uint64_t seq)
{
	mb_bus *bus = pub->p_bus;
	bool none;

	if (e == NULL || !e->e_unheard) {
		return (false);
	}
	pthread_mutex_lock(&bus->b_mtx);
	if ((none = mbi_bus_count(bus, topic, tlen, true, 0) == 0)) {
		e->e_seq = seq;
		bus->b_stats.published++;
		bus->b_stats.unsent++;
	} else {
		e->e_unheard = false;
	}
	pthread_mutex_unlock(&bus->b_mtx);
	if (none) {
		pthread_mutex_unlock(&pub->p_mtx);
	}
	return (none);
}

/*
 * pub_direct - publish env with nothing encoded or sent, when every actor
 * it reaches takes it inline, as all did on topic last time (e_inline):
 * count, claim and commit as pub_send would, then run them on env itself.
 * Called with p_mtx held; releases it and returns true when it published.
 * false leaves everything as it was (the hint cleared when it no longer
 * holds), for the encoded way.
 */
static bool
pub_direct(mb_pub *pub, struct mbi_seqent *slot, const char *topic,
    size_t tlen, const mb_envelope *env, uint64_t seq)
{
	mb_bus *bus = pub->p_bus;
	struct mbi_sub *claims[MBI_INLINE_MAX];
	size_t nclaims = 0, kept;
	uint64_t matched;

	if (!mbi_inline_whole(env)) {
		return (false);
	}
	pthread_mutex_lock(&bus->b_mtx);
	matched = mbi_bus_count_claim(bus, topic, tlen, claims, &nclaims);
	kept = nclaims == matched ? mbi_inline_keep(claims, nclaims, env) :
	                            mbi_inline_keep(claims, nclaims, NULL);
	if (matched == 0 || kept != matched) {
		(void)mbi_bus_count(bus, topic, tlen, false, 1);
		for (size_t i = 0; i < kept; i++) {
			mbi_sub_unclaim(claims[i]);
		}
		slot->e_inline = false;
		pthread_mutex_unlock(&bus->b_mtx);
		return (false);
	}
	bus->b_inflight += matched;
	bus->b_stats.published++;
	bus->b_stats.unsent++;
	bus->b_stats.inline_runs += kept;
	slot->e_seq = seq;
	pthread_mutex_unlock(&bus->b_mtx);
	pthread_mutex_unlock(&pub->p_mtx);
	mbi_inline_run(bus, claims, kept, env, NULL, 0);
	return (true);
}

int
mb_publish(mb_pub *pub, const char *topic, mb_envelope *env)
{
	mb_bus *bus;
	nng_msg *msg;
	uint8_t *body;
	struct mbi_seqent *slot;
	char *saved;
	uint64_t seq;
	size_t tlen;
	size_t plen;

	if (env == NULL ||
	    pub_begin(pub, topic, &tlen, &slot, &seq) != MB_OK) {
		return (MB_EINVAL);
	}
	bus = pub->p_bus;

	saved = env->topic;
	env->topic = (char *)topic;
	env->publisher = pub->p_id;
	env->seq = seq;
	env->ts_ns = mbi_mono_ns();
	env->at_ms = pub_at_ms(bus, env->ts_ns);
	if (pub_unheard(pub, slot, topic, tlen, seq) ||
	    (slot != NULL && slot->e_inline && bus->b_inline && pub->p_inline &&
	        pub_direct(pub, slot, topic, tlen, env, seq))) {
		env->topic = saved;
		return (MB_OK);
	}
	plen = mobbus__envelope__get_packed_size(env);
	if (nng_msg_alloc(&msg, tlen + 1 + plen) != 0) {
		env->topic = saved;
		pthread_mutex_unlock(&pub->p_mtx);
		return (MB_ENOMEM);
	}
	body = nng_msg_body(msg);
	memcpy(body, topic, tlen);
	body[tlen] = '\0';
	mobbus__envelope__pack(env, body + tlen + 1);
	env->topic = saved;

	return (pub_send(pub, slot, msg, topic, tlen, seq, 1));
}

/*
 * mb_publish_batch - n envelopes on one topic as one nng message: topic, NUL,
 * a 0 byte (no protobuf field is numbered 0, so a single envelope never
 * starts that way), then each envelope as a 4-byte little-endian length and
 * its packed bytes. They take consecutive sequence numbers and arrive as n
 * separate deliveries; the per-message cost of nng is paid once.
 */
int
mb_publish_batch(mb_pub *pub, const char *topic, mb_envelope *const *envs,
    size_t n)
{
	mb_bus *bus;
	nng_msg *msg;
	uint8_t *body;
	struct mbi_seqent *slot;
	uint64_t first;
	size_t tlen, total, off;
	int64_t at;
	uint64_t ts;

	if (envs == NULL || n == 0) {
		return (MB_EINVAL);
	}
	if (n == 1) {
		return (mb_publish(pub, topic, envs[0]));
	}
	if (pub_begin(pub, topic, &tlen, &slot, &first) != MB_OK) {
		return (MB_EINVAL);
	}
	bus = pub->p_bus;
	ts = mbi_mono_ns();
	at = pub_at_ms(bus, ts);
	total = tlen + 2;
	for (size_t i = 0; i < n; i++) {
		char *saved = envs[i]->topic;
		envs[i]->topic = (char *)topic;
		envs[i]->publisher = pub->p_id;
		envs[i]->seq = first + i;
		envs[i]->ts_ns = ts;
		envs[i]->at_ms = at;
		total += 4 + mobbus__envelope__get_packed_size(envs[i]);
		envs[i]->topic = saved;
	}
	if (nng_msg_alloc(&msg, total) != 0) {
		pthread_mutex_unlock(&pub->p_mtx);
		return (MB_ENOMEM);
	}
	body = nng_msg_body(msg);
	memcpy(body, topic, tlen);
	body[tlen] = '\0';
	body[tlen + 1] = 0;
	off = tlen + 2;
	for (size_t i = 0; i < n; i++) {
		char *saved = envs[i]->topic;
		size_t len;
		envs[i]->topic = (char *)topic;
		len = mobbus__envelope__pack(envs[i], body + off + 4);
		envs[i]->topic = saved;
		for (int b = 0; b < 4; b++) {
			body[off + (size_t)b] = (uint8_t)(len >> (8 * b));
		}
		off += 4 + len;
	}

	return (pub_send(pub, slot, msg, topic, tlen, first, n));
}

int
mbi_bus_send_raw(mb_bus *bus, const void *buf, size_t len)
{
	uint64_t n;
	int rv;

	if (bus == NULL || (buf == NULL && len > 0)) {
		return (MB_EINVAL);
	}
	pthread_mutex_lock(&bus->b_mtx);
	n = mbi_bus_count(bus, buf, len, true, 1);
	bus->b_inflight += n;
	if ((rv = mbi_bus_send_locked(bus, buf, len)) != MB_OK) {
		(void)mbi_bus_count(bus, buf, len, false, 1);
		mbi_bus_settle(bus, n);
	}
	pthread_mutex_unlock(&bus->b_mtx);
	return (rv);
}

/* utf8_trim - cut a multi-byte sequence that truncation left unfinished at
 * the end of s, so that the message stays valid UTF-8. */
static void
utf8_trim(char *s, size_t len)
{
	size_t i = len;

	while (i > 0 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) {
		i--;
	}
	if (i > 0 && ((unsigned char)s[i - 1] & 0xc0) == 0xc0) {
		unsigned char lead = (unsigned char)s[i - 1];
		size_t need = (lead & 0xe0) == 0xc0   ? 2
		              : (lead & 0xf0) == 0xe0 ? 3
		                                      : 4;

		if (len - (i - 1) < need) {
			s[i - 1] = '\0';
		}
	}
}

int
mb_publish_error(mb_pub *pub, int err, const char *fmt, ...)
{
	Mobbus__BusError be = MOBBUS__BUS_ERROR__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	char msg[256];
	va_list ap;
	int n;

	if (pub == NULL || fmt == NULL) {
		return (MB_EINVAL);
	}
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0) {
		msg[0] = '\0';
	} else if ((size_t)n >= sizeof(msg)) {
		utf8_trim(msg, sizeof(msg) - 1);
	}
	be.code = (char *)mb_err_name(err);
	be.message = msg;
	env.body_case = MOBBUS__ENVELOPE__BODY_ERROR;
	env.error = &be;
	return (mb_publish(pub, "bus/error", &env));
}
