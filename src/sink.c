/* SPDX-License-Identifier: MIT */
/* sink.c - attach a consumer sink to the bus as an actor on app/ and effect/. */
#include <stdlib.h>

#include "mobbus.h"

struct sink {
	struct mb_actor_ops ops;
	struct mb_sink_ops sink;
	void *arg;
};

static const char *const sink_topics[] = { MB_TOPIC_APP, MB_TOPIC_EFFECT, NULL };

static int
sink_init_cb(mb_actor *a, void *arg, void **statep)
{
	(void)a;
	*statep = arg;
	return MB_OK;
}

static int
sink_handle_cb(mb_actor *a, void *state, const mb_envelope *env)
{
	struct sink *s = state;

	(void)a;
	return s->sink.receive(s->arg, env);
}

static void
sink_terminate_cb(mb_actor *a, void *state)
{
	(void)a;
	(void)state;
}

static void
sink_release_cb(void *arg)
{
	free(arg);
}

int
mb_sink_start(mb_bus *bus, const struct mb_sink_ops *ops, void *arg,
    mb_actor **ap)
{
	struct sink *s;
	int rv;

	if (bus == NULL || ops == NULL || ops->receive == NULL || ap == NULL)
		return MB_EINVAL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return MB_ENOMEM;
	s->sink = *ops;
	s->arg = arg;
	s->ops = (struct mb_actor_ops){
		.size = sizeof(struct mb_actor_ops),
		.name = "sink",
		.topics = sink_topics,
		.init = sink_init_cb,
		.handle = sink_handle_cb,
		.terminate = sink_terminate_cb,
		.release = sink_release_cb,
	};
	if ((rv = mb_actor_start(bus, &s->ops, s, ap)) != MB_OK) {
		free(s);
		return rv;
	}
	return MB_OK;
}
