%% SPDX-License-Identifier: MIT
%% mobbus_bench - case 5 of the benchmark, inside the erl it measures.
%% bench/bench.c runs
%%
%%   erl -noshell -pa BEAMDIR -pa BENCHDIR -run mobbus_bench main N W SEED DB
%%
%% and reads one line back: "mobbus-bench-json " and a JSON object with the
%% raw samples of each kind, which it turns into percentiles like cases 1-4
%% ("mobbus-bench-error " and a reason when the run failed).
%%
%% One Erlang process waits in receive and calls mobbus_nif:bench_handled/0
%% first thing on {notification, _}. The producer is a native thread of the
%% NIF (bridges/beam/beam_bench.c) running the benchmark's driver; in turns
%% it makes a bridge call through the bus started here (bus, store on DB,
%% deliver and policy actors, the BEAM consumer), hands the notification
%% straight to the consumer, and enif_sends the same message from an env of
%% its own, as Mob does today.
-module(mobbus_bench).
-export([main/1]).

main([N, W, Seed, Db]) ->
    Out = try run(list_to_integer(N), list_to_integer(W),
                  list_to_integer(Seed), Db) of
              Json -> ["mobbus-bench-json ", Json, "\n"]
          catch
              Class:Reason:Stack ->
                  io_lib:format("mobbus-bench-error ~p:~0p ~0p~n",
                                [Class, Reason, Stack])
          end,
    io:put_chars(Out),
    halt(0).

run(N, W, Seed, Db) ->
    rm_db(Db),
    ok = mobbus:start(#{db => list_to_binary(Db)}),
    Rx = spawn(fun loop/0),
    ok = mobbus:subscribe(Rx, notification),
    ok = mobbus:sync(),
    {ok, Kinds, Bus} = mobbus_nif:bench_run(Rx, N, W, Seed),
    Rx ! stop,
    ok = mobbus:stop(),
    rm_db(Db),
    mobbus:json_encode(
      #{otp_release => list_to_binary(erlang:system_info(otp_release)),
        schedulers => erlang:system_info(schedulers_online),
        bus => Bus,
        cases => [#{mode => K, same_cpu => Same,
                    ns => [X || <<X:64/native>> <= Bin]}
                  || {K, {Same, Bin}} <- maps:to_list(Kinds)]}).

loop() ->
    receive
        {notification, _} ->
            ok = mobbus_nif:bench_handled(),
            loop();
        stop ->
            ok
    end.

rm_db(Path) ->
    [file:delete(Path ++ S) || S <- ["", "-wal", "-shm"]],
    ok.
