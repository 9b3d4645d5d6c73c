/* SPDX-License-Identifier: MIT */
/* inspect.h - mobbus inspect. */
#ifndef MB_CLI_INSPECT_H
#define MB_CLI_INSPECT_H

#include <stdio.h>

/* mb_inspect - print the store at db_path to out; MB_EDB with a message on
 * stderr when it is not a readable mobbus store. */
int mb_inspect(const char *db_path, FILE *out);

#endif
