/* SPDX-License-Identifier: MIT */
/* main.c - the mobbus command: replay a trace, check cases. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mobbus.h"
#include "replay.h"
#include "inspect.h"
#include "trace.h"

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: mobbus replay [--beam] TRACE [--db FILE]\n"
	    "       mobbus check [--beam] PATH...\n"
	    "       mobbus inspect --db FILE\n"
	    "\n"
	    "replay  run a format-1 trace of platform callbacks through the bus\n"
	    "        and print what the app received, one JSON line each. Each\n"
	    "        process of the trace is a real process, SIGKILLed at its\n"
	    "        kill line; --db keeps the store's file (default: a\n"
	    "        temporary one).\n"
	    "check   run every *.trace.jsonl under each PATH (a file or a folder)\n"
	    "        against its *.expect.jsonl; one line per case, then\n"
	    "        \"N passed, N failed\". Exit status 1 if any failed.\n"
	    "inspect print what a store file holds: waiting and unacknowledged\n"
	    "        messages, the inbox, tokens, key-value state, the journal.\n"
	    "--beam  each process of the trace is an erl node whose consumer is\n"
	    "        an Erlang process subscribed through the NIF\n"
	    "        (bridges/beam); it prints the transcript from the terms it\n"
	    "        received.\n");
}

/* Remove every "--beam" from argv; whether there was one. */
static int
take_beam(int *argc, char **argv)
{
	int found = 0, n = 0;

	for (int i = 0; i < *argc; i++) {
		if (strcmp(argv[i], "--beam") == 0)
			found = 1;
		else
			argv[n++] = argv[i];
	}
	*argc = n;
	return found;
}

/* The child command of --beam: bridges/beam's script beside this binary in
 * the build tree, or $MOBBUS_BEAM_CHILD. */
static int
beam_opts(struct mb_replay_opts *o)
{
	static char path[4096];
	static const char *argv[3] = { "/bin/sh", path, NULL };
	const char *env = getenv("MOBBUS_BEAM_CHILD");
	ssize_t n;
	char *slash;

	if (env != NULL && *env) {
		snprintf(path, sizeof(path), "%s", env);
	} else {
		if ((n = readlink("/proc/self/exe", path, sizeof(path) - 64)) <= 0)
			return -1;
		path[n] = '\0';
		if ((slash = strrchr(path, '/')) == NULL)
			return -1;
		strcpy(slash, "/bridges/beam/mobbus-beam-child");
	}
	if (access(path, R_OK) != 0) {
		fprintf(stderr, "mobbus: --beam needs %s (bridges/beam is built "
		    "when erl is installed)\n", path);
		return -1;
	}
	o->child_argv = argv;
	return 0;
}

/* Whether the output was lost (a full disk, a closed pipe): say so. */
static int
out_failed(void)
{
	if (fflush(stdout) == 0 && !ferror(stdout))
		return 0;
	fprintf(stderr, "mobbus: writing the output failed: %s\n",
	    strerror(errno));
	return 1;
}

/* Split "TRACE [--db FILE]" style arguments. */
static int
parse_db(int argc, char **argv, const char **path, const char **db)
{
	*path = NULL;
	*db = NULL;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--db") == 0 && i + 1 < argc)
			*db = argv[++i];
		else if (argv[i][0] == '-' || *path != NULL)
			return -1;
		else
			*path = argv[i];
	}
	return 0;
}

