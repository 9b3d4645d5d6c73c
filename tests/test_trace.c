/* SPDX-License-Identifier: MIT */
/* test_trace.c - trace loading: every malformed-input class is a clear error. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "mobbus.h"
#include "nuts.h"
#include "trace.h"

#define IOS_HDR "{\"trace\":1,\"os\":\"ios\",\"app\":{\"ack\":\"auto\"}}\n"
#define AND_HDR "{\"trace\":1,\"os\":\"android\"}\n"

static char err[4096];

static int
parse(const char *text, struct mb_trace **tp)
{
	struct mb_trace *t = NULL;
	int rv = mb_trace_parse("t.jsonl", text, strlen(text), &t, err,
	    sizeof(err));
	if (tp != NULL)
		*tp = t;
	else
		mb_trace_free(t);
	return rv;
}

START_TEST(test_valid_trace)
{
	struct mb_trace *t;
	ck_assert_int_eq(parse(IOS_HDR
	    "{\"at\":0,\"cb\":\"launch\",\"options\":{}}\n"
	    "{\"at\":5,\"cb\":\"did_become_active\"}\n"
	    "\n"
	    "{\"at\":5,\"cb\":\"advance\"}\n", &t), MB_OK);
	ck_assert_uint_eq(t->nlines, 3);
	ck_assert_uint_eq(t->lines[0].lineno, 2);
	ck_assert_uint_eq(t->lines[2].lineno, 5);
	ck_assert_int_eq(t->lines[1].cb, MB_CB_DID_BECOME_ACTIVE);
	ck_assert_int_eq(t->os, MB_OS_IOS);
	ck_assert_int_eq(t->manual_ack, 0);
	mb_trace_free(t);
}
END_TEST

START_TEST(test_invalid_json)
{
	ck_assert_int_eq(parse(IOS_HDR "{\"at\":0,\"cb\":\"launch\"\n", NULL),
	    MB_EJSON);
	ck_assert_ptr_nonnull(strstr(err, "t.jsonl:2: invalid JSON"));
	ck_assert_int_eq(parse(IOS_HDR "[1,2]\n", NULL), MB_EJSON);
	ck_assert_ptr_nonnull(strstr(err, "t.jsonl:2:"));
	/* Invalid UTF-8 inside a string is invalid JSON, not a guess. */
	ck_assert_int_eq(parse(IOS_HDR
	    "{\"at\":0,\"cb\":\"will_present\",\"payload\":{\"a\":\"\xff\"}}\n",
	    NULL), MB_EJSON);
	/* Two values for one key have no single meaning. */
	ck_assert_int_eq(parse(IOS_HDR
	    "{\"at\":0,\"at\":1,\"cb\":\"launch\"}\n", NULL), MB_EJSON);
}
END_TEST

START_TEST(test_unknown_callback)
{
	ck_assert_int_eq(parse(IOS_HDR "{\"at\":0,\"cb\":\"on_frobnicate\"}\n",
	    NULL), MB_ECALLBACK);
	ck_assert_ptr_nonnull(strstr(err, "t.jsonl:2: unknown callback \"on_frobnicate\""));
	/* An Android callback in an iOS trace is unknown there. */
	ck_assert_int_eq(parse(IOS_HDR "{\"at\":0,\"cb\":\"on_start\"}\n", NULL),
	    MB_ECALLBACK);
	ck_assert_int_eq(parse(AND_HDR "{\"at\":0,\"cb\":\"did_become_active\"}\n",
	    NULL), MB_ECALLBACK);
	ck_assert_int_eq(parse(AND_HDR "{\"at\":0,\"cb\":\"app\",\"do\":\"dance\"}\n",
	    NULL), MB_ECALLBACK);
}
END_TEST

