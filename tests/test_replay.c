/* SPDX-License-Identifier: MIT */
/*
 * test_replay.c - replay traces through the real bus and actors, one tcase
 * per behaviour, covering every format-1 callback.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mobbus.h"
#include "nuts.h"
#include "replay.h"
#include "sim.h"
#include "trace.h"

#define IOS_HDR                                                                \
	"{\"trace\":1,\"os\":\"ios\",\"app\":{\"ack\":\"auto\","               \
	"\"consumer_up_at\":0}}\n"
#define IOS_AUDIO_HDR                                                          \
	"{\"trace\":1,\"os\":\"ios\",\"app\":{\"ack\":\"auto\","               \
	"\"background_modes\":[\"audio\"],\"consumer_up_at\":0}}\n"
#define AND_HDR                                                                \
	"{\"trace\":1,\"os\":\"android\",\"app\":{\"ack\":\"auto\","           \
	"\"android_sdk\":34,\"consumer_up_at\":0}}\n"
#define AND30_HDR                                                              \
	"{\"trace\":1,\"os\":\"android\",\"app\":{\"ack\":\"auto\","           \
	"\"android_sdk\":30,\"consumer_up_at\":0}}\n"

/* Replay text and return the transcript as one string, a line each. */
static char *
replay(const char *text)
{
	struct mb_trace *t = NULL;
	struct mb_transcript tr = { 0 };
	char err[2048];
	size_t len = 1;
	char *out;

	ck_assert_msg(mb_trace_parse("t", text, strlen(text), &t, err,
	                  sizeof(err)) == MB_OK,
	    "parse: %s", err);
	ck_assert_int_eq(mb_replay(t, NULL, &tr), MB_OK);
	for (size_t i = 0; i < tr.n; i++)
		len += strlen(tr.lines[i]) + 1;
	out = calloc(1, len);
	for (size_t i = 0; i < tr.n; i++) {
		strcat(out, tr.lines[i]);
		strcat(out, "\n");
	}
	mb_transcript_fini(&tr);
	mb_trace_free(t);
	return out;
}

#define EXPECT_TRANSCRIPT(trace, want)                                         \
	do {                                                                   \
		char *got_ = replay(trace);                                    \
		ck_assert_str_eq(got_, want);                                  \
		free(got_);                                                    \
	} while (0)

START_TEST(test_ios_lifecycle)
{
	EXPECT_TRANSCRIPT(IOS_HDR
	    "{\"at\":0,\"cb\":\"launch\",\"options\":{}}\n"
	    "{\"at\":10,\"cb\":\"did_become_active\"}\n"
	    "{\"at\":20,\"cb\":\"will_resign_active\"}\n"
	    "{\"at\":30,\"cb\":\"did_enter_background\"}\n"
	    "{\"at\":40,\"cb\":\"suspend\"}\n"
	    "{\"at\":50,\"cb\":\"will_enter_foreground\"}\n"
	    "{\"at\":60,\"cb\":\"will_terminate\"}\n",
	    "{\"msg\":\"device\",\"event\":\"did_become_active\"}\n"
	    "{\"msg\":\"device\",\"event\":\"will_resign_active\"}\n"
	    "{\"msg\":\"device\",\"event\":\"did_enter_background\"}\n"
	    "{\"msg\":\"device\",\"event\":\"will_enter_foreground\"}\n"
	    "{\"msg\":\"device\",\"event\":\"will_terminate\"}\n");
}
END_TEST

