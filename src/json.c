/* SPDX-License-Identifier: MIT */
/* json.c - compact, order-preserving JSON over jansson. */
#include <stdio.h>
#include <stdlib.h>

#include "json.h"

/* The fewest significant digits that read back as the same double. */
static int
json_digits(double d)
{
	char buf[40];

	for (int p = 1; p < 17; p++) {
		snprintf(buf, sizeof(buf), "%.*g", p, d);
		if (strtod(buf, NULL) == d)
			return p;
	}
	return 17;
}

/* The precision every real in v needs to read back unchanged. */
static int
json_precision(const json_t *v, int depth)
{
	int p = 1;

	if (json_is_real(v))
		return json_digits(json_real_value(v));
	if (depth > 4096)
		return 17;
	if (json_is_object(v)) {
		const char *k;
		json_t *x;
		json_object_foreach((json_t *)v, k, x) {
			int q = json_precision(x, depth + 1);
			p = q > p ? q : p;
		}
	} else if (json_is_array(v)) {
		size_t i;
		json_t *x;
		json_array_foreach(v, i, x) {
			int q = json_precision(x, depth + 1);
			p = q > p ? q : p;
		}
	}
	return p;
}

char *
mbi_json_dump(const json_t *v)
{
	/* Jansson keeps insertion order and writes raw UTF-8 unless asked to
	 * escape it, so this is the "compact serialization" of the payload
	 * size rule. Reals get the shortest digits that read back the same
	 * (0.1 stays 0.1, not 0.10000000000000001); the sender's own spelling
	 * of a number (1e2) is not kept, since the parser keeps only values. */
	return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY |
	        JSON_REAL_PRECISION(json_precision(v, 0)));
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
