/* SPDX-License-Identifier: MIT */
/* replay.h - replay a trace through a real bus and collect the transcript. */
#ifndef MB_SIM_REPLAY_H
#define MB_SIM_REPLAY_H

#include <stddef.h>

#include "trace.h"

struct mb_transcript {
	char **lines;
	size_t n, cap;
};

struct mb_replay_opts {
	const char *db_path;   /* NULL: a temporary file, removed afterwards */
};

/*
 * mb_replay - run t through the bus, each process of the trace in a child
 * process of its own (SIGKILLed at its kill line), and append every line the
 * consumer received to *out (caller frees with mb_transcript_fini). opts may
 * be NULL. Returns MB_OK or the first error. Call it with no bus open in
 * this process: it forks.
 */
int mb_replay(const struct mb_trace *t, const struct mb_replay_opts *opts,
    struct mb_transcript *out);
void mb_transcript_fini(struct mb_transcript *tr);

/*
 * mb_check_case - replay trace_path and compare with its .expect.jsonl.
 * Returns MB_OK when it matches, MB_EMISMATCH with the first difference in
 * why, or another error (bad trace, missing expectation) with its message.
 */
int mb_check_case(const char *trace_path, char *why, size_t whylen);

#endif