START_TEST(test_ios_foreground_and_tap)
{
	EXPECT_TRANSCRIPT(IOS_HDR
	    "{\"at\":0,\"cb\":\"launch\",\"options\":{}}\n"
	    "{\"at\":10,\"cb\":\"did_become_active\"}\n"
	    "{\"at\":100,\"cb\":\"will_present\",\"payload\":{\"aps\":{\"alert\":"
	    "{\"title\":\"T\",\"subtitle\":\"S\",\"body\":\"B\"}},\"k\":1,"
	    "\"gcm.message_id\":\"G1\"},\"request_id\":\"R1\"}\n"
	    "{\"at\":200,\"cb\":\"did_receive_response\",\"payload\":{\"aps\":"
	    "{\"alert\":\"Hi\"},\"k\":1,\"gcm.message_id\":\"G1\"},"
	    "\"request_id\":\"R1\",\"action\":\"REPLY\"}\n"
	    "{\"at\":300,\"cb\":\"will_present\",\"payload\":{\"aps\":{\"alert\":"
	    "{\"loc-key\":\"K\"}}},\"request_id\":\"R2\",\"content\":{\"title\":"
	    "\"Hello\"}}\n",
	    "{\"msg\":\"device\",\"event\":\"did_become_active\"}\n"
	    "{\"msg\":\"notification\",\"id\":\"G1\",\"title\":\"T\",\"body\":\"B\","
	    "\"data\":{\"k\":1},\"source\":\"push\",\"presentation\":\"foreground\","
	    "\"action\":null,\"cold_start\":false,\"redelivered\":false}\n"
	    "{\"msg\":\"notification\",\"id\":\"G1\",\"title\":null,\"body\":\"Hi\","
	    "\"data\":{\"k\":1},\"source\":\"push\",\"presentation\":\"tap\","
	    "\"action\":\"REPLY\",\"cold_start\":false,\"redelivered\":false}\n"
	    "{\"msg\":\"notification\",\"id\":\"R2\",\"title\":\"Hello\","
	    "\"body\":null,\"data\":{},\"source\":\"push\",\"presentation\":"
	    "\"foreground\",\"action\":null,\"cold_start\":false,"
	    "\"redelivered\":false}\n");
}
END_TEST

START_TEST(test_ios_cold_tap_merges)
{
	/* The launch-options copy and the response copy are one tap, with the
	 * response's action, handed when the late consumer subscribes. */
	EXPECT_TRANSCRIPT(
	    "{\"trace\":1,\"os\":\"ios\",\"app\":{\"id_key\":\"nid\","
	    "\"consumer_up_at\":500}}\n"
	    "{\"at\":0,\"cb\":\"launch\",\"options\":{\"remote_notification\":"
	    "{\"aps\":{\"alert\":\"x\"},\"nid\":\"N1\"}}}\n"
	    "{\"at\":50,\"cb\":\"did_receive_response\",\"payload\":{\"aps\":"
	    "{\"alert\":\"x\"},\"nid\":\"N1\"},\"request_id\":\"R1\","
	    "\"action\":\"OPEN\"}\n"
	    "{\"at\":60,\"cb\":\"did_become_active\"}\n"
	    "{\"at\":600,\"cb\":\"advance\"}\n",
	    "{\"msg\":\"notification\",\"id\":\"N1\",\"title\":null,\"body\":\"x\","
	    "\"data\":{\"nid\":\"N1\"},\"source\":\"push\",\"presentation\":\"tap\","
	    "\"action\":\"OPEN\",\"cold_start\":true,\"redelivered\":false}\n"
	    "{\"msg\":\"device\",\"event\":\"did_become_active\"}\n");
}
END_TEST

/* The identity of a copy with no id at all: its compact payload's hash. */
static const char *
hash_id(const char *compact)
{
	static char ids[4][24];
	static int next;
	char h[17];
	char *out = ids[next++ % 4];

	mbi_sim_hash(compact, h);
	snprintf(out, sizeof(ids[0]), "h:%s", h);
	return out;
}

START_TEST(test_ios_silent_push_windows)
{
	/* push_fired; completion by push_id; budget expiry gives failed;
	 * a late completion is ignored. */
	char want[1024];

	snprintf(want, sizeof(want),
	    "{\"msg\":\"device\",\"event\":\"did_enter_background\"}\n"
	    "{\"msg\":\"push_fired\",\"id\":\"%s\","
	    "\"push_id\":\"L4\",\"payload\":{\"aps\":{\"content-available\":1},"
	    "\"n\":1}}\n"
	    "{\"effect\":\"push_completion\",\"push_id\":\"L4\",\"result\":"
	    "\"new_data\"}\n"
	    "{\"msg\":\"push_fired\",\"id\":\"%s\","
	    "\"push_id\":\"L6\",\"payload\":{\"aps\":{\"content-available\":1},"
	    "\"n\":2}}\n"
	    "{\"effect\":\"push_completion\",\"push_id\":\"L6\",\"result\":"
	    "\"failed\"}\n",
	    hash_id("{\"aps\":{\"content-available\":1},\"n\":1}"),
	    hash_id("{\"aps\":{\"content-available\":1},\"n\":2}"));
	EXPECT_TRANSCRIPT(IOS_HDR
	    "{\"at\":0,\"cb\":\"launch\"}\n"
	    "{\"at\":10,\"cb\":\"did_enter_background\"}\n"
	    "{\"at\":100,\"cb\":\"did_receive_remote\",\"payload\":{\"aps\":"
	    "{\"content-available\":1},\"n\":1},\"budget_ms\":1000}\n"
	    "{\"at\":200,\"cb\":\"app\",\"do\":\"complete\",\"push_id\":\"L4\","
	    "\"result\":\"new_data\"}\n"
	    "{\"at\":300,\"cb\":\"did_receive_remote\",\"payload\":{\"aps\":"
	    "{\"content-available\":1},\"n\":2}}\n"
	    "{\"at\":40000,\"cb\":\"app\",\"do\":\"complete\",\"push_id\":\"L6\","
	    "\"result\":\"new_data\"}\n",
	    want);
}
END_TEST

