# purple-omemo: OMEMO encryption for libpurple (Pidgin, Finch).
#
#   make                 build purple-omemo.so and the translations
#   make check           build and run every test
#   make bench           build and run the benchmark
#   make e2e             run the end-to-end suite (Prosody + libpurple clients)
#   make fuzz            run the libFuzzer targets for FUZZ_SECONDS each (default 60)
#   make ui-check        drive a real Finch (tmux) and a real Pidgin (Xvfb)
#   make demo            try it by hand: Prosody + Finch in tmux (make demo-stop)
#   make install         install into the purple plugin dir (DESTDIR, PREFIX honoured)
#   make install-home    install into ~/.purple/plugins
#   make deps            install the packages needed to build, run and test
#   make SIGNAL=libsignal-protocol-c ...   build against libsignal-protocol-c 2.3

VERSION := $(shell cat VERSION)
SIGNAL ?= libomemo-c
PKG_CONFIG ?= pkg-config
CC ?= cc

ifeq ($(SIGNAL),libsignal-protocol-c)
SIGNAL_DEFS := -DOMEMO_WITH_LIBSIGNAL_PROTOCOL_C
else ifeq ($(SIGNAL),libomemo-c)
SIGNAL_DEFS :=
else
$(error SIGNAL must be libomemo-c or libsignal-protocol-c)
endif

PKGS := purple glib-2.0 libgcrypt sqlite3 $(SIGNAL)
PKG_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)

PREFIX ?= /usr
PLUGINDIR ?= $(shell $(PKG_CONFIG) --variable=plugindir purple 2>/dev/null)
LOCALEDIR ?= $(PREFIX)/share/locale
HOME_PLUGINDIR ?= $(HOME)/.purple/plugins

WERROR ?=
CFLAGS ?= -O2 -g
WARN := -Wall -Wextra -Wno-unused-parameter -Wno-deprecated-declarations $(WERROR)
DEFS := -DPURPLE_OMEMO_VERSION='"$(VERSION)"' -DLOCALEDIR='"$(LOCALEDIR)"' $(SIGNAL_DEFS)
ALL_CFLAGS = -std=gnu11 $(WARN) $(DEFS) -Iheaders $(PKG_CFLAGS) $(CFLAGS)

BUILD := build/$(SIGNAL)
PLUGIN := $(BUILD)/purple-omemo.so

