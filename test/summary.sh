#!/bin/sh
# Adds up test results. Each argument is the output of one test step; the
# step's result is the last line of the form "N passed, N failed" in it. A
# step that left no such line (a crash, a build failure, a killed run)
# counts as one failure, so a broken step can never look like a clean one.
# Prints one line "N passed, N failed"; exits non-zero if anything failed.
passed=0
failed=0
for log in "$@"; do
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" 2>/dev/null | tail -n 1)
	if [ -z "$line" ]; then
		echo "summary: no result from $log: counted as one failure" >&2
		failed=$((failed + 1))
		continue
	fi
	p=${line%% passed,*}
	f=${line#*passed, }
	f=${f%% failed}
	passed=$((passed + p))
	failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