START_TEST(test_ios_active_visible_remote)
{
	/* Active app, visible alert: did_receive_remote is the foreground
	 * notification (identified by its payload hash, which the later
	 * request-id copy joins); the will_present copy adds nothing. */
	char want[1024];

	snprintf(want, sizeof(want),
	    "{\"msg\":\"device\",\"event\":\"did_become_active\"}\n"
	    "{\"msg\":\"notification\",\"id\":\"%s\",\"title\":null,\"body\":\"A\","
	    "\"data\":{\"n\":\"N1\"},\"source\":\"push\",\"presentation\":"
	    "\"foreground\",\"action\":null,\"cold_start\":false,"
	    "\"redelivered\":false}\n"
	    "{\"effect\":\"push_completion\",\"push_id\":\"L4\",\"result\":"
	    "\"no_data\"}\n",
	    hash_id("{\"aps\":{\"alert\":\"A\",\"content-available\":1},\"n\":\"N1\"}"));
	EXPECT_TRANSCRIPT(IOS_HDR
	    "{\"at\":0,\"cb\":\"launch\"}\n"
	    "{\"at\":10,\"cb\":\"did_become_active\"}\n"
	    "{\"at\":100,\"cb\":\"did_receive_remote\",\"payload\":{\"aps\":"
	    "{\"alert\":\"A\",\"content-available\":1},\"n\":\"N1\"}}\n"
	    "{\"at\":101,\"cb\":\"will_present\",\"payload\":{\"aps\":"
	    "{\"alert\":\"A\",\"content-available\":1},\"n\":\"N1\"},"
	    "\"request_id\":\"R\"}\n",
	    want);
}
END_TEST

START_TEST(test_ios_token_and_register_failure)
{
	EXPECT_TRANSCRIPT(IOS_HDR
	    "{\"at\":0,\"cb\":\"launch\"}\n"
	    "{\"at\":1,\"cb\":\"did_fail_register\",\"error\":\"no aps-environment\"}\n"
	    "{\"at\":2,\"cb\":\"did_register_remote\",\"token\":\"ab01\"}\n"
	    "{\"at\":3,\"cb\":\"did_register_remote\",\"token\":\"ab01\"}\n",
	    "{\"msg\":\"push_token\",\"os\":\"ios\",\"token\":\"ab01\"}\n");
}
END_TEST

START_TEST(test_ios_bg_task)
{
	EXPECT_TRANSCRIPT(IOS_HDR
	    "{\"at\":0,\"cb\":\"launch\"}\n"
	    "{\"at\":10,\"cb\":\"bg_task\",\"identifier\":\"sync\",\"kind\":"
	    "\"app_refresh\",\"budget_ms\":5000}\n"
	    "{\"at\":20,\"cb\":\"app\",\"do\":\"complete\",\"id\":\"sync\","
	    "\"result\":\"new_data\"}\n"
	    "{\"at\":30,\"cb\":\"bg_task\",\"identifier\":\"db\",\"kind\":"
	    "\"processing\",\"budget_ms\":5000}\n"
	    "{\"at\":40,\"cb\":\"bg_task_expire\",\"identifier\":\"db\"}\n"
	    "{\"at\":50,\"cb\":\"bg_task_expire\",\"identifier\":\"db\"}\n",
	    "{\"msg\":\"wake_fired\",\"id\":\"sync\"}\n"
	    "{\"effect\":\"task_completed\",\"identifier\":\"sync\","
	    "\"success\":true}\n"
	    "{\"msg\":\"wake_fired\",\"id\":\"db\"}\n"
	    "{\"effect\":\"task_completed\",\"identifier\":\"db\","
	    "\"success\":false}\n");
}
END_TEST

