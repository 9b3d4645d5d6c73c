/* SPDX-License-Identifier: MIT */
/*
 * trace.c - load and validate format-1 traces. Every line is checked before
 * anything runs, so a replay never starts on input it would have to guess at.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "json.h"
#include "mobbus.h"
#include "trace.h"

static const struct cb_info {
	const char *name;
	int os;
	/* Fields: "name:T" with T one of o(bject) s(tring) i(nteger) b(ool)
	 * a(rray) *(any); a trailing '!' makes the field required. */
	const char *fields;
} cb_table[] = {
	[MB_CB_NONE] = { "", 0, "" },
#define MB_CB_INFO_(id, nm, o) [MB_CB_##id] = { nm, o, NULL },
	MB_CB_MAP(MB_CB_INFO_)
#undef MB_CB_INFO_
};

static const char *
cb_fields(enum mb_cb cb)
{
	switch (cb) {
	case MB_CB_LAUNCH:
		return "options:o";
	case MB_CB_DID_REGISTER_REMOTE:
	case MB_CB_ON_NEW_TOKEN:
	case MB_CB_GET_TOKEN:
		return "token:s!";
	case MB_CB_DID_FAIL_REGISTER:
		return "error:*!";
	case MB_CB_WILL_PRESENT:
		return "payload:o! request_id:s content:o";
	case MB_CB_DID_RECEIVE_RESPONSE:
		return "payload:o! request_id:s content:o action:s";
	case MB_CB_DID_RECEIVE_REMOTE:
		return "payload:o! budget_ms:i";
	case MB_CB_BG_TASK:
		return "identifier:s! kind:s budget_ms:i";
	case MB_CB_BG_TASK_EXPIRE:
		return "identifier:s!";
	case MB_CB_PROCESS_START:
		return "extras:o activity:b flags:a";
	case MB_CB_ON_MESSAGE_RECEIVED:
		return "message:o!";
	case MB_CB_ON_NEW_INTENT:
		return "extras:o! flags:a";
	case MB_CB_ACTIVITY_CREATE:
		return "extras:o flags:a restored:b";
	case MB_CB_TRAY_POST:
		return "android_id:i extras:o!";
	case MB_CB_FGS_START:
	case MB_CB_FGS_STOP:
		return "type:s";
	case MB_CB_KILL:
		return "by:s";
	case MB_CB_NET:
		return "online:b! transport:s expensive:b validated:b constrained:b";
	case MB_CB_APP:
		return "do:s! id:s token:s push_id:s result:s name:s url:s";
	case MB_CB_SERVER:
		return "name:s! state:s!";
	default:
		return "";
	}
}

const char *
mb_cb_name(enum mb_cb cb)
{
	if (cb <= MB_CB_NONE || cb > MB_CB_ADVANCE)
		return "?";
	return cb_table[cb].name;
}

static enum mb_cb
cb_lookup(const char *name)
{
	for (int i = MB_CB_NONE + 1; i <= MB_CB_ADVANCE; i++)
		if (strcmp(cb_table[i].name, name) == 0)
			return (enum mb_cb)i;
	return MB_CB_NONE;
}

struct errs {
	char *buf;
	size_t len, used;
	int count;
	int shown;       /* problems whose whole line is in buf */
	int first;       /* mb_err of the first problem */
	const char *path;
};

/* Room kept at the end of buf for errs_finish's "... N more" line. */
#define ERRS_TAIL 64

/* errs_add - count a problem and append "PATH:LINE: problem" to buf if the
 * whole line fits (with room for the tail); a line never ends half-way. */
static void
errs_add(struct errs *e, int code, unsigned line, const char *fmt, ...)
{
	char msg[512], whole[1024];
	va_list ap;
	size_t n;

	if (e->count++ == 0)
		e->first = code;
	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	(void)snprintf(whole, sizeof(whole), "%s%s:%u: %s",
	    e->used ? "\n" : "", e->path, line, msg);
	n = strlen(whole);
	if (e->len < ERRS_TAIL || e->used + n + 1 > e->len - ERRS_TAIL)
		return;
	memcpy(e->buf + e->used, whole, n + 1);
	e->used += n;
	e->shown++;
}

/* errs_finish - say how many problems did not fit. */
static void
errs_finish(struct errs *e)
{
	if (e->count > e->shown && e->len > e->used)
		(void)snprintf(e->buf + e->used, e->len - e->used,
		    "%s%s: ... and %d more problem%s", e->used ? "\n" : "",
		    e->path, e->count - e->shown,
		    e->count - e->shown == 1 ? "" : "s");
}

static int
type_ok(const json_t *v, char t)
{
	switch (t) {
	case 'o':
		return json_is_object(v);
	case 's':
		return json_is_string(v);
	case 'i':
		return json_is_integer(v) && json_integer_value(v) >= 0;
	case 'b':
		return json_is_boolean(v);
	case 'a':
		return json_is_array(v);
	default:
		return 1;
	}
}

