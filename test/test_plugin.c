/*
 * The built purple-omemo.so inside a real, headless libpurple core: probing
 * finds it in the build directory, its info is what Pidgin and Finch will
 * show and check, and it loads and unloads repeatedly in one process.
 *
 * The plugin is looked for in $PURPLE_OMEMO_PLUGIN_DIR (set by make check),
 * else two levels above this program ($(BUILD)/test/test_plugin next to
 * $(BUILD)/purple-omemo.so). The expected version comes from the VERSION
 * file ($PURPLE_OMEMO_VERSION_FILE, else ./VERSION).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>

#include <purple.h>

#include "i18n.h"

#define PLUGIN_ID "core-purple-omemo"
#define LOAD_CYCLES 10

/* libpurple and GLib are built without frame pointers: ASan's fast unwinder
 * stops at their first frame, which leaves leak reports unattributable and
 * the suppressions in lsan.supp unable to match. Environment settings still
 * take precedence over these. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "fast_unwind_on_malloc=0";
}

static char *test_user_dir;
static char *test_plugin_dir;

/* ---- a GLib main loop as libpurple's event loop ---- */

struct test_io {
	PurpleInputFunction fn;
	gpointer data;
};

static gboolean test_io_cb(GIOChannel *source, GIOCondition cond, gpointer data)
{
	struct test_io *io = data;
	PurpleInputCondition pc = 0;

	if (cond & (G_IO_IN | G_IO_HUP | G_IO_ERR))
		pc |= PURPLE_INPUT_READ;
	if (cond & (G_IO_OUT | G_IO_HUP | G_IO_ERR | G_IO_NVAL))
		pc |= PURPLE_INPUT_WRITE;
	io->fn(io->data, g_io_channel_unix_get_fd(source), pc);
	return TRUE;
}

static guint test_input_add(int fd, PurpleInputCondition cond, PurpleInputFunction fn,
			    gpointer data)
{
	struct test_io *io = g_new0(struct test_io, 1);
	GIOCondition gc = 0;
	GIOChannel *channel;
	guint id;

	io->fn = fn;
	io->data = data;
	if (cond & PURPLE_INPUT_READ)
		gc |= G_IO_IN | G_IO_HUP | G_IO_ERR;
	if (cond & PURPLE_INPUT_WRITE)
		gc |= G_IO_OUT | G_IO_HUP | G_IO_ERR | G_IO_NVAL;
	channel = g_io_channel_unix_new(fd);
	id = g_io_add_watch_full(channel, G_PRIORITY_DEFAULT, gc, test_io_cb, io, g_free);
	g_io_channel_unref(channel);
	return id;
}

static PurpleEventLoopUiOps test_eventloop_ops = {
	.timeout_add = g_timeout_add,
	.timeout_remove = g_source_remove,
	.input_add = test_input_add,
	.input_remove = g_source_remove,
	.input_get_error = NULL,
	.timeout_add_seconds = g_timeout_add_seconds,
};

static PurpleCoreUiOps test_core_ops = { 0 };

/* ---- helpers ---- */

static void test_drain_main_loop(void)
{
	while (g_main_context_iteration(NULL, FALSE))
		;
}

static char *test_default_plugin_dir(void)
{
	char *exe = g_file_read_link("/proc/self/exe", NULL);
	char *test_dir = NULL;
	char *dir = NULL;

	if (!exe)
		return NULL;
	test_dir = g_path_get_dirname(exe);
	dir = g_path_get_dirname(test_dir);
	g_free(test_dir);
	g_free(exe);
	return dir;
}

static gboolean test_same_dir(const char *file, const char *dir)
{
	char *file_dir = g_path_get_dirname(file);
	char a[PATH_MAX];
	char b[PATH_MAX];
	gboolean same;

	same = realpath(file_dir, a) && realpath(dir, b) && strcmp(a, b) == 0;
	g_free(file_dir);
	return same;
}

