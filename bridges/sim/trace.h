/* SPDX-License-Identifier: MIT */
/* trace.h - format-1 traces: load, validate, and hold the parsed lines. */
#ifndef MB_SIM_TRACE_H
#define MB_SIM_TRACE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Every callback of format 1 and its extensions (spec/semantics.md). */
#define MB_CB_MAP(X)                                                           \
	X(LAUNCH, "launch", MB_OS_IOS)                                         \
	X(DID_BECOME_ACTIVE, "did_become_active", MB_OS_IOS)                   \
	X(WILL_RESIGN_ACTIVE, "will_resign_active", MB_OS_IOS)                 \
	X(DID_ENTER_BACKGROUND, "did_enter_background", MB_OS_IOS)             \
	X(WILL_ENTER_FOREGROUND, "will_enter_foreground", MB_OS_IOS)           \
	X(WILL_TERMINATE, "will_terminate", MB_OS_IOS)                         \
	X(DID_REGISTER_REMOTE, "did_register_remote", MB_OS_IOS)               \
	X(DID_FAIL_REGISTER, "did_fail_register", MB_OS_IOS)                   \
	X(WILL_PRESENT, "will_present", MB_OS_IOS)                             \
	X(DID_RECEIVE_RESPONSE, "did_receive_response", MB_OS_IOS)             \
	X(DID_RECEIVE_REMOTE, "did_receive_remote", MB_OS_IOS)                 \
	X(PROCESS_START, "process_start", MB_OS_ANDROID)                       \
	X(ON_START, "on_start", MB_OS_ANDROID)                                 \
	X(ON_STOP, "on_stop", MB_OS_ANDROID)                                   \
	X(ON_RESUME, "on_resume", MB_OS_ANDROID)                               \
	X(ON_PAUSE, "on_pause", MB_OS_ANDROID)                                 \
	X(ON_NEW_TOKEN, "on_new_token", MB_OS_ANDROID)                         \
	X(GET_TOKEN, "get_token", MB_OS_ANDROID)                               \
	X(ON_MESSAGE_RECEIVED, "on_message_received", MB_OS_ANDROID)           \
	X(ON_NEW_INTENT, "on_new_intent", MB_OS_ANDROID)                       \
	X(ACTIVITY_CREATE, "activity_create", MB_OS_ANDROID)                   \
	X(TRAY_POST, "tray_post", MB_OS_ANDROID)                               \
	X(FGS_START, "fgs_start", MB_OS_ANDROID)                               \
	X(FGS_STOP, "fgs_stop", MB_OS_ANDROID)                                 \
	X(BG_TASK, "bg_task", MB_OS_BOTH)                                      \
	X(BG_TASK_EXPIRE, "bg_task_expire", MB_OS_BOTH)                        \
	X(SUSPEND, "suspend", MB_OS_BOTH)                                      \
	X(KILL, "kill", MB_OS_BOTH)                                            \
	X(NET, "net", MB_OS_BOTH)                                              \
	X(APP, "app", MB_OS_BOTH)                                              \
	X(SERVER, "server", MB_OS_BOTH)                                        \
	X(ADVANCE, "advance", MB_OS_BOTH)

/* Upper bounds that keep simulated time arithmetic exact: 2^50 ms is about
 * 35,000 years; a budget longer than an hour is no platform's. */
#define MB_TRACE_AT_MAX (1LL << 50)
#define MB_TRACE_BUDGET_MAX 3600000

enum mb_os_mask { MB_OS_IOS = 1, MB_OS_ANDROID = 2, MB_OS_BOTH = 3 };

enum mb_cb {
	MB_CB_NONE = 0,
#define MB_CB_ENUM_(id, name, os) MB_CB_##id,
	MB_CB_MAP(MB_CB_ENUM_)
#undef MB_CB_ENUM_
};

struct mb_trace_line {
	unsigned lineno;      /* header is line 1 */
	int64_t at;           /* ms of simulated time */
	enum mb_cb cb;
	json_t *obj;          /* the whole line; owned by the trace */
};

struct mb_trace {
	char *path;
	json_t *header;
	int os;               /* MB_OS_IOS or MB_OS_ANDROID */
	const char *name;
	int manual_ack;
	int64_t consumer_up_at; /* -1: never */
	int android_sdk;
	const char *id_key;   /* NULL when the header sets none */
	json_t *background_modes;
	struct mb_trace_line *lines;
	size_t nlines;
};

/*
 * mb_trace_load - read and validate a whole trace. On failure returns an
 * mb_err code and writes "PATH:LINE: problem" into err (each invalid line
 * named, up to errlen). On success *tp owns everything; free with
 * mb_trace_free.
 */
int mb_trace_load(const char *path, struct mb_trace **tp, char *err,
    size_t errlen);
/* mb_trace_parse - the same from text already in memory. */
int mb_trace_parse(const char *name, const char *text, size_t len,
    struct mb_trace **tp, char *err, size_t errlen);
void mb_trace_free(struct mb_trace *t);

const char *mb_cb_name(enum mb_cb cb);

#endif
