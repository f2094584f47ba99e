#!/bin/sh
# Runs libFuzzer targets for a fixed time each and prints one summary line:
# "N passed, N failed". Usage: run.sh SECONDS BIN_DIR TARGET...
# FUZZ_JOBS (default 1) targets run at the same time.
# Each target fuzzes a fresh working corpus in a temporary directory, with
# test/fuzz/corpus/<target> as a read-only seed directory (libFuzzer writes
# new inputs into the first directory only). A target passes when it runs its
# time with no crash, leak or sanitizer report; its findings go to
# BIN_DIR/artifacts/<target>/.
here=$(cd "$(dirname "$0")" && pwd)
secs=$1
bin_dir=$2
shift 2
jobs=${FUZZ_JOBS:-1}
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$here/../lsan.supp:print_suppressions=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export G_SLICE=always-malloc

# One target; leaves its verdict in BIN_DIR/<target>.verdict.
fuzz_one() {
	t=$1
	work=$(mktemp -d "${TMPDIR:-/tmp}/omemo-$t-XXXXXX")
	art="$bin_dir/artifacts/$t"
	log="$bin_dir/$t.log"
	mkdir -p "$art"
	"$bin_dir/$t" -max_total_time="$secs" -timeout=30 -print_final_stats=1 \
		-artifact_prefix="$art/" "$work" "$here/corpus/$t" >"$log" 2>&1
	rc=$?
	if [ "$rc" = 0 ] && ! grep -q -E '^==[0-9]+==ERROR|runtime error:' "$log"; then
		echo pass >"$bin_dir/$t.verdict"
	else
		echo "fail $rc" >"$bin_dir/$t.verdict"
	fi
	rm -rf "$work"
}

report() {
	t=$1
	log="$bin_dir/$t.log"
	echo "== $t ($secs s)"
	# the last status line carries the coverage and speed at the end
	grep -E '^#[0-9]+' "$log" | tail -n 1
	grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$log"
	case $(cat "$bin_dir/$t.verdict") in
	pass)
		passed=$((passed + 1)) ;;
	*)
		failed=$((failed + 1))
		echo "$t: FAILED ($(cat "$bin_dir/$t.verdict")), log: $log"
		grep -E -A 40 '^==[0-9]+==ERROR|runtime error:|invariant failed' "$log" | head -n 60
		ls "$bin_dir/artifacts/$t" ;;
	esac
}

passed=0
failed=0
set -- "$@"
while [ $# -gt 0 ]; do
	batch=""
	n=0
	while [ $# -gt 0 ] && [ "$n" -lt "$jobs" ]; do
		rm -f "$bin_dir/$1.verdict"
		fuzz_one "$1" &
		batch="$batch $1"
		n=$((n + 1))
		shift
	done
	wait
	for t in $batch; do
		report "$t"
	done
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
