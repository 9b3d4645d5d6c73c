%% SPDX-License-Identifier: MIT
%% mobbus - the BEAM side of the mobbus event bus: start it, subscribe
%% processes, and answer what they receive.
%%
%% One bus per VM. Subscribed processes receive the messages Mob screens
%% receive, in bus order, each once (redelivered only as mobbus promises):
%%
%%   {notification, #{id, title, body, data, source, presentation, action}}
%%   {push_token, ios | android, Token}
%%   {mob_device, Event}                      did_become_active, ...
%%   {mob_device, connectivity_changed, Map}
%%   {push_fired, Id, PushId | nil, PayloadJson}
%%   {wake_fired, Id}
%%   {conn, Name, up | down}
%%   {keep_alive, ok | {refused, Reason}}
%%   {mobbus_error, #{code, line, bytes, limit, message}}  bad platform input
%%   {mobbus_effect, Kind, Map}   what the bridge did (only if subscribed)
%%
%% Strings are binaries; absent title, body, action and push id are nil.
%% `data' is the decoded JSON: top-level keys atoms (short ASCII keys, within
%% an atom budget for the VM's life), nested keys binaries, strings binaries,
%% numbers numbers, true/false atoms, null nil. With #{delivery_info => true}
%% at start, notification maps also carry cold_start and redelivered.
%%
%% Wrong arguments raise badarg; everything that can fail at run time
%% returns {error, Reason} (not_started, already_started, no_store,
%% not_found, noproc, database, ...).
-module(mobbus).
-export([start/0, start/1, stop/0, subscribe/1, subscribe/2, unsubscribe/1,
         ack/1, complete/2, keep_alive/0, keep_alive_stop/0, connect/2, publish/2,
         state_get/1, state_put/2, state_delete/1, sync/0, sync/1, stats/0,
         json_encode/1, json_decode/1]).

-type kind() :: all | notification | push_fired | push_token | mob_device
              | wake_fired | conn | keep_alive | mobbus_error
              | mobbus_effect.
-export_type([kind/0]).

%% start(Opts) opens the bus, its store and actors. Opts:
%%   db => Path              the SQLite file (none: state in memory only)
%%   platform => ios | android          (ios)
%%   ack => auto | manual               (auto: a hand-off acknowledges)
%%   android_sdk => integer()           (34)
%%   background_modes => [binary()]     iOS UIBackgroundModes (keep_alive)
%%   delivery_info => boolean()         add cold_start, redelivered (false)
%%   commit_delay_ms => integer()       group commit delay (2)
%% Nothing is sent to anyone before a process subscribes: what arrives
%% before waits, durably with a db, as on a cold start.
-spec start() -> ok | {error, term()}.
start() -> start(#{}).
-spec start(map()) -> ok | {error, term()}.
start(Opts) -> mobbus_nif:start(Opts).

%% stop() commits what is queued and closes the bus; subscribers get what
%% was already handed to the BEAM side first.
-spec stop() -> ok | {error, not_started}.
stop() -> mobbus_nif:stop().

%% subscribe(Pid, Kinds): Pid receives the kinds listed (or all of the Mob
%% messages). The first subscriber brings the consumer up: what waited is
%% handed. The process is monitored; when the last subscriber is gone, what
%% it had not acknowledged (ack => manual) waits for the next one, marked
%% redelivered. Subscribing again changes the kinds.
-spec subscribe(pid()) -> ok | {error, term()}.
subscribe(Pid) -> subscribe(Pid, all).
-spec subscribe(pid(), kind() | [kind()]) -> ok | {error, term()}.
subscribe(Pid, Kinds) -> mobbus_nif:subscribe(Pid, Kinds).

-spec unsubscribe(pid()) -> ok | {error, term()}.
unsubscribe(Pid) -> mobbus_nif:unsubscribe(Pid).

%% ack(Id) acknowledges every hand-off of notification Id so far;
%% ack({push_token, Token}) says the token reached the app's server.
-spec ack(binary() | {push_token, binary()}) -> ok | {error, term()}.
ack(Id) -> mobbus_nif:ack(Id).

%% complete(Id | {push_id, PushId}, Result) completes a fetch window (by
%% notification id or push id) or a background task (by identifier).
-spec complete(binary() | {push_id, binary()}, new_data | no_data | failed)
              -> ok | {error, term()}.
complete(Id, Result) -> mobbus_nif:complete(Id, Result).

%% keep_alive() asks to keep running in the background; the answer comes
%% as {keep_alive, ok | {refused, Reason}}.
-spec keep_alive() -> ok | {error, term()}.
keep_alive() -> mobbus_nif:keep_alive().
-spec keep_alive_stop() -> ok | {error, term()}.
keep_alive_stop() -> mobbus_nif:keep_alive_stop().

%% A socket the bus keeps open while the app may use the network: in the
%% foreground or inside a wake window. {conn, Name, up | down} says when.
-spec connect(binary(), binary()) -> ok | {error, term()}.
connect(Name, Url) -> mobbus_nif:connect(Name, Url).

%% publish(Kind, Fields) publishes a platform moment as a native bridge
%% would (a local notification an Erlang plugin fired, a test's push):
%% notification, push_token, device, connectivity, wake, wake_expire.
%% See beam_publish.c for the fields.
-spec publish(atom(), map()) -> ok | {error, term()}.
publish(Kind, Fields) -> mobbus_nif:publish(Kind, Fields).

%% The store's key-value state (the role of Mob.State). Needs a db.
-spec state_get(binary()) -> {ok, binary()} | {error, term()}.
state_get(Key) -> mobbus_nif:state_get(Key).
-spec state_put(binary(), iodata()) -> ok | {error, term()}.
state_put(Key, Value) -> mobbus_nif:state_put(Key, Value).
-spec state_delete(binary()) -> ok | {error, term()}.
state_delete(Key) -> mobbus_nif:state_delete(Key).

%% sync() returns once everything published so far has been handled by the
%% bus and every message it caused for the caller is in its mailbox.
-spec sync() -> ok | {error, term()}.
sync() -> sync(5000).
-spec sync(non_neg_integer()) -> ok | {error, term()}.
sync(Timeout) ->
    Token = erlang:unique_integer(),
    case mobbus_nif:sync(Token, Timeout) of
        ok ->
            receive {mobbus_sync, Token} -> ok
            after Timeout -> {error, timed_out}
            end;
        Error -> Error
    end.

%% stats() -> #{envs, resources, queued, received, direct, sent,
%% send_failed, dropped, subscribers, heap_bytes, atoms_made}; direct: the
%% envelopes the deliver actor's thread sent itself.
-spec stats() -> map().
stats() -> mobbus_nif:stats().

%% JSON helpers with the same rules as the messages: json_encode/1 takes
%% maps, {[{K, V}]} (ordered objects), lists, binaries, numbers, booleans,
%% nil and {json, Text}; json_decode/1 gives binary keys throughout.
-spec json_encode(term()) -> binary().
json_encode(Term) -> mobbus_nif:json_encode(Term).
-spec json_decode(iodata()) -> term() | {error, invalid_json}.
json_decode(Text) -> mobbus_nif:json_decode(Text).