START_TEST(test_ios_payload_too_large)
{
	char *trace = malloc(16384), *big = malloc(5000);
	memset(big, 'x', 4999);
	big[4999] = '\0';
	snprintf(trace, 16384, IOS_HDR
	    "{\"at\":0,\"cb\":\"launch\"}\n"
	    "{\"at\":10,\"cb\":\"did_receive_remote\",\"payload\":{\"aps\":{},"
	    "\"blob\":\"%s\"}}\n"
	    "{\"at\":20,\"cb\":\"will_present\",\"payload\":{\"aps\":{},"
	    "\"blob\":\"%s\"},\"request_id\":\"R\"}\n", big, big);
	EXPECT_TRANSCRIPT(trace,
	    "{\"msg\":\"error\",\"code\":\"payload_too_large\",\"line\":3,"
	    "\"bytes\":5019,\"limit\":4096}\n"
	    "{\"effect\":\"push_completion\",\"push_id\":\"L3\",\"result\":"
	    "\"failed\"}\n"
	    "{\"msg\":\"error\",\"code\":\"payload_too_large\",\"line\":4,"
	    "\"bytes\":5019,\"limit\":4096}\n");
	free(trace);
	free(big);
}
END_TEST

START_TEST(test_ios_kill_drops_until_launch)
{
	EXPECT_TRANSCRIPT(IOS_HDR
	    "{\"at\":0,\"cb\":\"launch\"}\n"
	    "{\"at\":10,\"cb\":\"kill\",\"by\":\"user\"}\n"
	    "{\"at\":20,\"cb\":\"will_present\",\"payload\":{\"aps\":{}},"
	    "\"request_id\":\"R\"}\n"
	    "{\"at\":30,\"cb\":\"launch\"}\n"
	    "{\"at\":40,\"cb\":\"app\",\"do\":\"subscribe\"}\n"
	    "{\"at\":50,\"cb\":\"did_become_active\"}\n",
	    "{\"msg\":\"device\",\"event\":\"did_become_active\"}\n");
}
END_TEST

START_TEST(test_ios_keep_alive)
{
	EXPECT_TRANSCRIPT(IOS_AUDIO_HDR
	    "{\"at\":0,\"cb\":\"launch\"}\n"
	    "{\"at\":10,\"cb\":\"app\",\"do\":\"keep_alive\"}\n"
	    "{\"at\":20,\"cb\":\"app\",\"do\":\"keep_alive_stop\"}\n",
	    "{\"effect\":\"audio_session\",\"active\":true}\n"
	    "{\"msg\":\"keep_alive\",\"result\":\"ok\"}\n"
	    "{\"effect\":\"audio_session\",\"active\":false}\n");
	EXPECT_TRANSCRIPT(IOS_HDR
	    "{\"at\":0,\"cb\":\"launch\"}\n"
	    "{\"at\":10,\"cb\":\"app\",\"do\":\"keep_alive\"}\n",
	    "{\"msg\":\"keep_alive\",\"result\":\"refused\",\"reason\":"
	    "\"no_background_mode\"}\n");
}
END_TEST

START_TEST(test_android_lifecycle_and_net)
{
	EXPECT_TRANSCRIPT(AND_HDR
	    "{\"at\":0,\"cb\":\"process_start\",\"extras\":{}}\n"
	    "{\"at\":1,\"cb\":\"on_start\"}\n"
	    "{\"at\":2,\"cb\":\"on_resume\"}\n"
	    "{\"at\":3,\"cb\":\"net\",\"online\":false,\"transport\":\"none\"}\n"
	    "{\"at\":4,\"cb\":\"on_pause\"}\n"
	    "{\"at\":5,\"cb\":\"on_stop\"}\n",
	    "{\"msg\":\"device\",\"event\":\"will_enter_foreground\"}\n"
	    "{\"msg\":\"device\",\"event\":\"did_become_active\"}\n"
	    "{\"msg\":\"device\",\"event\":\"connectivity_changed\","
	    "\"online\":false,\"transport\":\"none\"}\n"
	    "{\"msg\":\"device\",\"event\":\"will_resign_active\"}\n"
	    "{\"msg\":\"device\",\"event\":\"did_enter_background\"}\n");
}
END_TEST

