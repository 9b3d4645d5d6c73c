/* SPDX-License-Identifier: MIT */
/* beam_atoms.h - every atom the NIF uses, made once at load (mbb_atoms_init). */
#ifndef MB_BEAM_ATOMS_H
#define MB_BEAM_ATOMS_H

#include <erl_nif.h>

#define MBB_ATOM_MAP(X)                                                        \
	X(ok) X(error) X(nil) X(null) X(undefined)                    \
	/* message tags */                                                     \
	X(notification) X(push_token) X(mob_device) X(push_fired)              \
	X(wake_fired) X(conn) X(keep_alive) X(refused) X(mobbus_error)         \
	X(mobbus_effect) X(mobbus_replay) X(mobbus_sync)                                      \
	/* notification map */                                                 \
	X(id) X(title) X(body) X(data) X(source) X(presentation) X(action)     \
	X(cold_start) X(redelivered) X(push) X(local) X(foreground) X(tap)     \
	X(background)                                                          \
	/* device events */                                                    \
	X(connectivity_changed) X(did_become_active) X(will_resign_active)     \
	X(did_enter_background) X(will_enter_foreground) X(will_terminate)     \
	X(launch) X(suspend)                                                   \
	/* conn, errors, effects */                                            \
	X(up) X(down) X(code) X(line) X(bytes) X(limit) X(message)             \
	X(push_completion) X(task_completed) X(fgs_start) X(fgs_stop)          \
	X(audio_session) X(push_id) X(result) X(identifier) X(success)         \
	X(active) X(new_data) X(no_data) X(failed)                             \
	/* platforms and options */                                            \
	X(ios) X(android) X(manual) X(db) X(platform) X(ack)           \
	X(android_sdk) X(background_modes) X(delivery_info) X(all) X(effect)   \
	X(os) X(token) X(event) X(online) X(transport) X(expensive)            \
	X(validated) X(constrained) X(budget_ms) X(payload) X(priority)        \
	X(collapse_id) X(device) X(connectivity) X(wake) X(wake_expire)        \
	X(json) X(commit_delay_ms)                                             \
	/* runtime errors */                                                   \
	X(not_started) X(already_started) X(closed) X(not_found) X(no_store)   \
	X(out_of_memory) X(noproc) X(busy)                                     \
	/* bench_run/4 */                                                      \
	X(mobbus) X(consumer) X(enif_send)                                     \
	/* stats */                                                            \
	X(envs) X(resources) X(queued) X(received) X(sent) X(send_failed)      \
	X(dropped) X(subscribers) X(heap_bytes) X(atoms_made) X(direct)

/* Atoms whose names are C keywords or macros: field, then text. */
#define MBB_ATOM_MAP2(Y)                                                       \
	Y(atom_true, "true") Y(atom_false, "false") Y(atom_auto, "auto")

struct mbb_atoms {
#define MBB_ATOM_FIELD_(name) ERL_NIF_TERM name;
#define MBB_ATOM_FIELD2_(field, text) ERL_NIF_TERM field;
	MBB_ATOM_MAP(MBB_ATOM_FIELD_)
	MBB_ATOM_MAP2(MBB_ATOM_FIELD2_)
#undef MBB_ATOM_FIELD_
#undef MBB_ATOM_FIELD2_
};

/* Atoms are global to the VM, so one table serves every env and thread. */
extern struct mbb_atoms mbb_atom;

void mbb_atoms_init(ErlNifEnv *env);

#endif
