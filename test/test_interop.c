/*
 * Interoperability of our engine and wire modules with an independent legacy
 * OMEMO implementation: python-omemo with its oldmemo backend, driven offline
 * by test/oldmemo_peer.py (one process per command). Every message crosses as
 * XML text in a file, built and parsed on our side by wire.c, on the peer's
 * side by oldmemo.etree, so both the cryptography and the wire format meet
 * a real peer. Each test gets a fresh temporary directory holding our
 * database, the peer's state and the files passed between the two.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "engine.h"
#include "err.h"
#include "payload.h"
#include "wire.h"

#define PYTHON "/usr/bin/python3"
#define PEER_SCRIPT_NAME "oldmemo_peer.py"
#define OUR_JID "romeo@montague.lit"
#define PEER_JID "juliet@capulet.lit"

static char *peer_script;  /* absolute path of the peer script */
static char *peer_missing; /* why the peer cannot run here, or NULL */
/* A fresh peer made once: each test starts from a copy of its state, which
 * saves an interpreter start (most of a second) per test. */
static char *peer_template;
static uint32_t peer_template_device;

/*
 * A libpurple built with D-Bus (Debian's is) registers every xmlnode in its
 * D-Bus pointer map and complains about each one while the map does not
 * exist. Weak, so the test links against a libpurple without D-Bus as well.
 */
extern void purple_dbus_init_ids(void) __attribute__((weak));

typedef struct {
	char *dir;
	char *db_path;
	char *state; /* the peer's state directory */
	engine_t *engine;
	uint32_t our_device;
	uint32_t peer_device;
	char *our_bundle;  /* file: our bundle as we publish it */
	char *peer_bundle; /* file: the bundle the peer published */
	unsigned files;	   /* counter for message file names */
} interop;

/* --- locating and running the peer --- */

static bool file_exists(const char *path)
{
	return g_file_test(path, G_FILE_TEST_IS_REGULAR);
}

/* The script sits next to this source file. __FILE__ is relative when the
 * build runs from the source tree; otherwise walk up from the test binary
 * (build/<name>/test/) to the tree that holds test/oldmemo_peer.py. */
static char *find_peer_script(void)
{
	char *dir = g_path_get_dirname(__FILE__);
	char *path = g_build_filename(dir, PEER_SCRIPT_NAME, NULL);
	char *exe = NULL;

	g_free(dir);
	if (file_exists(path)) {
		if (!g_path_is_absolute(path)) {
			char *cwd = g_get_current_dir();
			char *abs = g_build_filename(cwd, path, NULL);

			g_free(cwd);
			g_free(path);
			path = abs;
		}
		return path;
	}
	g_free(path);
	path = NULL;

	exe = g_file_read_link("/proc/self/exe", NULL);
	if (!exe)
		return NULL;
	dir = g_path_get_dirname(exe);
	g_free(exe);
	while (strcmp(dir, "/") != 0 && strcmp(dir, ".") != 0) {
		char *parent = NULL;

		path = g_build_filename(dir, "test", PEER_SCRIPT_NAME, NULL);
		if (file_exists(path))
			break;
		g_free(path);
		path = NULL;
		parent = g_path_get_dirname(dir);
		g_free(dir);
		dir = parent;
	}
	g_free(dir);
	return path;
}

/* Run argv in cwd; *out and *err get the output (g_free). Returns the exit
 * status, or -1 when the program could not start or died of a signal. */
static int spawn(const char *cwd, char **argv, char **out, char **err)
{
	GError *gerr = NULL;
	int wait_status = 0;

	*out = NULL;
	*err = NULL;
	if (!g_spawn_sync(cwd, argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, out, err, &wait_status,
			  &gerr)) {
		*err = g_strdup(gerr->message);
		g_error_free(gerr);
		return -1;
	}
	if (!WIFEXITED(wait_status))
		return -1;
	return WEXITSTATUS(wait_status);
}

/* Run one peer command on the peer state `state`, in folder cwd:
 * "cmd arg... NULL". */