static const char *
type_name(char t)
{
	switch (t) {
	case 'o':
		return "an object";
	case 's':
		return "a string";
	case 'i':
		return "a non-negative integer";
	case 'b':
		return "true or false";
	case 'a':
		return "an array";
	default:
		return "present";
	}
}

/* Check one line's fields against its callback's table entry. */
static void
check_fields(struct errs *e, unsigned lineno, enum mb_cb cb, const json_t *o)
{
	const char *p = cb_fields(cb);
	char name[32];

	while (*p) {
		size_t n = strcspn(p, ":");
		char t = p[n + 1];
		int req = p[n + 2] == '!';
		const json_t *v;

		snprintf(name, sizeof(name), "%.*s", (int)n, p);
		v = json_object_get(o, name);
		if (v == NULL || json_is_null(v)) {
			if (req)
				errs_add(e, MB_EFIELD, lineno,
				    "%s: missing field \"%s\"", mb_cb_name(cb),
				    name);
		} else if (!type_ok(v, t)) {
			errs_add(e, MB_EFIELD, lineno,
			    "%s: field \"%s\" must be %s", mb_cb_name(cb), name,
			    type_name(t));
		}
		p += n + 2 + req;
		while (*p == ' ')
			p++;
	}
}

/* Values with a range or a shape beyond their JSON type. */
static void
check_values(struct errs *e, unsigned lineno, enum mb_cb cb, const json_t *o)
{
	const json_t *b = json_object_get(o, "budget_ms");
	const json_t *m = json_object_get(o, "message");
	static const struct {
		const char *key;
		char type;
	} msg_fields[] = { { "message_id", 's' }, { "data", 'o' },
		{ "notification", 'o' }, { "priority", 's' },
		{ "original_priority", 's' }, { "collapse_key", 's' } };

	/* A negative one was named by the type check already. */
	if (json_is_integer(b) &&
	    (json_integer_value(b) == 0 ||
	        json_integer_value(b) > MB_TRACE_BUDGET_MAX))
		errs_add(e, MB_EFIELD, lineno,
		    "%s: \"budget_ms\" must be from 1 to %d", mb_cb_name(cb),
		    MB_TRACE_BUDGET_MAX);
	static const struct {
		enum mb_cb cb;
		const char *key;
		const char *allowed; /* space-separated */
	} enums[] = {
		{ MB_CB_KILL, "by", "os user swipe" },
		{ MB_CB_BG_TASK, "kind", "app_refresh processing work" },
		{ MB_CB_NET, "transport", "wifi cellular wired other none" },
		{ MB_CB_SERVER, "state", "up down refuse" },
		{ MB_CB_DID_RECEIVE_RESPONSE, "action", NULL },
	};
	static const char *const nonempty[] = { "token", "identifier", "name",
		NULL };

	for (size_t i = 0; i < sizeof(enums) / sizeof(enums[0]); i++) {
		const char *v = mbi_json_str(o, enums[i].key);
		const char *a = enums[i].allowed;
		size_t n;
		int ok = 0;
		if (enums[i].cb != cb || v == NULL)
			continue;
		if (a == NULL) {
			ok = *v != '\0';
		} else {
			for (n = strlen(v); *a; a += strcspn(a, " "), a += *a == ' ')
				ok |= strncmp(a, v, n) == 0 &&
				    (a[n] == ' ' || a[n] == '\0') && n > 0;
		}
		if (!ok)
			errs_add(e, MB_EFIELD, lineno,
			    "%s: \"%s\" \"%s\" is not one of: %s", mb_cb_name(cb),
			    enums[i].key, v,
			    enums[i].allowed ? enums[i].allowed : "(non-empty)");
	}
	for (int i = 0; nonempty[i]; i++) {
		const char *v = mbi_json_str(o, nonempty[i]);
		if (v != NULL && *v == '\0' && cb != MB_CB_APP)
			errs_add(e, MB_EFIELD, lineno,
			    "%s: \"%s\" must not be empty", mb_cb_name(cb),
			    nonempty[i]);
	}
	if (cb != MB_CB_ON_MESSAGE_RECEIVED || !json_is_object(m))
		return;
	for (size_t i = 0; i < sizeof(msg_fields) / sizeof(msg_fields[0]); i++) {
		const json_t *v = json_object_get(m, msg_fields[i].key);
		if (v != NULL && !json_is_null(v) &&
		    !type_ok(v, msg_fields[i].type))
			errs_add(e, MB_EFIELD, lineno,
			    "on_message_received: message.%s must be %s",
			    msg_fields[i].key, type_name(msg_fields[i].type));
	}
}

