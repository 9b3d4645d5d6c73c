%% SPDX-License-Identifier: MIT
%% mobbus_leak - measure what 100,000 deliveries leave behind: the NIF's
%% process-independent envs and resources (its own counters), the C heap
%% (malloc_info over all arenas; 0 under ASan, whose allocator it does not
%% see), and the BEAM's memory. Prints the numbers; fails on any env
%% or resource left over, or on heap growth past a small allowance.
-module(mobbus_leak).
-include_lib("eunit/include/eunit.hrl").
-export([run/1]).

-define(N, 100000).
-define(NOTES, 20000).
-define(BATCH, 1000).
-define(WARMUP, 10000).
%% Allocator noise, not per-message growth (1 byte a message is 100 KB).
-define(HEAP_SLACK, 256 * 1024).
-define(BEAM_SLACK, 1024 * 1024).

leak_test_() ->
    {timeout, 600, fun() -> run(?N) end}.

%% Notifications too (data decoded into maps with atom keys). The deliver
%% actor remembers every identity it handed (by design), so the C heap is
%% printed per notification, not asserted; envs and resources must not move.
notification_leak_test_() ->
    {timeout, 600, fun() -> run_notes(?NOTES) end}.

run_notes(N) ->
    _ = mobbus:stop(),
    ok = mobbus:start(#{}),
    try
        ok = mobbus:subscribe(self(), [notification]),
        notes(1, 1000),
        B = snapshot(),
        notes(1001, N),
        A = snapshot(),
        Heap = maps:get(heap_bytes, A) - maps:get(heap_bytes, B),
        io:format(user,
                  "~nleak: ~b notifications: envs ~b -> ~b, resources ~b -> ~b, "
                  "C heap ~s (~s bytes a notification: the deliver actor's "
                  "memory of identities), outside processes ~s bytes~n",
                  [N - 1000, maps:get(envs, B), maps:get(envs, A),
                   maps:get(resources, B), maps:get(resources, A),
                   heap_delta(Heap, maps:get(heap_bytes, B)),
                   case maps:get(heap_bytes, B) of
                       0 -> "n/a";
                       _ -> float_to_list(Heap / (N - 1000), [{decimals, 1}])
                   end,
                   delta(maps:get(beam_outside, A) - maps:get(beam_outside, B))]),
        ?assertEqual(maps:get(envs, B), maps:get(envs, A)),
        ?assertEqual(maps:get(resources, B), maps:get(resources, A)),
        ?assertEqual(N - 1000, maps:get(sent, A) - maps:get(sent, B))
    after
        ok = mobbus:stop()
    end.

notes(From, To) when From > To -> ok;
notes(From, To) ->
    Last = min(To, From + ?BATCH - 1),
    [ok = mobbus:publish(notification,
                         #{id => integer_to_binary(I), title => <<"T">>,
                           data => #{screen => <<"chat">>, n => I,
                                     nested => #{<<"k">> => [1, 2]}}})
     || I <- lists:seq(From, Last)],
    [receive {notification, #{data := #{screen := <<"chat">>}}} -> ok
     after 10000 -> error(lost_message) end
     || _ <- lists:seq(From, Last)],
    notes(Last + 1, To).

%% A second subscriber that counts what it gets.
counter(N) ->
    receive
        {count, From} -> From ! {count, N}, counter(N);
        stop -> ok;
        _ -> counter(N + 1)
    end.

count(Pid) ->
    Pid ! {count, self()},
    receive {count, N} -> N end.

%% Publish N messages in batches, receiving each batch before the next (the
%% bus drops when a queue is full; the test must not lose any).
deliver(0) -> ok;
deliver(N) ->
    B = min(N, ?BATCH),
    [publish(I) || I <- lists:seq(1, B)],
    [receive_one() || _ <- lists:seq(1, B)],
    deliver(N - B).

publish(I) when I rem 2 =:= 0 ->
    ok = mobbus:publish(connectivity,
                        #{online => true, transport => <<"wifi">>,
                          expensive => false, seq => I,
                          detail => #{<<"ssid">> => <<"home">>, <<"ch">> => [1, 6, 11]}});
publish(_) ->
    ok = mobbus:publish(device, #{event => did_become_active}).

receive_one() ->
    receive
        {mob_device, _} -> ok;
        {mob_device, connectivity_changed, #{seq := _}} -> ok
    after 10000 -> error(lost_message)
    end.

snapshot() ->
    ok = mobbus:sync(),
    [erlang:garbage_collect(P) || P <- processes()],
    S = mobbus:stats(),
    M = erlang:memory(),
    %% Process heaps move with GC timing; an env or term leaked by the NIF
    %% would sit outside any process (system, binary).
    S#{beam => proplists:get_value(total, M),
       beam_outside => proplists:get_value(system, M)
                     + proplists:get_value(binary, M)}.

run(N) ->
    _ = mobbus:stop(),
    ok = mobbus:start(#{}),
    try
        Other = spawn_link(fun() -> counter(0) end),
        ok = mobbus:subscribe(self(), [mob_device]),
        ok = mobbus:subscribe(Other, [mob_device]),
        deliver(?WARMUP), % warm up: allocator pools, code loading
        %% Counted after the sync in snapshot(): the last warm-up copy to
        %% Other may still be on its way when this process has its own.
        B = snapshot(),
        C0 = count(Other),
        deliver(N),
        A = snapshot(),
        C1 = count(Other),
        Other ! stop,
        io:format(user,
                  "~nleak: ~b deliveries to each of 2 subscribers "
                  "(~b sends): envs ~b -> ~b, resources ~b -> ~b, "
                  "C heap ~b -> ~b bytes (~s), BEAM memory ~b -> ~b bytes (~s), "
                  "outside processes ~b -> ~b bytes (~s), "
                  "send_failed ~b, dropped ~b~n",
                  [N, maps:get(sent, A) - maps:get(sent, B),
                   maps:get(envs, B), maps:get(envs, A),
                   maps:get(resources, B), maps:get(resources, A),
                   maps:get(heap_bytes, B), maps:get(heap_bytes, A),
                   heap_delta(maps:get(heap_bytes, A) - maps:get(heap_bytes, B),
                              maps:get(heap_bytes, B)),
                   maps:get(beam, B), maps:get(beam, A),
                   delta(maps:get(beam, A) - maps:get(beam, B)),
                   maps:get(beam_outside, B), maps:get(beam_outside, A),
                   delta(maps:get(beam_outside, A) - maps:get(beam_outside, B)),
                   maps:get(send_failed, A), maps:get(dropped, A)]),
        ?assertEqual(N, C1 - C0),
        ?assertEqual(2 * N, maps:get(sent, A) - maps:get(sent, B)),
        ?assertEqual(maps:get(envs, B), maps:get(envs, A)),
        ?assertEqual(maps:get(resources, B), maps:get(resources, A)),
        ?assertEqual(0, maps:get(queued, A)),
        ?assert(maps:get(heap_bytes, A) - maps:get(heap_bytes, B) < ?HEAP_SLACK),
        %% (0 - 0 under ASan; LeakSanitizer checks the heap there)
        ?assert(maps:get(beam_outside, A) - maps:get(beam_outside, B) < ?BEAM_SLACK)
    after
        ok = mobbus:stop()
    end,
    %% Stopped: the consumer's two envs and the bus resource are gone. The
    %% resource goes once its demonitor signals reached the processes.
    S = stats_until(fun(#{resources := R}) -> R =:= 0 end, 200),
    io:format(user, "leak: after stop: envs ~b, resources ~b~n",
              [maps:get(envs, S), maps:get(resources, S)]),
    ?assertEqual(0, maps:get(envs, S)),
    ?assertEqual(0, maps:get(resources, S)),
    ok.

%% malloc_info sees nothing under ASan (its own allocator): no number then.
heap_delta(_, 0) -> "not measurable under ASan";
heap_delta(D, _) -> delta(D).

delta(D) when D >= 0 -> "+" ++ integer_to_list(D);
delta(D) -> integer_to_list(D).

stats_until(Pred, 0) ->
    S = mobbus:stats(),
    Pred(S),
    S;
stats_until(Pred, N) ->
    S = mobbus:stats(),
    case Pred(S) of
        true -> S;
        false -> receive after 10 -> stats_until(Pred, N - 1) end
    end.