/* A copy installed system-wide or in ~/.purple/plugins carries the same id:
 * only the one in the build directory is the plugin under test. */
static PurplePlugin *test_find_built_plugin(unsigned *count)
{
	PurplePlugin *found = NULL;
	GList *l;

	*count = 0;
	for (l = purple_plugins_get_all(); l; l = l->next) {
		PurplePlugin *p = l->data;

		if (!p->info || g_strcmp0(p->info->id, PLUGIN_ID) != 0 || !p->path)
			continue;
		if (!test_same_dir(p->path, test_plugin_dir))
			continue;
		(*count)++;
		found = p;
	}
	return found;
}

static PurplePlugin *test_built_plugin(void)
{
	unsigned count = 0;
	PurplePlugin *plugin = test_find_built_plugin(&count);

	assert_int_equal(count, 1);
	assert_non_null(plugin);
	return plugin;
}

static char *test_read_version(void)
{
	const char *path = g_getenv("PURPLE_OMEMO_VERSION_FILE");
	char *text = NULL;

	if (!g_file_get_contents(path ? path : "VERSION", &text, NULL, NULL))
		return NULL;
	return g_strstrip(text);
}

/* ---- fixture: one libpurple core for the whole group ---- */

static int test_core_setup(void **state)
{
	const char *env = g_getenv("PURPLE_OMEMO_PLUGIN_DIR");
	char *so;

	test_plugin_dir = env && *env ? g_strdup(env) : test_default_plugin_dir();
	if (!test_plugin_dir) {
		fprintf(stderr, "where is purple-omemo.so? set PURPLE_OMEMO_PLUGIN_DIR\n");
		return -1;
	}
	so = g_build_filename(test_plugin_dir, "purple-omemo.so", NULL);
	if (!g_file_test(so, G_FILE_TEST_IS_REGULAR)) {
		fprintf(stderr, "%s is missing: build the plugin first (make check does)\n", so);
		g_free(so);
		return -1;
	}
	g_free(so);

	/* Keep plugins mapped at quit so leak reports can name their frames. */
	g_setenv("PURPLE_LEAKCHECK_HELP", "1", TRUE);

	test_user_dir = g_dir_make_tmp("purple-omemo-test-XXXXXX", NULL);
	if (!test_user_dir)
		return -1;

	/* Both must happen before purple_core_init(): it reads prefs from the
	 * user dir and probes the search paths. */
	purple_util_set_user_dir(test_user_dir);
	purple_plugins_add_search_path(test_plugin_dir);

	purple_debug_set_enabled(g_getenv("PURPLE_OMEMO_TEST_DEBUG") != NULL);
	purple_core_set_ui_ops(&test_core_ops);
	purple_eventloop_set_ui_ops(&test_eventloop_ops);
	if (!purple_core_init("purple-omemo-test"))
		return -1;
	return 0;
}

static void test_remove_tree(const char *path)
{
	GDir *dir = g_dir_open(path, 0, NULL);
	const char *name;

	if (dir) {
		while ((name = g_dir_read_name(dir))) {
			char *child = g_build_filename(path, name, NULL);

			if (g_file_test(child, G_FILE_TEST_IS_DIR) &&
			    !g_file_test(child, G_FILE_TEST_IS_SYMLINK))
				test_remove_tree(child);
			else
				g_unlink(child);
			g_free(child);
		}
		g_dir_close(dir);
	}
	g_rmdir(path);
}

static int test_core_teardown(void **state)
{
	if (purple_get_core()) {
		test_drain_main_loop();
		purple_core_quit();
	}
	if (test_user_dir) {
		test_remove_tree(test_user_dir);
		g_free(test_user_dir);
		test_user_dir = NULL;
	}
	g_free(test_plugin_dir);
	test_plugin_dir = NULL;
	return 0;
}

/* ---- tests ---- */

static void test_probe_finds_plugin_in_build_dir(void **state)
{
	PurplePlugin *plugin = test_built_plugin();

	assert_true(plugin->native_plugin);
	assert_false(purple_plugin_is_unloadable(plugin));
	assert_null(plugin->error);
	assert_false(purple_plugin_is_loaded(plugin));
}

