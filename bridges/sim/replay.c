/* SPDX-License-Identifier: MIT */
/*
 * replay.c - drive a trace through real processes. Each process the trace
 * starts runs in a child: it opens its bus, store and actors on the replay's
 * database file, handles its lines (publishing each and draining the bus
 * before the next, so the replay is deterministic although actors run on
 * their own threads), and sends what the consumer received up a pipe. At a
 * kill line the driver SIGKILLs it; the next process starts afresh on the
 * same file, with only what the store had committed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "json.h"
#include "replay.h"
#include "sim.h"

/* The running child and the temporary database, for replay_signal_cb. */
static volatile pid_t replay_child;
static char replay_tmp[4096];

/* Whether line l starts a process when none runs (reading 16). */
static int
starts_process(const struct mb_trace *t, const struct mb_trace_line *l,
    int force_stopped)
{
	if (t->os == MB_OS_IOS)
		return l->cb == MB_CB_LAUNCH;
	return l->cb == MB_CB_PROCESS_START ||
	    (l->cb == MB_CB_ON_MESSAGE_RECEIVED && !force_stopped);
}

static int
thaws(enum mb_cb cb)
{
	return cb != MB_CB_ADVANCE && cb != MB_CB_SERVER;
}

static void
child_subscribe(struct mb_sim *s, int64_t at)
{
	mbi_sim_advance(s, at);
	mbi_sim_app(s, NULL);
	(void)mb_bus_drain(s->bus, MB_SIM_DRAIN_MS);
}

/*
 * The child: run lines from start until a kill line or the end. Reports
 * "#K <index>" and waits to be killed, or "#E <err>" and exits.
 */
static void
child_run(const struct mb_trace *t, size_t start, int first,
    const char *db_path, struct mb_sim_server *servers, int nservers,
    const struct mb_sink_ops *sink, void *sink_arg, FILE *out)
{
	struct mb_sim s = { 0 };
	int first_up = first && t->consumer_up_at >= 0;
	int64_t prev_at;
	int rv = MB_OK;

	s.trace = t;
	s.first = first;
	s.db_path = db_path;
	s.out = out;
	s.servers = servers;
	s.nservers = nservers;
	s.sink_ops = sink;
	s.sink_arg = sink_arg;
	mbi_sim_servers_listen(&s);
	s.now = t->lines[start].at;
	prev_at = s.now;
	for (size_t i = start; i < t->nlines && rv == MB_OK; i++) {
		const struct mb_trace_line *l = &t->lines[i];

		if (first_up && l->at > t->consumer_up_at) {
			first_up = 0;
			if (s.alive)
				child_subscribe(&s, t->consumer_up_at);
		}
		if (l->cb == MB_CB_KILL && s.alive) {
			/* Simulated time passed since the last line: the group
			 * commit would have run by now. */
			if (l->at - prev_at >= MB_SIM_COMMIT_DELAY_MS)
				(void)mb_flush(s.store, MB_SIM_DRAIN_MS);
			else
				(void)mb_bus_drain(s.bus, MB_SIM_DRAIN_MS);
			fprintf(out, "#K %zu\n", i);
			fflush(out);
			for (;;)
				pause();
		}
		if (s.alive && s.suspended && thaws(l->cb))
			s.suspended = 0;
		mbi_sim_advance(&s, l->at);
		rv = t->os == MB_OS_IOS ? mbi_sim_ios(&s, l) :
		                          mbi_sim_android(&s, l);
		if (s.alive)
			(void)mb_bus_drain(s.bus, MB_SIM_DRAIN_MS);
		prev_at = l->at;
	}
	if (rv == MB_OK && first_up && s.alive)
		child_subscribe(&s, t->consumer_up_at);
	mbi_sim_process_end(&s);
	fprintf(out, "#E %d\n", rv);
	fflush(out);
}

