#!/bin/sh
# Runs libFuzzer targets for a fixed time each and prints one summary line:
# "N passed, N failed". Usage: run.sh SECONDS BIN_DIR TARGET...
# Each target fuzzes a fresh working corpus in a temporary directory, with
# test/fuzz/corpus/<target> as a read-only seed directory (libFuzzer writes
# new inputs into the first directory only). A target passes when it runs its
# time with no crash, leak or sanitizer report; its findings go to
# BIN_DIR/artifacts/<target>/.
here=$(cd "$(dirname "$0")" && pwd)
secs=$1
bin_dir=$2
shift 2
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$here/../lsan.supp:print_suppressions=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export G_SLICE=always-malloc
passed=0
failed=0
for t in "$@"; do
	work=$(mktemp -d "${TMPDIR:-/tmp}/omemo-$t-XXXXXX")
	art="$bin_dir/artifacts/$t"
	log="$bin_dir/$t.log"
	mkdir -p "$art"
	echo "== $t ($secs s)"
	"$bin_dir/$t" -max_total_time="$secs" -timeout=30 -print_final_stats=1 \
		-artifact_prefix="$art/" "$work" "$here/corpus/$t" >"$log" 2>&1
	rc=$?
	# the last status line carries the coverage and speed at the end
	grep -E '^#[0-9]+' "$log" | tail -n 1
	grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$log"
	if [ "$rc" = 0 ] && ! grep -q -E '^==[0-9]+==ERROR|runtime error:' "$log"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		echo "$t: FAILED (status $rc), log: $log"
		grep -E -A 40 '^==[0-9]+==ERROR|runtime error:|invariant failed' "$log" | head -n 60
		ls "$art"
	fi
	rm -rf "$work"
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
