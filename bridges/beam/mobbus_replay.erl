%% SPDX-License-Identifier: MIT
%% mobbus_replay - one process of `mobbus replay --beam`: an Erlang process
%% is the consumer, and prints each message it received as its transcript
%% line, so the transcript shows what the BEAM got.
%%
%% The mobbus command runs
%%   erl -noshell -pa DIR -run mobbus_replay child -extra ARGS...
%% where it would fork; the NIF runs the sim's per-process driver on a
%% thread with this process as the subscriber. Markers ({mobbus_replay,
%% <<"#K 12">>}, <<"#E 0">>) come behind every message before them; at #K
%% the command kills this node, at #E it halts.
-module(mobbus_replay).
-export([child/0, line/1]).

child() ->
    ok = io:setopts(standard_io, [binary, {encoding, unicode}]),
    Args = [unicode:characters_to_binary(A) || A <- init:get_plain_arguments()],
    case mobbus_nif:replay_child(Args, self()) of
        {ok, Handle} ->
            loop(Handle);
        {error, Reason} ->
            io:format(standard_error, "mobbus_replay: ~p~n", [Reason]),
            erlang:halt(1)
    end.

loop(Handle) ->
    receive
        {mobbus_replay, <<"#E", _/binary>> = Marker} ->
            out(Marker),
            {ok, _} = mobbus_nif:replay_wait(Handle),
            erlang:halt(0);
        {mobbus_replay, Marker} ->
            out(Marker), % #K: the driver kills this node now
            loop(Handle);
        Msg ->
            case line(Msg) of
                skip -> ok;
                Line -> out(Line)
            end,
            loop(Handle)
    end.

out(Line) ->
    io:put_chars(standard_io, [Line, $\n]).

%% line(Message) -> the transcript line (trace-format.md) for a message a
%% subscriber received, or skip. Keys come in the C sink's order; inside
%% data and connectivity maps they come in map order (same JSON).
-spec line(term()) -> binary() | skip.
line(Msg) ->
    case object(Msg) of
        skip -> skip;
        Pairs -> mobbus:json_encode({Pairs})
    end.

object({notification, M}) ->
    [{msg, notification},
     {id, maps:get(id, M)},
     {title, maps:get(title, M)},
     {body, maps:get(body, M)},
     {data, maps:get(data, M)},
     {source, maps:get(source, M)},
     {presentation, maps:get(presentation, M)},
     {action, maps:get(action, M)}]
        ++ [{K, maps:get(K, M)} || K <- [cold_start, redelivered],
                                   maps:is_key(K, M)];
object({push_fired, Id, PushId, PayloadJson}) ->
    [{msg, push_fired}, {id, Id}, {push_id, PushId},
     {payload, {json, PayloadJson}}];
object({push_token, Os, Token}) ->
    [{msg, push_token}, {os, Os}, {token, Token}];
object({mob_device, connectivity_changed, Fields}) ->
    [{msg, device}, {event, connectivity_changed}
     | [KV || {K, _} = KV <- maps:to_list(Fields), K =/= msg, K =/= event]];
object({mob_device, Event}) ->
    [{msg, device}, {event, Event}];
object({wake_fired, Id}) ->
    [{msg, wake_fired}, {id, Id}];
object({conn, Name, State}) ->
    [{msg, conn}, {name, Name}, {state, State}];
object({keep_alive, ok}) ->
    [{msg, keep_alive}, {result, ok}];
object({keep_alive, {refused, Reason}}) ->
    [{msg, keep_alive}, {result, refused}, {reason, Reason}];
object({mobbus_error, M}) ->
    [{msg, error}, {code, maps:get(code, M)}]
        ++ [{K, maps:get(K, M)} || K <- [line, bytes, limit, message],
                                   maps:is_key(K, M)];
object({mobbus_effect, push_completion, M}) ->
    [{effect, push_completion}, {push_id, maps:get(push_id, M)},
     {result, maps:get(result, M)}];
object({mobbus_effect, task_completed, M}) ->
    [{effect, task_completed}, {identifier, maps:get(identifier, M)},
     {success, maps:get(success, M)}];
object({mobbus_effect, fgs_start, M}) ->
    [{effect, fgs_start}, {notification, maps:get(notification, M)}];
object({mobbus_effect, fgs_stop, _}) ->
    [{effect, fgs_stop}];
object({mobbus_effect, audio_session, M}) ->
    [{effect, audio_session}, {active, maps:get(active, M)}];
object(_) ->
    skip.
