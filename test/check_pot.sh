#!/bin/sh
# Translation checks, run from anywhere inside the tree:
#   1. every src/*.c with marked strings is listed in po/POTFILES;
#   2. the committed po/purple-omemo.pot has every msgid the sources mark,
#      extracted with the very xgettext options of `make pot`;
#   3. every po/*.po is valid (msgfmt --check) and has a finished, non-fuzzy
#      translation of every msgid the sources mark.
# Each problem is named exactly (msgid and source location). Prints one
# summary line "N passed, N failed" and exits non-zero if any check failed.
cd "$(dirname "$0")/.." || exit 1
# Byte order for sort/comm, untranslated tool messages.
LC_ALL=C
export LC_ALL

pot=po/purple-omemo.pot
passed=0
failed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

pass() {
	echo "check_pot: ok: $1"
	passed=$((passed + 1))
}

fail() {
	echo "check_pot: FAIL: $1"
	failed=$((failed + 1))
}

# One line per PO entry: the msgid as the file writes it (escapes kept;
# a msgctxt is prefixed as "ctxt\004"), a tab, its source locations.
# The header and obsolete (#~) entries are skipped. Whether an entry is
# translated or fuzzy is left to msgattrib, which knows the grammar fully.
po_msgids() {
	awk '
	function unquote(s) {
		sub(/^[^"]*"/, "", s)
		sub(/"[ \t]*$/, "", s)
		return s
	}
	function flush() {
		if (have_id && !(id == "" && !have_ctxt))
			printf "%s\t%s\n", (have_ctxt ? ctxt "\004" id : id), refs
		have_id = have_ctxt = have_str = 0
		id = ctxt = refs = cur = ""
	}
	/^#~/ { next }
	/^[ \t]*$/ { flush(); next }
	/^#/ {
		if (have_str)
			flush()
		if ($0 ~ /^#:/) {
			r = $0
			sub(/^#:[ \t]*/, "", r)
			refs = refs == "" ? r : refs " " r
		}
		next
	}
	/^msgctxt/ {
		if (have_str)
			flush()
		have_ctxt = 1; ctxt = unquote($0); cur = "ctxt"; next
	}
	/^msgid_plural/ { cur = "plural"; next }
	/^msgid/ {
		if (have_str)
			flush()
		have_id = 1; id = unquote($0); cur = "id"; next
	}
	/^msgstr/ { have_str = 1; cur = "str"; next }
	/^[ \t]*"/ {
		if (cur == "id")
			id = id unquote($0)
		else if (cur == "ctxt")
			ctxt = ctxt unquote($0)
		next
	}
	END { flush() }
	' "$1"
}

# The xgettext command `make pot` runs, minus its output and file list, so
# this check can never drift from the real template generation.
pot_cmd=$(make -s -n pot 2>/dev/null | sed -e ':a' -e '/\\$/N; s/\\\n//; ta' | grep '^[ \t]*xgettext ')
if [ -z "$pot_cmd" ]; then
	fail "cannot find the xgettext command of \`make pot\`"
	echo "$passed passed, $failed failed"
	exit 1
fi
opts=
skip=0
for w in $pot_cmd; do
	if [ "$skip" = 1 ]; then
		skip=0
		continue
	fi
	case "$w" in
	xgettext) ;;
	-o | -f | --output | --files-from) skip=1 ;;
	--output=* | --files-from=* | -o* | -f*) ;;
	*) opts="$opts $w" ;;
	esac
done

# 1. Sources with marked strings that po/POTFILES forgets.
unlisted=
for f in src/*.c; do
	[ -e "$f" ] || continue
	grep -qx "$f" po/POTFILES && continue
	# shellcheck disable=SC2086
	if xgettext $opts -o "$tmp/one.pot" "$f" 2>/dev/null && [ -s "$tmp/one.pot" ]; then
		unlisted="$unlisted $f"
	fi
	rm -f "$tmp/one.pot"
done
if [ -n "$unlisted" ]; then
	for f in $unlisted; do
		echo "check_pot:   $f has marked strings but is not in po/POTFILES"
	done
	fail "po/POTFILES is incomplete"
else
	pass "po/POTFILES lists every source with marked strings"
fi

# 2. The template against what the sources mark now (listed or not).
# shellcheck disable=SC2086
if ! xgettext $opts -o "$tmp/fresh.pot" --files-from=po/POTFILES $unlisted 2>"$tmp/xgettext.err"; then
	cat "$tmp/xgettext.err"
	fail "xgettext failed"
	echo "$passed passed, $failed failed"
	exit 1
fi
po_msgids "$tmp/fresh.pot" >"$tmp/fresh.ids"
cut -f1 "$tmp/fresh.ids" | sort -u >"$tmp/fresh.keys"

if [ ! -f "$pot" ]; then
	fail "$pot does not exist (run make pot)"
else
	po_msgids "$pot" | cut -f1 | sort -u >"$tmp/pot.keys"
	comm -23 "$tmp/fresh.keys" "$tmp/pot.keys" >"$tmp/missing"
	if [ -s "$tmp/missing" ]; then
		while IFS= read -r id; do
			refs=$(ID=$id awk -F '\t' '$1 == ENVIRON["ID"] { print $2; exit }' "$tmp/fresh.ids")
			echo "check_pot:   missing from $pot: \"$id\" ($refs)"
		done <"$tmp/missing"
		fail "$pot lacks $(wc -l <"$tmp/missing") msgid(s); run make pot"
	else
		pass "$pot has every marked msgid ($(wc -l <"$tmp/fresh.keys"))"
	fi
	comm -13 "$tmp/fresh.keys" "$tmp/pot.keys" >"$tmp/stale"
	if [ -s "$tmp/stale" ]; then
		echo "check_pot:   note: $pot still has $(wc -l <"$tmp/stale") msgid(s) no source marks any more; run make pot"
	fi
fi

# 3. Each translation: valid, and finished for every marked msgid.
for po in po/*.po; do
	[ -e "$po" ] || continue
	if ! msgfmt --check --statistics -o /dev/null "$po" 2>"$tmp/msgfmt.out"; then
		cat "$tmp/msgfmt.out"
		fail "$po does not compile (msgfmt --check)"
		continue
	fi
	stats=$(cat "$tmp/msgfmt.out")
	# Translated, non-fuzzy entries only: everything else counts as missing.
	if ! msgattrib --translated --no-fuzzy --no-obsolete -o "$tmp/done.po" "$po" 2>"$tmp/msgattrib.err"; then
		cat "$tmp/msgattrib.err"
		fail "msgattrib failed on $po"
		continue
	fi
	if [ -f "$tmp/done.po" ]; then
		po_msgids "$tmp/done.po" | cut -f1 | sort -u >"$tmp/done.keys"
	else
		: >"$tmp/done.keys"
	fi
	rm -f "$tmp/done.po"
	comm -23 "$tmp/fresh.keys" "$tmp/done.keys" >"$tmp/untranslated"
	if [ -s "$tmp/untranslated" ]; then
		while IFS= read -r id; do
			refs=$(ID=$id awk -F '\t' '$1 == ENVIRON["ID"] { print $2; exit }' "$tmp/fresh.ids")
			echo "check_pot:   $po: no finished translation of \"$id\" ($refs)"
		done <"$tmp/untranslated"
		fail "$po lacks $(wc -l <"$tmp/untranslated") translation(s) ($stats); run msgmerge -U $po $pot and translate"
	else
		pass "$po translates every msgid ($stats)"
	fi
done

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
