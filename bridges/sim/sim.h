/* SPDX-License-Identifier: MIT */
/* sim.h - the simulated platform: one replayed process and its bridge state. */
#ifndef MB_SIM_H
#define MB_SIM_H

#include <stdint.h>
#include <stdio.h>

#include "mobbus.h"
#include "trace.h"

#define MB_PAYLOAD_LIMIT 4096
#define MB_LAUNCH_PHASE_MS 10000
#define MB_SIM_COMMIT_DELAY_MS 2
#define MB_SIM_DRAIN_MS 10000

/* An endpoint the trace's server lines control: a real TCP listener on
 * 127.0.0.1, listening while the server is up. */
struct mb_sim_server {
	char name[64];
	int port;
	int up;
	int fd;                /* listening socket in the running process */
};

struct mb_sim {
	const struct mb_trace *trace;
	/* The process, when one runs. */
	mb_bus *bus;
	mb_pub *pub;
	mb_actor *deliver;
	mb_actor *sink;
	mb_actor *policy;
	mb_store *store;
	const char *db_path;
	int alive;
	int suspended;
	int force_stopped;     /* Android force stop: FCM delivers nothing */
	int first;             /* the trace's first process (consumer_up_at) */
	int64_t now;
	int64_t launch_at;     /* start of the launch phase */
	int launch_phase;      /* still in the launch phase */
	int active;            /* iOS: between did_become_active and resign */
	int foreground;        /* Android: between on_start and on_stop */
	FILE *out;             /* transcript lines go here */
	const struct mb_sink_ops *sink_ops; /* NULL: transcript lines to out */
	void *sink_arg;
	struct mb_sim_server *servers;
	int nservers;
	mb_actor *conn;
};

/* Platform translation: one trace line into envelopes on the bus. */
int mbi_sim_ios(struct mb_sim *s, const struct mb_trace_line *l);
int mbi_sim_android(struct mb_sim *s, const struct mb_trace_line *l);

/* Shared by both platforms (replay.c). */
int mbi_sim_publish(struct mb_sim *s, const char *topic, mb_envelope *env,
    const struct mb_trace_line *l);
int mbi_sim_process_start(struct mb_sim *s);
void mbi_sim_process_end(struct mb_sim *s);
void mbi_sim_advance(struct mb_sim *s, int64_t at);
int mbi_sim_app(struct mb_sim *s, const struct mb_trace_line *l);
void mbi_sim_lifecycle(struct mb_sim *s, Mobbus__Lifecycle__Event ev,
    const struct mb_trace_line *l);
int mbi_sim_too_large(struct mb_sim *s, const struct mb_trace_line *l,
    size_t bytes, const char *push_id);
int mbi_sim_common(struct mb_sim *s, const struct mb_trace_line *l);
int mbi_sim_server(struct mb_sim *s, const struct mb_trace_line *l);
void mbi_sim_servers_listen(struct mb_sim *s);
void mbi_sim_hash(const char *text, char out[17]);
char *mbi_sim_strip_reserved(json_t *obj); /* compact JSON of data */

#endif