static int peer_run_in(const char *cwd, const char *state, char **out, char **err, const char *cmd,
		       va_list ap)
{
	GPtrArray *argv = g_ptr_array_new();
	const char *arg;
	int status;

	g_ptr_array_add(argv, (char *)PYTHON);
	g_ptr_array_add(argv, peer_script);
	g_ptr_array_add(argv, (char *)cmd);
	g_ptr_array_add(argv, (char *)state);
	while ((arg = va_arg(ap, const char *)) != NULL)
		g_ptr_array_add(argv, (char *)arg);
	g_ptr_array_add(argv, NULL);
	status = spawn(cwd, (char **)argv->pdata, out, err);
	g_ptr_array_free(argv, TRUE);
	return status;
}

/* Run one peer command on t's peer. */
static int peer_run(interop *t, char **out, char **err, const char *cmd, ...)
{
	va_list ap;
	int status;

	va_start(ap, cmd);
	status = peer_run_in(t->dir, t->state, out, err, cmd, ap);
	va_end(ap);
	return status;
}

static int peer_run_template(char **out, char **err, const char *cmd, ...)
{
	va_list ap;
	int status;

	va_start(ap, cmd);
	status = peer_run_in(peer_template, peer_template, out, err, cmd, ap);
	va_end(ap);
	return status;
}

/* Fail the test with the peer's own words unless it succeeded. */
static void assert_peer_ok(int status, const char *what, const char *err)
{
	if (status != 0)
		fail_msg("peer %s failed (status %d): %s", what, status, err ? err : "");
}

/* --- files and XML --- */

static char *write_text(interop *t, const char *stem, const char *text)
{
	char *name = g_strdup_printf("%02u-%s.xml", ++t->files, stem);
	char *path = g_build_filename(t->dir, name, NULL);

	g_free(name);
	assert_true(g_file_set_contents(path, text, -1, NULL));
	return path;
}

static char *write_node(interop *t, const char *stem, const xmlnode *node)
{
	char *xml = xmlnode_to_str(node, NULL);
	char *path;

	assert_non_null(xml);
	path = write_text(t, stem, xml);
	g_free(xml);
	return path;
}

static xmlnode *read_node(const char *path)
{
	char *text = NULL;
	xmlnode *node;

	assert_true(g_file_get_contents(path, &text, NULL, NULL));
	node = xmlnode_from_str(text, -1);
	g_free(text);
	assert_non_null(node);
	return node;
}

static void remove_tree(const char *path)
{
	GDir *dir;
	const char *name;

	if (!g_file_test(path, G_FILE_TEST_IS_DIR) || g_file_test(path, G_FILE_TEST_IS_SYMLINK)) {
		g_unlink(path);
		return;
	}
	dir = g_dir_open(path, 0, NULL);
	if (dir) {
		while ((name = g_dir_read_name(dir)) != NULL) {
			char *child = g_build_filename(path, name, NULL);

			remove_tree(child);
			g_free(child);
		}
		g_dir_close(dir);
	}
	g_rmdir(path);
}

/* Copy the folder tree src to dst (regular files and folders only). */
static void copy_tree(const char *src, const char *dst)
{
	GDir *dir = g_dir_open(src, 0, NULL);
	const char *name;

	assert_non_null(dir);
	assert_int_equal(g_mkdir_with_parents(dst, 0700), 0);
	while ((name = g_dir_read_name(dir)) != NULL) {
		char *from = g_build_filename(src, name, NULL);
		char *to = g_build_filename(dst, name, NULL);

		if (g_file_test(from, G_FILE_TEST_IS_DIR)) {
			copy_tree(from, to);
		} else {
			char *data = NULL;
			gsize len = 0;

			assert_true(g_file_get_contents(from, &data, &len, NULL));
			assert_true(g_file_set_contents(to, data, (gssize)len, NULL));
			g_free(data);
		}
		g_free(from);
		g_free(to);
	}
	g_dir_close(dir);
}

/* --- the two sides --- */