static int
cmd_replay(int argc, char **argv)
{
	struct mb_trace *t = NULL;
	struct mb_transcript tr = { 0 };
	struct mb_replay_opts opts = { 0 };
	const char *path;
	char err[4096];
	int rv;

	if (take_beam(&argc, argv) && beam_opts(&opts) != 0)
		return 2;
	if (parse_db(argc, argv, &path, &opts.db_path) != 0 || path == NULL) {
		usage(stderr);
		return 2;
	}
	if ((rv = mb_trace_load(path, &t, err, sizeof(err))) != MB_OK) {
		fprintf(stderr, "mobbus: %s: %s\n%s\n", mb_err_name(rv),
		    mb_strerror(rv), err);
		return 2;
	}
	rv = mb_replay(t, &opts, &tr);
	for (size_t i = 0; i < tr.n; i++)
		printf("%s\n", tr.lines[i]);
	mb_transcript_fini(&tr);
	mb_trace_free(t);
	if (out_failed())
		return 1;
	if (rv != MB_OK) {
		fprintf(stderr, "mobbus: replay failed: %s\n", mb_strerror(rv));
		return 1;
	}
	/* What the transcript cannot show, on stderr. */
	if (opts.dropped > 0)
		fprintf(stderr, "mobbus: note: %zu line(s) came while no process "
		                "ran; the OS drops them\n", opts.dropped);
	if (opts.damaged[0] != '\0')
		fprintf(stderr, "mobbus: note: the store %s is damaged "
		                "(SQLite: %s); what the processes could not "
		                "read or write there they kept in memory only\n",
		    opts.db_path ? opts.db_path : "file", opts.damaged);
	if (opts.waiting > 0)
		fprintf(stderr, "mobbus: note: %ld message(s) still wait in the "
		                "store for a consumer that never subscribed\n",
		    opts.waiting);
	return 0;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Collect the trace files under PATH (a file, or a folder searched down
 * through its subfolders), sorted within each folder. */
static int
collect(const char *path, char ***files, size_t *n)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	size_t start = *n;
	char **subdirs = NULL;
	size_t nsub = 0;

	if (stat(path, &st) != 0) {
		fprintf(stderr, "mobbus: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		*files = realloc(*files, (*n + 1) * sizeof(**files));
		(*files)[(*n)++] = strdup(path);
		return 0;
	}
	if ((d = opendir(path)) == NULL) {
		fprintf(stderr, "mobbus: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat cs;
		char *p;
		if (de->d_name[0] == '.')
			continue;
		if (asprintf(&p, "%s/%s", path, de->d_name) < 0)
			break;
		if (stat(p, &cs) == 0 && S_ISDIR(cs.st_mode)) {
			subdirs = realloc(subdirs, (nsub + 1) * sizeof(*subdirs));
			subdirs[nsub++] = p;
		} else if (ends_with(de->d_name, ".trace.jsonl")) {
			*files = realloc(*files, (*n + 1) * sizeof(**files));
			(*files)[(*n)++] = p;
		} else {
			free(p);
		}
	}
	closedir(d);
	qsort(*files + start, *n - start, sizeof(**files), cmp_str);
	qsort(subdirs, nsub, sizeof(*subdirs), cmp_str);
	for (size_t i = 0; i < nsub; i++) {
		if (collect(subdirs[i], files, n) != 0) {
			for (; i < nsub; i++)
				free(subdirs[i]);
			free(subdirs);
			return -1;
		}
		free(subdirs[i]);
	}
	free(subdirs);
	return 0;
}

static int
cmd_check(int argc, char **argv)
{
	char **files = NULL, why[2048];
	size_t n = 0, passed = 0, failed = 0;
	struct mb_replay_opts opts = { 0 };

	if (take_beam(&argc, argv) && beam_opts(&opts) != 0)
		return 2;
	if (argc < 1) {
		usage(stderr);
		return 2;
	}
	for (int i = 0; i < argc; i++)
		if (collect(argv[i], &files, &n) != 0)
			return 2;
	if (n == 0) {
		/* A check that ran nothing must not look like a pass. */
		fprintf(stderr, "mobbus: no *.trace.jsonl under the given "
		                "path(s)\n");
		return 2;
	}
	for (size_t i = 0; i < n; i++) {
		const char *base = strrchr(files[i], '/');
		char name[256];
		int rv = mb_check_case_opts(files[i], &opts, why, sizeof(why));

		snprintf(name, sizeof(name), "%s", base ? base + 1 : files[i]);
		if (ends_with(name, ".trace.jsonl"))
			name[strlen(name) - strlen(".trace.jsonl")] = '\0';
		if (rv == MB_OK) {
			printf("pass  %s\n", name);
			passed++;
		} else {
			printf("FAIL  %s: %s\n", name, why);
			failed++;
		}
		free(files[i]);
	}
	free(files);
	printf("%zu passed, %zu failed\n", passed, failed);
	if (out_failed())
		return 1;
	return failed ? 1 : 0;
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "replay") == 0)
		return cmd_replay(argc - 2, argv + 2);
	if (strcmp(argv[1], "check") == 0)
		return cmd_check(argc - 2, argv + 2);
	if (strcmp(argv[1], "inspect") == 0) {
		const char *path, *db;
		if (parse_db(argc - 2, argv + 2, &path, &db) != 0 || db == NULL ||
		    path != NULL) {
			usage(stderr);
			return 2;
		}
		if (mb_inspect(db, stdout) != MB_OK) {
			(void)out_failed();
			return 1;
		}
		return out_failed();
	}
	if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "mobbus: unknown command \"%s\"\n", argv[1]);
	usage(stderr);
	return 2;
}
