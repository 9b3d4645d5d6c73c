/* SPDX-License-Identifier: MIT */
/*
 * conn.c - the connection actor: the app's sockets, opened only while the
 * app may use the network (foreground or an open wake window) and closed
 * synchronously before the OS can freeze the process, so no stale socket or
 * timer outlives a suspension.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mobbus.h"

#define CONN_MAX 16
#define WINDOW_MAX 32
#define CONN_DIAL_WAIT_MS 200

struct conn {
	char name[64];
	char url[512];
	int fd;              /* -1: down */
	unsigned attempt;    /* failed dials in a row */
	int64_t retry_at;    /* -1: no retry scheduled */
};

struct conn_actor {
	struct mb_conn_opts opts;
	mb_pub *pub;
	mb_bus *bus;
	int foreground;
	int online;
	char windows[WINDOW_MAX][128]; /* open push_ids and task ids */
	int nwindows;
	struct conn conns[CONN_MAX];
	int nconns;
	uint64_t rng;
};

static const char *const conn_topics[] = { MB_TOPIC_CMD, MB_TOPIC_LIFECYCLE,
	MB_TOPIC_NOTIFY_BACKGROUND, MB_TOPIC_WAKE, MB_TOPIC_EFFECT, "conn/net",
	MB_TOPIC_TIME, NULL };

static uint64_t
conn_rand(struct conn_actor *c)
{
	/* xorshift64*: enough for jitter, and reproducible from a seed. */
	c->rng ^= c->rng >> 12;
	c->rng ^= c->rng << 25;
	c->rng ^= c->rng >> 27;
	return c->rng * 2685821657736338717ULL;
}

static int
conn_may_open(const struct conn_actor *c)
{
	return c->online && (c->foreground || c->nwindows > 0);
}

static void
conn_report(struct conn_actor *c, const struct conn *k, int up)
{
	Mobbus__ConnState cs = MOBBUS__CONN_STATE__INIT;
	mb_envelope env = MOBBUS__ENVELOPE__INIT;

	cs.name = (char *)k->name;
	cs.up = up;
	env.body_case = MOBBUS__ENVELOPE__BODY_CONN;
	env.conn = &cs;
	(void)mb_publish(c->pub, "out/app/conn", &env);
}

static void
conn_close(struct conn_actor *c, struct conn *k)
{
	if (k->fd < 0)
		return;
	close(k->fd);
	k->fd = -1;
	conn_report(c, k, 0);
}

/* host and port of ws://, wss://, http(s):// and tcp:// URLs */
static int
conn_resolve_url(const char *url, struct sockaddr_storage *addr,
    unsigned *addrlen)
{
	char host[256], port[16];
	const char *p = strstr(url, "://"), *end, *colon;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
	int secure = strncmp(url, "wss", 3) == 0 || strncmp(url, "https", 5) == 0;

	if (p == NULL)
		return MB_EINVAL;
	p += 3;
	end = p + strcspn(p, "/?#");
	colon = memchr(p, ':', (size_t)(end - p));
	snprintf(host, sizeof(host), "%.*s",
	    (int)((colon ? colon : end) - p), p);
	snprintf(port, sizeof(port), "%.*s",
	    colon ? (int)(end - colon - 1) : 3, colon ? colon + 1 :
	    secure ? "443" : "80");
	if (getaddrinfo(host, port, &hints, &res) != 0)
		return MB_EIO;
	memcpy(addr, res->ai_addr, res->ai_addrlen);
	*addrlen = (unsigned)res->ai_addrlen;
	freeaddrinfo(res);
	return MB_OK;
}

static void
conn_schedule(struct conn_actor *c, struct conn *k, int64_t now)
{
	uint64_t ceiling = c->opts.backoff_ms;

	for (unsigned i = 0; i < k->attempt && ceiling < c->opts.backoff_cap_ms;
	     i++)
		ceiling *= 2;
	if (ceiling > c->opts.backoff_cap_ms)
		ceiling = c->opts.backoff_cap_ms;
	/* Full jitter: anywhere up to the ceiling, so a fleet of phones
	 * coming back online does not dial in step. */
	k->retry_at = now + (int64_t)(conn_rand(c) % (ceiling + 1));
	(void)mb_bus_wake_at(c->bus, k->retry_at);
}