START_TEST(test_android_messages)
{
	/* Foreground: a notification with the notification block's text.
	 * Background data-only: push_fired with data exactly as received. */
	EXPECT_TRANSCRIPT(AND_HDR
	    "{\"at\":0,\"cb\":\"process_start\",\"extras\":{}}\n"
	    "{\"at\":1,\"cb\":\"on_start\"}\n"
	    "{\"at\":10,\"cb\":\"on_message_received\",\"message\":{\"message_id\":"
	    "\"M1\",\"collapse_key\":\"pkg\",\"data\":{\"a\":\"1\",\"from\":\"x\"},"
	    "\"notification\":{\"title\":\"T\",\"body\":\"B\"}}}\n"
	    "{\"at\":20,\"cb\":\"on_stop\"}\n"
	    "{\"at\":30,\"cb\":\"on_message_received\",\"message\":{\"message_id\":"
	    "\"M2\",\"collapse_key\":\"pkg\",\"data\":{\"j\":\"{\\\"a\\\":1}\","
	    "\"google.x\":\"y\"}}}\n",
	    "{\"msg\":\"device\",\"event\":\"will_enter_foreground\"}\n"
	    "{\"msg\":\"notification\",\"id\":\"M1\",\"title\":\"T\",\"body\":\"B\","
	    "\"data\":{\"a\":\"1\"},\"source\":\"push\",\"presentation\":"
	    "\"foreground\",\"action\":null,\"cold_start\":false,"
	    "\"redelivered\":false}\n"
	    "{\"msg\":\"device\",\"event\":\"did_enter_background\"}\n"
	    "{\"msg\":\"push_fired\",\"id\":\"M2\",\"push_id\":\"L6\",\"payload\":"
	    "{\"j\":\"{\\\"a\\\":1}\",\"google.x\":\"y\"}}\n");
}
END_TEST

START_TEST(test_android_taps)
{
	/* Cold tray tap from the launch intent; a Recents relaunch is no tap;
	 * a warm tap through on_new_intent; a restored Activity is no tap. */
	EXPECT_TRANSCRIPT(AND_HDR
	    "{\"at\":0,\"cb\":\"process_start\",\"extras\":{\"google.message_id\":"
	    "\"M1\",\"k\":\"v\"}}\n"
	    "{\"at\":10,\"cb\":\"on_resume\"}\n"
	    "{\"at\":20,\"cb\":\"activity_create\",\"extras\":{\"google.message_id\":"
	    "\"M9\"},\"restored\":true}\n"
	    "{\"at\":30,\"cb\":\"on_new_intent\",\"extras\":{\"google.message_id\":"
	    "\"M8\"},\"flags\":[\"launched_from_history\"]}\n"
	    "{\"at\":40,\"cb\":\"tray_post\",\"android_id\":3,\"extras\":"
	    "{\"google.message_id\":\"M2\"}}\n"
	    "{\"at\":50,\"cb\":\"on_new_intent\",\"extras\":{\"message_id\":\"M2\"}}\n",
	    "{\"msg\":\"notification\",\"id\":\"M1\",\"title\":null,\"body\":null,"
	    "\"data\":{\"k\":\"v\"},\"source\":\"push\",\"presentation\":\"tap\","
	    "\"action\":\"default\",\"cold_start\":true,\"redelivered\":false}\n"
	    "{\"msg\":\"device\",\"event\":\"did_become_active\"}\n"
	    "{\"msg\":\"notification\",\"id\":\"M2\",\"title\":null,\"body\":null,"
	    "\"data\":{\"message_id\":\"M2\"},\"source\":\"push\",\"presentation\":"
	    "\"tap\",\"action\":\"default\",\"cold_start\":false,"
	    "\"redelivered\":false}\n");
}
END_TEST

START_TEST(test_android_tokens)
{
	EXPECT_TRANSCRIPT(AND_HDR
	    "{\"at\":0,\"cb\":\"process_start\"}\n"
	    "{\"at\":1,\"cb\":\"on_new_token\",\"token\":\"T1\"}\n"
	    "{\"at\":2,\"cb\":\"get_token\",\"token\":\"T1\"}\n"
	    "{\"at\":3,\"cb\":\"app\",\"do\":\"ack\",\"token\":\"T1\"}\n"
	    "{\"at\":4,\"cb\":\"get_token\",\"token\":\"T2\"}\n",
	    "{\"msg\":\"push_token\",\"os\":\"android\",\"token\":\"T1\"}\n"
	    "{\"msg\":\"push_token\",\"os\":\"android\",\"token\":\"T2\"}\n");
}
END_TEST