START_TEST(test_missing_field)
{
	ck_assert_int_eq(parse(IOS_HDR "{\"cb\":\"launch\"}\n", NULL), MB_EFIELD);
	ck_assert_ptr_nonnull(strstr(err, "t.jsonl:2: missing field \"at\""));
	ck_assert_int_eq(parse(IOS_HDR "{\"at\":1}\n", NULL), MB_EFIELD);
	ck_assert_int_eq(parse(IOS_HDR "{\"at\":0,\"cb\":\"will_present\"}\n",
	    NULL), MB_EFIELD);
	ck_assert_ptr_nonnull(strstr(err, "will_present: missing field \"payload\""));
	ck_assert_int_eq(parse(IOS_HDR
	    "{\"at\":0,\"cb\":\"did_register_remote\",\"token\":7}\n", NULL),
	    MB_EFIELD);
	ck_assert_ptr_nonnull(strstr(err, "\"token\" must be a string"));
	ck_assert_int_eq(parse(AND_HDR
	    "{\"at\":0,\"cb\":\"on_message_received\"}\n", NULL), MB_EFIELD);
	ck_assert_int_eq(parse(AND_HDR "{\"at\":0,\"cb\":\"net\"}\n", NULL),
	    MB_EFIELD);
	/* complete needs exactly one of id and push_id, and a known result. */
	ck_assert_int_eq(parse(IOS_HDR "{\"at\":0,\"cb\":\"app\",\"do\":\"complete\","
	    "\"id\":\"a\",\"push_id\":\"L2\",\"result\":\"no_data\"}\n", NULL),
	    MB_EFIELD);
	ck_assert_int_eq(parse(IOS_HDR "{\"at\":0,\"cb\":\"app\",\"do\":\"complete\","
	    "\"id\":\"a\",\"result\":\"maybe\"}\n", NULL), MB_EFIELD);
	ck_assert_int_eq(parse(IOS_HDR "{\"at\":0,\"cb\":\"app\",\"do\":\"ack\"}\n",
	    NULL), MB_EFIELD);
}
END_TEST

START_TEST(test_time_backwards)
{
	ck_assert_int_eq(parse(IOS_HDR
	    "{\"at\":100,\"cb\":\"launch\"}\n"
	    "{\"at\":99,\"cb\":\"did_become_active\"}\n", NULL), MB_ETIME);
	ck_assert_ptr_nonnull(strstr(err, "t.jsonl:3: \"at\" 99 is before"));
	ck_assert_int_eq(parse(IOS_HDR "{\"at\":-1,\"cb\":\"launch\"}\n", NULL),
	    MB_EFIELD);
}
END_TEST

START_TEST(test_bad_header)
{
	ck_assert_int_eq(parse("{\"trace\":2,\"os\":\"ios\"}\n", NULL),
	    MB_EHEADER);
	ck_assert_int_eq(parse("{\"trace\":1,\"os\":\"symbian\"}\n", NULL),
	    MB_EHEADER);
	ck_assert_int_eq(parse("{\"trace\":1,\"os\":\"ios\",\"app\":{\"ack\":\"x\"}}\n",
	    NULL), MB_EHEADER);
	ck_assert_int_eq(parse("", NULL), MB_EHEADER);
	ck_assert_int_eq(parse("\n{\"trace\":1,\"os\":\"ios\"}\n", NULL),
	    MB_EHEADER);
}
END_TEST

START_TEST(test_every_bad_line_named)
{
	/* Every invalid line is reported, not only the first. */
	ck_assert_int_eq(parse(IOS_HDR
	    "{\"at\":0,\"cb\":\"nope\"}\n"
	    "{\"at\":1,\"cb\":\"launch\"}\n"
	    "not json\n", NULL), MB_ECALLBACK);
	ck_assert_ptr_nonnull(strstr(err, "t.jsonl:2:"));
	ck_assert_ptr_nonnull(strstr(err, "t.jsonl:4:"));
	ck_assert_ptr_null(strstr(err, "t.jsonl:3:"));
}
END_TEST