static void publish_our_bundle(interop *t)
{
	omemo_bundle bundle = { 0 };
	xmlnode *node;

	assert_int_equal(engine_get_bundle(t->engine, &bundle), 0);
	node = wire_build_bundle(&bundle);
	assert_non_null(node);
	g_free(t->our_bundle);
	t->our_bundle = write_node(t, "our-bundle", node);
	xmlnode_free(node);
	omemo_bundle_clear(&bundle);
}

static void load_peer_bundle(interop *t, omemo_bundle *out)
{
	xmlnode *node = read_node(t->peer_bundle);

	assert_int_equal(wire_parse_bundle(node, out), 0);
	xmlnode_free(node);
}

static void engine_restart(interop *t)
{
	engine_close(t->engine);
	t->engine = NULL;
	assert_int_equal(engine_open(t->db_path, OUR_JID, &t->engine), 0);
	assert_int_equal(engine_device_id(t->engine), t->our_device);
}

static void engine_start_session(interop *t)
{
	omemo_bundle bundle = { 0 };

	load_peer_bundle(t, &bundle);
	assert_int_equal(engine_build_session(t->engine, PEER_JID, t->peer_device, &bundle), 0);
	assert_true(engine_has_session(t->engine, PEER_JID, t->peer_device));
	omemo_bundle_clear(&bundle);
}

/* Encrypt text (NULL: key transport) for the peer's device; returns the file
 * holding the <encrypted> element. *prekey: was it a PreKeyWhisperMessage. */
static char *engine_send(interop *t, const char *text, bool *prekey)
{
	omemo_address rcpt = { PEER_JID, t->peer_device };
	engine_rcpt_status status = { .result = 1 };
	omemo_message msg = { 0 };
	xmlnode *node;
	char *path;

	assert_int_equal(engine_encrypt(t->engine, (const uint8_t *)text, text ? strlen(text) : 0,
					&rcpt, 1, &msg, &status),
			 0);
	assert_int_equal(status.result, 0);
	assert_int_equal(msg.sid, t->our_device);
	assert_int_equal(msg.n_keys, 1);
	assert_int_equal(msg.keys[0].rid, t->peer_device);
	assert_int_equal(msg.keys[0].prekey, status.prekey);
	if (text)
		assert_non_null(msg.payload);
	else
		assert_null(msg.payload);
	*prekey = status.prekey;
	node = wire_build_encrypted(&msg);
	assert_non_null(node);
	path = write_node(t, text ? "to-peer" : "to-peer-kt", node);
	xmlnode_free(node);
	omemo_message_clear(&msg);
	return path;
}

/* Parse and decrypt a file from the peer; *prekey_flag reports the wire's
 * prekey attribute on our key. */
static void engine_receive(interop *t, const char *path, engine_decrypted *d, bool *prekey_flag)
{
	xmlnode *node = read_node(path);
	omemo_message msg = { 0 };
	int ret;

	assert_int_equal(wire_parse_encrypted(node, &msg), 0);
	assert_int_equal(msg.sid, t->peer_device);
	*prekey_flag = false;
	for (size_t i = 0; i < msg.n_keys; i++)
		if (msg.keys[i].rid == t->our_device)
			*prekey_flag = msg.keys[i].prekey;
	ret = engine_decrypt(t->engine, PEER_JID, &msg, d);
	if (ret != 0)
		fail_msg("engine_decrypt of %s: %s (%d)", path, omemo_strerror(ret), ret);
	omemo_message_clear(&msg);
	xmlnode_free(node);
}

/* Receive a text message and check what it says and how it came. */
static void engine_expect_text(interop *t, const char *path, const char *text, bool prekey)
{
	engine_decrypted d = { 0 };
	bool flag;
	omemo_bundle bundle = { 0 };

	engine_receive(t, path, &d, &flag);
	assert_false(d.key_transport);
	assert_non_null(d.plaintext);
	assert_int_equal(d.len, strlen(text));
	assert_string_equal((const char *)d.plaintext, text);
	assert_int_equal(d.prekey, prekey);
	assert_int_equal(flag, prekey);
	load_peer_bundle(t, &bundle);
	assert_memory_equal(d.sender_ik, bundle.ik, OMEMO_PUBKEY_LEN);
	omemo_bundle_clear(&bundle);
	engine_decrypted_clear(&d);
}