START_TEST(test_android_force_stop_and_headless)
{
	/* A force stop drops FCM until the next launch; a swipe does not. */
	EXPECT_TRANSCRIPT(AND_HDR
	    "{\"at\":0,\"cb\":\"process_start\"}\n"
	    "{\"at\":10,\"cb\":\"kill\",\"by\":\"user\"}\n"
	    "{\"at\":20,\"cb\":\"on_message_received\",\"message\":{\"message_id\":"
	    "\"M1\",\"data\":{}}}\n"
	    "{\"at\":30,\"cb\":\"process_start\",\"activity\":false}\n"
	    "{\"at\":40,\"cb\":\"app\",\"do\":\"subscribe\"}\n"
	    "{\"at\":50,\"cb\":\"kill\",\"by\":\"swipe\"}\n"
	    "{\"at\":60,\"cb\":\"on_message_received\",\"message\":{\"message_id\":"
	    "\"M2\",\"data\":{}}}\n"
	    "{\"at\":70,\"cb\":\"app\",\"do\":\"subscribe\"}\n",
	    "{\"msg\":\"push_fired\",\"id\":\"M2\",\"push_id\":\"L8\","
	    "\"payload\":{}}\n");
}
END_TEST

START_TEST(test_android_keep_alive_and_fgs)
{
	EXPECT_TRANSCRIPT(AND30_HDR
	    "{\"at\":0,\"cb\":\"process_start\"}\n"
	    "{\"at\":10,\"cb\":\"app\",\"do\":\"keep_alive\"}\n"
	    "{\"at\":20,\"cb\":\"app\",\"do\":\"keep_alive\"}\n"
	    "{\"at\":30,\"cb\":\"app\",\"do\":\"keep_alive_stop\"}\n"
	    "{\"at\":40,\"cb\":\"app\",\"do\":\"keep_alive_stop\"}\n"
	    "{\"at\":50,\"cb\":\"fgs_start\",\"type\":\"dataSync\"}\n"
	    "{\"at\":60,\"cb\":\"fgs_stop\",\"type\":\"dataSync\"}\n",
	    "{\"effect\":\"fgs_start\",\"notification\":{\"channel\":"
	    "\"mobbus.keep_alive\",\"ongoing\":true}}\n"
	    "{\"msg\":\"keep_alive\",\"result\":\"ok\"}\n"
	    "{\"msg\":\"keep_alive\",\"result\":\"ok\"}\n"
	    "{\"effect\":\"fgs_stop\"}\n"
	    "{\"effect\":\"fgs_start\",\"notification\":{\"channel\":"
	    "\"mobbus.work\",\"type\":\"dataSync\"}}\n");
	/* API 34 from the background: only right after a high message. */
	EXPECT_TRANSCRIPT(AND_HDR
	    "{\"at\":0,\"cb\":\"process_start\",\"activity\":false}\n"
	    "{\"at\":10,\"cb\":\"on_message_received\",\"message\":{\"message_id\":"
	    "\"M1\",\"priority\":\"normal\",\"original_priority\":\"high\"}}\n"
	    "{\"at\":20,\"cb\":\"app\",\"do\":\"keep_alive\"}\n"
	    "{\"at\":30,\"cb\":\"on_message_received\",\"message\":{\"message_id\":"
	    "\"M2\",\"priority\":\"high\"}}\n"
	    "{\"at\":40,\"cb\":\"app\",\"do\":\"keep_alive\"}\n",
	    "{\"msg\":\"push_fired\",\"id\":\"M1\",\"push_id\":\"L3\","
	    "\"payload\":{}}\n"
	    "{\"msg\":\"keep_alive\",\"result\":\"refused\",\"reason\":"
	    "\"background_start_not_allowed\"}\n"
	    "{\"msg\":\"push_fired\",\"id\":\"M2\",\"push_id\":\"L5\","
	    "\"payload\":{}}\n"
	    "{\"effect\":\"fgs_start\",\"notification\":{\"channel\":"
	    "\"mobbus.keep_alive\",\"ongoing\":true}}\n"
	    "{\"msg\":\"keep_alive\",\"result\":\"ok\"}\n");
}
END_TEST

