/* SPDX-License-Identifier: MIT */
/* json.c - compact, order-preserving JSON over jansson. */
#include "json.h"

char *
mbi_json_dump(const json_t *v)
{
	/* Jansson keeps insertion order and writes raw UTF-8 unless asked to
	 * escape it, so this is the "compact serialization" of the payload
	 * size rule. */
	return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

json_t *
mbi_json_load(const char *text, size_t len, json_error_t *err)
{
	/* JSON_REJECT_DUPLICATES: a payload with two values for one key has
	 * no single meaning, so it is bad input rather than a guess. */
	return json_loadb(text, len, JSON_REJECT_DUPLICATES, err);
}

const char *
mbi_json_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}