/* The peer encrypts text for our device; bundle: whether it needs ours (no
 * session yet). Returns the file with its <encrypted> element. */
static char *peer_send(interop *t, const char *text, bool bundle)
{
	char *id = g_strdup_printf("%u", t->our_device);
	char *out = NULL, *err = NULL;
	char *path;
	int status;

	status = peer_run(t, &out, &err, "encrypt", OUR_JID, id, bundle ? t->our_bundle : "-", text,
			  NULL);
	assert_peer_ok(status, "encrypt", err);
	path = write_text(t, "from-peer", out);
	g_free(id);
	g_free(out);
	g_free(err);
	return path;
}

/* The peer decrypts a file from us; returns its stdout and, in *err, its
 * stderr. It always gets our bundle, which tells it our identity key the
 * first time. */
static char *peer_receive(interop *t, const char *path, char **err)
{
	char *id = g_strdup_printf("%u", t->our_device);
	char *out = NULL;
	int status;

	status = peer_run(t, &out, err, "decrypt", OUR_JID, id, path, t->our_bundle, NULL);
	assert_peer_ok(status, "decrypt", *err);
	g_free(id);
	return out;
}

static void peer_expect_text(interop *t, const char *path, const char *text)
{
	char *err = NULL;
	char *out = peer_receive(t, path, &err);

	assert_string_equal(out, text);
	g_free(out);
	g_free(err);
}

/* Messages the peer's library sent by itself, in order (1, 2, ...). */
static char *peer_outbox(interop *t, unsigned n)
{
	char *name = g_strdup_printf("%u.xml", n);
	char *path = g_build_filename(t->state, "outbox", name, NULL);

	g_free(name);
	return path;
}

/* --- fixtures --- */

static int group_setup(void **state)
{
	char *out = NULL, *err = NULL;
	int status;

	if (purple_dbus_init_ids)
		purple_dbus_init_ids();
	peer_script = find_peer_script();
	if (!peer_script) {
		print_error("cannot find test/%s\n", PEER_SCRIPT_NAME);
		return -1;
	}
	if (!file_exists(PYTHON)) {
		peer_missing = g_strdup(PYTHON " is not installed");
		return 0;
	}

	peer_template = g_dir_make_tmp("interop-peer-XXXXXX", NULL);
	if (!peer_template) {
		print_error("cannot make a temporary folder\n");
		return -1;
	}
	status = peer_run_template(&out, &err, "init", PEER_JID, NULL);
	if (status == 0) {
		peer_template_device = (uint32_t)g_ascii_strtoull(out, NULL, 10);
	} else if (err && (strstr(err, "ModuleNotFoundError") || strstr(err, "ImportError"))) {
		/* The one reason to skip: the Debian modules are not there. */
		peer_missing = g_strdup_printf(PYTHON " lacks python-omemo/oldmemo (python3-omemo, "
						      "python3-oldmemo, python3-xmlschema): %s",
					       err);
		status = 0;
	} else {
		print_error("peer init failed (status %d): %s\n", status, err ? err : "");
	}
	g_free(out);
	g_free(err);
	return status == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	if (peer_template && !g_getenv("INTEROP_KEEP"))
		remove_tree(peer_template);
	g_free(peer_template);
	g_free(peer_script);
	g_free(peer_missing);
	payload_crypto_shutdown();
	return 0;
}

static int setup(void **state)
{
	interop *t = g_new0(interop, 1);
	char *name = NULL;

	*state = t;
	if (peer_missing)
		return 0;
	t->dir = g_dir_make_tmp("interop-XXXXXX", NULL);
	assert_non_null(t->dir);
	t->db_path = g_build_filename(t->dir, "omemo.db", NULL);
	t->state = g_build_filename(t->dir, "peer", NULL);
	assert_int_equal(engine_open(t->db_path, OUR_JID, &t->engine), 0);
	t->our_device = engine_device_id(t->engine);
	publish_our_bundle(t);

	copy_tree(peer_template, t->state);
	t->peer_device = peer_template_device;
	assert_true(t->peer_device >= OMEMO_DEVICE_ID_MIN && t->peer_device <= OMEMO_DEVICE_ID_MAX);
	/* What the peer published on its stand-in for PEP: the same bytes its
	 * "bundle" command prints, without one more interpreter start. */
	name = g_strdup_printf("bundle-%u.xml", t->peer_device);
	t->peer_bundle = g_build_filename(t->state, "server", PEER_JID, name, NULL);
	assert_true(file_exists(t->peer_bundle));
	g_free(name);
	return 0;
}

