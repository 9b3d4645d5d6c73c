/* SPDX-License-Identifier: MIT */
/*
 * sim.c - the simulated process: its bus, store and actors, the callbacks
 * both platforms share, and simulated time.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "json.h"
#include "replay.h"
#include "sim.h"


void
mbi_sim_hash(const char *text, char out[17])
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a, 64 bits */

	for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
		h ^= *p;
		h *= 1099511628211ULL;
	}
	snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* Reading 6: both platforms drop google.*, gcm.*, from, collapse_key and
 * message_type from data. */
char *
mbi_sim_strip_reserved(json_t *obj)
{
	json_t *out = json_object();
	const char *key;
	json_t *v;
	char *s;

	if (out == NULL)
		return NULL;
	json_object_foreach(obj, key, v) {
		if (strncmp(key, "google.", 7) == 0 ||
		    strncmp(key, "gcm.", 4) == 0 || strcmp(key, "from") == 0 ||
		    strcmp(key, "collapse_key") == 0 ||
		    strcmp(key, "message_type") == 0)
			continue;
		json_object_set(out, key, v);
	}
	s = mbi_json_dump(out);
	json_decref(out);
	return s;
}

int
mbi_sim_publish(struct mb_sim *s, const char *topic, mb_envelope *env,
    const struct mb_trace_line *l)
{
	(void)l;
	if (!s->alive)
		return MB_OK;
	return mb_publish(s->pub, topic, env);
}

static const char *
lifecycle_topic(Mobbus__Lifecycle__Event ev)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
	    &mobbus__lifecycle__event__descriptor, (int)ev);

	/* The enum's own names, in lower case: "lifecycle/launch", ... */
	return v != NULL ? v->name : "unknown";
}

