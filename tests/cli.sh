#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cli.sh MOBBUS - the command-line tool as a user meets it: exit codes and
# messages for good and bad input, replay --db with inspect, check's output.
# Prints one line per check and ends with "N passed, N failed".
set -u
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0

# expect NAME WANT_RC GREP_PATTERN COMMAND...: run, compare rc, grep output.
expect() {
	local name=$1 want=$2 pat=$3 out rc
	shift 3
	out=$("$@" 2>&1)
	rc=$?
	if [ "$rc" -eq "$want" ] && grep -qE -- "$pat" <<<"$out"; then
		echo "pass  cli $name"
		pass=$((pass + 1))
	else
		echo "FAIL  cli $name: exit $rc (want $want), output:"
		printf '%s\n' "$out" | head -n 8 | sed 's/^/      /'
		fail=$((fail + 1))
	fi
}

hdr='{"trace":1,"os":"ios","app":{"consumer_up_at":0}}'
printf '%s\n' "$hdr" '{"at":0,"cb":"launch"}' '{"at":5,"cb":"oops"}' \
	'{"at":3,"cb":"did_become_active"}' >"$tmp/bad.trace.jsonl"
printf '%s\n' "$hdr" '{"at":0,"cb":"launch"' >"$tmp/json.trace.jsonl"
printf '%s\n' "$hdr" '{"at":0,"cb":"will_present"}' >"$tmp/field.trace.jsonl"
printf '\xff\xfe garbage\n' >"$tmp/utf8.trace.jsonl"
printf '%s\n' "$hdr" '{"at":0,"cb":"launch"}' \
	'{"at":10,"cb":"will_present","payload":{"aps":{"alert":"Hi"},"k":"v"},"request_id":"R1"}' \
	>"$tmp/ok.trace.jsonl"
printf '%s\n' '{"msg":"notification","id":"R1","body":"Hi","data":{"k":"v"}}' \
	>"$tmp/ok.expect.jsonl"
printf '%s\n' '{"msg":"notification","id":"R2"}' >"$tmp/wrong.expect.jsonl"
cp "$tmp/ok.trace.jsonl" "$tmp/wrong.trace.jsonl"

expect usage 2 'usage: mobbus' "$bin"
expect unknown-command 2 'unknown command' "$bin" frobnicate
expect missing-file 2 'No such file' "$bin" replay "$tmp/none.trace.jsonl"
expect unknown-callback 2 'bad.trace.jsonl:3: unknown callback "oops"' \
	"$bin" replay "$tmp/bad.trace.jsonl"
expect time-backwards 2 'bad.trace.jsonl:4: "at" 3 is before' \
	"$bin" replay "$tmp/bad.trace.jsonl"
expect invalid-json 2 'json.trace.jsonl:2: invalid JSON' \
	"$bin" replay "$tmp/json.trace.jsonl"
expect missing-field 2 'missing field "payload"' \
	"$bin" replay "$tmp/field.trace.jsonl"
expect invalid-utf8 2 'utf8.trace.jsonl:1: invalid JSON' \
	"$bin" replay "$tmp/utf8.trace.jsonl"
expect replay 0 '"msg":"notification","id":"R1"' \
	"$bin" replay "$tmp/ok.trace.jsonl" --db "$tmp/s.db"
expect db-mode 0 '^-rw-------' ls -l "$tmp/s.db"
expect inspect 0 'R1 arrival' "$bin" inspect --db "$tmp/s.db"
expect inspect-integrity 0 '^  ok$' "$bin" inspect --db "$tmp/s.db"
expect inspect-not-a-db 1 'database: .*not a database' \
	"$bin" inspect --db "$tmp/bad.trace.jsonl"
expect check-pass 0 '^1 passed, 0 failed$' "$bin" check "$tmp/ok.trace.jsonl"
expect check-fail 1 'FAIL  wrong: expect line 1, key "id": want "R2", got "R1"' \
	"$bin" check "$tmp/wrong.trace.jsonl"
expect check-folder 1 '^1 passed, 5 failed$' "$bin" check "$tmp"

expect db-missing-dir 1 'database: .*nope/x.db: unable to open' \
	"$bin" replay "$tmp/ok.trace.jsonl" --db "$tmp/nope/x.db"
cp "$(dirname "$0")/cli-other.sqlite" "$tmp/other.sqlite"
expect db-not-ours 1 'an SQLite database, but not a mobbus store' \
	"$bin" replay "$tmp/ok.trace.jsonl" --db "$tmp/other.sqlite"
expect db-not-a-db 1 'file is not a database' \
	"$bin" replay "$tmp/ok.trace.jsonl" --db "$tmp/bad.trace.jsonl"
expect trace-is-dir 2 'is a directory, not a trace file' "$bin" replay "$tmp"
expect check-missing 2 'nope: No such file' "$bin" check "$tmp/nope"
mkdir -p "$tmp/empty"
expect check-empty 2 'no \*\.trace\.jsonl under' "$bin" check "$tmp/empty"
cp "$tmp/s.db" "$tmp/damaged.db"
head -c 8192 /dev/zero | tr '\0' '\253' |
	dd of="$tmp/damaged.db" bs=4096 seek=1 conv=notrunc status=none
expect db-damaged-noted 0 'note: the store .*damaged.db is damaged \(SQLite: ' \
	"$bin" replay "$tmp/ok.trace.jsonl" --db "$tmp/damaged.db"
mkdir -p "$tmp/dircase" "$tmp/dircase/d.expect.jsonl"
cp "$tmp/ok.trace.jsonl" "$tmp/dircase/d.trace.jsonl"
expect check-expect-dir 1 'FAIL  d: cannot read .*Is a directory' \
	"$bin" check "$tmp/dircase"
: >"$tmp/empty.db"
expect inspect-empty-file 1 'not a mobbus store' \
	"$bin" inspect --db "$tmp/empty.db"
expect inspect-dir 1 'is a directory' "$bin" inspect --db "$tmp"
expect inspect-foreign 1 'not a mobbus store' \
	"$bin" inspect --db "$tmp/other.sqlite"
{
	echo "$hdr"
	for i in $(seq 1 500); do echo "{\"at\":$i,\"cb\":\"frob$i\"}"; done
} >"$tmp/many.trace.jsonl"
expect many-bad-lines 2 'many.trace.jsonl: \.\.\. and [0-9]+ more problems$' \
	"$bin" replay "$tmp/many.trace.jsonl"
if [ -w /dev/full ]; then
	expect output-full 1 'writing the output failed' \
		sh -c "'$bin' replay '$tmp/ok.trace.jsonl' >/dev/full"
	expect inspect-output-full 1 'writing the output failed' \
		sh -c "'$bin' inspect --db '$tmp/s.db' >/dev/full"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