START_TEST(test_conn_foreground_background)
{
	/* One up per foreground period; background closes synchronously; a
	 * duplicate foreground dials nothing; a refused server gives no line
	 * until a backoff retry finds it up again. */
	EXPECT_TRANSCRIPT(AND_HDR
	    "{\"at\":0,\"cb\":\"process_start\"}\n"
	    "{\"at\":1,\"cb\":\"server\",\"name\":\"api\",\"state\":\"up\"}\n"
	    "{\"at\":2,\"cb\":\"on_start\"}\n"
	    "{\"at\":3,\"cb\":\"app\",\"do\":\"connect\",\"name\":\"api\","
	    "\"url\":\"wss://api.example.com/ws\"}\n"
	    "{\"at\":4,\"cb\":\"on_start\"}\n"
	    "{\"at\":5,\"cb\":\"on_stop\"}\n"
	    "{\"at\":6,\"cb\":\"server\",\"name\":\"api\",\"state\":\"refuse\"}\n"
	    "{\"at\":7,\"cb\":\"on_start\"}\n"
	    "{\"at\":8,\"cb\":\"server\",\"name\":\"api\",\"state\":\"up\"}\n"
	    "{\"at\":400000,\"cb\":\"advance\"}\n"
	    "{\"at\":400001,\"cb\":\"server\",\"name\":\"api\",\"state\":\"down\"}\n",
	    "{\"msg\":\"device\",\"event\":\"will_enter_foreground\"}\n"
	    "{\"msg\":\"conn\",\"name\":\"api\",\"state\":\"up\"}\n"
	    "{\"msg\":\"device\",\"event\":\"will_enter_foreground\"}\n"
	    "{\"msg\":\"device\",\"event\":\"did_enter_background\"}\n"
	    "{\"msg\":\"conn\",\"name\":\"api\",\"state\":\"down\"}\n"
	    "{\"msg\":\"device\",\"event\":\"will_enter_foreground\"}\n"
	    "{\"msg\":\"conn\",\"name\":\"api\",\"state\":\"up\"}\n"
	    "{\"msg\":\"conn\",\"name\":\"api\",\"state\":\"down\"}\n");
}
END_TEST

START_TEST(test_conn_offline_and_windows)
{
	/* iOS: a connect in the background waits for a window; the window's
	 * completion closes it after the effect; offline drops it. */
	EXPECT_TRANSCRIPT(IOS_HDR
	    "{\"at\":0,\"cb\":\"launch\"}\n"
	    "{\"at\":1,\"cb\":\"server\",\"name\":\"s\",\"state\":\"up\"}\n"
	    "{\"at\":2,\"cb\":\"app\",\"do\":\"connect\",\"name\":\"s\","
	    "\"url\":\"wss://s.example.com/\"}\n"
	    "{\"at\":3,\"cb\":\"bg_task\",\"identifier\":\"t\",\"budget_ms\":"
	    "100}\n"
	    "{\"at\":200,\"cb\":\"advance\"}\n"
	    "{\"at\":300,\"cb\":\"did_become_active\"}\n"
	    "{\"at\":400,\"cb\":\"net\",\"online\":false}\n"
	    "{\"at\":500,\"cb\":\"net\",\"online\":true}\n",
	    "{\"msg\":\"wake_fired\",\"id\":\"t\"}\n"
	    "{\"msg\":\"conn\",\"name\":\"s\",\"state\":\"up\"}\n"
	    "{\"effect\":\"task_completed\",\"identifier\":\"t\","
	    "\"success\":false}\n"
	    "{\"msg\":\"conn\",\"name\":\"s\",\"state\":\"down\"}\n"
	    "{\"msg\":\"device\",\"event\":\"did_become_active\"}\n"
	    "{\"msg\":\"conn\",\"name\":\"s\",\"state\":\"up\"}\n"
	    "{\"msg\":\"device\",\"event\":\"connectivity_changed\","
	    "\"online\":false}\n"
	    "{\"msg\":\"conn\",\"name\":\"s\",\"state\":\"down\"}\n"
	    "{\"msg\":\"device\",\"event\":\"connectivity_changed\","
	    "\"online\":true}\n"
	    "{\"msg\":\"conn\",\"name\":\"s\",\"state\":\"up\"}\n");
}
END_TEST

