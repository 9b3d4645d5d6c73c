/* SPDX-License-Identifier: MIT */
/*
 * beam.c - case 5: mobbus with the real BEAM consumer (bridge call ->
 * Erlang process receive), beside a direct enif_send from a native thread
 * (what Mob does today).
 *
 * The producer has to be a native thread of the VM's own process, so the
 * case runs inside an erl started here: bench/mobbus_bench.erl starts the
 * bus through the NIF and subscribes one receiving process, and the NIF's
 * bench_run/4 (bridges/beam/beam_bench.c) runs this benchmark's driver
 * (drive.c) on a thread of its own, in turns: mb_publish through the bus,
 * the consumer's receive callback alone, and enif_send. The raw samples
 * come back on erl's stdout as one JSON line, and become percentiles here
 * like those of cases 1-4. Without erl the case is skipped and says why;
 * nothing is ever estimated.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "beam.h"

#define BEAM_JSON_TAG "mobbus-bench-json "
#define BEAM_ERROR_TAG "mobbus-bench-error "

/* Fill l from one case of the JSON line: raw nanoseconds, same-CPU count. */
static int
beam_case(json_t *cs, const char *mode, struct lat *l)
{
	size_t i;
	json_t *v, *ns = NULL;
	json_t *same = NULL;

	json_array_foreach(cs, i, v) {
		const char *m = json_string_value(json_object_get(v, "mode"));
		if (m != NULL && strcmp(m, mode) == 0) {
			ns = json_object_get(v, "ns");
			same = json_object_get(v, "same_cpu");
		}
	}
	if (!json_is_array(ns) || json_array_size(ns) != l->cap ||
	    !json_is_integer(same))
		return -1;
	json_array_foreach(ns, i, v)
		lat_add(l, (uint64_t)json_integer_value(v), 0);
	l->same_cpu = (size_t)json_integer_value(same);
	lat_finish(l);
	return 0;
}

int
beam_run(size_t samples, size_t warmup, uint64_t seed, const char *db,
    struct beam_result *r)
{
#ifndef MB_BENCH_ERL
	(void)samples;
	(void)warmup;
	(void)seed;
	(void)db;
	snprintf(r->why, sizeof(r->why), "erl was not found when mobbus-bench "
	    "was built (install Erlang/OTP, then reconfigure the build)");
	return 1;
#else
	const char *erl = getenv("MOBBUS_ERL") ? getenv("MOBBUS_ERL") :
	                                         MB_BENCH_ERL;
	char cmd[4096], *line = NULL;
	size_t cap = 0;
	json_t *js = NULL;
	int st, rv = -1, said = 0;
	FILE *f;

	if (access(erl, X_OK) != 0) {
		snprintf(r->why, sizeof(r->why), "the BEAM is not installed "
		    "(%s: %s)", erl, strerror(errno));
		return 1;
	}
	if (access(MB_BENCH_BEAM_DIR "/mobbus_nif.so", R_OK) != 0 ||
	    access(MB_BENCH_DIR "/mobbus_bench.beam", R_OK) != 0) {
		snprintf(r->why, sizeof(r->why), "the NIF or mobbus_bench.beam "
		    "is not built (ninja -C the build folder)");
		return -1;
	}
	/* The VM's default flags, as in the app: scheduler busy-waiting and
	 * all (its wake-ups are the bimodal part of enif_send). */
	snprintf(cmd, sizeof(cmd), "'%s' -noshell -pa '%s' -pa '%s' "
	    "-run mobbus_bench main %zu %zu %llu '%s'", erl, MB_BENCH_BEAM_DIR,
	    MB_BENCH_DIR, samples, warmup, (unsigned long long)seed, db);
	if ((f = popen(cmd, "r")) == NULL) {
		snprintf(r->why, sizeof(r->why), "cannot run %s: %s", erl,
		    strerror(errno));
		return -1;
	}
	snprintf(r->why, sizeof(r->why), "erl gave no result");
	while (getline(&line, &cap, f) > 0) {
		if (strncmp(line, BEAM_JSON_TAG, strlen(BEAM_JSON_TAG)) == 0) {
			json_decref(js);
			js = json_loads(line + strlen(BEAM_JSON_TAG), 0, NULL);
		} else if (strncmp(line, BEAM_ERROR_TAG,
		               strlen(BEAM_ERROR_TAG)) == 0) {
			snprintf(r->why, sizeof(r->why), "%s",
			    line + strlen(BEAM_ERROR_TAG));
			r->why[strcspn(r->why, "\n")] = '\0';
			said = 1;
		} else {
			fputs(line, stderr); /* the VM's own reports */
		}
	}
	free(line);
	st = pclose(f);
	if (js != NULL && st == 0) {
		json_t *cs = json_object_get(js, "cases");
		snprintf(r->otp, sizeof(r->otp), "%s",
		    json_string_value(json_object_get(js, "otp_release")) ?
		        json_string_value(json_object_get(js, "otp_release")) :
		        "?");
		json_t *bus = json_object_get(js, "bus");
		double calls = json_number_value(json_object_get(bus, "calls"));
		r->schedulers =
		    (int)json_integer_value(json_object_get(js, "schedulers"));
		r->calls = calls;
		if (calls > 0) {
			r->inline_per_call = json_number_value(
			    json_object_get(bus, "inline_runs")) / calls;
			r->sent_per_call = (json_number_value(
			    json_object_get(bus, "published")) -
			    json_number_value(json_object_get(bus, "unsent"))) /
			    calls;
		}
		if (beam_case(cs, "mobbus", &r->bus) == 0 &&
		    beam_case(cs, "consumer", &r->alone) == 0 &&
		    beam_case(cs, "enif_send", &r->send) == 0)
			rv = 0;
		else
			snprintf(r->why, sizeof(r->why),
			    "erl's samples do not match what was asked");
	} else if (st != 0 && !said) {
		snprintf(r->why, sizeof(r->why), "erl exited with status %d",
		    st);
	}
	json_decref(js);
	return rv;
#endif
}

