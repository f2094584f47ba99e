#!/bin/sh
# The plugin must export purple_init_plugin and nothing else of ours: every
# other symbol is built hidden, so two plugins linking the same libraries
# (lurch, OTR) cannot interpose on each other's functions.
# Usage: check_symbols.sh [path/to/purple-omemo.so]
# Prints one summary line "N passed, N failed"; exits non-zero on failure.
so=${1:-build/libomemo-c/purple-omemo.so}

if [ ! -f "$so" ]; then
	echo "check_symbols: FAIL: $so does not exist (build it first)"
	echo "0 passed, 1 failed"
	exit 1
fi

if ! syms=$(LC_ALL=C nm -D --defined-only "$so"); then
	echo "check_symbols: FAIL: nm could not read $so"
	echo "0 passed, 1 failed"
	exit 1
fi

# The last field is the name; the linker may add its own section markers.
names=$(printf '%s\n' "$syms" | awk 'NF >= 2 { print $NF }' | sort -u)
extra=$(printf '%s\n' "$names" | grep -v -x -e purple_init_plugin \
	-e _init -e _fini -e _edata -e _end -e __bss_start)

ok=1
if ! printf '%s\n' "$names" | grep -q -x purple_init_plugin; then
	echo "check_symbols: FAIL: $so does not export purple_init_plugin"
	ok=0
fi
if [ -n "$extra" ]; then
	echo "check_symbols: FAIL: $so exports more than purple_init_plugin:"
	printf '%s\n' "$extra" | sed 's/^/check_symbols:   /'
	ok=0
fi

if [ "$ok" = 1 ]; then
	echo "check_symbols: ok: $so exports only purple_init_plugin"
	echo "1 passed, 0 failed"
	exit 0
fi
echo "0 passed, 1 failed"
exit 1