static int teardown(void **state)
{
	interop *t = *state;

	if (t->engine)
		engine_close(t->engine);
	if (t->dir && !g_getenv("INTEROP_KEEP"))
		remove_tree(t->dir);
	g_free(t->dir);
	g_free(t->db_path);
	g_free(t->state);
	g_free(t->our_bundle);
	g_free(t->peer_bundle);
	g_free(t);
	return 0;
}

#define REQUIRE_PEER()                                                \
	do {                                                          \
		if (peer_missing) {                                   \
			print_message("skipped: %s\n", peer_missing); \
			skip();                                       \
		}                                                     \
	} while (0)

/* --- tests --- */

/* The peer's bundle, as its library serialised it, parses with our wire code
 * and is accepted by the engine (signature checked). */
static void test_peer_bundle_parses_and_builds_session(void **state)
{
	interop *t = *state;
	omemo_bundle bundle = { 0 };

	REQUIRE_PEER();
	load_peer_bundle(t, &bundle);
	assert_int_equal(bundle.ik[0], 0x05);
	assert_int_equal(bundle.spk[0], 0x05);
	assert_true(bundle.n_prekeys >= OMEMO_BUNDLE_MIN_PREKEYS);
	omemo_bundle_clear(&bundle);
	engine_start_session(t);
}

/* A tampered signed-prekey signature in the peer's bundle is refused. */
static void test_peer_bundle_with_bad_signature_is_refused(void **state)
{
	interop *t = *state;
	omemo_bundle bundle = { 0 };

	REQUIRE_PEER();
	load_peer_bundle(t, &bundle);
	bundle.spk_sig[10] ^= 0x01;
	assert_int_equal(engine_build_session(t->engine, PEER_JID, t->peer_device, &bundle),
			 OMEMO_ERR_BUNDLE_SIGNATURE);
	assert_false(engine_has_session(t->engine, PEER_JID, t->peer_device));
	omemo_bundle_clear(&bundle);
}

/* The peer fetches our bundle and starts the session; then the conversation
 * goes on both ways, including two messages in a row decrypted out of order. */
static void test_peer_starts_session_and_conversation_continues(void **state)
{
	interop *t = *state;
	char *m[8] = { 0 };
	bool prekey = true;

	REQUIRE_PEER();
	m[0] = peer_send(t, "Wherefore art thou Romeo?", true);
	engine_expect_text(t, m[0], "Wherefore art thou Romeo?", true);
	assert_true(engine_has_session(t->engine, PEER_JID, t->peer_device));

	m[1] = engine_send(t, "By a name I know not how to tell thee who I am.", &prekey);
	assert_false(prekey); /* we are the passive side: no prekey message */
	peer_expect_text(t, m[1], "By a name I know not how to tell thee who I am.");

	/* The peer has heard from us: its session is confirmed, no prekey flag. */
	m[2] = peer_send(t, "My ears have not yet drunk a hundred words", false);
	engine_expect_text(t, m[2], "My ears have not yet drunk a hundred words", false);
	m[3] = peer_send(t, "of thy tongue's uttering", false);
	engine_expect_text(t, m[3], "of thy tongue's uttering", false);

	m[4] = engine_send(t, "Neither, fair saint,", &prekey);
	assert_false(prekey);
	m[5] = engine_send(t, "if either thee dislike. \xc3\xa4\xc3\xb6\xc3\xbc \xe2\x9c\x93",
			   &prekey);
	assert_false(prekey);
	peer_expect_text(t, m[5], "if either thee dislike. \xc3\xa4\xc3\xb6\xc3\xbc \xe2\x9c\x93");
	peer_expect_text(t, m[4], "Neither, fair saint,");

	m[6] = peer_send(t, "How camest thou hither?", false);
	engine_expect_text(t, m[6], "How camest thou hither?", false);

	/* Nothing made the peer's library send anything on its own. */
	m[7] = peer_outbox(t, 1);
	assert_false(file_exists(m[7]));
	for (size_t i = 0; i < G_N_ELEMENTS(m); i++)
		g_free(m[i]);
}

