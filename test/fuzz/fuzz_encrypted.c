/*
 * Fuzz target for the <encrypted> parser: any bytes, read as XML, go through
 * wire_parse_encrypted(); whatever it accepts must survive being built
 * again (as a tree, and as text parsed once more) unchanged, and must keep
 * within the limits the engine relies on.
 */
#include <stdint.h>
#include <string.h>

#include "err.h"
#include "wire.h"
#include "fuzz_common.h"

static int bytes_equal(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
	if (a_len != b_len || (a == NULL) != (b == NULL))
		return 0;
	return a_len == 0 || memcmp(a, b, a_len) == 0;
}

static int message_equal(const omemo_message *a, const omemo_message *b)
{
	if (a->sid != b->sid || a->n_keys != b->n_keys ||
	    !bytes_equal(a->iv, a->iv_len, b->iv, b->iv_len) ||
	    !bytes_equal(a->payload, a->payload_len, b->payload, b->payload_len))
		return 0;
	for (size_t i = 0; i < a->n_keys; i++) {
		if (a->keys[i].rid != b->keys[i].rid || a->keys[i].prekey != b->keys[i].prekey ||
		    !bytes_equal(a->keys[i].data, a->keys[i].len, b->keys[i].data, b->keys[i].len))
			return 0;
	}
	return 1;
}

static void check_limits(const omemo_message *msg)
{
	FUZZ_CHECK(msg->sid >= OMEMO_DEVICE_ID_MIN && msg->sid <= OMEMO_DEVICE_ID_MAX);
	FUZZ_CHECK(msg->n_keys >= 1 && msg->n_keys <= OMEMO_MESSAGE_MAX_KEYS && msg->keys);
	FUZZ_CHECK(msg->iv && msg->iv_len >= 1);
	FUZZ_CHECK(msg->payload_len <= OMEMO_PAYLOAD_MAX);
	FUZZ_CHECK(msg->payload == NULL || msg->payload_len > 0);
	for (size_t i = 0; i < msg->n_keys; i++) {
		FUZZ_CHECK(msg->keys[i].rid >= OMEMO_DEVICE_ID_MIN &&
		           msg->keys[i].rid <= OMEMO_DEVICE_ID_MAX);
		FUZZ_CHECK(msg->keys[i].data && msg->keys[i].len >= 1 &&
		           msg->keys[i].len <= OMEMO_KEY_MAX);
	}
}

static void check_round_trip(const omemo_message *msg)
{
	omemo_message again = { 0 };
	xmlnode *built = wire_build_encrypted(msg), *text = NULL;

	FUZZ_CHECK(built != NULL);
	FUZZ_CHECK(wire_parse_encrypted(built, &again) == 0);
	FUZZ_CHECK(message_equal(msg, &again));
	omemo_message_clear(&again);

	text = fuzz_xml_reparse(built);
	FUZZ_CHECK(text != NULL);
	FUZZ_CHECK(wire_parse_encrypted(text, &again) == 0);
	FUZZ_CHECK(message_equal(msg, &again));
	omemo_message_clear(&again);
	xmlnode_free(text);
	xmlnode_free(built);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	omemo_message msg = { 0 };
	xmlnode *root, *encrypted;
	int ret;

	fuzz_purple_init();
	root = fuzz_xml_parse(data, size);
	if (!root)
		return 0;
	/* a whole <message> stanza is fine too: take its <encrypted> child */
	encrypted = root;
	if (g_strcmp0(root->name, "message") == 0)
		encrypted = xmlnode_get_child_with_namespace(root, "encrypted", OMEMO_NS_LEGACY);
	ret = wire_parse_encrypted(encrypted, &msg);
	if (ret == 0) {
		check_limits(&msg);
		check_round_trip(&msg);
	} else {
		FUZZ_CHECK(ret < 0 && msg.keys == NULL && msg.n_keys == 0 && msg.iv == NULL &&
		           msg.payload == NULL);
	}
	omemo_message_clear(&msg);
	xmlnode_free(root);
	return 0;
}
