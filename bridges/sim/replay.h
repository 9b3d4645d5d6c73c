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

/*
 * mb_replay - run t through the bus, one simulated process after another, and
 * append every line the consumer received to *out (caller frees with
 * mb_transcript_fini). Returns MB_OK or the first bus error.
 */
int mb_replay(const struct mb_trace *t, struct mb_transcript *out);
void mb_transcript_fini(struct mb_transcript *tr);

/*
 * mb_check_case - replay trace_path and compare with its .expect.jsonl.
 * Returns MB_OK when it matches, MB_EMISMATCH with the first difference in
 * why, or another error (bad trace, missing expectation) with its message.
 */
int mb_check_case(const char *trace_path, char *why, size_t whylen);

#endif