/* We build the session from the peer's bundle; the peer decrypts our prekey
 * message, completes the session with an empty message of its own (which we
 * take as key transport), and answers. */
static void test_engine_starts_session_and_peer_answers(void **state)
{
	interop *t = *state;
	char *m[5] = { 0 };
	engine_decrypted d = { 0 };
	bool prekey = false;
	bool flag = true;

	REQUIRE_PEER();
	engine_start_session(t);
	m[0] = engine_send(t, "But soft, what light through yonder window breaks?", &prekey);
	assert_true(prekey);
	peer_expect_text(t, m[0], "But soft, what light through yonder window breaks?");

	m[1] = peer_outbox(t, 1);
	assert_true(file_exists(m[1]));
	engine_receive(t, m[1], &d, &flag);
	assert_true(d.key_transport);
	assert_null(d.plaintext);
	assert_false(d.prekey);
	assert_false(flag);
	engine_decrypted_clear(&d);

	m[2] = peer_send(t, "Ay me!", false);
	engine_expect_text(t, m[2], "Ay me!", false);

	/* The peer has answered: our session is acknowledged, no more prekey. */
	m[3] = engine_send(t, "She speaks.", &prekey);
	assert_false(prekey);
	peer_expect_text(t, m[3], "She speaks.");

	m[4] = peer_outbox(t, 2);
	assert_false(file_exists(m[4]));
	for (size_t i = 0; i < G_N_ELEMENTS(m); i++)
		g_free(m[i]);
}

/* Restarts of our side (close and reopen the same database) between every
 * step of a session we start: the ratchet state is on disk. */
static void test_engine_restart_between_messages_we_start(void **state)
{
	interop *t = *state;
	char *m[4] = { 0 };
	bool prekey = false;

	REQUIRE_PEER();
	engine_start_session(t);
	m[0] = engine_send(t, "first, before the restart", &prekey);
	assert_true(prekey);
	engine_restart(t);
	assert_true(engine_has_session(t->engine, PEER_JID, t->peer_device));
	/* Not acknowledged yet: still a prekey message, after the restart too. */
	m[1] = engine_send(t, "second, after the restart", &prekey);
	assert_true(prekey);
	peer_expect_text(t, m[0], "first, before the restart");
	peer_expect_text(t, m[1], "second, after the restart");

	m[2] = peer_send(t, "answer to both", false);
	engine_restart(t);
	engine_expect_text(t, m[2], "answer to both", false);
	engine_restart(t);
	m[3] = engine_send(t, "third, after two more restarts", &prekey);
	assert_false(prekey);
	peer_expect_text(t, m[3], "third, after two more restarts");
	for (size_t i = 0; i < G_N_ELEMENTS(m); i++)
		g_free(m[i]);
}

/* A restart right after the peer's prekey message: the session it built is
 * on disk and our answer decrypts on the peer's side. */
static void test_engine_restart_after_peer_prekey_message(void **state)
{
	interop *t = *state;
	char *m[3] = { 0 };
	bool prekey = true;

	REQUIRE_PEER();
	m[0] = peer_send(t, "hello before your restart", true);
	engine_expect_text(t, m[0], "hello before your restart", true);
	engine_restart(t);
	m[1] = engine_send(t, "answer after my restart", &prekey);
	assert_false(prekey);
	peer_expect_text(t, m[1], "answer after my restart");
	m[2] = peer_send(t, "and on we go", false);
	engine_expect_text(t, m[2], "and on we go", false);
	for (size_t i = 0; i < G_N_ELEMENTS(m); i++)
		g_free(m[i]);
}

