%% SPDX-License-Identifier: MIT
%% mobbus_nif - the NIF's functions; call them through mobbus.
-module(mobbus_nif).
-export([start/1, stop/0, subscribe/2, unsubscribe/1, ack/1, complete/2,
         keep_alive/0, keep_alive_stop/0, connect/2, publish/2, state_get/1,
         state_put/2, state_delete/1, sync/2, stats/0, json_encode/1,
         json_decode/1, replay_child/2, replay_wait/1, bench_run/4,
         bench_handled/0]).
-on_load(init/0).
-nifs([start/1, stop/0, subscribe/2, unsubscribe/1, ack/1, complete/2,
       keep_alive/0, keep_alive_stop/0, connect/2, publish/2, state_get/1,
       state_put/2, state_delete/1, sync/2, stats/0, json_encode/1,
       json_decode/1, replay_child/2, replay_wait/1, bench_run/4,
       bench_handled/0]).

%% The library sits beside this module's .beam (the build tree), unless
%% MOBBUS_NIF names it.
init() ->
    Path = case os:getenv("MOBBUS_NIF") of
               false ->
                   filename:join(filename:dirname(code:which(?MODULE)),
                                 "mobbus_nif");
               P -> filename:rootname(P)
           end,
    erlang:load_nif(Path, 0).

-define(NIF, erlang:nif_error({nif_not_loaded, ?MODULE})).
start(_) -> ?NIF.
stop() -> ?NIF.
subscribe(_, _) -> ?NIF.
unsubscribe(_) -> ?NIF.
ack(_) -> ?NIF.
complete(_, _) -> ?NIF.
keep_alive() -> ?NIF.
keep_alive_stop() -> ?NIF.
connect(_Name, _Url) -> ?NIF.
publish(_, _) -> ?NIF.
state_get(_) -> ?NIF.
state_put(_, _) -> ?NIF.
state_delete(_) -> ?NIF.
sync(_, _) -> ?NIF.
stats() -> ?NIF.
json_encode(_) -> ?NIF.
json_decode(_) -> ?NIF.
replay_child(_, _) -> ?NIF.
replay_wait(_) -> ?NIF.
%% The benchmark's BEAM case (bench/mobbus_bench.erl, beam_bench.c).
bench_run(_, _, _, _) -> ?NIF.
bench_handled() -> ?NIF.