START_TEST(test_enums_and_bom)
{
	/* Values from a fixed set are checked; a byte order mark is skipped. */
	ck_assert_int_eq(parse(AND_HDR "{\"at\":0,\"cb\":\"kill\",\"by\":\"nuked\"}\n",
	    NULL), MB_EFIELD);
	ck_assert_ptr_nonnull(strstr(err, "\"by\" \"nuked\" is not one of: os user swipe"));
	ck_assert_int_eq(parse(AND_HDR "{\"at\":0,\"cb\":\"get_token\",\"token\":\"\"}\n",
	    NULL), MB_EFIELD);
	ck_assert_int_eq(parse(AND_HDR "{\"at\":0,\"cb\":\"on_message_received\","
	    "\"message\":{\"data\":\"x\"}}\n", NULL), MB_EFIELD);
	ck_assert_ptr_nonnull(strstr(err, "message.data must be an object"));
	ck_assert_int_eq(parse(IOS_HDR "{\"at\":0,\"cb\":\"did_receive_remote\","
	    "\"payload\":{},\"budget_ms\":0}\n", NULL), MB_EFIELD);
	ck_assert_int_eq(parse(IOS_HDR "{\"at\":1125899906842625,\"cb\":\"launch\"}\n",
	    NULL), MB_EFIELD);
	ck_assert_int_eq(parse("\xEF\xBB\xBF" AND_HDR
	    "{\"at\":0,\"cb\":\"kill\",\"by\":\"swipe\"}\n", NULL), MB_OK);
}
END_TEST

/* More problems than the buffer holds: whole lines only, then a count of
 * the rest. */
START_TEST(test_many_bad_lines)
{
	size_t cap = 1000 * 40 + 64, used = 0;
	char *text = malloc(cap), *last;
	int shown = 0, more = 0;

	ck_assert_ptr_nonnull(text);
	used += (size_t)snprintf(text, cap, "%s", IOS_HDR);
	for (int i = 0; i < 1000; i++)
		used += (size_t)snprintf(text + used, cap - used,
		    "{\"at\":%d,\"cb\":\"frob%d\"}\n", i, i);
	ck_assert_int_eq(parse(text, NULL), MB_ECALLBACK);
	ck_assert_uint_lt(strlen(err), sizeof(err));
	for (char *l = err; l != NULL; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (strncmp(l, "t.jsonl:", 8) == 0 && strstr(l, "unknown callback") != NULL &&
		    strstr(l, "\"frob") != NULL)
			shown++;
	}
	last = strrchr(err, '\n');
	ck_assert_ptr_nonnull(last);
	ck_assert_int_eq(sscanf(last + 1, "t.jsonl: ... and %d more problems", &more), 1);
	ck_assert_int_gt(shown, 10);
	ck_assert_int_eq(shown + more, 1000);
	/* The line before the count is whole: it ends with the OS name. */
	*last = '\0';
	ck_assert_ptr_nonnull(strstr(strrchr(err, '\n'), "\" for ios"));
	free(text);
}
END_TEST

START_TEST(test_missing_file)
{
	struct mb_trace *t = NULL;
	ck_assert_int_eq(mb_trace_load("/nonexistent/x.trace.jsonl", &t, err,
	    sizeof(err)), MB_EIO);
	ck_assert_ptr_null(t);
	ck_assert_ptr_nonnull(strstr(err, "No such file"));
}
END_TEST

NUTS_MAIN("trace",
	{ "valid", test_valid_trace, 30 },
	{ "invalid_json", test_invalid_json, 30 },
	{ "unknown_callback", test_unknown_callback, 30 },
	{ "missing_field", test_missing_field, 30 },
	{ "time_backwards", test_time_backwards, 30 },
	{ "bad_header", test_bad_header, 30 },
	{ "every_bad_line_named", test_every_bad_line_named, 30 },
	{ "enums_and_bom", test_enums_and_bom, 30 },
	{ "many_bad_lines", test_many_bad_lines, 30 },
	{ "missing_file", test_missing_file, 30 })