/* What Conversations does after a prekey message, and what we do too: answer
 * with a key-transport message. The peer accepts it silently, and it
 * confirms the peer's session: its next message carries no prekey flag. */
static void test_key_transport_answering_peer_prekey_message_is_accepted(void **state)
{
	interop *t = *state;
	char *m[3] = { 0 };
	char *out = NULL, *err = NULL;
	bool prekey = true;

	REQUIRE_PEER();
	m[0] = peer_send(t, "are you there?", true);
	engine_expect_text(t, m[0], "are you there?", true);

	m[1] = engine_send(t, NULL, &prekey);
	assert_false(prekey);
	out = peer_receive(t, m[1], &err);
	assert_string_equal(out, "");
	assert_non_null(strstr(err, "empty message"));

	m[2] = peer_send(t, "session confirmed", false);
	engine_expect_text(t, m[2], "session confirmed", false);
	g_free(out);
	g_free(err);
	for (size_t i = 0; i < G_N_ELEMENTS(m); i++)
		g_free(m[i]);
}

/* A key-transport message can also be the prekey message that starts the
 * session; the peer builds its session from it and answers normally. */
static void test_key_transport_starting_session_is_accepted(void **state)
{
	interop *t = *state;
	char *m[3] = { 0 };
	char *out = NULL, *err = NULL;
	bool prekey = false;

	REQUIRE_PEER();
	engine_start_session(t);
	m[0] = engine_send(t, NULL, &prekey);
	assert_true(prekey);
	out = peer_receive(t, m[0], &err);
	assert_string_equal(out, "");
	assert_non_null(strstr(err, "empty message"));

	m[1] = peer_send(t, "I got your keys", false);
	engine_expect_text(t, m[1], "I got your keys", false);
	m[2] = engine_send(t, "and now words", &prekey);
	assert_false(prekey);
	peer_expect_text(t, m[2], "and now words");
	g_free(out);
	g_free(err);
	for (size_t i = 0; i < G_N_ELEMENTS(m); i++)
		g_free(m[i]);
}

/* A message the engine already decrypted is refused the second time and the
 * session carries on; likewise the peer refuses a replay of ours. */
static void test_replayed_messages_are_refused_on_both_sides(void **state)
{
	interop *t = *state;
	char *m[3] = { 0 };
	char *out = NULL, *err = NULL;
	engine_decrypted d = { 0 };
	xmlnode *node = NULL;
	omemo_message msg = { 0 };
	bool prekey;

	REQUIRE_PEER();
	m[0] = peer_send(t, "once", true);
	engine_expect_text(t, m[0], "once", true);
	/* It has not heard from us: still a prekey message. */
	m[1] = peer_send(t, "twice", false);
	engine_expect_text(t, m[1], "twice", true);

	node = read_node(m[1]);
	assert_int_equal(wire_parse_encrypted(node, &msg), 0);
	assert_int_equal(engine_decrypt(t->engine, PEER_JID, &msg, &d), OMEMO_ERR_DUPLICATE);
	assert_null(d.plaintext);
	omemo_message_clear(&msg);
	xmlnode_free(node);

	m[2] = engine_send(t, "only once", &prekey);
	peer_expect_text(t, m[2], "only once");
	{
		char *id = g_strdup_printf("%u", t->our_device);
		int status = peer_run(t, &out, &err, "decrypt", OUR_JID, id, m[2], NULL);

		assert_int_not_equal(status, 0);
		assert_non_null(strstr(err, "error:"));
		g_free(id);
	}
	for (size_t i = 0; i < G_N_ELEMENTS(m); i++)
		g_free(m[i]);
	g_free(out);
	g_free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_peer_bundle_parses_and_builds_session, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_peer_bundle_with_bad_signature_is_refused,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_peer_starts_session_and_conversation_continues,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_engine_starts_session_and_peer_answers, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_engine_restart_between_messages_we_start,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_engine_restart_after_peer_prekey_message,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_key_transport_answering_peer_prekey_message_is_accepted, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_key_transport_starting_session_is_accepted,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_replayed_messages_are_refused_on_both_sides,
						setup, teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