/*
 * The child as another program (mb_replay_opts.child_argv): its stdout is
 * the pipe, and what it needs to know follows its own arguments: the trace
 * file, the first line, whether it is the first process, the database, and
 * each server as "port:up:name". mbi_replay_child_main reads them back.
 */
static void
child_exec(const char *const *argv0, const struct mb_trace *t, size_t start,
    int first, const char *db_path, const struct mb_sim_server *servers,
    int nservers, int out_fd)
{
	size_t n0 = 0, k;
	char **argv, num[2][32];

	while (argv0[n0] != NULL)
		n0++;
	if (dup2(out_fd, STDOUT_FILENO) < 0 ||
	    (argv = calloc(n0 + 5 + (size_t)nservers, sizeof(*argv))) == NULL)
		_exit(127);
	for (k = 0; k < n0; k++)
		argv[k] = (char *)argv0[k];
	snprintf(num[0], sizeof(num[0]), "%zu", start);
	snprintf(num[1], sizeof(num[1]), "%d", first);
	argv[k++] = t->path;
	argv[k++] = num[0];
	argv[k++] = num[1];
	argv[k++] = (char *)db_path;
	for (int i = 0; i < nservers; i++)
		if (asprintf(&argv[k++], "%d:%d:%s", servers[i].port,
		        servers[i].up, servers[i].name) < 0)
			_exit(127);
	execvp(argv[0], argv);
	fprintf(stderr, "mobbus: cannot run %s\n", argv[0]);
	_exit(127);
}

int
mbi_replay_child_main(int argc, char **argv, const struct mb_sink_ops *sink,
    void *sink_arg, FILE *out)
{
	struct mb_sim_server *servers = NULL;
	struct mb_trace *t = NULL;
	char err[1024];
	int nservers = 0, rv;
	size_t start;

	if (argc < 4) {
		fprintf(out, "#E %d\n", MB_EINVAL);
		fflush(out);
		return MB_EINVAL;
	}
	if ((rv = mb_trace_load(argv[0], &t, err, sizeof(err))) != MB_OK) {
		fprintf(stderr, "mobbus: %s\n", err);
		fprintf(out, "#E %d\n", rv);
		fflush(out);
		return rv;
	}
	start = strtoul(argv[1], NULL, 10);
	if ((servers = calloc((size_t)argc, sizeof(*servers))) == NULL ||
	    start >= t->nlines) {
		free(servers);
		mb_trace_free(t);
		fprintf(out, "#E %d\n", MB_EINVAL);
		fflush(out);
		return MB_EINVAL;
	}
	for (int i = 4; i < argc; i++) {
		struct mb_sim_server *sv = &servers[nservers++];
		char *name = NULL;
		sv->port = (int)strtol(argv[i], &name, 10);
		sv->up = name && *name == ':' ? (int)strtol(name + 1, &name, 10) : 0;
		snprintf(sv->name, sizeof(sv->name), "%s",
		    name && *name == ':' ? name + 1 : "");
		sv->fd = -1;
	}
	child_run(t, start, atoi(argv[2]), argv[3], servers, nservers, sink,
	    sink_arg, out);
	free(servers);
	mb_trace_free(t);
	return MB_OK;
}

static int
transcript_add(struct mb_transcript *tr, const char *line)
{
	if (tr->n == tr->cap) {
		size_t cap = tr->cap ? tr->cap * 2 : 32;
		char **nl = realloc(tr->lines, cap * sizeof(*nl));
		if (nl == NULL)
			return MB_ENOMEM;
		tr->lines = nl;
		tr->cap = cap;
	}
	if ((tr->lines[tr->n] = strdup(line)) == NULL)
		return MB_ENOMEM;
	tr->n++;
	return MB_OK;
}

/*
 * Run one process from line start. On return *killed_at is the kill line's
 * index, or -1 when the trace ended in this process.
 */
