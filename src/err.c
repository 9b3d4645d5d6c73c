/* SPDX-License-Identifier: MIT */
/* err.c - error names and messages, from the one table in mobbus.h. */
#include "mobbus.h"

const char *
mb_strerror(int err)
{
	switch (err) {
#define MB_ERR_MSG_(name, num, code, msg)                                      \
	case num:                                                              \
		return msg;
		MB_ERR_MAP(MB_ERR_MSG_)
#undef MB_ERR_MSG_
	}
	return "unknown error";
}

const char *
mb_err_name(int err)
{
	switch (err) {
#define MB_ERR_CODE_(name, num, code, msg)                                     \
	case num:                                                              \
		return code;
		MB_ERR_MAP(MB_ERR_CODE_)
#undef MB_ERR_CODE_
	}
	return "unknown";
}
