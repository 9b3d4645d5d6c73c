%% SPDX-License-Identifier: MIT
%% mobbus_tests - EUnit tests of the BEAM consumer under a real erl: every
%% message kind, acks and redelivery after a subscriber crash, cold start,
%% two subscribers, unsubscribe, badarg vs {error, Reason}, the key-value
%% state, and `mobbus replay --beam` against the C sink.
%%
%% No sleeps: mobbus:sync/0 returns once every message the bus caused so far
%% is in the caller's mailbox, so "nothing arrived" is a real assertion.
-module(mobbus_tests).
-include_lib("eunit/include/eunit.hrl").

%% Fixtures

%% A test generator named after the function it is in.
-define(WITH_BUS(Opts, Fun), {atom_to_list(?FUNCTION_NAME), with_bus(Opts, Fun)}).

db_path() ->
    Dir = case os:getenv("TMPDIR") of false -> "/tmp"; "" -> "/tmp"; D -> D end,
    filename:join(Dir, "mobbus_beam_" ++ os:getpid() ++ "_"
                  ++ integer_to_list(erlang:unique_integer([positive]))
                  ++ ".db").

rm_db(Path) ->
    [file:delete(Path ++ S) || S <- ["", "-wal", "-shm"]],
    ok.

%% Run Fun(Db) on a started bus, stopped and removed afterwards.
with_bus(Opts, Fun) ->
    Db = db_path(),
    {setup,
     fun() ->
             _ = mobbus:stop(),
             flush(),
             ok = mobbus:start(maps:merge(#{db => list_to_binary(Db)}, Opts)),
             Db
     end,
     fun(_) -> _ = mobbus:stop(), rm_db(Db) end,
     fun(_) -> {timeout, 60, fun() -> Fun(Db) end} end}.

flush() ->
    receive _ -> flush() after 0 -> ok end.

%% The next message, or timeout.
next() ->
    receive M -> M after 5000 -> timeout end.

%% Everything in the mailbox once the bus is idle.
drain() ->
    ok = mobbus:sync(),
    drain_([]).
drain_(Acc) ->
    receive M -> drain_([M | Acc]) after 0 -> lists:reverse(Acc) end.

note(Id) ->
    note(Id, #{}).
note(Id, Extra) ->
    ok = mobbus:publish(notification,
                        maps:merge(#{id => Id, title => <<"T ", Id/binary>>,
                                     body => <<"B">>}, Extra)).

%% A process that forwards what it receives to Parent, tagged with itself.
forwarder(Parent) ->
    spawn(fun() -> forward(Parent) end).

forward(Parent) ->
    receive
        {'$sync', From, Ref} ->
            ok = mobbus:sync(),
            forward_all(Parent),
            From ! {Ref, ok},
            forward(Parent);
        M ->
            Parent ! {self(), M},
            forward(Parent)
    end.

forward_all(Parent) ->
    receive M -> Parent ! {self(), M}, forward_all(Parent) after 0 -> ok end.

%% Everything the forwarders got so far is in the caller's mailbox: drain.
drain(Forwarders) ->
    [begin
         Ref = make_ref(),
         F ! {'$sync', self(), Ref},
         receive {Ref, ok} -> ok end
     end || F <- Forwarders],
    drain().

kill(Pid) ->
    Ref = monitor(process, Pid),
    exit(Pid, kill),
    receive {'DOWN', Ref, process, Pid, _} -> ok end.

%% Every message kind

kinds_test_() ->
    ?WITH_BUS(#{platform => ios, background_modes => [<<"audio">>]},
             fun(_) ->
    ok = mobbus:subscribe(self(), [all, mobbus_effect]),
    ok = mobbus:publish(notification,
                        #{id => <<"N1">>, title => <<"Hello">>, body => nil,
                          data => #{screen => <<"inbox">>, n => 3, f => 1.5,
                                    ok => true, gone => nil,
                                    nested => #{<<"a">> => [1, <<"x">>]}}}),
    ?assertEqual({notification,
                  #{id => <<"N1">>, title => <<"Hello">>, body => nil,
                    data => #{screen => <<"inbox">>, n => 3, f => 1.5,
                              ok => true, gone => nil,
                              nested => #{<<"a">> => [1, <<"x">>]}},
                    source => push, presentation => foreground,
                    action => nil}}, next()),
    ok = mobbus:publish(notification,
                        #{id => <<"N2">>, presentation => tap,
                          action => <<"reply">>, source => local,
                          data => <<"{\"k\":\"v\"}">>}),
    ?assertEqual({notification,
                  #{id => <<"N2">>, title => nil, body => nil,
                    data => #{k => <<"v">>}, source => local,
                    presentation => tap, action => <<"reply">>}}, next()),
    ok = mobbus:publish(push_token, #{token => <<"abcd">>}),
    ?assertEqual({push_token, ios, <<"abcd">>}, next()),
    ok = mobbus:publish(device, #{event => did_enter_background}),
    ?assertEqual({mob_device, did_enter_background}, next()),
    ok = mobbus:publish(device, #{event => launch}), % no device event
    ok = mobbus:publish(connectivity, #{online => true, transport => <<"wifi">>,
                                        expensive => false}),
    ?assertEqual({mob_device, connectivity_changed,
                  #{online => true, transport => <<"wifi">>,
                    expensive => false}}, next()),
    ok = mobbus:publish(notification,
                        #{id => <<"N3">>, presentation => background,
                          push_id => <<"P3">>, budget_ms => 30000,
                          payload => #{aps => #{<<"content-available">> => 1}}}),
    ?assertEqual({push_fired, <<"N3">>, <<"P3">>,
                  <<"{\"aps\":{\"content-available\":1}}">>}, next()),
    ok = mobbus:complete({push_id, <<"P3">>}, new_data),
    ?assertEqual({mobbus_effect, push_completion,
                  #{push_id => <<"P3">>, result => new_data}}, next()),
    ok = mobbus:complete({push_id, <<"P3">>}, failed), % late: ignored
    ok = mobbus:publish(wake, #{id => <<"refresh">>, budget_ms => 1000}),
    ?assertEqual({wake_fired, <<"refresh">>}, next()),
    ok = mobbus:complete(<<"refresh">>, no_data),
    ?assertEqual({mobbus_effect, task_completed,
                  #{identifier => <<"refresh">>, success => true}}, next()),
    ok = mobbus:keep_alive(),
    ?assertMatch({mobbus_effect, audio_session, #{active := true}}, next()),
    ?assertEqual({keep_alive, ok}, next()),
    ?assertEqual([], drain())
             end).

keep_alive_refused_test_() ->
    ?WITH_BUS(#{platform => ios},
             fun(_) ->
    ok = mobbus:subscribe(self()),
    ok = mobbus:keep_alive(),
    ?assertEqual({keep_alive, {refused, no_background_mode}}, next()),
    ok = mobbus:keep_alive_stop(),
    ?assertEqual([], drain())
             end).

%% connect/2: a real socket to a real local listener, open in the
%% foreground and closed on background; bad arguments are badarg.
connect_test_() ->
    ?WITH_BUS(#{platform => android},
             fun(_) ->
    {ok, L} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(L),
    Url = iolist_to_binary(["tcp://127.0.0.1:", integer_to_list(Port)]),
    ok = mobbus:subscribe(self(), [conn]),
    ok = mobbus:publish(device, #{event => will_enter_foreground}),
    ok = mobbus:connect(<<"api">>, Url),
    ?assertEqual({conn, <<"api">>, up}, next()),
    ok = mobbus:publish(device, #{event => did_enter_background}),
    ?assertEqual({conn, <<"api">>, down}, next()),
    ?assertError(badarg, mobbus:connect(api, Url)),
    ?assertError(badarg, mobbus:connect(<<"api">>, <<>>)),
    ?assertEqual([], drain()),
    gen_tcp:close(L)
             end).

delivery_info_test_() ->
    ?WITH_BUS(#{delivery_info => true},
             fun(_) ->
    ok = mobbus:subscribe(self(), notification),
    note(<<"N1">>, #{presentation => tap, cold_start => true}),
    ?assertMatch({notification, #{id := <<"N1">>, cold_start := true,
                                  redelivered := false}}, next())
             end).

%% Kinds a subscriber did not ask for never reach it.
kinds_filter_test_() ->
    ?WITH_BUS(#{},
             fun(_) ->
    ok = mobbus:subscribe(self(), [mob_device]),
    note(<<"N1">>),
    ok = mobbus:publish(device, #{event => did_become_active}),
    ?assertEqual([{mob_device, did_become_active}], drain())
             end).

%% Cold start: what arrives before any subscriber waits for it.

cold_start_test_() ->
    ?WITH_BUS(#{},
             fun(_) ->
    note(<<"N1">>),
    ok = mobbus:publish(push_token, #{token => <<"T1">>}),
    note(<<"N2">>, #{presentation => tap}),
    ?assertEqual([], drain()),             % nobody subscribed: nothing sent
    ok = mobbus:subscribe(self()),
    ?assertMatch([{notification, #{id := <<"N1">>}},
                  {push_token, ios, <<"T1">>},
                  {notification, #{id := <<"N2">>, presentation := tap}}],
                 drain())
             end).

%% Events stored before the process ended wait in the file for the next
%% process's first subscriber.
durable_cold_start_test_() ->
    ?WITH_BUS(#{},
             fun(Db) ->
    note(<<"N1">>),
    note(<<"N2">>),
    ok = mobbus:stop(),
    ok = mobbus:start(#{db => Db, delivery_info => true}),
    ok = mobbus:subscribe(self()),
    ?assertMatch([{notification, #{id := <<"N1">>, redelivered := false}},
                  {notification, #{id := <<"N2">>, redelivered := false}}],
                 drain())
             end).

%% Acks and redelivery

crash_redelivery_test_() ->
    ?WITH_BUS(#{ack => manual, delivery_info => true},
             fun(_) ->
    Self = self(),
    A = forwarder(Self),
    ok = mobbus:subscribe(A),
    note(<<"N1">>),
    ?assertMatch({A, {notification, #{id := <<"N1">>, redelivered := false}}},
                 next()),
    kill(A),                                   % crashes before its ack
    ok = mobbus:sync(),
    #{sent := Sent} = mobbus:stats(),
    note(<<"N2">>),                            % arrives with nobody up
    ok = mobbus:sync(),
    ?assertMatch(#{sent := Sent, subscribers := 0}, mobbus:stats()),
    B = forwarder(Self),
    ok = mobbus:subscribe(B),
    ?assertMatch({B, {notification, #{id := <<"N1">>, redelivered := true}}},
                 next()),
    ?assertMatch({B, {notification, #{id := <<"N2">>, redelivered := false}}},
                 next()),
    ok = mobbus:ack(<<"N1">>),
    ok = mobbus:ack(<<"N2">>),
    kill(B),
    C = forwarder(Self),
    ok = mobbus:subscribe(C),
    ?assertEqual([], drain([C]))               % acked: never handed again
             end).

%% The same across a process end: unacked in one, redelivered in the next.
redelivery_next_process_test_() ->
    ?WITH_BUS(#{ack => manual, delivery_info => true},
             fun(Db) ->
    ok = mobbus:subscribe(self()),
    note(<<"N1">>),
    note(<<"N2">>),
    ?assertMatch([{notification, #{id := <<"N1">>}},
                  {notification, #{id := <<"N2">>}}], drain()),
    ok = mobbus:ack(<<"N2">>),
    ok = mobbus:sync(),
    ok = mobbus:stop(),
    ok = mobbus:start(#{db => Db, ack => manual, delivery_info => true}),
    ok = mobbus:subscribe(self()),
    ?assertMatch([{notification, #{id := <<"N1">>, redelivered := true}}],
                 drain())
             end).

auto_ack_no_redelivery_test_() ->
    ?WITH_BUS(#{delivery_info => true},
             fun(_) ->
    A = forwarder(self()),
    ok = mobbus:subscribe(A),
    note(<<"N1">>),
    ?assertMatch({A, {notification, #{id := <<"N1">>}}}, next()),
    kill(A),
    ok = mobbus:subscribe(self()),
    ?assertEqual([], drain())
             end).

token_ack_test_() ->
    ?WITH_BUS(#{},
             fun(Db) ->
    ok = mobbus:subscribe(self()),
    ok = mobbus:publish(push_token, #{token => <<"T1">>}),
    ?assertEqual([{push_token, ios, <<"T1">>}], drain()),
    ok = mobbus:ack({push_token, <<"T1">>}),
    ok = mobbus:sync(),
    ok = mobbus:stop(),
    ok = mobbus:start(#{db => Db}),
    ok = mobbus:subscribe(self()),
    ok = mobbus:publish(push_token, #{token => <<"T1">>}),
    ok = mobbus:publish(push_token, #{token => <<"T2">>}),
    ?assertEqual([{push_token, ios, <<"T2">>}], drain())
             end).

%% Two subscribers, unsubscribe

two_subscribers_test_() ->
    ?WITH_BUS(#{},
             fun(_) ->
    Self = self(),
    A = forwarder(Self),
    B = forwarder(Self),
    ok = mobbus:subscribe(A),
    ok = mobbus:subscribe(B, [notification]),
    note(<<"N1">>),
    ok = mobbus:publish(device, #{event => did_become_active}),
    Got = drain([A, B]),
    ?assertEqual(3, length(Got)),
    ?assert(lists:member({A, {mob_device, did_become_active}}, Got)),
    ?assertMatch([{A, {notification, #{id := <<"N1">>}}}],
                 [M || {P, {notification, _}} = M <- Got, P =:= A]),
    ?assertMatch([{B, {notification, #{id := <<"N1">>}}}],
                 [M || {P, _} = M <- Got, P =:= B]),
    ?assertMatch(#{subscribers := 2}, mobbus:stats())
             end).

unsubscribe_test_() ->
    ?WITH_BUS(#{},
             fun(_) ->
    Self = self(),
    A = forwarder(Self),
    ok = mobbus:subscribe(A),
    ok = mobbus:subscribe(self()),
    ok = mobbus:unsubscribe(A),
    ok = mobbus:unsubscribe(A),               % twice: still ok
    note(<<"N1">>),
    ?assertMatch([{notification, #{id := <<"N1">>}}], drain()),
    ok = mobbus:unsubscribe(self()),           % the last one: messages wait
    note(<<"N2">>),
    ?assertEqual([], drain()),
    ok = mobbus:subscribe(self()),
    ?assertMatch([{notification, #{id := <<"N2">>}}], drain())
             end).

%% A subscriber that dies is dropped even before its monitor fires.
dead_subscriber_test_() ->
    ?WITH_BUS(#{},
             fun(_) ->
    A = forwarder(self()),
    ok = mobbus:subscribe(A),
    kill(A),
    ok = mobbus:subscribe(self()),
    note(<<"N1">>),
    ?assertMatch([{notification, #{id := <<"N1">>}}], drain()),
    ?assertMatch(#{subscribers := 1}, mobbus:stats()),
    ?assertEqual({error, noproc}, mobbus:subscribe(A))
             end).

%% State

state_test_() ->
    ?WITH_BUS(#{},
             fun(Db) ->
    ?assertEqual({error, not_found}, mobbus:state_get(<<"k">>)),
    ok = mobbus:state_put(<<"k">>, <<"v1">>),
    ?assertEqual({ok, <<"v1">>}, mobbus:state_get(<<"k">>)),
    ok = mobbus:state_put(<<"k">>, [<<"v">>, "2"]),
    ?assertEqual({ok, <<"v2">>}, mobbus:state_get(<<"k">>)),
    ok = mobbus:state_put(<<"gone">>, <<>>),
    ok = mobbus:state_delete(<<"gone">>),
    ?assertEqual({error, not_found}, mobbus:state_get(<<"gone">>)),
    ok = mobbus:stop(),
    ok = mobbus:start(#{db => Db}),
    ?assertEqual({ok, <<"v2">>}, mobbus:state_get(<<"k">>))
             end).

no_store_test() ->
    _ = mobbus:stop(),
    ok = mobbus:start(#{}),
    try
        ?assertEqual({error, no_store}, mobbus:state_get(<<"k">>)),
        ?assertEqual({error, no_store}, mobbus:state_put(<<"k">>, <<"v">>))
    after
        ok = mobbus:stop()
    end.

%% badarg for wrong arguments, {error, Reason} for run-time failures

not_started_test() ->
    _ = mobbus:stop(),
    ?assertEqual({error, not_started}, mobbus:stop()),
    ?assertEqual({error, not_started}, mobbus:subscribe(self())),
    ?assertEqual({error, not_started}, mobbus:unsubscribe(self())),
    ?assertEqual({error, not_started}, mobbus:ack(<<"N1">>)),
    ?assertEqual({error, not_started}, mobbus:complete(<<"N1">>, no_data)),
    ?assertEqual({error, not_started}, mobbus:keep_alive()),
    ?assertEqual({error, not_started}, mobbus:publish(device, #{event => launch})),
    ?assertEqual({error, not_started}, mobbus:state_get(<<"k">>)),
    ?assertEqual({error, not_started}, mobbus:sync()),
    %% a wrong argument is badarg even with no bus
    ?assertError(badarg, mobbus:ack(42)).

badarg_test_() ->
    ?WITH_BUS(#{},
             fun(_) ->
    ?assertEqual({error, already_started}, mobbus:start(#{})),
    ?assertError(badarg, mobbus:start(not_a_map)),
    ?assertError(badarg, mobbus:start(#{platform => windows})),
    ?assertError(badarg, mobbus:subscribe(not_a_pid, all)),
    ?assertError(badarg, mobbus:subscribe(self(), [bogus])),
    ?assertError(badarg, mobbus:subscribe(self(), [])),
    ?assertError(badarg, mobbus:unsubscribe("pid")),
    ?assertError(badarg, mobbus:ack(42)),
    ?assertError(badarg, mobbus:ack(<<>>)),
    ?assertError(badarg, mobbus:ack({push_token, 1})),
    ?assertError(badarg, mobbus:complete(<<"N1">>, maybe)),
    ?assertError(badarg, mobbus:complete(1, new_data)),
    ?assertError(badarg, mobbus:publish(bogus, #{})),
    ?assertError(badarg, mobbus:publish(notification, #{})),
    ?assertError(badarg, mobbus:publish(notification, #{id => <<"x">>, title => 5})),
    ?assertError(badarg, mobbus:publish(notification, #{id => <<"x">>, data => <<"[1]">>})),
    ?assertError(badarg, mobbus:publish(notification, #{id => <<"x">>, data => #{k => self()}})),
    ?assertError(badarg, mobbus:publish(device, #{event => exploded})),
    ?assertError(badarg, mobbus:publish(device, [])),
    ?assertError(badarg, mobbus:state_get(<<>>)),
    ?assertError(badarg, mobbus:state_get(key)),
    ?assertError(badarg, mobbus:state_put(<<"k">>, 1)),
    ?assertError(badarg, mobbus:json_encode(self())),
    ?assertEqual({error, invalid_json}, mobbus:json_decode(<<"{">>)),
    Dead = spawn(fun() -> ok end),
    kill(Dead),
    ?assertEqual({error, noproc}, mobbus:subscribe(Dead)),
    %% the bus still works after all that
    ok = mobbus:subscribe(self()),
    note(<<"N1">>),
    ?assertMatch([{notification, #{id := <<"N1">>}}], drain())
             end).

%% JSON

json_test() ->
    ?assertEqual(<<"{\"b\":1,\"a\":[true,null,\"x\",1.5]}">>,
                 mobbus:json_encode({[{b, 1}, {<<"a">>, [true, nil, x, 1.5]}]})),
    ?assertEqual(<<"{\"k\":{\"n\":1}}">>,
                 mobbus:json_encode(#{k => {json, <<"{ \"n\" : 1 }">>}})),
    ?assertEqual(#{<<"a">> => [1, 2.5, <<"é"/utf8>>, false, nil]},
                 mobbus:json_decode(<<"{\"a\":[1,2.5,\"é\",false,null]}"/utf8>>)).

%% Top-level data keys become atoms only within the budget; nested keys and
%% non-ASCII keys stay binaries.
data_keys_test_() ->
    ?WITH_BUS(#{},
             fun(_) ->
    ok = mobbus:subscribe(self()),
    ok = mobbus:publish(notification,
                        #{id => <<"N1">>,
                          data => <<"{\"ascii_key\":1,\"clé\":2,\"n\":{\"inner\":3}}"/utf8>>}),
    {notification, #{data := Data}} = next(),
    ?assertEqual(#{ascii_key => 1, <<"clé"/utf8>> => 2,
                   n => #{<<"inner">> => 3}}, Data)
             end).

%% Big and deep data: a map of more than 32 keys and JSON nested 2000 deep
%% are built on the consumer's own thread.
big_data_test_() ->
    ?WITH_BUS(#{},
             fun(_) ->
    ok = mobbus:subscribe(self()),
    Big = maps:from_list([{integer_to_binary(I), I} || I <- lists:seq(1, 500)]),
    ok = mobbus:publish(notification, #{id => <<"N1">>, data => #{big => Big}}),
    {notification, #{data := #{big := GotBig}}} = next(),
    ?assertEqual(Big, GotBig),
    Deep = iolist_to_binary(["{\"d\":", lists:duplicate(2000, $[),
                             lists:duplicate(2000, $]), "}"]),
    ok = mobbus:publish(notification, #{id => <<"N2">>, data => Deep}),
    {notification, #{data := #{d := D}}} = next(),
    ?assertEqual(2000, depth(D))
             end).

depth([]) -> 1;
depth([X]) -> 1 + depth(X).

%% Two ways to the mailbox: the deliver actor's thread sends a small
%% envelope itself when nothing is queued; a big one (past 1 KB) goes
%% through the consumer's own thread, and so does what arrives while that
%% thread still has some. Mixed, they keep the bus order, and the sync
%% marker comes after all of them.
delivery_paths_test_() ->
    ?WITH_BUS(#{},
             fun(_) ->
    ok = mobbus:subscribe(self(), notification),
    #{direct := D0, received := R0} = mobbus:stats(),
    Big = binary:copy(<<"x">>, 4000),
    Ids = [integer_to_binary(I) || I <- lists:seq(1, 210)],
    [ok = mobbus:publish(notification,
                         #{id => Id,
                           data => case binary_to_integer(Id) rem 7 of
                                       0 -> #{big => Big};
                                       _ -> #{}
                                   end})
     || Id <- Ids],
    Got = drain(),
    ?assertEqual(Ids, [Id || {notification, #{id := Id}} <- Got]),
    ?assertEqual(210, length(Got)),
    #{direct := D1, received := R1, queued := 0} = mobbus:stats(),
    ?assertEqual(210, R1 - R0),
    ?assert(D1 - D0 >= 1),        % the first: nothing was queued
    ?assert(D1 - D0 =< 210 - 30)  % never the 30 big ones
             end).

%% A bridge call from a native thread (the benchmark's own, as a platform
%% bridge's would be) finds the actors idle and runs them on that thread:
%% no bus message at all, and the consumer sends from there itself. Every
%% notification arrives, in order.
native_thread_inline_test_() ->
    ?WITH_BUS(#{},
             fun(_) ->
    Self = self(),
    Rx = spawn_link(fun() -> bench_rx(Self, 0) end),
    ok = mobbus:subscribe(Rx, notification),
    ok = mobbus:sync(),
    {ok, Kinds, Bus} = mobbus_nif:bench_run(Rx, 200, 20, 7),
    Rx ! {stop, Self},
    Got = receive {rx_count, N} -> N after 10000 -> timeout end,
    #{calls := Calls, published := Pub, unsent := Unsent,
      inline_runs := Inline} = Bus,
    {_, Ns} = maps:get(mobbus, Kinds),
    ?assertEqual(200 * 8, byte_size(Ns)),
    ?assertEqual(220, Calls),                  % samples and warm-up
    ?assertEqual(0, Pub - Unsent),             % nothing went through nng
    ?assertEqual(3 * Calls, Inline),           % deliver, policy, store
    %% bench_run's other two kinds send the same notification: 3 x 220.
    ?assertEqual(3 * 220, Got)
             end).

bench_rx(Parent, N) ->
    receive
        {notification, _} ->
            ok = mobbus_nif:bench_handled(),
            bench_rx(Parent, N + 1);
        {stop, Parent} ->
            Parent ! {rx_count, N}
    end.

%% mobbus replay --beam prints the same transcript as the C sink (as JSON
%% values: an Erlang map does not keep the payload's key order).

mobbus_exe() ->
    filename:join([filename:dirname(code:which(mobbus)), "..", "..", "mobbus"]).

source_root() ->
    case os:getenv("MB_SOURCE_ROOT") of
        false -> filename:join([filename:dirname(code:which(?MODULE)), "..", "..", ".."]);
        R -> R
    end.

transcript(Args) ->
    Out = os:cmd(mobbus_exe() ++ " replay " ++ Args),
    [mobbus:json_decode(unicode:characters_to_binary(L))
     || L <- string:split(Out, "\n", all), L =/= ""].

replay_same(Trace) ->
    Path = filename:join(source_root(), Trace),
    C = transcript(Path),
    Beam = transcript("--beam " ++ Path),
    ?assertNotEqual([], C),
    ?assertEqual(C, Beam).

replay_beam_test_() ->
    {timeout, 300,
     [fun() -> replay_same("examples/tour-ios.trace.jsonl") end,
      fun() -> replay_same("examples/tour-android.trace.jsonl") end]}.

%% The atom budget: past MBB_ATOM_BUDGET new atoms (10,000 for the VM's
%% life), new top-level keys stay binaries. Last in this module: it spends
%% the budget of this VM.
atom_budget_test_() ->
    ?WITH_BUS(#{},
             fun(_) ->
    ok = mobbus:subscribe(self()),
    #{atoms_made := Made} = mobbus:stats(),
    Prefix = "budget_" ++ integer_to_list(erlang:unique_integer([positive])) ++ "_",
    N = 10000 - Made + 50,
    Data = maps:from_list([{list_to_binary(Prefix ++ integer_to_list(I)), I}
                           || I <- lists:seq(1, N)]),
    ok = mobbus:publish(notification, #{id => <<"N1">>, data => Data}),
    {notification, #{data := Got}} = next(),
    Binaries = [K || K <- maps:keys(Got), is_binary(K)],
    ?assertEqual(N, maps:size(Got)),
    ?assertEqual(50, length(Binaries)),
    ?assertMatch(#{atoms_made := 10000}, mobbus:stats())
             end).