static void test_plugin_info_matches_release(void **state)
{
	PurplePlugin *plugin = test_built_plugin();
	PurplePluginInfo *info = plugin->info;
	char *version = test_read_version();

	assert_non_null(version);
	assert_int_equal(info->magic, PURPLE_PLUGIN_MAGIC);
	assert_int_equal(info->major_version, PURPLE_MAJOR_VERSION);
	assert_true(info->minor_version <= PURPLE_MINOR_VERSION);
	assert_int_equal(info->type, PURPLE_PLUGIN_STANDARD);
	assert_string_equal(info->id, PLUGIN_ID);
	assert_string_equal(info->name, "OMEMO");
	assert_string_equal(info->version, version);
	g_free(version);
}

static void test_plugin_loads_in_any_ui(void **state)
{
	PurplePlugin *plugin = test_built_plugin();

	/* A UI id here would hide the plugin from either Pidgin or Finch. */
	assert_null(plugin->info->ui_requirement);
}

static void test_plugin_depends_on_jabber_only(void **state)
{
	PurplePlugin *plugin = test_built_plugin();
	GList *deps = plugin->info->dependencies;

	assert_int_equal(g_list_length(deps), 1);
	assert_string_equal(deps->data, "prpl-jabber");
	assert_non_null(purple_plugins_find_with_id("prpl-jabber"));
}

static void test_plugin_describes_itself(void **state)
{
	PurplePlugin *plugin = test_built_plugin();

	assert_non_null(plugin->info->summary);
	assert_true(strlen(plugin->info->summary) > 0);
	assert_non_null(plugin->info->description);
	assert_true(strlen(plugin->info->description) > 0);
	assert_non_null(strstr(plugin->info->summary, "OMEMO"));
}

static void test_probe_binds_text_domain_as_utf8(void **state)
{
	/* Plugin strings go to GTK and libgnt as UTF-8 whatever the locale's
	 * charset: the probe must have bound the codeset already. */
	const char *codeset = bind_textdomain_codeset(OMEMO_TEXT_DOMAIN, NULL);

	test_built_plugin();
	assert_non_null(codeset);
	assert_string_equal(codeset, "UTF-8");
}

static void test_plugin_loads_and_unloads_ten_times(void **state)
{
	PurplePlugin *plugin = test_built_plugin();
	PurplePlugin *jabber = purple_plugins_find_with_id("prpl-jabber");
	int i;

	assert_non_null(jabber);
	for (i = 0; i < LOAD_CYCLES; i++) {
		assert_true(purple_plugin_load(plugin));
		assert_true(purple_plugin_is_loaded(plugin));
		assert_null(plugin->error);
		/* The dependency was honoured: the XMPP prpl is up and knows us. */
		assert_true(purple_plugin_is_loaded(jabber));
		assert_non_null(g_list_find_custom(jabber->dependent_plugins, PLUGIN_ID,
						   (GCompareFunc)strcmp));
		test_drain_main_loop();

		assert_true(purple_plugin_unload(plugin));
		assert_false(purple_plugin_is_loaded(plugin));
		assert_null(g_list_find_custom(jabber->dependent_plugins, PLUGIN_ID,
					       (GCompareFunc)strcmp));
		test_drain_main_loop();
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_probe_finds_plugin_in_build_dir),
		cmocka_unit_test(test_plugin_info_matches_release),
		cmocka_unit_test(test_plugin_loads_in_any_ui),
		cmocka_unit_test(test_plugin_depends_on_jabber_only),
		cmocka_unit_test(test_plugin_describes_itself),
		cmocka_unit_test(test_probe_binds_text_domain_as_utf8),
		cmocka_unit_test(test_plugin_loads_and_unloads_ten_times),
	};

	return cmocka_run_group_tests_name("plugin", tests, test_core_setup, test_core_teardown);
}