# Everything but plugin glue is a "core" source, unit-testable on its own.
PLUGIN_SRCS := src/plugin.c
CORE_SRCS := $(filter-out $(PLUGIN_SRCS),$(wildcard src/*.c))
PIC_OBJS := $(patsubst src/%.c,$(BUILD)/pic/%.o,$(CORE_SRCS) $(PLUGIN_SRCS))

# Unit tests: ASan + UBSan, one program per test/test_*.c.
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
SAN_OBJS := $(patsubst src/%.c,$(BUILD)/san/%.o,$(CORE_SRCS))
UNIT_SRCS := $(wildcard test/test_*.c)
UNIT_BINS := $(patsubst test/%.c,$(BUILD)/test/%,$(UNIT_SRCS))
TEST_LIBS = $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null)
# Plain (unsanitised) core for valgrind and the benchmark.
REL_OBJS := $(patsubst src/%.c,$(BUILD)/rel/%.o,$(CORE_SRCS))
MEMCHECK_BINS := $(patsubst test/%.c,$(BUILD)/memcheck/%,$(UNIT_SRCS))
BENCH := $(BUILD)/bench
# The end-to-end suite's headless libpurple client (links libpurple only).
E2E_CLIENT := $(BUILD)/e2e-client
E2E_PKGS := purple glib-2.0

PO_LANGS := $(basename $(notdir $(wildcard po/*.po)))
MO_FILES := $(patsubst %,$(BUILD)/locale/%/LC_MESSAGES/purple-omemo.mo,$(PO_LANGS))

.PHONY: all check check-core unit-check memcheck bench bench-e2e e2e e2e-valgrind install install-home uninstall deps pot clean

all: $(PLUGIN) $(MO_FILES)

$(BUILD)/pic/%.o: src/%.c $(wildcard headers/*.h) VERSION | $(BUILD)/pic
	$(CC) $(ALL_CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@

$(PLUGIN): $(PIC_OBJS)
	$(CC) -shared -fPIC $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -Wl,--no-undefined

$(BUILD)/san/%.o: src/%.c $(wildcard headers/*.h) VERSION | $(BUILD)/san
	$(CC) $(ALL_CFLAGS) -O1 $(SAN) -c $< -o $@

$(BUILD)/test/%: test/%.c $(SAN_OBJS) $(wildcard test/*.h) | $(BUILD)/test
	$(CC) $(ALL_CFLAGS) -O1 $(SAN) -Itest $< $(SAN_OBJS) -o $@ $(PKG_LIBS) $(TEST_LIBS)

$(BUILD)/rel/%.o: src/%.c $(wildcard headers/*.h) VERSION | $(BUILD)/rel
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/memcheck/%: test/%.c $(REL_OBJS) $(wildcard test/*.h) | $(BUILD)/memcheck
	$(CC) $(ALL_CFLAGS) -Itest $< $(REL_OBJS) -o $@ $(PKG_LIBS) $(TEST_LIBS)

$(BENCH): test/bench.c $(REL_OBJS) | $(BUILD)
	$(CC) $(ALL_CFLAGS) -O2 $< $(REL_OBJS) -o $@ $(PKG_LIBS)

$(BUILD) $(BUILD)/pic $(BUILD)/san $(BUILD)/test $(BUILD)/rel $(BUILD)/memcheck:
	mkdir -p $@

$(BUILD)/locale/%/LC_MESSAGES/purple-omemo.mo: po/%.po
	mkdir -p $(dir $@)
	msgfmt --check -o $@ $<

# The one command that proves the tree works. Every step runs even when an
# earlier one fails; each leaves its "N passed, N failed" line in a log and
# test/summary.sh prints the one final total (a step with no line counts as
# a failure). test_plugin loads the built plugin from $(BUILD).
CHECK_LOGS := $(BUILD)/check-logs

# Keep the objects the test programs link: as pattern-rule intermediates make
# would delete them after the run and print that after the final summary.
.SECONDARY: $(SAN_OBJS) $(REL_OBJS)

check: all $(UNIT_BINS) $(E2E_CLIENT)
	@rm -rf $(CHECK_LOGS) && mkdir -p $(CHECK_LOGS)
	@PURPLE_OMEMO_PLUGIN_DIR=$(BUILD) SIGNAL=$(SIGNAL) BUILD=$(BUILD) \
		sh test/run_unit.sh $(UNIT_BINS) 2>&1 | tee $(CHECK_LOGS)/unit.log
	@sh test/check_symbols.sh $(PLUGIN) 2>&1 | tee $(CHECK_LOGS)/symbols.log
	@sh test/check_pot.sh 2>&1 | tee $(CHECK_LOGS)/pot.log
	@/usr/bin/python3 test/e2e/run.py --build $(BUILD) -j $(E2E_JOBS) 2>&1 | tee $(CHECK_LOGS)/e2e.log
	@/usr/bin/python3 test/ui/finch_test.py --build $(BUILD) 2>&1 | tee $(CHECK_LOGS)/finch.log
	@/usr/bin/python3 test/ui/pidgin_test.py --build $(BUILD) 2>&1 | tee $(CHECK_LOGS)/pidgin.log
	@sh test/summary.sh $(CHECK_LOGS)/unit.log $(CHECK_LOGS)/symbols.log $(CHECK_LOGS)/pot.log \
		$(CHECK_LOGS)/e2e.log $(CHECK_LOGS)/finch.log $(CHECK_LOGS)/pidgin.log

# check without the Finch and Pidgin tests, which do not depend on the
# Signal library: CI's second pass, for libsignal-protocol-c.
check-core: all $(UNIT_BINS) $(E2E_CLIENT)
	@rm -rf $(CHECK_LOGS) && mkdir -p $(CHECK_LOGS)
	@PURPLE_OMEMO_PLUGIN_DIR=$(BUILD) SIGNAL=$(SIGNAL) BUILD=$(BUILD) \
		sh test/run_unit.sh $(UNIT_BINS) 2>&1 | tee $(CHECK_LOGS)/unit.log
	@sh test/check_symbols.sh $(PLUGIN) 2>&1 | tee $(CHECK_LOGS)/symbols.log
	@/usr/bin/python3 test/e2e/run.py --build $(BUILD) -j $(E2E_JOBS) 2>&1 | tee $(CHECK_LOGS)/e2e.log
	@sh test/summary.sh $(CHECK_LOGS)/unit.log $(CHECK_LOGS)/symbols.log $(CHECK_LOGS)/e2e.log

unit-check: $(UNIT_BINS) $(PLUGIN)
	PURPLE_OMEMO_PLUGIN_DIR=$(BUILD) SIGNAL=$(SIGNAL) BUILD=$(BUILD) sh test/run_unit.sh $(UNIT_BINS)

memcheck: $(MEMCHECK_BINS) $(PLUGIN)
	PURPLE_OMEMO_PLUGIN_DIR=$(BUILD) MEMCHECK=1 SIGNAL=$(SIGNAL) BUILD=$(BUILD) \
		sh test/run_unit.sh $(MEMCHECK_BINS)

bench: $(BENCH)
	$(BENCH)

# purple-omemo and Debian's purple-lurch 0.7 side by side: the same messages
# through the same headless libpurple client (test/e2e/client.c) against the
# same throwaway Prosody; prints Markdown tables (about 5 minutes here).
#   make bench-e2e BENCH_E2E_FLAGS=--quick    (20 messages per figure)
BENCH_E2E_FLAGS ?=

bench-e2e: $(PLUGIN) $(E2E_CLIENT)
	/usr/bin/python3 test/e2e/bench_e2e.py --build $(BUILD) $(BENCH_E2E_FLAGS)

# End-to-end suite: a throwaway Prosody on loopback, headless libpurple
# clients (test/e2e/client.c) loading the built plugin, an independent
# python OMEMO peer. The client links libpurple only, none of src/.

# Scenarios run at once, each with its own Prosody and clients.
E2E_JOBS ?= 3

$(E2E_CLIENT): test/e2e/client.c | $(BUILD)
	$(CC) -std=gnu11 $(WARN) -O2 -g $(shell $(PKG_CONFIG) --cflags $(E2E_PKGS)) $< -o $@ \
		$(shell $(PKG_CONFIG) --libs $(E2E_PKGS))

e2e: $(PLUGIN) $(E2E_CLIENT)
	/usr/bin/python3 test/e2e/run.py --build $(BUILD) -j $(E2E_JOBS)

# The same suite with every libpurple client under valgrind memcheck: any
# invalid read or write, or a definite leak, fails the scenario.
# E2E_ONLY=a,b runs only the scenarios whose names contain a or b.
E2E_ONLY ?=
e2e-valgrind: $(PLUGIN) $(E2E_CLIENT)
	E2E_VALGRIND=1 /usr/bin/python3 test/e2e/run.py --build $(BUILD) -j 2 \
		--scenario-timeout 900 --suite-timeout 3000 $(if $(E2E_ONLY),-k $(E2E_ONLY))

# Real user interfaces: Finch driven through tmux (keys in, screen text
# out) and Pidgin under Xvfb (pointer clicks with xdotool, widgets located
# through the accessibility bus), each with a throwaway Prosody and the
# python OMEMO peer. Screenshots and screens: $(BUILD)/ui-artifacts/.
UI_LOGS := $(BUILD)/ui-logs

.PHONY: ui-check demo demo-stop

ui-check: $(PLUGIN)
	@rm -rf $(UI_LOGS) && mkdir -p $(UI_LOGS)
	@/usr/bin/python3 test/ui/finch_test.py --build $(BUILD) 2>&1 | tee $(UI_LOGS)/finch.log
	@/usr/bin/python3 test/ui/pidgin_test.py --build $(BUILD) 2>&1 | tee $(UI_LOGS)/pidgin.log
	@sh test/summary.sh $(UI_LOGS)/finch.log $(UI_LOGS)/pidgin.log

# A throwaway Prosody with alice and bob, and Finch in the tmux session
# purple-omemo-demo loading the plugin from $(BUILD).
demo: all
	@/usr/bin/python3 test/ui/demo.py start --build $(BUILD)

demo-stop:
	@/usr/bin/python3 test/ui/demo.py stop --build $(BUILD)

install: all
	install -d $(DESTDIR)$(PLUGINDIR)
	install -m 0644 $(PLUGIN) $(DESTDIR)$(PLUGINDIR)/purple-omemo.so
	for l in $(PO_LANGS); do \
		install -d $(DESTDIR)$(LOCALEDIR)/$$l/LC_MESSAGES; \
		install -m 0644 $(BUILD)/locale/$$l/LC_MESSAGES/purple-omemo.mo \
			$(DESTDIR)$(LOCALEDIR)/$$l/LC_MESSAGES/purple-omemo.mo; \
	done

install-home: all
	install -d $(HOME_PLUGINDIR)
	install -m 0644 $(PLUGIN) $(HOME_PLUGINDIR)/purple-omemo.so

uninstall:
	rm -f $(DESTDIR)$(PLUGINDIR)/purple-omemo.so $(HOME_PLUGINDIR)/purple-omemo.so
	for l in $(PO_LANGS); do rm -f $(DESTDIR)$(LOCALEDIR)/$$l/LC_MESSAGES/purple-omemo.mo; done

# Packages to build, run and test (Debian/Ubuntu). Idempotent.
DEB_PACKAGES := build-essential pkg-config gettext libpurple-dev libglib2.0-dev \
	libomemo-c-dev libsignal-protocol-c-dev libgcrypt20-dev libsqlite3-dev libxml2-dev \
	libcmocka-dev valgrind sqlite3 \
	python3 python3-cryptography python3-omemo python3-oldmemo python3-xmlschema \
	python3-slixmpp prosody lua-unbound purple-lurch purple-xmpp-carbons \
	finch tmux pidgin xvfb xdotool imagemagick \
	python3-pyatspi libatk-adaptor libgail-common dbus-daemon \
	clang libclang-rt-14-dev

deps:
	@if ! command -v apt-get >/dev/null; then \
		echo "make deps knows apt-get only; install: $(DEB_PACKAGES)"; exit 1; fi
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
		done); \
	if [ -z "$$missing" ]; then echo "all build and test packages are installed"; exit 0; fi; \
	SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	echo "installing:" $$missing; \
	$$SUDO apt-get update -q && \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends $$missing

pot:
	xgettext --from-code=UTF-8 --keyword=_ --keyword=N_ --package-name=purple-omemo \
		--package-version=$(VERSION) --add-comments=TRANSLATORS -o po/purple-omemo.pot \
		--files-from=po/POTFILES

clean:
	rm -rf build

# Fuzzing with libFuzzer (clang): each test/fuzz/fuzz_*.c target runs for
# FUZZ_SECONDS over a throwaway copy of its seeds in test/fuzz/corpus/; the
# sources it needs are built with clang and the sanitizers in $(BUILD)/fuzz.
#   make fuzz FUZZ_SECONDS=N
.PHONY: fuzz fuzz-build
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 1
FUZZ_DIR := $(BUILD)/fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS = -std=gnu11 $(WARN) $(DEFS) -Iheaders $(PKG_CFLAGS) -O1 -g $(FUZZ_SAN)
FUZZ_WIRE_TARGETS := fuzz_devicelist fuzz_bundle fuzz_encrypted
FUZZ_TARGETS := $(FUZZ_WIRE_TARGETS) fuzz_store_records fuzz_incoming
FUZZ_BINS := $(addprefix $(FUZZ_DIR)/,$(FUZZ_TARGETS))
fuzz_objs = $(patsubst %,$(FUZZ_DIR)/obj/%.o,$(1))

$(FUZZ_DIR)/obj/%.o: src/%.c $(wildcard headers/*.h) VERSION
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(addprefix $(FUZZ_DIR)/,$(FUZZ_WIRE_TARGETS)): $(FUZZ_DIR)/%: test/fuzz/%.c \
		test/fuzz/fuzz_common.h $(call fuzz_objs,err types wire)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Itest/fuzz $< $(filter %.o,$^) -o $@ $(PKG_LIBS)

$(FUZZ_DIR)/fuzz_store_records: test/fuzz/fuzz_store_records.c $(call fuzz_objs,err types payload records)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Itest/fuzz $< $(filter %.o,$^) -o $@ $(PKG_LIBS)

$(FUZZ_DIR)/fuzz_incoming: test/fuzz/fuzz_incoming.c test/fuzz/fuzz_common.h \
		$(call fuzz_objs,err types wire payload records store engine)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Itest/fuzz $< $(filter %.o,$^) -o $@ $(PKG_LIBS)

.SECONDARY: $(call fuzz_objs,err types wire payload records store engine)

fuzz-build: $(FUZZ_BINS)

fuzz: $(FUZZ_BINS)
	@FUZZ_JOBS=$(FUZZ_JOBS) sh test/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_DIR) $(FUZZ_TARGETS)