static void
conn_dial(struct conn_actor *c, struct conn *k, int64_t now)
{
	struct sockaddr_storage addr;
	unsigned addrlen = 0;
	struct pollfd pfd;
	int fd, err = 0, rv;
	socklen_t len = sizeof(err);

	if (k->fd >= 0 || !conn_may_open(c))
		return;
	k->retry_at = -1;
	rv = c->opts.resolve ?
	    c->opts.resolve(c->opts.resolve_arg, k->name, k->url, &addr,
	        &addrlen) :
	    conn_resolve_url(k->url, &addr, &addrlen);
	if (rv != MB_OK ||
	    (fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	         0)) < 0)
		goto failed;
	if (connect(fd, (struct sockaddr *)&addr, addrlen) != 0) {
		if (errno != EINPROGRESS) {
			close(fd);
			goto failed;
		}
		pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
		if (poll(&pfd, 1, CONN_DIAL_WAIT_MS) != 1 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 ||
		    err != 0) {
			close(fd);
			goto failed;
		}
	}
	k->fd = fd;
	k->attempt = 0;
	conn_report(c, k, 1);
	return;
failed:
	/* A failed dial while down changes no state: no message. */
	k->attempt++;
	conn_schedule(c, k, now);
}

/* Whether the peer closed or reset a live socket. */
static int
conn_dead(int fd)
{
	char b;
	ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static void
conn_all(struct conn_actor *c, int open, int64_t now)
{
	for (int i = 0; i < c->nconns; i++) {
		if (open)
			conn_dial(c, &c->conns[i], now);
		else
			conn_close(c, &c->conns[i]);
	}
}

static void
conn_tick(struct conn_actor *c, int64_t now)
{
	int64_t next = -1;

	for (int i = 0; i < c->nconns; i++) {
		struct conn *k = &c->conns[i];
		if (k->fd >= 0 && conn_dead(k->fd)) {
			conn_close(c, k);
			if (conn_may_open(c))
				conn_schedule(c, k, now);
		}
		if (k->fd < 0 && k->retry_at >= 0 && k->retry_at <= now)
			conn_dial(c, k, now);
		if (k->retry_at >= 0 && (next < 0 || k->retry_at < next))
			next = k->retry_at;
	}
	if (next >= 0)
		(void)mb_bus_wake_at(c->bus, next);
}

static void
window_open(struct conn_actor *c, const char *id, int64_t now)
{
	if (*id == '\0' || c->nwindows == WINDOW_MAX)
		return;
	snprintf(c->windows[c->nwindows++], sizeof(c->windows[0]), "%s", id);
	conn_all(c, 1, now);
}

static void
window_close(struct conn_actor *c, const char *id)
{
	for (int i = 0; i < c->nwindows; i++) {
		if (strcmp(c->windows[i], id) != 0)
			continue;
		memmove(c->windows[i], c->windows[i + 1],
		    (size_t)(c->nwindows - i - 1) * sizeof(c->windows[0]));
		c->nwindows--;
		/* After the completion effect: the OS may freeze us now. */
		if (c->nwindows == 0 && !c->foreground)
			conn_all(c, 0, 0);
		return;
	}
}

static void
conn_connect(struct conn_actor *c, const Mobbus__AppCommand *cmd, int64_t now)
{
	struct conn *k = NULL;

	for (int i = 0; i < c->nconns; i++)
		if (strcmp(c->conns[i].name, cmd->name) == 0)
			k = &c->conns[i];
	if (k == NULL) {
		if (c->nconns == CONN_MAX) {
			(void)mb_publish_error(c->pub, MB_EINVAL,
			    "connect %s: more than %d connections", cmd->name,
			    CONN_MAX);
			return;
		}
		k = &c->conns[c->nconns++];
		memset(k, 0, sizeof(*k));
		k->fd = -1;
		k->retry_at = -1;
		snprintf(k->name, sizeof(k->name), "%s", cmd->name);
	}
	snprintf(k->url, sizeof(k->url), "%s", cmd->url);
	conn_dial(c, k, now);
}

static void
conn_lifecycle(struct conn_actor *c, Mobbus__Lifecycle__Event ev, int64_t now)
{
	switch (ev) {
	case MOBBUS__LIFECYCLE__EVENT__WILL_ENTER_FOREGROUND:
	case MOBBUS__LIFECYCLE__EVENT__DID_BECOME_ACTIVE:
		if (c->foreground)
			return; /* a duplicate foreground dials nothing */
		c->foreground = 1;
		conn_all(c, 1, now);
		return;
	case MOBBUS__LIFECYCLE__EVENT__DID_ENTER_BACKGROUND:
		c->foreground = 0;
		if (c->nwindows == 0)
			conn_all(c, 0, now);
		return;
	case MOBBUS__LIFECYCLE__EVENT__SUSPEND:
	case MOBBUS__LIFECYCLE__EVENT__WILL_TERMINATE:
		c->foreground = 0;
		c->nwindows = 0;
		conn_all(c, 0, now);
		return;
	default:
		return;
	}
}

static int
conn_handle_cb(mb_actor *a, void *state, const mb_envelope *env)
{
	struct conn_actor *c = state;
	int64_t now = env->at_ms;

	(void)a;
	switch (env->body_case) {
	case MOBBUS__ENVELOPE__BODY_APP:
		if (env->app->do_ == MOBBUS__APP_COMMAND__DO__CONNECT)
			conn_connect(c, env->app, now);
		break;
	case MOBBUS__ENVELOPE__BODY_LIFECYCLE:
		conn_lifecycle(c, env->lifecycle->event, now);
		break;
	case MOBBUS__ENVELOPE__BODY_NOTIFICATION:
		if (env->notification->budget_ms > 0 &&
		    !env->notification->complete_now)
			window_open(c, env->notification->push_id, now);
		break;
	case MOBBUS__ENVELOPE__BODY_WAKE:
		if (env->wake->phase == MOBBUS__WAKE_WINDOW__PHASE__OPEN)
			window_open(c, env->wake->id, now);
		break;
	case MOBBUS__ENVELOPE__BODY_EFFECT:
		if (env->effect->kind == MOBBUS__EFFECT__KIND__PUSH_COMPLETION)
			window_close(c, env->effect->push_id);
		else if (env->effect->kind == MOBBUS__EFFECT__KIND__TASK_COMPLETED)
			window_close(c, env->effect->identifier);
		break;
	case MOBBUS__ENVELOPE__BODY_CONNECTIVITY:
		c->online = env->connectivity->online;
		conn_all(c, c->online, now); /* offline drops; online re-dials */
		break;
	case MOBBUS__ENVELOPE__BODY_TICK:
		conn_tick(c, env->tick->now_ms);
		break;
	default:
		break;
	}
	return MB_OK;
}

static int
conn_init_cb(mb_actor *a, void *arg, void **statep)
{
	struct conn_actor *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return MB_ENOMEM;
	c->opts = *(const struct mb_conn_opts *)arg;
	c->pub = mb_actor_pub(a);
	c->bus = mb_actor_bus(a);
	c->online = 1;
	c->rng = c->opts.seed ? c->opts.seed : (uint64_t)time(NULL) | 1;
	*statep = c;
	return MB_OK;
}

static void
conn_terminate_cb(mb_actor *a, void *state)
{
	struct conn_actor *c = state;

	(void)a;
	for (int i = 0; i < c->nconns; i++)
		if (c->conns[i].fd >= 0)
			close(c->conns[i].fd);
	free(c);
}

static void
conn_release_cb(void *arg)
{
	free(arg);
}

static const struct mb_actor_ops conn_ops = {
	.size = sizeof(struct mb_actor_ops),
	.name = "conn",
	.topics = conn_topics,
	.init = conn_init_cb,
	.handle = conn_handle_cb,
	.terminate = conn_terminate_cb,
	.release = conn_release_cb,
};

int
mb_conn_start(mb_bus *bus, const struct mb_conn_opts *opts, mb_actor **ap)
{
	struct mb_conn_opts *o = calloc(1, sizeof(*o));
	int rv;

	if (o == NULL)
		return MB_ENOMEM;
	if (opts != NULL)
		*o = *opts;
	o->size = sizeof(*o);
	if (o->backoff_ms == 0)
		o->backoff_ms = 1000;
	if (o->backoff_cap_ms == 0)
		o->backoff_cap_ms = 60000;
	if ((rv = mb_actor_start(bus, &conn_ops, o, ap)) != MB_OK)
		free(o);
	return rv;
}