static int
run_process(const struct mb_trace *t, size_t start, int first,
    const char *db_path, struct mb_sim_server *servers, int nservers,
    const struct mb_replay_opts *opts, struct mb_transcript *out,
    long *killed_at)
{
	int fds[2], status, rv = MB_EIO;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	pid_t pid;
	FILE *in;

	*killed_at = -1;
	if (pipe(fds) != 0)
		return MB_EIO;
	fflush(NULL);
	if ((pid = fork()) < 0) {
		close(fds[0]);
		close(fds[1]);
		return MB_EIO;
	}
	if (pid == 0 && opts != NULL && opts->child_argv != NULL) {
		close(fds[0]);
		child_exec(opts->child_argv, t, start, first, db_path, servers,
		    nservers, fds[1]);
	}
	if (pid > 0)
		replay_child = pid;
	if (pid == 0) {
		FILE *out_f = fdopen(fds[1], "w");
		close(fds[0]);
		if (out_f != NULL)
			child_run(t, start, first, db_path, servers, nservers,
			    NULL, NULL, out_f);
		_exit(0);
	}
	close(fds[1]);
	if ((in = fdopen(fds[0], "r")) == NULL) {
		close(fds[0]);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return MB_EIO;
	}
	while ((n = getline(&line, &cap, in)) > 0) {
		if (line[n - 1] == '\n')
			line[--n] = '\0';
		if (line[0] == '#') {
			if (line[1] == 'K') {
				*killed_at = strtol(line + 3, NULL, 10);
				kill(pid, SIGKILL);
				rv = MB_OK;
			} else {
				rv = (int)strtol(line + 3, NULL, 10);
			}
			break;
		}
		if (transcript_add(out, line) != MB_OK) {
			rv = MB_ENOMEM;
			kill(pid, SIGKILL);
			break;
		}
	}
	free(line);
	fclose(in);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	replay_child = 0;
	if (*killed_at < 0 && rv == MB_OK &&
	    !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		rv = MB_EIO;
	return rv;
}

static void
remove_db(const char *path)
{
	char side[4200];

	unlink(path);
	snprintf(side, sizeof(side), "%s-wal", path);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", path);
	unlink(side);
}

/*
 * An interrupted replay (Ctrl-C, SIGTERM) must not leave its child running
 * or its temporary database behind: the handler ends both, then lets the
 * signal do what it would have done.
 */

static void
replay_signal_cb(int sig)
{
	pid_t child = replay_child;

	if (child > 0)
		kill(child, SIGKILL);
	if (replay_tmp[0] != '\0')
		remove_db(replay_tmp);
	signal(sig, SIG_DFL);
	raise(sig);
}


/* The world outside the app: one local TCP port per server the trace names,
 * chosen now so that every process of the replay dials the same one. */
static int
servers_init(const struct mb_trace *t, struct mb_sim_server **svp, int *np)
{
	struct mb_sim_server *sv = NULL;
	int n = 0;

	for (size_t i = 0; i < t->nlines; i++) {
		const char *name = mbi_json_str(t->lines[i].obj, "name");
		struct sockaddr_in a = { .sin_family = AF_INET,
			.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t len = sizeof(a);
		int known = 0, fd;

		if (t->lines[i].cb != MB_CB_SERVER)
			continue;
		for (int k = 0; k < n; k++)
			known |= strcmp(sv[k].name, name) == 0;
		if (known)
			continue;
		struct mb_sim_server *nsv = realloc(sv, (size_t)(n + 1) * sizeof(*sv));
		if (nsv == NULL)
			goto fail;
		sv = nsv;
		memset(&sv[n], 0, sizeof(sv[n]));
		snprintf(sv[n].name, sizeof(sv[n].name), "%s", name);
		sv[n].fd = -1;
		if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
			goto fail;
		if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
		    getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
			close(fd);
			goto fail;
		}
		close(fd);
		sv[n++].port = ntohs(a.sin_port);
	}
	*svp = sv;
	*np = n;
	return MB_OK;
fail:
	free(sv);
	return MB_EIO;
}

/* Server lines a finished or dropped stretch of the trace held. */
static void
servers_follow(const struct mb_trace *t, size_t from, size_t to,
    struct mb_sim_server *sv, int n)
{
	for (size_t i = from; i < to && i < t->nlines; i++) {
		const char *name = mbi_json_str(t->lines[i].obj, "name");
		const char *state = mbi_json_str(t->lines[i].obj, "state");
		if (t->lines[i].cb != MB_CB_SERVER)
			continue;
		for (int k = 0; k < n; k++)
			if (strcmp(sv[k].name, name) == 0)
				sv[k].up = strcmp(state, "up") == 0;
	}
}

int
mb_replay(const struct mb_trace *t, struct mb_replay_opts *opts,
    struct mb_transcript *out)
{
	struct mb_sim_server *servers = NULL;
	void (*prev_int)(int), (*prev_term)(int);
	int nservers = 0;
	char tmp[4096];
	const char *db = opts ? opts->db_path : NULL;
	int force_stopped = 0, processes = 0, rv = MB_OK;
	size_t i = 0;

	if (db != NULL) {
		/* A named store must be one: a replay never runs on from
		 * memory in place of the file it was given. */
		char why[600];
		if ((rv = mb_store_check(db, why, sizeof(why))) != MB_OK) {
			fprintf(stderr, "mobbus: database: %s\n", why);
			return rv;
		}
	}
	if (db == NULL) {
		/* Without --db the replay still has a real file, so that
		 * kills keep what was committed; it goes at the end. */
		const char *dir = getenv("TMPDIR");
		int fd;
		snprintf(tmp, sizeof(tmp), "%s/mobbus-replay-XXXXXX",
		    dir && *dir ? dir : "/tmp");
		if ((fd = mkstemp(tmp)) < 0)
			return MB_EIO;
		close(fd);
		db = tmp;
	}
	if (db == tmp) {
		/* unlink() is async-signal-safe; the path is set once here. */
		snprintf(replay_tmp, sizeof(replay_tmp), "%s", tmp);
	}
	prev_int = signal(SIGINT, replay_signal_cb);
	prev_term = signal(SIGTERM, replay_signal_cb);
	if ((rv = servers_init(t, &servers, &nservers)) != MB_OK) {
		signal(SIGINT, prev_int);
		signal(SIGTERM, prev_term);
		if (opts == NULL || opts->db_path == NULL)
			remove_db(tmp);
		replay_tmp[0] = '\0';
		return rv;
	}
	while (i < t->nlines && rv == MB_OK) {
		const struct mb_trace_line *l = &t->lines[i];
		long killed_at;

		if (!starts_process(t, l, force_stopped)) {
			servers_follow(t, i, i + 1, servers, nservers);
			if (opts != NULL && l->cb != MB_CB_ADVANCE &&
			    l->cb != MB_CB_SERVER)
				opts->dropped++;
			i++; /* no process: the OS drops it */
			continue;
		}
		rv = run_process(t, i, processes++ == 0, db, servers, nservers,
		    opts, out, &killed_at);
		if (rv != MB_OK || killed_at < 0)
			break;
		servers_follow(t, i, (size_t)killed_at, servers, nservers);
		l = &t->lines[killed_at];
		/* Android force stop: no FCM delivery until the next launch. */
		force_stopped = t->os == MB_OS_ANDROID &&
		    strcmp(mbi_json_str(l->obj, "by") ? mbi_json_str(l->obj, "by") :
		                                        "",
		        "user") == 0;
		i = (size_t)killed_at + 1;
	}
	signal(SIGINT, prev_int);
	signal(SIGTERM, prev_term);
	if (opts != NULL) {
		(void)mb_store_waiting(db, &opts->waiting);
		(void)mb_store_damaged(db, opts->damaged,
		    sizeof(opts->damaged));
	}
	if (opts == NULL || opts->db_path == NULL)
		remove_db(tmp);
	replay_tmp[0] = '\0';
	free(servers);
	return rv;
}
