/*
 * Fuzz target for the receiving path: a fuzzed <encrypted> element from a
 * peer we share a real session with goes through wire_parse_encrypted() and
 * engine_decrypt(). It must never crash and must end in a clean error code
 * (nothing is committed on failure, so the engine stays the same between
 * inputs).
 *
 * The engines are built once, in a temporary directory: "bob" is the one
 * under test, "alice" built a session with bob's bundle and sent him one
 * message, so bob holds a session for alice's device. Every <key rid> of the
 * input is pointed at bob and the sid at alice: otherwise nearly every input
 * would stop at "not for us" before reaching the Signal library.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "engine.h"
#include "err.h"
#include "wire.h"
#include "fuzz_common.h"

#define BOB_JID "bob@example.org"
#define ALICE_JID "alice@example.org"

static engine_t *bob, *alice;
static char *tmp_dir;

static void remove_tmp_dir(void)
{
	GDir *dir;
	const char *name;

	engine_close(bob);
	engine_close(alice);
	if (!tmp_dir)
		return;
	dir = g_dir_open(tmp_dir, 0, NULL);
	while (dir && (name = g_dir_read_name(dir))) {
		char *path = g_build_filename(tmp_dir, name, NULL);

		g_unlink(path);
		g_free(path);
	}
	if (dir)
		g_dir_close(dir);
	g_rmdir(tmp_dir);
	g_free(tmp_dir);
}

static void die(const char *what, int ret)
{
	fprintf(stderr, "fuzz_incoming: %s: %s (%d)\n", what, omemo_strerror(ret), ret);
	abort();
}

/* alice -> bob, one message, so bob holds a session with alice's device. */
static void fuzz_setup_session(void)
{
	omemo_bundle bundle = { 0 };
	omemo_message msg = { 0 };
	engine_decrypted dec = { 0 };
	omemo_address to = { BOB_JID, engine_device_id(bob) };
	static const uint8_t hello[] = "hello";
	int ret;

	ret = engine_get_bundle(bob, &bundle);
	if (ret < 0)
		die("bob's bundle", ret);
	ret = engine_build_session(alice, BOB_JID, engine_device_id(bob), &bundle);
	if (ret < 0)
		die("alice's session", ret);
	ret = engine_encrypt(alice, hello, sizeof(hello) - 1, &to, 1, &msg, NULL);
	if (ret < 0)
		die("alice's message", ret);
	ret = engine_decrypt(bob, ALICE_JID, &msg, &dec);
	if (ret < 0)
		die("bob's first decrypt", ret);
	engine_decrypted_clear(&dec);
	omemo_message_clear(&msg);
	omemo_bundle_clear(&bundle);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char *path;
	int ret;

	(void)argc;
	(void)argv;
	fuzz_purple_init();
	tmp_dir = g_dir_make_tmp("omemo-fuzz-XXXXXX", NULL);
	if (!tmp_dir)
		die("temporary directory", OMEMO_ERR_STORE_OPEN);
	atexit(remove_tmp_dir);

	path = g_build_filename(tmp_dir, "bob.db", NULL);
	ret = engine_open(path, BOB_JID, &bob);
	g_free(path);
	if (ret < 0)
		die("bob's engine", ret);
	path = g_build_filename(tmp_dir, "alice.db", NULL);
	ret = engine_open(path, ALICE_JID, &alice);
	g_free(path);
	if (ret < 0)
		die("alice's engine", ret);
	fuzz_setup_session();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	omemo_message msg = { 0 };
	engine_decrypted dec = { 0 };
	xmlnode *root, *encrypted;
	int ret;

	root = fuzz_xml_parse(data, size);
	if (!root)
		return 0;
	encrypted = root;
	if (g_strcmp0(root->name, "message") == 0)
		encrypted = xmlnode_get_child_with_namespace(root, "encrypted", OMEMO_NS_LEGACY);
	if (wire_parse_encrypted(encrypted, &msg) == 0) {
		msg.sid = engine_device_id(alice);
		for (size_t i = 0; i < msg.n_keys; i++)
			msg.keys[i].rid = engine_device_id(bob);
		ret = engine_decrypt(bob, ALICE_JID, &msg, &dec);
		/* an error is one of ours or the Signal library's, never garbage */
		FUZZ_CHECK(ret <= 0 && ret > OMEMO_ERR_END);
		if (ret == 0) {
			FUZZ_CHECK(dec.key_transport == (msg.payload == NULL));
			FUZZ_CHECK(dec.key_transport || dec.plaintext != NULL);
		} else {
			FUZZ_CHECK(dec.plaintext == NULL && dec.len == 0);
		}
		engine_decrypted_clear(&dec);
	}
	omemo_message_clear(&msg);
	xmlnode_free(root);
	return 0;
}