static void
check_app(struct errs *e, unsigned lineno, const json_t *o)
{
	const char *what = mbi_json_str(o, "do");
	static const char *const dos[] = { "ack", "keep_alive",
		"keep_alive_stop", "complete", "connect", "subscribe", "restart",
		NULL };
	int known = 0;

	if (what == NULL)
		return; /* already reported */
	for (int i = 0; dos[i]; i++)
		known |= strcmp(dos[i], what) == 0;
	if (!known) {
		errs_add(e, MB_ECALLBACK, lineno, "app: unknown \"do\": \"%s\"",
		    what);
		return;
	}
	if (strcmp(what, "ack") == 0 && !json_object_get(o, "id") &&
	    !json_object_get(o, "token"))
		errs_add(e, MB_EFIELD, lineno,
		    "app ack: needs \"id\" or \"token\"");
	if (strcmp(what, "complete") == 0) {
		const char *r = mbi_json_str(o, "result");
		if (!json_object_get(o, "id") == !json_object_get(o, "push_id"))
			errs_add(e, MB_EFIELD, lineno,
			    "app complete: needs exactly one of \"id\" and "
			    "\"push_id\"");
		if (r == NULL ||
		    (strcmp(r, "new_data") && strcmp(r, "no_data") &&
		        strcmp(r, "failed")))
			errs_add(e, MB_EFIELD, lineno,
			    "app complete: \"result\" must be new_data, no_data "
			    "or failed");
	}
	if (strcmp(what, "connect") == 0 &&
	    (!mbi_json_str(o, "name") || !mbi_json_str(o, "url")))
		errs_add(e, MB_EFIELD, lineno,
		    "app connect: needs \"name\" and \"url\" strings");
}

static void
check_header(struct errs *e, struct mb_trace *t)
{
	const json_t *h = t->header, *app, *v;
	const char *os = mbi_json_str(h, "os");

	v = json_object_get(h, "trace");
	if (!json_is_integer(v) || json_integer_value(v) != 1)
		errs_add(e, MB_EHEADER, 1, "header: \"trace\" must be 1");
	if (os != NULL && strcmp(os, "ios") == 0)
		t->os = MB_OS_IOS;
	else if (os != NULL && strcmp(os, "android") == 0)
		t->os = MB_OS_ANDROID;
	else
		errs_add(e, MB_EHEADER, 1,
		    "header: \"os\" must be \"ios\" or \"android\"");
	t->name = mbi_json_str(h, "name");
	t->consumer_up_at = 0;
	t->android_sdk = 34;
	app = json_object_get(h, "app");
	if (app == NULL)
		return;
	if (!json_is_object(app)) {
		errs_add(e, MB_EHEADER, 1, "header: \"app\" must be an object");
		return;
	}
	if ((v = json_object_get(app, "ack")) != NULL) {
		const char *a = json_string_value(v);
		if (a == NULL || (strcmp(a, "auto") && strcmp(a, "manual")))
			errs_add(e, MB_EHEADER, 1,
			    "header: app.ack must be \"auto\" or \"manual\"");
		else
			t->manual_ack = strcmp(a, "manual") == 0;
	}
	if ((v = json_object_get(app, "consumer_up_at")) != NULL) {
		if (json_is_null(v))
			t->consumer_up_at = -1;
		else if (!json_is_integer(v) || json_integer_value(v) < 0)
			errs_add(e, MB_EHEADER, 1,
			    "header: app.consumer_up_at must be a non-negative "
			    "integer");
		else
			t->consumer_up_at = json_integer_value(v);
	}
	if ((v = json_object_get(app, "android_sdk")) != NULL) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > 1000)
			errs_add(e, MB_EHEADER, 1,
			    "header: app.android_sdk must be an API level "
			    "(1 to 1000)");
		else
			t->android_sdk = (int)json_integer_value(v);
	}
	if ((v = json_object_get(app, "id_key")) != NULL) {
		if (!json_is_string(v))
			errs_add(e, MB_EHEADER, 1,
			    "header: app.id_key must be a string");
		else
			t->id_key = json_string_value(v);
	}
	if ((v = json_object_get(app, "background_modes")) != NULL) {
		if (!json_is_array(v))
			errs_add(e, MB_EHEADER, 1,
			    "header: app.background_modes must be an array");
		else
			t->background_modes = (json_t *)v;
	}
}