START_TEST(test_kill_keeps_committed)
{
	/* A kill is a real SIGKILL: the tap stored before it (and committed,
	 * time having passed) is handed in the next process, never handed
	 * before, so redelivered is false. */
	EXPECT_TRANSCRIPT(
	    "{\"trace\":1,\"os\":\"android\",\"app\":{\"consumer_up_at\":null}}\n"
	    "{\"at\":0,\"cb\":\"process_start\",\"extras\":{\"google.message_id\":"
	    "\"M1\"}}\n"
	    "{\"at\":100,\"cb\":\"kill\",\"by\":\"os\"}\n"
	    "{\"at\":200,\"cb\":\"process_start\"}\n"
	    "{\"at\":300,\"cb\":\"app\",\"do\":\"subscribe\"}\n",
	    "{\"msg\":\"notification\",\"id\":\"M1\",\"title\":null,\"body\":null,"
	    "\"data\":{},\"source\":\"push\",\"presentation\":\"tap\",\"action\":"
	    "\"default\",\"cold_start\":true,\"redelivered\":false}\n");
}
END_TEST

START_TEST(test_server_and_advance_accepted)
{
	/* server lines and advance are valid input with nothing to hand. */
	EXPECT_TRANSCRIPT(AND_HDR
	    "{\"at\":0,\"cb\":\"process_start\"}\n"
	    "{\"at\":10,\"cb\":\"server\",\"name\":\"api\",\"state\":\"up\"}\n"
	    "{\"at\":20,\"cb\":\"advance\"}\n",
	    "");
}
END_TEST

START_TEST(test_manual_ack_restart_redelivers)
{
	EXPECT_TRANSCRIPT(
	    "{\"trace\":1,\"os\":\"android\",\"app\":{\"ack\":\"manual\"}}\n"
	    "{\"at\":0,\"cb\":\"process_start\",\"extras\":{\"google.message_id\":"
	    "\"A\"}}\n"
	    "{\"at\":1,\"cb\":\"on_new_intent\",\"extras\":{\"google.message_id\":"
	    "\"B\"}}\n"
	    "{\"at\":2,\"cb\":\"app\",\"do\":\"ack\",\"id\":\"A\"}\n"
	    "{\"at\":3,\"cb\":\"app\",\"do\":\"restart\"}\n",
	    "{\"msg\":\"notification\",\"id\":\"A\",\"title\":null,\"body\":null,"
	    "\"data\":{},\"source\":\"push\",\"presentation\":\"tap\",\"action\":"
	    "\"default\",\"cold_start\":true,\"redelivered\":false}\n"
	    "{\"msg\":\"notification\",\"id\":\"B\",\"title\":null,\"body\":null,"
	    "\"data\":{},\"source\":\"push\",\"presentation\":\"tap\",\"action\":"
	    "\"default\",\"cold_start\":true,\"redelivered\":false}\n"
	    "{\"msg\":\"notification\",\"id\":\"B\",\"title\":null,\"body\":null,"
	    "\"data\":{},\"source\":\"push\",\"presentation\":\"tap\",\"action\":"
	    "\"default\",\"cold_start\":true,\"redelivered\":true}\n");
}
END_TEST

NUTS_MAIN("replay",
	{ "ios_lifecycle", test_ios_lifecycle, 60 },
	{ "ios_foreground_and_tap", test_ios_foreground_and_tap, 60 },
	{ "ios_cold_tap_merges", test_ios_cold_tap_merges, 60 },
	{ "ios_silent_push_windows", test_ios_silent_push_windows, 60 },
	{ "ios_active_visible_remote", test_ios_active_visible_remote, 60 },
	{ "ios_token_and_register_failure", test_ios_token_and_register_failure, 60 },
	{ "ios_bg_task", test_ios_bg_task, 60 },
	{ "ios_payload_too_large", test_ios_payload_too_large, 60 },
	{ "ios_kill_drops_until_launch", test_ios_kill_drops_until_launch, 60 },
	{ "ios_keep_alive", test_ios_keep_alive, 60 },
	{ "android_lifecycle_and_net", test_android_lifecycle_and_net, 60 },
	{ "android_messages", test_android_messages, 60 },
	{ "android_taps", test_android_taps, 60 },
	{ "android_tokens", test_android_tokens, 60 },
	{ "android_force_stop_and_headless", test_android_force_stop_and_headless, 60 },
	{ "android_keep_alive_and_fgs", test_android_keep_alive_and_fgs, 60 },
	{ "server_and_advance_accepted", test_server_and_advance_accepted, 60 },
	{ "conn_foreground_background", test_conn_foreground_background, 60 },
	{ "conn_offline_and_windows", test_conn_offline_and_windows, 60 },
	{ "kill_keeps_committed", test_kill_keeps_committed, 60 },
	{ "manual_ack_restart_redelivers", test_manual_ack_restart_redelivers, 60 })
