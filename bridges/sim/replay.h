/* SPDX-License-Identifier: MIT */
/* replay.h - replay a trace through a real bus and collect the transcript. */
#ifndef MB_SIM_REPLAY_H
#define MB_SIM_REPLAY_H

#include <stddef.h>
#include <stdio.h>

#include "mobbus.h"
#include "trace.h"

struct mb_transcript {
	char **lines;
	size_t n, cap;
};

struct mb_replay_opts {
	const char *db_path;   /* NULL: a temporary file, removed afterwards */
	/* NULL: each process is a fork of this one. Otherwise the command
	 * (argv, NULL-terminated) that runs a process instead, with the
	 * arguments mbi_replay_child_main reads appended; it prints the
	 * transcript lines and markers on stdout (mobbus replay --beam). */
	const char *const *child_argv;
	/* Out: what a user may want to know the transcript does not show. */
	size_t dropped;        /* lines that came while no process ran */
	long waiting;          /* messages left waiting for a consumer */
	/* The store file is damaged (SQLite's quick_check, after the run): the
	 * processes went on from memory. "" when it is sound. */
	char damaged[256];
};

/*
 * mb_replay - run t through the bus, each process of the trace in a child
 * process of its own (SIGKILLed at its kill line), and append every line the
 * consumer received to *out (caller frees with mb_transcript_fini). opts may
 * be NULL. Returns MB_OK or the first error. Call it with no bus open in
 * this process: it forks.
 */
int mb_replay(const struct mb_trace *t, struct mb_replay_opts *opts,
    struct mb_transcript *out);
void mb_transcript_fini(struct mb_transcript *tr);

/*
 * mb_check_case - replay trace_path and compare with its .expect.jsonl.
 * Returns MB_OK when it matches, MB_EMISMATCH with the first difference in
 * why, or another error (bad trace, missing expectation) with its message.
 */
int mb_check_case(const char *trace_path, char *why, size_t whylen);
/* mb_check_case_opts - the same, replaying with opts (may be NULL). */
int mb_check_case_opts(const char *trace_path,
    const struct mb_replay_opts *opts, char *why, size_t whylen);

/*
 * mbi_replay_child_main - one process of a replay whose driver ran
 * child_argv: argv are the arguments the driver appended. Runs that stretch
 * of the trace with sink as the consumer (NULL: transcript lines to out) and
 * writes the driver's markers to out: "#E <err>" and a return at the end,
 * "#K <line>" at a kill line, after which it never returns (the driver kills
 * the process). Call it on a thread that may block.
 */
int mbi_replay_child_main(int argc, char **argv,
    const struct mb_sink_ops *sink, void *sink_arg, FILE *out);

#endif
