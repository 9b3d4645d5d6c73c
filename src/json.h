/* SPDX-License-Identifier: MIT */
/* json.h - the one JSON serialization the bus uses (compact, ordered, raw UTF-8). */
#ifndef MB_JSON_H
#define MB_JSON_H

#include <jansson.h>
#include <stddef.h>

/*
 * mbi_json_dump - compact JSON of v: no whitespace, raw UTF-8, object keys in
 * the order they were given. This is the form payload sizes are measured in.
 * Returns a malloc'd string the caller frees, or NULL when out of memory.
 */
char *mbi_json_dump(const json_t *v);

/* mbi_json_load - parse a whole JSON text; NULL with err filled when invalid. */
json_t *mbi_json_load(const char *text, size_t len, json_error_t *err);

/* mbi_json_str - the string at key, or NULL when missing or not a string. */
const char *mbi_json_str(const json_t *obj, const char *key);

#endif
