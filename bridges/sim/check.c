/* SPDX-License-Identifier: MIT */
/*
 * check.c - compare a replay's transcript with an expected one: an expected
 * line matches when every key it names has the same value; lines match in
 * order; device lines may be ignored by a leading {"ignore":["device"]}.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "mobbus.h"
#include "replay.h"

static char *
expect_path(const char *trace_path)
{
	const char *suffix = ".trace.jsonl";
	size_t n = strlen(trace_path), sl = strlen(suffix);
	char *p;

	if (n < sl || strcmp(trace_path + n - sl, suffix) != 0)
		return NULL;
	if ((p = malloc(n - sl + sizeof(".expect.jsonl"))) == NULL)
		return NULL;
	memcpy(p, trace_path, n - sl);
	strcpy(p + n - sl, ".expect.jsonl");
	return p;
}

/* Read a JSON Lines file into an array of objects. */
static int
load_lines(const char *path, json_t **arr, char *why, size_t whylen)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	unsigned lineno = 0;
	json_error_t err;

	if (f == NULL) {
		snprintf(why, whylen, "cannot open %s", path);
		return MB_EIO;
	}
	*arr = json_array();
	while ((n = getline(&line, &cap, f)) >= 0) {
		json_t *o;
		lineno++;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0)
			continue;
		if ((o = mbi_json_load(line, (size_t)n, &err)) == NULL ||
		    !json_is_object(o)) {
			snprintf(why, whylen, "%s:%u: invalid JSON: %s", path,
			    lineno, o ? "not an object" : err.text);
			json_decref(o);
			json_decref(*arr);
			free(line);
			fclose(f);
			return MB_EJSON;
		}
		json_array_append_new(*arr, o);
	}
	free(line);
	if (ferror(f)) { /* a folder opens, then reads as EISDIR */
		snprintf(why, whylen, "cannot read %s: %s", path,
		    strerror(errno));
		json_decref(*arr);
		fclose(f);
		return MB_EIO;
	}
	fclose(f);
	return MB_OK;
}

/* The first key of want whose value differs in got, or NULL. */
static const char *
first_diff(const json_t *want, const json_t *got)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)want, key, v) {
		const json_t *g = json_object_get(got, key);
		if (g == NULL || !json_equal(v, (json_t *)g))
			return key;
	}
	return NULL;
}

static int
is_device(const json_t *o)
{
	const char *m = mbi_json_str(o, "msg");
	return m != NULL && strcmp(m, "device") == 0;
}

int
mb_check_case(const char *trace_path, char *why, size_t whylen)
{
	return mb_check_case_opts(trace_path, NULL, why, whylen);
}

int
mb_check_case_opts(const char *trace_path, const struct mb_replay_opts *opts,
    char *why, size_t whylen)
{
	char *epath = expect_path(trace_path);
	struct mb_trace *t = NULL;
	struct mb_transcript tr = { 0 };
	struct mb_replay_opts ropts = { 0 };
	json_t *want = NULL, *got = json_array(), *first;
	int ignore_device = 0, rv;
	size_t wi = 0, gi = 0;

	why[0] = '\0';
	if (epath == NULL) {
		snprintf(why, whylen, "not a .trace.jsonl file");
		rv = MB_EINVAL;
		goto out;
	}
	if ((rv = load_lines(epath, &want, why, whylen)) != MB_OK)
		goto out;
	if ((rv = mb_trace_load(trace_path, &t, why, whylen)) != MB_OK)
		goto out;
	if (opts != NULL)
		ropts = *opts;
	if ((rv = mb_replay(t, &ropts, &tr)) != MB_OK) {
		snprintf(why, whylen, "replay failed: %s", mb_strerror(rv));
		goto out;
	}
	for (size_t i = 0; i < tr.n; i++) {
		json_error_t err;
		json_array_append_new(got,
		    mbi_json_load(tr.lines[i], strlen(tr.lines[i]), &err));
	}
	first = json_array_get(want, 0);
	if (first != NULL && json_object_get(first, "ignore") != NULL) {
		size_t i;
		json_t *v;
		json_array_foreach(json_object_get(first, "ignore"), i, v)
			if (json_is_string(v) &&
			    strcmp(json_string_value(v), "device") == 0)
				ignore_device = 1;
		wi = 1;
	}
	for (;;) {
		const json_t *w = json_array_get(want, wi);
		const json_t *g = json_array_get(got, gi);
		const char *key;
		char *gs;

		if (g != NULL && ignore_device && is_device(g)) {
			gi++;
			continue;
		}
		if (w == NULL && g == NULL)
			break;
		rv = MB_EMISMATCH;
		gs = g ? mbi_json_dump(g) : NULL;
		if (w == NULL) {
			snprintf(why, whylen, "unexpected line %zu: %s", gi + 1,
			    gs);
		} else if (g == NULL) {
			char *ws = mbi_json_dump(w);
			snprintf(why, whylen, "missing line %zu: %s", wi + 1,
			    ws);
			free(ws);
		} else if ((key = first_diff(w, g)) != NULL) {
			char *ws = mbi_json_dump(json_object_get(w, key));
			char *vs = json_object_get(g, key) ?
			    mbi_json_dump(json_object_get(g, key)) :
			    strdup("(absent)");
			snprintf(why, whylen,
			    "expect line %zu, key \"%s\": want %s, got %s in %s",
			    wi + 1, key, ws, vs, gs);
			free(ws);
			free(vs);
		} else {
			rv = MB_OK;
		}
		free(gs);
		if (rv != MB_OK)
			goto out;
		wi++;
		gi++;
	}
	rv = MB_OK;
out:
	json_decref(want);
	json_decref(got);
	mb_transcript_fini(&tr);
	mb_trace_free(t);
	free(epath);
	return rv;
}