void
mbi_sim_lifecycle(struct mb_sim *s, Mobbus__Lifecycle__Event ev,
    const struct mb_trace_line *l)
{
	Mobbus__Lifecycle lc = MOBBUS__LIFECYCLE__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	char topic[48];

	lc.event = ev;
	lc.os = s->trace->os == MB_OS_ANDROID ? MOBBUS__OS__OS_ANDROID :
	                                        MOBBUS__OS__OS_IOS;
	env.body_case = MOBBUS__ENVELOPE__BODY_LIFECYCLE;
	env.lifecycle = &lc;
	snprintf(topic, sizeof(topic), "lifecycle/%s", lifecycle_topic(ev));
	for (char *p = topic; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	(void)mbi_sim_publish(s, topic, &env, l);
	/* After these the OS may freeze or end the process: the bridge's
	 * handler returns only once everything before it is durable. */
	if (s->alive && (ev == MOBBUS__LIFECYCLE__EVENT__DID_ENTER_BACKGROUND ||
	                    ev == MOBBUS__LIFECYCLE__EVENT__SUSPEND ||
	                    ev == MOBBUS__LIFECYCLE__EVENT__WILL_TERMINATE))
		(void)mb_flush(s->store, MB_SIM_DRAIN_MS);
}

/* Rule 7: over-limit platform input is an error line, and nothing else is
 * handed for it; an iOS fetch window it opened is completed failed. */
int
mbi_sim_too_large(struct mb_sim *s, const struct mb_trace_line *l,
    size_t bytes, const char *push_id)
{
	Mobbus__BusError e = MOBBUS__BUS_ERROR__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	char msg[96];

	snprintf(msg, sizeof(msg), "%s payload is %zu bytes, over %d",
	    mb_cb_name(l->cb), bytes, MB_PAYLOAD_LIMIT);
	e.code = (char *)mb_err_name(MB_ETOOLARGE);
	e.line = l->lineno;
	e.bytes = bytes;
	e.limit = MB_PAYLOAD_LIMIT;
	e.push_id = (char *)(push_id ? push_id : "");
	(void)msg; /* the transcript line carries code, line, bytes, limit */
	env.body_case = MOBBUS__ENVELOPE__BODY_ERROR;
	env.error = &e;
	return mbi_sim_publish(s, MB_TOPIC_NOTIFY_REJECTED, &env, l);
}

/* The consumer: each line it receives goes to the replay driver, which
 * outlives this process. */
static int
server_listen(struct mb_sim_server *sv)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
		.sin_port = htons((uint16_t)sv->port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1;

	if (sv->fd >= 0)
		return MB_OK;
	if ((sv->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return MB_EIO;
	setsockopt(sv->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(sv->fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    listen(sv->fd, 64) != 0) {
		close(sv->fd);
		sv->fd = -1;
		return MB_EIO;
	}
	return MB_OK;
}

/* In a new process: the servers that are up listen again. */
void
mbi_sim_servers_listen(struct mb_sim *s)
{
	for (int i = 0; i < s->nservers; i++) {
		s->servers[i].fd = -1;
		if (s->servers[i].up)
			(void)server_listen(&s->servers[i]);
	}
}

/*
 * A server line. Down and refuse close the listener, which resets the
 * connections it holds; the connection actor notices at once (a tick at the
 * same time), unless the process is frozen.
 */
int
mbi_sim_server(struct mb_sim *s, const struct mb_trace_line *l)
{
	const char *name = mbi_json_str(l->obj, "name");
	const char *state = mbi_json_str(l->obj, "state");
	Mobbus__Tick tick = MOBBUS__TICK__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;

	for (int i = 0; i < s->nservers; i++) {
		struct mb_sim_server *sv = &s->servers[i];
		if (strcmp(sv->name, name) != 0)
			continue;
		sv->up = strcmp(state, "up") == 0;
		if (sv->up) {
			(void)server_listen(sv);
		} else if (sv->fd >= 0) {
			close(sv->fd);
			sv->fd = -1;
		}
	}
	if (!s->alive || s->suspended)
		return MB_OK;
	tick.now_ms = s->now;
	env.body_case = MOBBUS__ENVELOPE__BODY_TICK;
	env.tick = &tick;
	return mb_publish(s->pub, MB_TOPIC_TIME, &env);
}

static int
sim_resolve_cb(void *arg, const char *name, const char *url,
    struct sockaddr_storage *addr, unsigned *addrlen)
{
	struct mb_sim *s = arg;
	struct sockaddr_in *a = (struct sockaddr_in *)addr;

	(void)url; /* recorded as given; the replay's endpoint is local */
	for (int i = 0; i < s->nservers; i++) {
		if (strcmp(s->servers[i].name, name) != 0)
			continue;
		memset(addr, 0, sizeof(*addr));
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)s->servers[i].port);
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		*addrlen = sizeof(*a);
		return MB_OK;
	}
	return MB_EINVAL; /* no server line names it: nothing answers */
}

static int
sink_receive_cb(void *arg, const mb_envelope *env)
{
	struct mb_sim *s = arg;
	char *line = mb_transcript_line(env);
	int rv = MB_OK;

	if (line == NULL)
		return MB_OK;
	if (fprintf(s->out, "%s\n", line) < 0 || fflush(s->out) != 0)
		rv = MB_EIO;
	free(line);
	return rv;
}

void
mbi_sim_process_end(struct mb_sim *s)
{
	if (!s->alive)
		return;
	(void)mb_bus_drain(s->bus, MB_SIM_DRAIN_MS);
	mb_store_close(s->store);
	s->store = NULL;
	mb_bus_close(s->bus); /* stops the actors, frees the publisher */
	s->bus = NULL;
	s->pub = NULL;
	s->alive = 0;
	s->suspended = 0;
	s->active = 0;
	s->foreground = 0;
}

int
mbi_sim_process_start(struct mb_sim *s)
{
	static const struct mb_sink_ops sink_ops = {
		.size = sizeof(struct mb_sink_ops),
		.receive = sink_receive_cb,
	};
	struct mb_store_opts sopts = { .size = sizeof(sopts),
		.path = s->db_path, .commit_delay_ms = MB_SIM_COMMIT_DELAY_MS };
	struct mb_deliver_opts dopts = { .size = sizeof(dopts),
		.manual_ack = s->trace->manual_ack };
	struct mb_conn_opts copts = { .size = sizeof(copts),
		.resolve = sim_resolve_cb, .resolve_arg = s,
		.backoff_ms = 1000, .backoff_cap_ms = 60000,
		.seed = 0x6d6f62627573ULL };
	struct mb_policy_opts popts = { .size = sizeof(popts),
		.os = s->trace->os == MB_OS_ANDROID ? MOBBUS__OS__OS_ANDROID :
		                                      MOBBUS__OS__OS_IOS,
		.android_sdk = s->trace->android_sdk };
	const char *modes[9] = { 0 };
	size_t i;
	json_t *v;
	int rv;

	json_array_foreach(s->trace->background_modes, i, v)
		if (i < 8 && json_is_string(v))
			modes[i] = json_string_value(v);
	popts.background_modes = modes;

	mbi_sim_process_end(s);
	if ((rv = mb_bus_open(&s->bus, NULL)) != MB_OK)
		return rv;
	mb_bus_set_clock(s->bus, s->now);
	if ((rv = mb_pub_alloc(s->bus, &s->pub)) != MB_OK ||
	    (rv = mb_store_open(s->bus, &sopts, &s->store)) != MB_OK)
		goto fail;
	/* The consumer hangs on the deliver actor: what it receives is what
	 * the transcript shows, in the order it received it. */
	dopts.store = s->store;
	dopts.consumer = s->sink_ops ? s->sink_ops : &sink_ops;
	dopts.consumer_arg = s->sink_ops ? s->sink_arg : s;
	if ((rv = mb_deliver_start(s->bus, &dopts, &s->deliver)) != MB_OK ||
	    (rv = mb_policy_start(s->bus, &popts, &s->policy)) != MB_OK ||
	    (rv = mb_conn_start(s->bus, &copts, &s->conn)) != MB_OK)
		goto fail;
	s->alive = 1;
	s->force_stopped = 0;
	s->launch_at = s->now;
	s->launch_phase = 1;
	mbi_sim_lifecycle(s, MOBBUS__LIFECYCLE__EVENT__LAUNCH, NULL);
	return MB_OK;
fail:
	mb_store_close(s->store);
	s->store = NULL;
	mb_bus_close(s->bus);
	s->bus = NULL;
	return rv;
}

int
mbi_sim_app(struct mb_sim *s, const struct mb_trace_line *l)
{
	static const struct {
		const char *name;
		Mobbus__AppCommand__Do what;
	} dos[] = {
		{ "subscribe", MOBBUS__APP_COMMAND__DO__SUBSCRIBE },
		{ "restart", MOBBUS__APP_COMMAND__DO__RESTART },
		{ "ack", MOBBUS__APP_COMMAND__DO__ACK },
		{ "complete", MOBBUS__APP_COMMAND__DO__COMPLETE },
		{ "keep_alive", MOBBUS__APP_COMMAND__DO__KEEP_ALIVE },
		{ "keep_alive_stop", MOBBUS__APP_COMMAND__DO__KEEP_ALIVE_STOP },
		{ "connect", MOBBUS__APP_COMMAND__DO__CONNECT },
	};
	Mobbus__AppCommand c = MOBBUS__APP_COMMAND__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	const char *what = l ? mbi_json_str(l->obj, "do") : "subscribe";
	char topic[48];

	for (size_t i = 0; i < sizeof(dos) / sizeof(dos[0]); i++)
		if (strcmp(dos[i].name, what) == 0)
			c.do_ = dos[i].what;
#define FIELD_(f)                                                              \
	if (l && mbi_json_str(l->obj, #f))                                     \
		c.f = (char *)mbi_json_str(l->obj, #f);
	FIELD_(id)
	FIELD_(push_id)
	FIELD_(token)
	FIELD_(result)
	FIELD_(name)
	FIELD_(url)
#undef FIELD_
	snprintf(topic, sizeof(topic), "cmd/%s", what);
	env.body_case = MOBBUS__ENVELOPE__BODY_APP;
	env.app = &c;
	return mbi_sim_publish(s, topic, &env, l);
}

int
mbi_sim_common(struct mb_sim *s, const struct mb_trace_line *l)
{
	Mobbus__WakeWindow w = MOBBUS__WAKE_WINDOW__INIT;
	Mobbus__Connectivity c = MOBBUS__CONNECTIVITY__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;
	const json_t *o = l->obj, *v;
	json_t *fields;
	const char *key;
	int rv;

	switch (l->cb) {
	case MB_CB_SUSPEND:
		mbi_sim_lifecycle(s, MOBBUS__LIFECYCLE__EVENT__SUSPEND, l);
		s->suspended = 1;
		return MB_OK;
	case MB_CB_KILL:
		return MB_OK; /* the replay driver SIGKILLs the process */
	case MB_CB_BG_TASK:
	case MB_CB_BG_TASK_EXPIRE:
		w.kind = MOBBUS__WAKE_WINDOW__KIND__TASK;
		w.phase = l->cb == MB_CB_BG_TASK ?
		    MOBBUS__WAKE_WINDOW__PHASE__OPEN :
		    MOBBUS__WAKE_WINDOW__PHASE__EXPIRE;
		w.id = (char *)mbi_json_str(o, "identifier");
		v = json_object_get(o, "budget_ms");
		w.budget_ms = json_is_integer(v) ? (uint32_t)json_integer_value(v) :
		                                   30000;
		env.body_case = MOBBUS__ENVELOPE__BODY_WAKE;
		env.wake = &w;
		return mbi_sim_publish(s,
		    l->cb == MB_CB_BG_TASK ? "wake/open" : "wake/expire", &env, l);
	case MB_CB_NET:
		if ((fields = json_object()) == NULL)
			return MB_ENOMEM;
		json_object_foreach((json_t *)o, key, v)
			if (strcmp(key, "at") && strcmp(key, "cb"))
				json_object_set(fields, key, (json_t *)v);
		c.online = json_is_true(json_object_get(o, "online"));
		c.transport = (char *)(mbi_json_str(o, "transport") ?
		        mbi_json_str(o, "transport") : "");
		c.expensive = json_is_true(json_object_get(o, "expensive"));
		c.validated = json_is_true(json_object_get(o, "validated"));
		c.constrained = json_is_true(json_object_get(o, "constrained"));
		c.fields_json = mbi_json_dump(fields);
		json_decref(fields);
		env.body_case = MOBBUS__ENVELOPE__BODY_CONNECTIVITY;
		env.connectivity = &c;
		rv = c.fields_json ? mbi_sim_publish(s, "conn/net", &env, l) :
		                     MB_ENOMEM;
		free(c.fields_json);
		return rv;
	case MB_CB_APP:
		return mbi_sim_app(s, l);
	case MB_CB_FGS_START:
	case MB_CB_FGS_STOP: {
		Mobbus__KeepAlive k = MOBBUS__KEEP_ALIVE__INIT;
		k.fgs_type = (char *)(mbi_json_str(o, "type") ?
		        mbi_json_str(o, "type") : "");
		env.body_case = MOBBUS__ENVELOPE__BODY_KEEP_ALIVE;
		env.keep_alive = &k;
		return mbi_sim_publish(s,
		    l->cb == MB_CB_FGS_START ? "keepalive/fgs_start" :
		                               "keepalive/fgs_stop",
		    &env, l);
	}
	case MB_CB_SERVER:
		return mbi_sim_server(s, l);
	default:
		/* advance: time moved, and that is all */
		return MB_OK;
	}
}

/* Move simulated time; due timers fire unless the process is frozen. */
void
mbi_sim_advance(struct mb_sim *s, int64_t at)
{
	Mobbus__Tick tick = MOBBUS__TICK__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;

	if (at > s->now || !s->alive) {
		s->now = at > s->now ? at : s->now;
		if (!s->alive)
			return;
		mb_bus_set_clock(s->bus, s->now);
	}
	if (s->launch_phase && s->now - s->launch_at >= MB_LAUNCH_PHASE_MS)
		s->launch_phase = 0;
	if (s->suspended)
		return;
	tick.now_ms = s->now;
	env.body_case = MOBBUS__ENVELOPE__BODY_TICK;
	env.tick = &tick;
	(void)mb_publish(s->pub, MB_TOPIC_TIME, &env);
	(void)mb_bus_drain(s->bus, MB_SIM_DRAIN_MS);
}

void
mb_transcript_fini(struct mb_transcript *tr)
{
	for (size_t i = 0; i < tr->n; i++)
		free(tr->lines[i]);
	free(tr->lines);
	tr->lines = NULL;
	tr->n = tr->cap = 0;
}
