/* SPDX-License-Identifier: MIT */
/*
 * pub.c - publishers: stamp envelopes (topic, publisher, sequence number per
 * topic, clocks), encode them straight into an nng message, and send them on
 * the bus's PUB socket, one at a time or in batches. The lock order and the
 * drain accounting they take part in are described in bus.c and bus.h.
 */
#include <pthread.h>
#include <stdarg.h>
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

/*
 * pub_send - commit n sequence numbers from first on topic and send msg,
 * which carries those envelopes. Called with p_mtx held; releases it. Under
 * b_mtx the receivers are counted before the send (one may settle before we
 * return), and a failed send takes everything back: nobody saw those seqs.
 */
static int
pub_send(mb_pub *pub, nng_msg *msg, const char *topic, size_t tlen,
    uint64_t first, uint64_t n)
{
	mb_bus *bus = pub->p_bus;
	uint64_t *slot, count;
	int rv;

	pthread_mutex_lock(&bus->b_mtx);
	if ((slot = mbi_seqtab_get(&pub->p_seq, 0, topic, true)) == NULL) {
		pthread_mutex_unlock(&bus->b_mtx);
		pthread_mutex_unlock(&pub->p_mtx);
		nng_msg_free(msg);
		return (MB_ENOMEM);
	}
	count = mbi_bus_count(bus, topic, tlen, true, n) * n;
	bus->b_inflight += count;
	bus->b_stats.published += n;
	*slot = first + n - 1;

	nng_aio_set_msg(pub->p_aio, msg);
	nng_send_aio(bus->b_sock, pub->p_aio);
	nng_aio_wait(pub->p_aio);
	if ((rv = nng_aio_result(pub->p_aio)) != 0) {
		nng_msg_free(nng_aio_get_msg(pub->p_aio));
		nng_aio_set_msg(pub->p_aio, NULL);
		*slot = first - 1;
		bus->b_stats.published -= n;
		(void)mbi_bus_count(bus, topic, tlen, false, n);
		mbi_bus_settle(bus, count);
	}
	pthread_mutex_unlock(&bus->b_mtx);
	pthread_mutex_unlock(&pub->p_mtx);
	return (mbi_nng_err(rv));
}

/*
 * pub_begin - check topic and take pub's lock, with the next sequence
 * number of topic in *first. Encoding happens under p_mtx only: nobody else
 * can take this publisher's next seq meanwhile, so it is safe to pack it
 * before pub_send commits it.
 */
static int
pub_begin(mb_pub *pub, const char *topic, size_t *tlen, uint64_t *first)
{
	uint64_t *slot;

	if (pub == NULL || topic == NULL) {
		return (MB_EINVAL);
	}
	*tlen = strnlen(topic, MBI_TOPIC_MAX);
	if (*tlen == 0 || *tlen >= MBI_TOPIC_MAX) {
		return (MB_EINVAL);
	}
	pthread_mutex_lock(&pub->p_mtx);
	slot = mbi_seqtab_get(&pub->p_seq, 0, topic, false);
	*first = (slot != NULL ? *slot : 0) + 1;
	return (MB_OK);
}

int
mb_publish(mb_pub *pub, const char *topic, mb_envelope *env)
{
	mb_bus *bus;
	nng_msg *msg;
	uint8_t *body;
	char *saved;
	uint64_t seq;
	size_t tlen;
	size_t plen;

	if (env == NULL || pub_begin(pub, topic, &tlen, &seq) != MB_OK) {
		return (MB_EINVAL);
	}
	bus = pub->p_bus;

	saved = env->topic;
	env->topic = (char *)topic;
	env->publisher = pub->p_id;
	env->seq = seq;
	env->ts_ns = mbi_mono_ns();
	env->at_ms = mb_bus_now_ms(bus);
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

	return (pub_send(pub, msg, topic, tlen, seq, 1));
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
	if (pub_begin(pub, topic, &tlen, &first) != MB_OK) {
		return (MB_EINVAL);
	}
	bus = pub->p_bus;
	ts = mbi_mono_ns();
	at = mb_bus_now_ms(bus);
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

	return (pub_send(pub, msg, topic, tlen, first, n));
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