static int
parse_line(struct errs *e, struct mb_trace *t, unsigned lineno,
    const char *s, size_t n, int64_t *last_at)
{
	json_error_t jerr;
	json_t *o = mbi_json_load(s, n, &jerr);
	struct mb_trace_line *l;
	const json_t *at;
	const char *cbname;
	enum mb_cb cb;

	if (o == NULL) {
		errs_add(e, MB_EJSON, lineno, "invalid JSON: %s (column %d)",
		    jerr.text, jerr.column);
		return 0;
	}
	if (!json_is_object(o)) {
		errs_add(e, MB_EJSON, lineno, "a line must be a JSON object");
		json_decref(o);
		return 0;
	}
	if (lineno == 1) {
		t->header = o;
		check_header(e, t);
		return 0;
	}
	at = json_object_get(o, "at");
	cbname = mbi_json_str(o, "cb");
	if (at == NULL) {
		errs_add(e, MB_EFIELD, lineno,
		    "missing field \"at\" (a non-negative integer of ms)");
		json_decref(o);
		return 0;
	}
	if (!json_is_integer(at) || json_integer_value(at) < 0 ||
	    json_integer_value(at) > MB_TRACE_AT_MAX) {
		errs_add(e, MB_EFIELD, lineno,
		    "\"at\" must be an integer of ms from 0 to %lld",
		    (long long)MB_TRACE_AT_MAX);
		json_decref(o);
		return 0;
	}
	if (json_integer_value(at) < *last_at)
		errs_add(e, MB_ETIME, lineno,
		    "\"at\" %lld is before the previous line's %lld",
		    (long long)json_integer_value(at), (long long)*last_at);
	else
		*last_at = json_integer_value(at);
	if (cbname == NULL) {
		errs_add(e, MB_EFIELD, lineno, "missing field \"cb\"");
		json_decref(o);
		return 0;
	}
	cb = cb_lookup(cbname);
	if (cb == MB_CB_NONE || (t->os && !(cb_table[cb].os & t->os))) {
		errs_add(e, MB_ECALLBACK, lineno,
		    "unknown callback \"%s\" for %s", cbname,
		    t->os == MB_OS_ANDROID ? "android" : "ios");
		json_decref(o);
		return 0;
	}
	check_fields(e, lineno, cb, o);
	check_values(e, lineno, cb, o);
	if (cb == MB_CB_APP)
		check_app(e, lineno, o);
	l = &t->lines[t->nlines++];
	l->lineno = lineno;
	l->at = json_integer_value(at);
	l->cb = cb;
	l->obj = o;
	return 0;
}

int
mb_trace_parse(const char *name, const char *text, size_t len,
    struct mb_trace **tp, char *err, size_t errlen)
{
	struct errs e = { err, errlen, 0, 0, 0, MB_OK, name };
	struct mb_trace *t;
	size_t cap = 1, off = 0;
	unsigned lineno = 0;
	int64_t last_at = 0;

	if (errlen)
		err[0] = '\0';
	for (size_t i = 0; i < len; i++)
		cap += text[i] == '\n';
	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (t->lines = calloc(cap, sizeof(*t->lines))) == NULL ||
	    (t->path = strdup(name)) == NULL) {
		mb_trace_free(t);
		return MB_ENOMEM;
	}
	if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
		off = 3; /* a UTF-8 byte order mark says nothing: skip it */
	while (off < len) {
		const char *s = text + off;
		const char *nl = memchr(s, '\n', len - off);
		size_t n = nl ? (size_t)(nl - s) : len - off;

		off += n + (nl != NULL);
		lineno++;
		if (n > 0 && s[n - 1] == '\r')
			n--;
		if (n == 0 || strspn(s, " \t") >= n) {
			if (lineno == 1)
				errs_add(&e, MB_EHEADER, 1,
				    "the first line must be the header");
			continue;
		}
		parse_line(&e, t, lineno, s, n, &last_at);
	}
	if (t->header == NULL && e.count == 0)
		errs_add(&e, MB_EHEADER, 1, "empty trace: no header line");
	if (e.count) {
		errs_finish(&e);
		mb_trace_free(t);
		return e.first;
	}
	*tp = t;
	return MB_OK;
}

int
mb_trace_load(const char *path, struct mb_trace **tp, char *err,
    size_t errlen)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	char *buf = NULL;
	size_t len = 0, cap = 0, n;
	int rv;

	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return MB_EIO;
	}
	if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: is a directory, not a trace file", path);
		fclose(f);
		return MB_EIO;
	}
	do {
		if (len + 65536 > cap) {
			char *nb = realloc(buf, cap = cap * 2 + 65536);
			if (nb == NULL) {
				free(buf);
				fclose(f);
				return MB_ENOMEM;
			}
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
	} while (n > 0);
	rv = ferror(f) ? MB_EIO : MB_OK;
	fclose(f);
	if (rv == MB_OK)
		rv = mb_trace_parse(path, buf, len, tp, err, errlen);
	else
		snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
	free(buf);
	return rv;
}

void
mb_trace_free(struct mb_trace *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->nlines; i++)
		json_decref(t->lines[i].obj);
	json_decref(t->header);
	free(t->lines);
	free(t->path);
	free(t);
}
