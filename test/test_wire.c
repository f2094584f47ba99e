/*
 * Tests for wire.c: stanzas in the shapes deployed clients send (from
 * test/data/wire), build/parse round trips, a table of malformed input with
 * the exact error each must give, and the size limits. Decoded bytes are
 * checked against GLib's own base64 decoder, not against ours.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>
#include <xmlnode.h>

#include "err.h"
#include "wire.h"

#define NS "xmlns='" OMEMO_NS_LEGACY "'"

/*
 * A libpurple built with D-Bus (Debian's is) registers every xmlnode in its
 * D-Bus pointer map and warns on each node while the map does not exist.
 * Weak, so the test still links against a libpurple without D-Bus.
 */
extern void purple_dbus_init_ids(void) __attribute__((weak));

static int group_setup(void **state)
{
	(void)state;
	if (purple_dbus_init_ids)
		purple_dbus_init_ids();
	return 0;
}

/* ---- helpers -------------------------------------------------------- */

/*
 * The sample folder: $OMEMO_TEST_DATA_DIR/wire (the test/data folder) if set,
 * else next to this source file, else found by walking up from the program
 * (build/.../test/test_wire), so the test runs from any working directory.
 */
static char *data_dir(void)
{
	const char *env = g_getenv("OMEMO_TEST_DATA_DIR");
	char *dir, *path, *exe;

	if (env)
		return g_build_filename(env, "wire", NULL);
	dir = g_path_get_dirname(__FILE__);
	path = g_build_filename(dir, "data", "wire", NULL);
	g_free(dir);
	if (g_file_test(path, G_FILE_TEST_IS_DIR))
		return path;
	g_free(path);

	exe = g_file_read_link("/proc/self/exe", NULL);
	dir = exe ? g_path_get_dirname(exe) : g_strdup(".");
	g_free(exe);
	for (int up = 0; up < 6; up++) {
		char *parent = g_path_get_dirname(dir);

		path = g_build_filename(dir, "test", "data", "wire", NULL);
		if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
			g_free(parent);
			g_free(dir);
			return path;
		}
		g_free(path);
		g_free(dir);
		dir = parent;
	}
	g_free(dir);
	return g_strdup("test/data/wire");
}

static xmlnode *load_xml(const char *name)
{
	char *dir = data_dir(), *path = g_build_filename(dir, name, NULL), *text = NULL;
	gsize len = 0;
	xmlnode *node = NULL;

	if (g_file_get_contents(path, &text, &len, NULL))
		node = xmlnode_from_str(text, (gssize)len);
	if (!node)
		print_error(
			"%s: unreadable or not well-formed (set OMEMO_TEST_DATA_DIR to test/data)\n",
			path);
	g_free(text);
	g_free(path);
	g_free(dir);
	assert_non_null(node);
	return node;
}

static xmlnode *xml(const char *text)
{
	xmlnode *node = xmlnode_from_str(text, -1);

	if (!node)
		fail_msg("test XML is not well-formed: %.200s", text);
	return node;
}

/* The way a peer would see our tree: serialised and parsed again. */
static xmlnode *reparse(const xmlnode *node)
{
	char *text = xmlnode_to_str(node, NULL);
	xmlnode *copy = xml(text);

	g_free(text);
	return copy;
}

/* Children named `name` in the legacy namespace, as the test sees them. */
static xmlnode *legacy_child(const xmlnode *parent, const char *name, xmlnode *after)
{
	for (xmlnode *c = after ? after->next : parent->child; c; c = c->next) {
		if (c->type == XMLNODE_TYPE_TAG && strcmp(c->name, name) == 0 &&
		    g_strcmp0(c->xmlns, OMEMO_NS_LEGACY) == 0)
			return c;
	}
	return NULL;
}

/* The independent oracle: GLib's decoder (it skips line breaks itself). */
static void assert_text_decodes_to(const xmlnode *node, const uint8_t *data, size_t len)
{
	char *text = xmlnode_get_data(node);
	gsize want_len = 0;
	guchar *want;

	assert_non_null(text);
	want = g_base64_decode(text, &want_len);
	assert_int_equal(want_len, len);
	assert_memory_equal(want, data, len);
	g_free(want);
	g_free(text);
}

static bool all_zero(const void *p, size_t len)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < len; i++) {
		if (b[i])
			return false;
	}
	return true;
}

static void fill_random(GRand *rand, uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)g_rand_int_range(rand, 0, 256);
}

static char *b64_of_len(size_t len, uint8_t first)
{
	uint8_t *buf = g_malloc0(len ? len : 1);
	char *text;

	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(i * 7 + 3);
	if (len)
		buf[0] = first;
	text = g_base64_encode(buf, len);
	g_free(buf);
	return text;
}

/* ---- real-world messages -------------------------------------------- */

struct message_sample {
	const char *file;
	uint32_t sid;
	size_t n_keys;
	uint32_t rid[4];
	bool prekey[4];
	size_t iv_len;
	size_t payload_len; /* 0: key transport, no <payload> */
};

static void check_message_sample(const struct message_sample *s)
{
	xmlnode *msg = load_xml(s->file);
	xmlnode *enc, *header, *key = NULL;
	omemo_message m;

	/* the whole <message> stanza: <encrypted> is one child among hints, EME, body */
	assert_string_equal(msg->name, "message");
	enc = xmlnode_get_child_with_namespace(msg, "encrypted", OMEMO_NS_LEGACY);
	assert_non_null(enc);
	assert_int_equal(wire_parse_encrypted(enc, &m), OMEMO_OK);

	assert_int_equal(m.sid, s->sid);
	assert_int_equal(m.n_keys, s->n_keys);
	header = legacy_child(enc, "header", NULL);
	for (size_t i = 0; i < s->n_keys; i++) {
		key = legacy_child(header, "key", key);
		assert_non_null(key);
		assert_int_equal(m.keys[i].rid, s->rid[i]);
		assert_int_equal(m.keys[i].prekey, s->prekey[i]);
		/* a serialized (PreKey)WhisperMessage starts with its version byte */
		assert_int_equal(m.keys[i].data[0], 0x33);
		assert_text_decodes_to(key, m.keys[i].data, m.keys[i].len);
	}
	assert_null(legacy_child(header, "key", key));

	assert_int_equal(m.iv_len, s->iv_len);
	assert_text_decodes_to(legacy_child(header, "iv", NULL), m.iv, m.iv_len);
	if (s->payload_len) {
		assert_int_equal(m.payload_len, s->payload_len);
		assert_text_decodes_to(legacy_child(enc, "payload", NULL), m.payload,
				       m.payload_len);
	} else {
		assert_null(m.payload);
		assert_int_equal(m.payload_len, 0);
	}
	omemo_message_clear(&m);
	xmlnode_free(msg);
}

static void test_parse_conversations_message(void **state)
{
	static const struct message_sample s = {
		"message_conversations.xml", 347131284, 3,  { 180848874, 243693986, 181474403 },
		{ true, false, false },	     12,	37,
	};
	(void)state;
	check_message_sample(&s);
}

static void test_parse_dino_message_with_iv_before_keys(void **state)
{
	static const struct message_sample s = {
		"message_dino.xml", 1876473071, 2, { 1385386491, 634000276 },
		{ false, true },    12,		5,
	};
	(void)state;
	check_message_sample(&s);
}

static void test_parse_gajim_message(void **state)
{
	static const struct message_sample s = {
		"message_gajim.xml",
		951728842,
		4,
		{ 441960641, 629229000, 1152826007, 561734164 },
		{ false, false, true, false },
		12,
		120,
	};
	(void)state;
	check_message_sample(&s);
}

static void test_parse_python_oldmemo_message(void **state)
{
	static const struct message_sample s = {
		"message_oldmemo.xml", 1081763886, 2,  { 841369052, 1728068375 },
		{ true, false },       12,	   64,
	};
	(void)state;
	check_message_sample(&s);
}

static void test_parse_lurch_message_without_prekey_attribute(void **state)
{
	static const struct message_sample s = {
		"message_lurch.xml", 347813525, 2,  { 1097067947, 1825784297 },
		{ false, false },    12,	11,
	};
	(void)state;
	check_message_sample(&s);
}

static void test_parse_message_with_16_byte_iv(void **state)
{
	static const struct message_sample s = {
		"message_iv16.xml", 1101981247, 1, { 1522235620 }, { false }, 16, 23,
	};
	(void)state;
	check_message_sample(&s);
}

static void test_parse_message_with_numeric_prekey_booleans(void **state)
{
	static const struct message_sample s = {
		"message_prekey_numeric.xml", 736387927, 3,  { 1664386854, 1221635453, 600513386 },
		{ true, false, false },	      12,	 16,
	};
	(void)state;
	check_message_sample(&s);
}

static void test_parse_message_keeps_both_keys_for_same_rid(void **state)
{
	static const struct message_sample s = {
		"message_same_rid_twice.xml", 1082440481, 3, { 1691263647, 230472330, 1691263647 },
		{ false, false, true },	      12,	  9,
	};
	(void)state;
	check_message_sample(&s);
}

static void test_parse_message_ignores_unknown_children_and_attributes(void **state)
{
	static const struct message_sample s = {
		"message_unknown_extras.xml",
		1977167327,
		2,
		{ 1341556577, 885312469 },
		{ false, true },
		12,
		42,
	};
	(void)state;
	check_message_sample(&s);
}

static void test_parse_message_with_line_wrapped_base64(void **state)
{
	static const struct message_sample s = {
		"message_wrapped_base64.xml",
		765191365,
		2,
		{ 1312767299, 1815218417 },
		{ true, false },
		12,
		300,
	};
	(void)state;
	check_message_sample(&s);
}

static void test_parse_key_transport_message_without_payload(void **state)
{
	static const struct message_sample s = {
		"message_key_transport.xml", 2026492338, 1, { 567088929 }, { false }, 12, 0,
	};
	(void)state;
	check_message_sample(&s);
}

static void test_parse_encrypted_with_prefixed_names(void **state)
{
	xmlnode *msg = xml(
		"<message xmlns='jabber:client'><o:encrypted xmlns:o='" OMEMO_NS_LEGACY "'>"
		"<o:header sid='7'><o:key rid='8'>Mw==</o:key><o:iv>AAECAwQFBgcICQoL</o:iv></o:header>"
		"<o:payload>aGk=</o:payload></o:encrypted></message>");
	omemo_message m;

	(void)state;
	assert_int_equal(wire_parse_encrypted(xmlnode_get_child(msg, "encrypted"), &m), OMEMO_OK);
	assert_int_equal(m.sid, 7);
	assert_int_equal(m.n_keys, 1);
	assert_int_equal(m.keys[0].rid, 8);
	assert_int_equal(m.payload_len, 2);
	assert_memory_equal(m.payload, "hi", 2);
	omemo_message_clear(&m);
	xmlnode_free(msg);
}

/* ---- base64 forms the decoder must accept --------------------------- */

static void test_parse_accepts_every_valid_base64_form(void **state)
{
	static const struct {
		const char *text;
		const char *bytes;
	} rows[] = {
		{ "QQ==", "A" },
		{ "QQ", "A" },
		{ "QUI=", "AB" },
		{ "QUI", "AB" },
		{ "QUJD", "ABC" },
		{ " Q U J D \n", "ABC" },
		{ "QU\r\nJD\tRA==", "ABCD" },
		{ "QUJDRA", "ABCD" },
		{ "QUJD&#10;REU=", "ABCDE" },
		{ "QQ =\n=", "A" },
		{ "+/+/", "\xfb\xff\xbf" },
	};

	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(rows); i++) {
		char *text =
			g_strdup_printf("<encrypted " NS "><header sid='1'><key rid='2'>Mw==</key>"
					"<iv>%s</iv></header></encrypted>",
					rows[i].text);
		xmlnode *node = xml(text);
		omemo_message m;
		int ret = wire_parse_encrypted(node, &m);

		if (ret != OMEMO_OK)
			fail_msg("'%s' refused: %s", rows[i].text, omemo_strerror(ret));
		assert_int_equal(m.iv_len, strlen(rows[i].bytes));
		assert_memory_equal(m.iv, rows[i].bytes, m.iv_len);
		omemo_message_clear(&m);
		xmlnode_free(node);
		g_free(text);
	}
}

/* ---- real-world device lists ---------------------------------------- */

static void check_devicelist_sample(const char *file, const char *path, const uint32_t *ids,
				    size_t n)
{
	xmlnode *stanza = load_xml(file);
	xmlnode *items = xmlnode_get_child(stanza, path);
	omemo_devicelist list;

	assert_non_null(items);
	assert_int_equal(wire_parse_devicelist(wire_find_item_payload(items, "list"), &list),
			 OMEMO_OK);
	assert_int_equal(list.n_ids, n);
	assert_memory_equal(list.ids, ids, n * sizeof(*ids));
	omemo_devicelist_clear(&list);
	xmlnode_free(stanza);
}

static void test_parse_devicelist_event_from_conversations(void **state)
{
	static const uint32_t ids[] = { 23202818, 228231203, 1680650039 };

	(void)state;
	check_devicelist_sample("devicelist_conversations.xml", "event/items", ids,
				G_N_ELEMENTS(ids));
}

static void test_parse_devicelist_ignores_labels_and_keeps_duplicates_once(void **state)
{
	static const uint32_t ids[] = { 713219053, 858188674, 1248197094, 1570104703 };

	(void)state;
	check_devicelist_sample("devicelist_labels.xml", "pubsub/items", ids, G_N_ELEMENTS(ids));
}

static void test_parse_devicelist_from_dino(void **state)
{
	static const uint32_t ids[] = { 1955862357, 1941254898 };

	(void)state;
	check_devicelist_sample("devicelist_dino.xml", "pubsub/items", ids, G_N_ELEMENTS(ids));
}

static void test_parse_empty_devicelist_is_valid(void **state)
{
	xmlnode *node = xml("<list " NS "/>");
	omemo_devicelist list = { .ids = (uint32_t *)1, .n_ids = 5 };

	(void)state;
	assert_int_equal(wire_parse_devicelist(node, &list), OMEMO_OK);
	assert_int_equal(list.n_ids, 0);
	assert_null(list.ids);
	xmlnode_free(node);
}

/* ---- real-world bundles --------------------------------------------- */

static void check_bundle_sample(const char *file, const char *path, uint32_t spk_id, size_t n,
				uint32_t first_id, uint32_t last_id)
{
	xmlnode *stanza = load_xml(file);
	xmlnode *items = xmlnode_get_child(stanza, path);
	xmlnode *node, *prekeys, *pk = NULL;
	omemo_bundle b;

	assert_non_null(items);
	node = wire_find_item_payload(items, "bundle");
	assert_non_null(node);
	assert_int_equal(wire_parse_bundle(node, &b), OMEMO_OK);

	assert_int_equal(b.spk_id, spk_id);
	assert_int_equal(b.spk[0], 0x05);
	assert_int_equal(b.ik[0], 0x05);
	assert_text_decodes_to(legacy_child(node, "signedPreKeyPublic", NULL), b.spk,
			       sizeof(b.spk));
	assert_text_decodes_to(legacy_child(node, "signedPreKeySignature", NULL), b.spk_sig,
			       sizeof(b.spk_sig));
	assert_text_decodes_to(legacy_child(node, "identityKey", NULL), b.ik, sizeof(b.ik));

	assert_int_equal(b.n_prekeys, n);
	assert_int_equal(b.prekeys[0].id, first_id);
	assert_int_equal(b.prekeys[n - 1].id, last_id);
	prekeys = legacy_child(node, "prekeys", NULL);
	for (size_t i = 0; i < n; i++) {
		pk = legacy_child(prekeys, "preKeyPublic", pk);
		assert_non_null(pk);
		assert_int_equal(b.prekeys[i].key[0], 0x05);
		assert_text_decodes_to(pk, b.prekeys[i].key, sizeof(b.prekeys[i].key));
	}
	omemo_bundle_clear(&b);
	xmlnode_free(stanza);
}

static void test_parse_bundle_from_conversations(void **state)
{
	(void)state;
	check_bundle_sample("bundle_conversations.xml", "pubsub/items", 0, 100, 1, 100);
}

static void test_parse_bundle_from_dino_item_1_in_any_order(void **state)
{
	(void)state;
	check_bundle_sample("bundle_dino.xml", "pubsub/items", 4, 100, 8201, 8300);
}

static void test_parse_bundle_with_wrapped_base64_and_extensions(void **state)
{
	(void)state;
	check_bundle_sample("bundle_wrapped.xml", "event/items", 4294967295u, 20, 500, 519);
}

/* ---- wire_find_item_payload ----------------------------------------- */

static void test_find_item_payload_any_item_id_and_only_our_namespace(void **state)
{
	xmlnode *items = xml("<items xmlns='http://jabber.org/protocol/pubsub' node='n'>"
			     "<retract id='old'/>"
			     "<item id='x'><list xmlns='urn:xmpp:omemo:2'/><other " NS "/></item>"
			     "<item id='1'><list " NS "><device id='5'/></list></item></items>");
	xmlnode *found;

	(void)state;
	found = wire_find_item_payload(items, "list");
	assert_non_null(found);
	assert_string_equal(found->name, "list");
	assert_string_equal(xmlnode_get_attrib(found->parent, "id"), "1");
	assert_ptr_equal(wire_find_item_payload(items, "other"),
			 legacy_child(xmlnode_get_child(items, "item"), "other", NULL));
	assert_null(wire_find_item_payload(items, "bundle"));
	assert_null(wire_find_item_payload(NULL, "list"));
	assert_null(wire_find_item_payload(items, NULL));
	xmlnode_free(items);
}

static void test_find_item_payload_absent_gives_null(void **state)
{
	xmlnode *empty = xml("<items xmlns='http://jabber.org/protocol/pubsub' node='n'/>");
	xmlnode *retract = xml(
		"<items xmlns='http://jabber.org/protocol/pubsub#event' node='n'><retract id='current'/></items>");
	xmlnode *omemo2 = xml(
		"<items xmlns='http://jabber.org/protocol/pubsub' node='n'><item id='current'>"
		"<devices xmlns='urn:xmpp:omemo:2'/><list xmlns='urn:xmpp:omemo:2'/></item></items>");
	omemo_devicelist list;

	(void)state;
	assert_null(wire_find_item_payload(empty, "list"));
	assert_null(wire_find_item_payload(retract, "list"));
	assert_null(wire_find_item_payload(omemo2, "list"));
	/* what a caller gets when it chains the two on a node without our payload */
	assert_int_equal(wire_parse_devicelist(wire_find_item_payload(omemo2, "list"), &list),
			 OMEMO_ERR_WIRE_ELEMENT);
	xmlnode_free(empty);
	xmlnode_free(retract);
	xmlnode_free(omemo2);
}

/* ---- round trips ---------------------------------------------------- */

static void test_devicelist_round_trip(void **state)
{
	static const uint32_t ids[] = { 1, 2147483647, 12345, 987654321, 42 };
	omemo_devicelist in = { (uint32_t *)ids, G_N_ELEMENTS(ids) }, out, out2;
	xmlnode *node, *copy;

	(void)state;
	node = wire_build_devicelist(&in);
	assert_non_null(node);
	assert_string_equal(node->name, "list");
	assert_string_equal(node->xmlns, OMEMO_NS_LEGACY);
	for (xmlnode *d = xmlnode_get_child(node, "device"); d; d = xmlnode_get_next_twin(d)) {
		assert_non_null(xmlnode_get_attrib(d, "id"));
		assert_null(xmlnode_get_attrib(d, "label"));
	}
	assert_int_equal(wire_parse_devicelist(node, &out), OMEMO_OK);
	assert_int_equal(out.n_ids, in.n_ids);
	assert_memory_equal(out.ids, in.ids, sizeof(ids));

	copy = reparse(node);
	assert_int_equal(wire_parse_devicelist(copy, &out2), OMEMO_OK);
	assert_int_equal(out2.n_ids, in.n_ids);
	assert_memory_equal(out2.ids, in.ids, sizeof(ids));

	omemo_devicelist_clear(&out);
	omemo_devicelist_clear(&out2);
	xmlnode_free(node);
	xmlnode_free(copy);
}

static void test_empty_devicelist_round_trip(void **state)
{
	omemo_devicelist in = { NULL, 0 }, out;
	xmlnode *node = wire_build_devicelist(&in);

	(void)state;
	assert_non_null(node);
	assert_int_equal(wire_parse_devicelist(node, &out), OMEMO_OK);
	assert_int_equal(out.n_ids, 0);
	xmlnode_free(node);
}

static void make_bundle(GRand *rand, omemo_bundle *b, size_t n_prekeys)
{
	memset(b, 0, sizeof(*b));
	b->spk_id = g_rand_int(rand);
	fill_random(rand, b->spk, sizeof(b->spk));
	b->spk[0] = 0x05;
	fill_random(rand, b->spk_sig, sizeof(b->spk_sig));
	fill_random(rand, b->ik, sizeof(b->ik));
	b->ik[0] = 0x05;
	b->n_prekeys = n_prekeys;
	b->prekeys = g_new0(omemo_prekey_pub, n_prekeys);
	for (size_t i = 0; i < n_prekeys; i++) {
		b->prekeys[i].id = (uint32_t)i * 3 + 1;
		fill_random(rand, b->prekeys[i].key, sizeof(b->prekeys[i].key));
		b->prekeys[i].key[0] = 0x05;
	}
}

static void assert_bundles_equal(const omemo_bundle *a, const omemo_bundle *b)
{
	assert_int_equal(a->spk_id, b->spk_id);
	assert_memory_equal(a->spk, b->spk, sizeof(a->spk));
	assert_memory_equal(a->spk_sig, b->spk_sig, sizeof(a->spk_sig));
	assert_memory_equal(a->ik, b->ik, sizeof(a->ik));
	assert_int_equal(a->n_prekeys, b->n_prekeys);
	assert_memory_equal(a->prekeys, b->prekeys, a->n_prekeys * sizeof(*a->prekeys));
}

static void test_bundle_round_trip_in_published_order(void **state)
{
	static const char *const order[] = { "signedPreKeyPublic", "signedPreKeySignature",
					     "identityKey", "prekeys" };
	GRand *rand = g_rand_new_with_seed(384);
	omemo_bundle in, out, out2;
	xmlnode *node, *copy;
	size_t i = 0;

	(void)state;
	make_bundle(rand, &in, 100);
	in.prekeys[0].id = 0; /* the extremes of a prekey id survive */
	in.prekeys[99].id = UINT32_MAX;
	node = wire_build_bundle(&in);
	assert_non_null(node);
	assert_string_equal(node->xmlns, OMEMO_NS_LEGACY);
	for (xmlnode *c = node->child; c; c = c->next) {
		if (c->type != XMLNODE_TYPE_TAG)
			continue;
		assert_true(i < G_N_ELEMENTS(order));
		assert_string_equal(c->name, order[i++]);
	}
	assert_int_equal(i, G_N_ELEMENTS(order));

	assert_int_equal(wire_parse_bundle(node, &out), OMEMO_OK);
	assert_bundles_equal(&in, &out);
	copy = reparse(node);
	assert_int_equal(wire_parse_bundle(copy, &out2), OMEMO_OK);
	assert_bundles_equal(&in, &out2);

	omemo_bundle_clear(&in);
	omemo_bundle_clear(&out);
	omemo_bundle_clear(&out2);
	xmlnode_free(node);
	xmlnode_free(copy);
	g_rand_free(rand);
}

static void make_message(GRand *rand, omemo_message *m, size_t n_keys, size_t payload_len)
{
	memset(m, 0, sizeof(*m));
	m->sid = (uint32_t)g_rand_int_range(rand, 1, G_MAXINT32);
	m->n_keys = n_keys;
	m->keys = g_new0(omemo_key, n_keys);
	for (size_t i = 0; i < n_keys; i++) {
		m->keys[i].rid = (uint32_t)g_rand_int_range(rand, 1, G_MAXINT32);
		m->keys[i].prekey = i % 3 == 1;
		m->keys[i].len = m->keys[i].prekey ? 186 : 98;
		m->keys[i].data = g_malloc(m->keys[i].len);
		fill_random(rand, m->keys[i].data, m->keys[i].len);
		m->keys[i].data[0] = 0x33;
	}
	m->iv_len = 12;
	m->iv = g_malloc(m->iv_len);
	fill_random(rand, m->iv, m->iv_len);
	if (payload_len) {
		m->payload_len = payload_len;
		m->payload = g_malloc(payload_len);
		fill_random(rand, m->payload, payload_len);
	}
}

static void assert_messages_equal(const omemo_message *a, const omemo_message *b)
{
	assert_int_equal(a->sid, b->sid);
	assert_int_equal(a->n_keys, b->n_keys);
	for (size_t i = 0; i < a->n_keys; i++) {
		assert_int_equal(a->keys[i].rid, b->keys[i].rid);
		assert_int_equal(a->keys[i].prekey, b->keys[i].prekey);
		assert_int_equal(a->keys[i].len, b->keys[i].len);
		assert_memory_equal(a->keys[i].data, b->keys[i].data, a->keys[i].len);
	}
	assert_int_equal(a->iv_len, b->iv_len);
	assert_memory_equal(a->iv, b->iv, a->iv_len);
	assert_int_equal(a->payload_len, b->payload_len);
	if (a->payload)
		assert_memory_equal(a->payload, b->payload, a->payload_len);
	else
		assert_null(b->payload);
}

/* Build -> parse, directly and after a trip through text. */
static void check_message_round_trip(const omemo_message *in)
{
	omemo_message out, out2;
	xmlnode *node = wire_build_encrypted(in), *copy;

	assert_non_null(node);
	assert_int_equal(wire_parse_encrypted(node, &out), OMEMO_OK);
	assert_messages_equal(in, &out);
	copy = reparse(node);
	assert_int_equal(wire_parse_encrypted(copy, &out2), OMEMO_OK);
	assert_messages_equal(in, &out2);
	omemo_message_clear(&out);
	omemo_message_clear(&out2);
	xmlnode_free(node);
	xmlnode_free(copy);
}

static void test_encrypted_round_trip(void **state)
{
	GRand *rand = g_rand_new_with_seed(42);
	omemo_message in;

	(void)state;
	make_message(rand, &in, 7, 173);
	in.keys[4].rid = in.keys[1].rid; /* the same device twice */
	check_message_round_trip(&in);
	omemo_message_clear(&in);
	g_rand_free(rand);
}

static void test_key_transport_round_trip_has_no_payload(void **state)
{
	GRand *rand = g_rand_new_with_seed(43);
	omemo_message in;
	xmlnode *node;

	(void)state;
	make_message(rand, &in, 2, 0);
	node = wire_build_encrypted(&in);
	assert_null(xmlnode_get_child(node, "payload"));
	xmlnode_free(node);
	check_message_round_trip(&in);
	omemo_message_clear(&in);
	g_rand_free(rand);
}

static void test_build_encrypted_writes_prekey_true_only_and_padded_base64(void **state)
{
	GRand *rand = g_rand_new_with_seed(44);
	omemo_message in;
	xmlnode *node, *header, *key;
	size_t i = 0;

	(void)state;
	make_message(rand, &in, 6, 10);
	node = wire_build_encrypted(&in);
	header = xmlnode_get_child(node, "header");
	assert_non_null(header);
	for (key = xmlnode_get_child(header, "key"); key; key = xmlnode_get_next_twin(key), i++) {
		char *text = xmlnode_get_data(key);

		if (in.keys[i].prekey)
			assert_string_equal(xmlnode_get_attrib(key, "prekey"), "true");
		else
			assert_null(xmlnode_get_attrib(key, "prekey"));
		/* standard padded form: whole quanta, '=' where bytes run out */
		assert_int_equal(strlen(text) % 4, 0);
		assert_int_equal(text[strlen(text) - 1] == '=', in.keys[i].len % 3 != 0);
		g_free(text);
	}
	assert_int_equal(i, in.n_keys);
	assert_non_null(xmlnode_get_child(header, "iv"));
	assert_non_null(xmlnode_get_child(node, "payload"));
	omemo_message_clear(&in);
	xmlnode_free(node);
	g_rand_free(rand);
}

static void test_builders_refuse_what_no_peer_accepts(void **state)
{
	GRand *rand = g_rand_new_with_seed(45);
	uint32_t bad_ids[] = { 5, 0 };
	uint32_t big_ids[] = { 0x80000000u };
	omemo_devicelist bad = { bad_ids, 2 }, big = { big_ids, 1 }, dangling = { NULL, 3 };
	omemo_message m;
	uint8_t *saved;

	(void)state;
	assert_null(wire_build_devicelist(NULL));
	assert_null(wire_build_devicelist(&bad));
	assert_null(wire_build_devicelist(&big));
	assert_null(wire_build_devicelist(&dangling));
	assert_null(wire_build_bundle(NULL));
	assert_null(wire_build_encrypted(NULL));

	make_message(rand, &m, 2, 8);
	m.sid = 0;
	assert_null(wire_build_encrypted(&m));
	m.sid = 9;
	m.keys[1].rid = 0x80000000u;
	assert_null(wire_build_encrypted(&m));
	m.keys[1].rid = 10;
	m.keys[1].len = 0;
	assert_null(wire_build_encrypted(&m));
	m.keys[1].len = 98;
	m.iv_len = 0;
	assert_null(wire_build_encrypted(&m));
	m.iv_len = 12;
	m.payload_len = 0;
	assert_null(wire_build_encrypted(&m));
	m.payload_len = 8;
	m.n_keys = 0;
	assert_null(wire_build_encrypted(&m));
	m.n_keys = 2;
	saved = m.iv;
	m.iv = NULL;
	assert_null(wire_build_encrypted(&m));
	m.iv = saved;
	/* and the untouched struct builds */
	xmlnode *ok = wire_build_encrypted(&m);
	assert_non_null(ok);
	xmlnode_free(ok);
	omemo_message_clear(&m);
	g_rand_free(rand);
}

static void test_parse_accepts_children_without_namespace(void **state)
{
	xmlnode *enc = xmlnode_new("encrypted"), *header, *key, *foreign;
	omemo_message m;

	(void)state;
	xmlnode_set_namespace(enc, OMEMO_NS_LEGACY);
	header = xmlnode_new_child(enc, "header");
	xmlnode_set_attrib(header, "sid", "3");
	key = xmlnode_new_child(header, "key");
	xmlnode_set_attrib(key, "rid", "4");
	xmlnode_insert_data(key, "MwE=", -1);
	xmlnode_insert_data(xmlnode_new_child(header, "iv"), "AAECAwQFBgcICQoL", -1);
	/* a second <header> in someone else's namespace is not a duplicate */
	foreign = xmlnode_new_child(enc, "header");
	xmlnode_set_namespace(foreign, "urn:example:other");
	assert_int_equal(wire_parse_encrypted(enc, &m), OMEMO_OK);
	assert_int_equal(m.keys[0].rid, 4);
	assert_int_equal(m.keys[0].len, 2);
	omemo_message_clear(&m);
	xmlnode_free(enc);
}

static void test_parse_null_arguments(void **state)
{
	xmlnode *list = xml("<list " NS "/>");
	omemo_devicelist d;
	omemo_bundle b;
	omemo_message m;

	(void)state;
	assert_int_equal(wire_parse_devicelist(NULL, &d), OMEMO_ERR_WIRE_ELEMENT);
	assert_int_equal(wire_parse_bundle(NULL, &b), OMEMO_ERR_WIRE_ELEMENT);
	assert_int_equal(wire_parse_encrypted(NULL, &m), OMEMO_ERR_WIRE_ELEMENT);
	assert_int_equal(wire_parse_devicelist(list, NULL), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(wire_parse_bundle(list, NULL), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(wire_parse_encrypted(list, NULL), OMEMO_ERR_INVALID_ARG);
	xmlnode_free(list);
}

/* ---- the table of malformed input ----------------------------------- */

enum kind {
	DEVICELIST,
	BUNDLE,
	ENCRYPTED
};

struct bad_row {
	const char *what;
	enum kind kind;
	const char *xml; /* {NAME} placeholders, see expand() */
	int err;
};

#define VALID_BUNDLE "<bundle " NS ">{SPK}{SIG}{IK}{PREKEYS}</bundle>"
#define VALID_HEADER "<header sid='1'><key rid='2'>{K}</key><iv>{IV}</iv></header>"

static const struct bad_row bad_rows[] = {
	/* device list */
	{ "list: wrong name", DEVICELIST, "<lists " NS "><device id='1'/></lists>",
	  OMEMO_ERR_WIRE_ELEMENT },
	{ "list: OMEMO 2 namespace", DEVICELIST,
	  "<list xmlns='urn:xmpp:omemo:2'><device id='1'/></list>", OMEMO_ERR_WIRE_ELEMENT },
	{ "list: no namespace", DEVICELIST, "<list><device id='1'/></list>",
	  OMEMO_ERR_WIRE_ELEMENT },
	{ "list: OMEMO 2 root name", DEVICELIST, "<devices " NS "><device id='1'/></devices>",
	  OMEMO_ERR_WIRE_ELEMENT },
	{ "device: no id", DEVICELIST, "<list " NS "><device id='1'/><device label='x'/></list>",
	  OMEMO_ERR_WIRE_DEVICE_ID_MISSING },
	{ "device: id only in another namespace", DEVICELIST,
	  "<list " NS " xmlns:x='urn:x'><device x:id='5'/></list>",
	  OMEMO_ERR_WIRE_DEVICE_ID_MISSING },
	{ "device: empty id", DEVICELIST, "<list " NS "><device id=''/></list>",
	  OMEMO_ERR_WIRE_DEVICE_ID_INVALID },
	{ "device: letters", DEVICELIST, "<list " NS "><device id='abc'/></list>",
	  OMEMO_ERR_WIRE_DEVICE_ID_INVALID },
	{ "device: negative", DEVICELIST, "<list " NS "><device id='-5'/></list>",
	  OMEMO_ERR_WIRE_DEVICE_ID_INVALID },
	{ "device: plus sign", DEVICELIST, "<list " NS "><device id='+5'/></list>",
	  OMEMO_ERR_WIRE_DEVICE_ID_INVALID },
	{ "device: leading blank", DEVICELIST, "<list " NS "><device id=' 5'/></list>",
	  OMEMO_ERR_WIRE_DEVICE_ID_INVALID },
	{ "device: hex", DEVICELIST, "<list " NS "><device id='0x10'/></list>",
	  OMEMO_ERR_WIRE_DEVICE_ID_INVALID },
	{ "device: trailing garbage", DEVICELIST, "<list " NS "><device id='12a'/></list>",
	  OMEMO_ERR_WIRE_DEVICE_ID_INVALID },
	{ "device: decimal point", DEVICELIST, "<list " NS "><device id='1.5'/></list>",
	  OMEMO_ERR_WIRE_DEVICE_ID_INVALID },
	{ "device: long digits then a letter", DEVICELIST,
	  "<list " NS "><device id='99999999999999999999x'/></list>",
	  OMEMO_ERR_WIRE_DEVICE_ID_INVALID },
	{ "device: zero", DEVICELIST, "<list " NS "><device id='0'/></list>",
	  OMEMO_ERR_WIRE_DEVICE_ID_RANGE },
	{ "device: 2^31", DEVICELIST, "<list " NS "><device id='2147483648'/></list>",
	  OMEMO_ERR_WIRE_DEVICE_ID_RANGE },
	{ "device: 2^32", DEVICELIST, "<list " NS "><device id='4294967296'/></list>",
	  OMEMO_ERR_WIRE_DEVICE_ID_RANGE },
	{ "device: absurdly long", DEVICELIST,
	  "<list " NS
	  "><device id='123456789012345678901234567890123456789012345678901234567890'/></list>",
	  OMEMO_ERR_WIRE_DEVICE_ID_RANGE },
	{ "device: zeros only", DEVICELIST, "<list " NS "><device id='0000'/></list>",
	  OMEMO_ERR_WIRE_DEVICE_ID_RANGE },

	/* bundle */
	{ "bundle: wrong name", BUNDLE, "<bundles " NS ">{SPK}{SIG}{IK}{PREKEYS}</bundles>",
	  OMEMO_ERR_WIRE_ELEMENT },
	{ "bundle: OMEMO 2 namespace", BUNDLE,
	  "<bundle xmlns='urn:xmpp:omemo:2'>{SPK}{SIG}{IK}{PREKEYS}</bundle>",
	  OMEMO_ERR_WIRE_ELEMENT },
	{ "spk: missing", BUNDLE, "<bundle " NS ">{SIG}{IK}{PREKEYS}</bundle>",
	  OMEMO_ERR_WIRE_SPK_MISSING },
	{ "spk: only in another namespace", BUNDLE,
	  "<bundle " NS
	  ">{SIG}{IK}{PREKEYS}<signedPreKeyPublic xmlns='urn:x' signedPreKeyId='1'>{PK}</signedPreKeyPublic></bundle>",
	  OMEMO_ERR_WIRE_SPK_MISSING },
	{ "spk: twice", BUNDLE, "<bundle " NS ">{SPK}{SIG}{IK}{PREKEYS}{SPK}</bundle>",
	  OMEMO_ERR_WIRE_SPK_DUPLICATE },
	{ "spk: no id", BUNDLE,
	  "<bundle " NS "><signedPreKeyPublic>{PK}</signedPreKeyPublic>{SIG}{IK}{PREKEYS}</bundle>",
	  OMEMO_ERR_WIRE_SPK_ID_MISSING },
	{ "spk: id letters", BUNDLE,
	  "<bundle " NS
	  "><signedPreKeyPublic signedPreKeyId='one'>{PK}</signedPreKeyPublic>{SIG}{IK}{PREKEYS}</bundle>",
	  OMEMO_ERR_WIRE_SPK_ID_INVALID },
	{ "spk: id negative", BUNDLE,
	  "<bundle " NS
	  "><signedPreKeyPublic signedPreKeyId='-1'>{PK}</signedPreKeyPublic>{SIG}{IK}{PREKEYS}</bundle>",
	  OMEMO_ERR_WIRE_SPK_ID_INVALID },
	{ "spk: id 2^32", BUNDLE,
	  "<bundle " NS
	  "><signedPreKeyPublic signedPreKeyId='4294967296'>{PK}</signedPreKeyPublic>{SIG}{IK}{PREKEYS}</bundle>",
	  OMEMO_ERR_WIRE_SPK_ID_INVALID },
	{ "spk: bad base64", BUNDLE,
	  "<bundle " NS
	  "><signedPreKeyPublic signedPreKeyId='1'>BQ!!</signedPreKeyPublic>{SIG}{IK}{PREKEYS}</bundle>",
	  OMEMO_ERR_WIRE_SPK_BASE64 },
	{ "spk: 32 bytes", BUNDLE,
	  "<bundle " NS
	  "><signedPreKeyPublic signedPreKeyId='1'>{B32}</signedPreKeyPublic>{SIG}{IK}{PREKEYS}</bundle>",
	  OMEMO_ERR_WIRE_SPK_LENGTH },
	{ "spk: 34 bytes", BUNDLE,
	  "<bundle " NS
	  "><signedPreKeyPublic signedPreKeyId='1'>{B34}</signedPreKeyPublic>{SIG}{IK}{PREKEYS}</bundle>",
	  OMEMO_ERR_WIRE_SPK_LENGTH },
	{ "spk: empty", BUNDLE,
	  "<bundle " NS "><signedPreKeyPublic signedPreKeyId='1'/>{SIG}{IK}{PREKEYS}</bundle>",
	  OMEMO_ERR_WIRE_SPK_LENGTH },
	{ "sig: missing", BUNDLE, "<bundle " NS ">{SPK}{IK}{PREKEYS}</bundle>",
	  OMEMO_ERR_WIRE_SIG_MISSING },
	{ "sig: twice", BUNDLE, "<bundle " NS ">{SIG}{SPK}{SIG}{IK}{PREKEYS}</bundle>",
	  OMEMO_ERR_WIRE_SIG_DUPLICATE },
	{ "sig: bad base64", BUNDLE,
	  "<bundle " NS
	  ">{SPK}<signedPreKeySignature>AAAA=AAA</signedPreKeySignature>{IK}{PREKEYS}</bundle>",
	  OMEMO_ERR_WIRE_SIG_BASE64 },
	{ "sig: 63 bytes", BUNDLE,
	  "<bundle " NS
	  ">{SPK}<signedPreKeySignature>{B63}</signedPreKeySignature>{IK}{PREKEYS}</bundle>",
	  OMEMO_ERR_WIRE_SIG_LENGTH },
	{ "ik: missing", BUNDLE, "<bundle " NS ">{SPK}{SIG}{PREKEYS}</bundle>",
	  OMEMO_ERR_WIRE_IK_MISSING },
	{ "ik: twice", BUNDLE, "<bundle " NS ">{SPK}{SIG}{IK}{IK}{PREKEYS}</bundle>",
	  OMEMO_ERR_WIRE_IK_DUPLICATE },
	{ "ik: url-safe alphabet", BUNDLE,
	  "<bundle " NS
	  ">{SPK}{SIG}<identityKey>BQ-_BQ-_BQ-_BQ-_BQ-_BQ-_BQ-_BQ-_BQ-_BQ-_BQ-_</identityKey>{PREKEYS}</bundle>",
	  OMEMO_ERR_WIRE_IK_BASE64 },
	{ "ik: 32 bytes", BUNDLE,
	  "<bundle " NS ">{SPK}{SIG}<identityKey>{B32}</identityKey>{PREKEYS}</bundle>",
	  OMEMO_ERR_WIRE_IK_LENGTH },
	{ "prekeys: missing", BUNDLE, "<bundle " NS ">{SPK}{SIG}{IK}</bundle>",
	  OMEMO_ERR_WIRE_PREKEYS_MISSING },
	{ "prekeys: twice", BUNDLE, "<bundle " NS ">{SPK}{SIG}{IK}{PREKEYS}{PREKEYS}</bundle>",
	  OMEMO_ERR_WIRE_PREKEYS_DUPLICATE },
	{ "prekeys: empty", BUNDLE, "<bundle " NS ">{SPK}{SIG}{IK}<prekeys/></bundle>",
	  OMEMO_ERR_WIRE_TOO_FEW_PREKEYS },
	{ "prekeys: 20 in another namespace", BUNDLE,
	  "<bundle " NS
	  ">{SPK}{SIG}{IK}<prekeys><x xmlns='urn:x'>{PK20X}</x>{PK20X}</prekeys></bundle>",
	  OMEMO_ERR_WIRE_TOO_FEW_PREKEYS },
	{ "prekey: no id", BUNDLE,
	  "<bundle " NS
	  ">{SPK}{SIG}{IK}<prekeys>{PK20}<preKeyPublic>{PK}</preKeyPublic></prekeys></bundle>",
	  OMEMO_ERR_WIRE_PREKEY_ID_MISSING },
	{ "prekey: id letters", BUNDLE,
	  "<bundle " NS
	  ">{SPK}{SIG}{IK}<prekeys>{PK20}<preKeyPublic preKeyId='x'>{PK}</preKeyPublic></prekeys></bundle>",
	  OMEMO_ERR_WIRE_PREKEY_ID_INVALID },
	{ "prekey: id 2^32", BUNDLE,
	  "<bundle " NS
	  ">{SPK}{SIG}{IK}<prekeys>{PK20}<preKeyPublic preKeyId='4294967296'>{PK}</preKeyPublic></prekeys></bundle>",
	  OMEMO_ERR_WIRE_PREKEY_ID_INVALID },
	{ "prekey: id twice", BUNDLE,
	  "<bundle " NS
	  ">{SPK}{SIG}{IK}<prekeys>{PK20}<preKeyPublic preKeyId='7'>{PK}</preKeyPublic></prekeys></bundle>",
	  OMEMO_ERR_WIRE_PREKEY_ID_DUPLICATE },
	{ "prekey: bad base64", BUNDLE,
	  "<bundle " NS
	  ">{SPK}{SIG}{IK}<prekeys>{PK20}<preKeyPublic preKeyId='99'>BQ*=</preKeyPublic></prekeys></bundle>",
	  OMEMO_ERR_WIRE_PREKEY_BASE64 },
	{ "prekey: 32 bytes", BUNDLE,
	  "<bundle " NS
	  ">{SPK}{SIG}{IK}<prekeys>{PK20}<preKeyPublic preKeyId='99'>{B32}</preKeyPublic></prekeys></bundle>",
	  OMEMO_ERR_WIRE_PREKEY_LENGTH },

	/* <encrypted> */
	{ "encrypted: wrong name", ENCRYPTED, "<encrypt " NS ">" VALID_HEADER "</encrypt>",
	  OMEMO_ERR_WIRE_ELEMENT },
	{ "encrypted: OMEMO 2 namespace", ENCRYPTED,
	  "<encrypted xmlns='urn:xmpp:omemo:2'>" VALID_HEADER "</encrypted>",
	  OMEMO_ERR_WIRE_ELEMENT },
	{ "header: missing", ENCRYPTED, "<encrypted " NS "><payload>{K}</payload></encrypted>",
	  OMEMO_ERR_WIRE_HEADER_MISSING },
	{ "header: only in another namespace", ENCRYPTED,
	  "<encrypted " NS
	  "><h:header xmlns:h='urn:x' sid='1'><key rid='2'>{K}</key><iv>{IV}</iv></h:header></encrypted>",
	  OMEMO_ERR_WIRE_HEADER_MISSING },
	{ "header: twice", ENCRYPTED, "<encrypted " NS ">" VALID_HEADER VALID_HEADER "</encrypted>",
	  OMEMO_ERR_WIRE_HEADER_DUPLICATE },
	{ "sid: missing", ENCRYPTED,
	  "<encrypted " NS "><header><key rid='2'>{K}</key><iv>{IV}</iv></header></encrypted>",
	  OMEMO_ERR_WIRE_SID_MISSING },
	{ "sid: letters", ENCRYPTED,
	  "<encrypted " NS
	  "><header sid='me'><key rid='2'>{K}</key><iv>{IV}</iv></header></encrypted>",
	  OMEMO_ERR_WIRE_SID_INVALID },
	{ "sid: zero", ENCRYPTED,
	  "<encrypted " NS
	  "><header sid='0'><key rid='2'>{K}</key><iv>{IV}</iv></header></encrypted>",
	  OMEMO_ERR_WIRE_SID_RANGE },
	{ "sid: 2^31", ENCRYPTED,
	  "<encrypted " NS
	  "><header sid='2147483648'><key rid='2'>{K}</key><iv>{IV}</iv></header></encrypted>",
	  OMEMO_ERR_WIRE_SID_RANGE },
	{ "rid: missing", ENCRYPTED,
	  "<encrypted " NS
	  "><header sid='1'><key rid='2'>{K}</key><key>{K}</key><iv>{IV}</iv></header></encrypted>",
	  OMEMO_ERR_WIRE_RID_MISSING },
	{ "rid: letters", ENCRYPTED,
	  "<encrypted " NS
	  "><header sid='1'><key rid='x1'>{K}</key><iv>{IV}</iv></header></encrypted>",
	  OMEMO_ERR_WIRE_RID_INVALID },
	{ "rid: zero", ENCRYPTED,
	  "<encrypted " NS
	  "><header sid='1'><key rid='0'>{K}</key><iv>{IV}</iv></header></encrypted>",
	  OMEMO_ERR_WIRE_RID_RANGE },
	{ "rid: 2^64", ENCRYPTED,
	  "<encrypted " NS
	  "><header sid='1'><key rid='18446744073709551616'>{K}</key><iv>{IV}</iv></header></encrypted>",
	  OMEMO_ERR_WIRE_RID_RANGE },
	{ "key: empty element", ENCRYPTED,
	  "<encrypted " NS "><header sid='1'><key rid='2'/><iv>{IV}</iv></header></encrypted>",
	  OMEMO_ERR_WIRE_KEY_EMPTY },
	{ "key: blanks only", ENCRYPTED,
	  "<encrypted " NS
	  "><header sid='1'><key rid='2'> \n\t </key><iv>{IV}</iv></header></encrypted>",
	  OMEMO_ERR_WIRE_KEY_EMPTY },
	{ "key: bad character", ENCRYPTED,
	  "<encrypted " NS
	  "><header sid='1'><key rid='2'>Mw#=</key><iv>{IV}</iv></header></encrypted>",
	  OMEMO_ERR_WIRE_KEY_BASE64 },
	{ "key: padding in the middle", ENCRYPTED,
	  "<encrypted " NS
	  "><header sid='1'><key rid='2'>Mw==Mw==</key><iv>{IV}</iv></header></encrypted>",
	  OMEMO_ERR_WIRE_KEY_BASE64 },
	{ "key: impossible length", ENCRYPTED,
	  "<encrypted " NS
	  "><header sid='1'><key rid='2'>MwMwM</key><iv>{IV}</iv></header></encrypted>",
	  OMEMO_ERR_WIRE_KEY_BASE64 },
	{ "key: padding only", ENCRYPTED,
	  "<encrypted " NS
	  "><header sid='1'><key rid='2'>==</key><iv>{IV}</iv></header></encrypted>",
	  OMEMO_ERR_WIRE_KEY_BASE64 },
	{ "key: 4097 bytes", ENCRYPTED,
	  "<encrypted " NS
	  "><header sid='1'><key rid='2'>{K4097}</key><iv>{IV}</iv></header></encrypted>",
	  OMEMO_ERR_WIRE_KEY_TOO_LONG },
	{ "prekey: yes", ENCRYPTED,
	  "<encrypted " NS
	  "><header sid='1'><key rid='2' prekey='yes'>{K}</key><iv>{IV}</iv></header></encrypted>",
	  OMEMO_ERR_WIRE_PREKEY_ATTR },
	{ "prekey: TRUE", ENCRYPTED,
	  "<encrypted " NS
	  "><header sid='1'><key rid='2' prekey='TRUE'>{K}</key><iv>{IV}</iv></header></encrypted>",
	  OMEMO_ERR_WIRE_PREKEY_ATTR },
	{ "prekey: empty", ENCRYPTED,
	  "<encrypted " NS
	  "><header sid='1'><key rid='2' prekey=''>{K}</key><iv>{IV}</iv></header></encrypted>",
	  OMEMO_ERR_WIRE_PREKEY_ATTR },
	{ "keys: none", ENCRYPTED,
	  "<encrypted " NS
	  "><header sid='1'><iv>{IV}</iv></header><payload>{K}</payload></encrypted>",
	  OMEMO_ERR_WIRE_NO_KEYS },
	{ "keys: only in another namespace", ENCRYPTED,
	  "<encrypted " NS
	  "><header sid='1'><key xmlns='urn:x' rid='2'>{K}</key><iv>{IV}</iv></header></encrypted>",
	  OMEMO_ERR_WIRE_NO_KEYS },
	{ "iv: missing", ENCRYPTED,
	  "<encrypted " NS "><header sid='1'><key rid='2'>{K}</key></header></encrypted>",
	  OMEMO_ERR_WIRE_IV_MISSING },
	{ "iv: outside the header", ENCRYPTED,
	  "<encrypted " NS
	  "><header sid='1'><key rid='2'>{K}</key></header><iv>{IV}</iv></encrypted>",
	  OMEMO_ERR_WIRE_IV_MISSING },
	{ "iv: twice", ENCRYPTED,
	  "<encrypted " NS
	  "><header sid='1'><iv>{IV}</iv><key rid='2'>{K}</key><iv>{IV}</iv></header></encrypted>",
	  OMEMO_ERR_WIRE_IV_DUPLICATE },
	{ "iv: bad base64", ENCRYPTED,
	  "<encrypted " NS
	  "><header sid='1'><key rid='2'>{K}</key><iv>AAECAwQFBgcICQo.</iv></header></encrypted>",
	  OMEMO_ERR_WIRE_IV_BASE64 },
	{ "iv: empty", ENCRYPTED,
	  "<encrypted " NS "><header sid='1'><key rid='2'>{K}</key><iv/></header></encrypted>",
	  OMEMO_ERR_WIRE_IV_LENGTH },
	{ "iv: 65 bytes", ENCRYPTED,
	  "<encrypted " NS
	  "><header sid='1'><key rid='2'>{K}</key><iv>{B65}</iv></header></encrypted>",
	  OMEMO_ERR_WIRE_IV_LENGTH },
	{ "payload: twice", ENCRYPTED,
	  "<encrypted " NS ">" VALID_HEADER
	  "<payload>{K}</payload><payload>{K}</payload></encrypted>",
	  OMEMO_ERR_WIRE_PAYLOAD_DUPLICATE },
	{ "payload: bad character", ENCRYPTED,
	  "<encrypted " NS ">" VALID_HEADER "<payload>aGVsbG8_</payload></encrypted>",
	  OMEMO_ERR_WIRE_PAYLOAD_BASE64 },
	{ "payload: one padding too few", ENCRYPTED,
	  "<encrypted " NS ">" VALID_HEADER "<payload>QQ=</payload></encrypted>",
	  OMEMO_ERR_WIRE_PAYLOAD_BASE64 },
	{ "payload: three paddings", ENCRYPTED,
	  "<encrypted " NS ">" VALID_HEADER "<payload>Q===</payload></encrypted>",
	  OMEMO_ERR_WIRE_PAYLOAD_BASE64 },
	{ "payload: padding after a full quantum", ENCRYPTED,
	  "<encrypted " NS ">" VALID_HEADER "<payload>QUJD=</payload></encrypted>",
	  OMEMO_ERR_WIRE_PAYLOAD_BASE64 },
	{ "payload: empty element", ENCRYPTED,
	  "<encrypted " NS ">" VALID_HEADER "<payload/></encrypted>",
	  OMEMO_ERR_WIRE_PAYLOAD_EMPTY },
	{ "payload: blanks only", ENCRYPTED,
	  "<encrypted " NS ">" VALID_HEADER "<payload>\n  \n</payload></encrypted>",
	  OMEMO_ERR_WIRE_PAYLOAD_EMPTY },
};

/* Placeholders: valid parts, so that each row has exactly one defect. */
static char *expand(const char *text)
{
	GString *s = g_string_new(text);
	char *pk = b64_of_len(OMEMO_PUBKEY_LEN, 0x05), *sig = b64_of_len(OMEMO_SIGNATURE_LEN, 1);
	char *key = b64_of_len(98, 0x33), *iv = b64_of_len(12, 9),
	     *k4097 = b64_of_len(OMEMO_KEY_MAX + 1, 0x33);
	char *b32 = b64_of_len(32, 0x05), *b34 = b64_of_len(34, 0x05), *b63 = b64_of_len(63, 1);
	char *b65 = b64_of_len(65, 1);
	GString *pk20 = g_string_new(NULL), *pk20x = g_string_new(NULL);

	for (unsigned i = 1; i <= OMEMO_BUNDLE_MIN_PREKEYS; i++) {
		g_string_append_printf(pk20, "<preKeyPublic preKeyId='%u'>{PK}</preKeyPublic>", i);
		g_string_append_printf(
			pk20x, "<preKeyPublic xmlns='urn:x' preKeyId='%u'>{PK}</preKeyPublic>", i);
	}
	g_string_replace(s, "{PREKEYS}", "<prekeys>{PK20}</prekeys>", 0);
	g_string_replace(s, "{PK20}", pk20->str, 0);
	g_string_replace(s, "{PK20X}", pk20x->str, 0);
	g_string_replace(s, "{SPK}",
			 "<signedPreKeyPublic signedPreKeyId='1'>{PK}</signedPreKeyPublic>", 0);
	g_string_replace(s, "{SIG}", "<signedPreKeySignature>{SIGB}</signedPreKeySignature>", 0);
	g_string_replace(s, "{IK}", "<identityKey>{PK}</identityKey>", 0);
	g_string_replace(s, "{PK}", pk, 0);
	g_string_replace(s, "{SIGB}", sig, 0);
	g_string_replace(s, "{K}", key, 0);
	g_string_replace(s, "{IV}", iv, 0);
	g_string_replace(s, "{K4097}", k4097, 0);
	g_string_replace(s, "{B32}", b32, 0);
	g_string_replace(s, "{B34}", b34, 0);
	g_string_replace(s, "{B63}", b63, 0);
	g_string_replace(s, "{B65}", b65, 0);
	if (strchr(s->str, '{'))
		fail_msg("unexpanded placeholder in %.120s", s->str);

	g_free(pk);
	g_free(sig);
	g_free(key);
	g_free(iv);
	g_free(k4097);
	g_free(b32);
	g_free(b34);
	g_free(b63);
	g_free(b65);
	g_string_free(pk20, TRUE);
	g_string_free(pk20x, TRUE);
	return g_string_free(s, FALSE);
}

/* Parses `text` as `kind`; the output must be cleared on error, even if it held garbage. */
static int parse_as(enum kind kind, const char *text)
{
	char *expanded = expand(text);
	xmlnode *node = xml(expanded);
	int ret;

	switch (kind) {
	case DEVICELIST: {
		omemo_devicelist out;

		memset(&out, 0xa5, sizeof(out));
		ret = wire_parse_devicelist(node, &out);
		if (ret)
			assert_true(all_zero(&out, sizeof(out)));
		omemo_devicelist_clear(&out);
		break;
	}
	case BUNDLE: {
		omemo_bundle out;

		memset(&out, 0xa5, sizeof(out));
		ret = wire_parse_bundle(node, &out);
		if (ret)
			assert_true(all_zero(&out, sizeof(out)));
		omemo_bundle_clear(&out);
		break;
	}
	default: {
		omemo_message out;

		memset(&out, 0xa5, sizeof(out));
		ret = wire_parse_encrypted(node, &out);
		if (ret)
			assert_true(all_zero(&out, sizeof(out)));
		omemo_message_clear(&out);
		break;
	}
	}
	xmlnode_free(node);
	g_free(expanded);
	return ret;
}

/* Guards the table: the templates the rows break are valid themselves. */
static void test_malformed_table_templates_are_valid(void **state)
{
	(void)state;
	assert_int_equal(parse_as(BUNDLE, VALID_BUNDLE), OMEMO_OK);
	assert_int_equal(parse_as(ENCRYPTED, "<encrypted " NS ">" VALID_HEADER
					     "<payload>{K}</payload></encrypted>"),
			 OMEMO_OK);
	assert_int_equal(parse_as(DEVICELIST,
				  "<list " NS "><device id='1'/><device id='2147483647'/></list>"),
			 OMEMO_OK);
	assert_int_equal(
		parse_as(
			ENCRYPTED,
			"<encrypted " NS
			"><header sid='1'><key rid='2'>{K}</key><iv>{B65}</iv></header></encrypted>"),
		OMEMO_ERR_WIRE_IV_LENGTH);
	assert_int_equal(
		parse_as(
			ENCRYPTED,
			"<encrypted " NS
			"><header sid='1'><key rid='2'>{K}</key><iv>{B63}</iv></header></encrypted>"),
		OMEMO_OK);
}

static void test_malformed_inputs_give_their_exact_error(void **state)
{
	size_t failures = 0;

	(void)state;
	assert_true(G_N_ELEMENTS(bad_rows) >= 30);
	for (size_t i = 0; i < G_N_ELEMENTS(bad_rows); i++) {
		int ret = parse_as(bad_rows[i].kind, bad_rows[i].xml);

		if (ret != bad_rows[i].err) {
			print_error("row %zu (%s): got %d (%s), want %d (%s)\n", i,
				    bad_rows[i].what, ret, omemo_strerror(ret), bad_rows[i].err,
				    omemo_strerror(bad_rows[i].err));
			failures++;
		}
	}
	assert_int_equal(failures, 0);
}

/* ---- limits ----------------------------------------------------------- */

static xmlnode *new_list(size_t n, size_t distinct, const char *last_id)
{
	xmlnode *list = xmlnode_new("list");
	char buf[16];

	xmlnode_set_namespace(list, OMEMO_NS_LEGACY);
	for (size_t i = 0; i < n; i++) {
		g_snprintf(buf, sizeof(buf), "%zu", i % distinct + 1);
		xmlnode_set_attrib(xmlnode_new_child(list, "device"), "id", buf);
	}
	if (last_id)
		xmlnode_set_attrib(xmlnode_new_child(list, "device"), "id", last_id);
	return list;
}

static void test_devicelist_of_100000_ids_is_refused_quickly(void **state)
{
	/* a bad id at the very end: refusing with TOO_MANY proves nobody read that far */
	xmlnode *list = new_list(100000, 100000, "bad");
	omemo_devicelist out;
	gint64 t0 = g_get_monotonic_time();

	(void)state;
	assert_int_equal(wire_parse_devicelist(list, &out), OMEMO_ERR_WIRE_TOO_MANY_DEVICES);
	assert_true(g_get_monotonic_time() - t0 < G_USEC_PER_SEC);
	assert_null(out.ids);
	assert_int_equal(out.n_ids, 0);
	xmlnode_free(list);
}

static void test_devicelist_limit_counts_distinct_ids(void **state)
{
	xmlnode *full = new_list(OMEMO_DEVICELIST_MAX, OMEMO_DEVICELIST_MAX, NULL);
	xmlnode *over = new_list(OMEMO_DEVICELIST_MAX + 1, OMEMO_DEVICELIST_MAX + 1, NULL);
	xmlnode *repeated = new_list(3 * OMEMO_DEVICELIST_MAX, OMEMO_DEVICELIST_MAX, NULL);
	omemo_devicelist out;

	(void)state;
	assert_int_equal(wire_parse_devicelist(full, &out), OMEMO_OK);
	assert_int_equal(out.n_ids, OMEMO_DEVICELIST_MAX);
	assert_int_equal(out.ids[OMEMO_DEVICELIST_MAX - 1], OMEMO_DEVICELIST_MAX);
	omemo_devicelist_clear(&out);
	assert_int_equal(wire_parse_devicelist(over, &out), OMEMO_ERR_WIRE_TOO_MANY_DEVICES);
	assert_int_equal(wire_parse_devicelist(repeated, &out), OMEMO_OK);
	assert_int_equal(out.n_ids, OMEMO_DEVICELIST_MAX);
	for (size_t i = 0; i < out.n_ids; i++)
		assert_int_equal(out.ids[i], i + 1);
	omemo_devicelist_clear(&out);
	xmlnode_free(full);
	xmlnode_free(over);
	xmlnode_free(repeated);
}

/* A valid one-key header under <encrypted>, to which a test adds a payload. */
static xmlnode *new_encrypted(void)
{
	return xml(
		"<encrypted " NS
		"><header sid='1'><key rid='2'>Mw==</key><iv>AAECAwQFBgcICQoL</iv></header></encrypted>");
}

static void test_payload_of_10_mib_is_refused_quickly(void **state)
{
	size_t len = 10 * 1024 * 1024;
	char *text = g_malloc(len + 1);
	xmlnode *enc = new_encrypted();
	omemo_message out;
	gint64 t0;

	(void)state;
	memset(text, 'A', len);
	/* an invalid last character: PAYLOAD_BASE64 would mean it was all read */
	text[len - 1] = '!';
	text[len] = '\0';
	xmlnode_insert_data(xmlnode_new_child(enc, "payload"), text, (gssize)len);
	t0 = g_get_monotonic_time();
	assert_int_equal(wire_parse_encrypted(enc, &out), OMEMO_ERR_WIRE_PAYLOAD_TOO_LARGE);
	assert_true(g_get_monotonic_time() - t0 < G_USEC_PER_SEC);
	assert_true(all_zero(&out, sizeof(out)));
	xmlnode_free(enc);
	g_free(text);
}

static void test_payload_limit_is_exact(void **state)
{
	uint8_t *bytes = g_malloc(OMEMO_PAYLOAD_MAX + 1);
	char *at_max, *over_max;
	xmlnode *ok = new_encrypted(), *big = new_encrypted();
	omemo_message out;

	(void)state;
	for (size_t i = 0; i <= OMEMO_PAYLOAD_MAX; i++)
		bytes[i] = (uint8_t)(i * 31);
	at_max = g_base64_encode(bytes, OMEMO_PAYLOAD_MAX);
	over_max = g_base64_encode(bytes, OMEMO_PAYLOAD_MAX + 1);
	xmlnode_insert_data(xmlnode_new_child(ok, "payload"), at_max, -1);
	xmlnode_insert_data(xmlnode_new_child(big, "payload"), over_max, -1);

	assert_int_equal(wire_parse_encrypted(ok, &out), OMEMO_OK);
	assert_int_equal(out.payload_len, OMEMO_PAYLOAD_MAX);
	assert_memory_equal(out.payload, bytes, OMEMO_PAYLOAD_MAX);
	omemo_message_clear(&out);
	assert_int_equal(wire_parse_encrypted(big, &out), OMEMO_ERR_WIRE_PAYLOAD_TOO_LARGE);

	xmlnode_free(ok);
	xmlnode_free(big);
	g_free(at_max);
	g_free(over_max);
	g_free(bytes);
}

static xmlnode *new_encrypted_with_keys(size_t n_keys, const char *last_rid)
{
	xmlnode *enc = xmlnode_new("encrypted"), *header, *key;
	char buf[16];

	xmlnode_set_namespace(enc, OMEMO_NS_LEGACY);
	header = xmlnode_new_child(enc, "header");
	xmlnode_set_attrib(header, "sid", "1");
	xmlnode_insert_data(xmlnode_new_child(header, "iv"), "AAECAwQFBgcICQoL", -1);
	for (size_t i = 0; i < n_keys; i++) {
		key = xmlnode_new_child(header, "key");
		g_snprintf(buf, sizeof(buf), "%zu", i + 1);
		xmlnode_set_attrib(key, "rid", i + 1 == n_keys && last_rid ? last_rid : buf);
		xmlnode_insert_data(key, "MwABAgMEBQ==", -1);
	}
	return enc;
}

static void test_header_of_10001_keys_is_refused(void **state)
{
	xmlnode *full = new_encrypted_with_keys(OMEMO_MESSAGE_MAX_KEYS, NULL);
	xmlnode *over = new_encrypted_with_keys(OMEMO_MESSAGE_MAX_KEYS + 1, "bad");
	omemo_message out;

	(void)state;
	assert_int_equal(wire_parse_encrypted(full, &out), OMEMO_OK);
	assert_int_equal(out.n_keys, OMEMO_MESSAGE_MAX_KEYS);
	assert_int_equal(out.keys[OMEMO_MESSAGE_MAX_KEYS - 1].rid, OMEMO_MESSAGE_MAX_KEYS);
	assert_int_equal(out.keys[OMEMO_MESSAGE_MAX_KEYS - 1].len, 7);
	omemo_message_clear(&out);
	assert_int_equal(wire_parse_encrypted(over, &out), OMEMO_ERR_WIRE_TOO_MANY_KEYS);
	assert_true(all_zero(&out, sizeof(out)));
	xmlnode_free(full);
	xmlnode_free(over);
}

static void test_key_of_4096_bytes_is_the_largest_accepted(void **state)
{
	char *text = b64_of_len(OMEMO_KEY_MAX, 0x33);
	xmlnode *enc = xmlnode_new("encrypted"), *header, *key;
	omemo_message out;

	(void)state;
	xmlnode_set_namespace(enc, OMEMO_NS_LEGACY);
	header = xmlnode_new_child(enc, "header");
	xmlnode_set_attrib(header, "sid", "1");
	key = xmlnode_new_child(header, "key");
	xmlnode_set_attrib(key, "rid", "1");
	xmlnode_insert_data(key, text, -1);
	xmlnode_insert_data(xmlnode_new_child(header, "iv"), "AAECAwQFBgcICQoL", -1);
	assert_int_equal(wire_parse_encrypted(enc, &out), OMEMO_OK);
	assert_int_equal(out.keys[0].len, OMEMO_KEY_MAX);
	omemo_message_clear(&out);
	xmlnode_free(enc);
	g_free(text);
}

static void check_bundle_prekey_count(GRand *rand, size_t n, int want)
{
	omemo_bundle in, out;
	xmlnode *node;

	make_bundle(rand, &in, n);
	node = wire_build_bundle(&in);
	assert_non_null(node);
	assert_int_equal(wire_parse_bundle(node, &out), want);
	if (want == OMEMO_OK)
		assert_bundles_equal(&in, &out);
	else
		assert_true(all_zero(&out, sizeof(out)));
	omemo_bundle_clear(&out);
	omemo_bundle_clear(&in);
	xmlnode_free(node);
}

static void test_bundle_prekey_count_limits(void **state)
{
	GRand *rand = g_rand_new_with_seed(1000);

	(void)state;
	check_bundle_prekey_count(rand, OMEMO_BUNDLE_MIN_PREKEYS - 1,
				  OMEMO_ERR_WIRE_TOO_FEW_PREKEYS);
	check_bundle_prekey_count(rand, OMEMO_BUNDLE_MIN_PREKEYS, OMEMO_OK);
	check_bundle_prekey_count(rand, OMEMO_BUNDLE_MAX_PREKEYS, OMEMO_OK);
	check_bundle_prekey_count(rand, OMEMO_BUNDLE_MAX_PREKEYS + 1,
				  OMEMO_ERR_WIRE_TOO_MANY_PREKEYS);
	g_rand_free(rand);
}

static void test_bundle_with_1001_prekeys_is_refused_before_reading_them(void **state)
{
	GRand *rand = g_rand_new_with_seed(1001);
	omemo_bundle in, out;
	xmlnode *node, *last;

	(void)state;
	make_bundle(rand, &in, OMEMO_BUNDLE_MAX_PREKEYS + 1);
	node = wire_build_bundle(&in);
	/* a broken last prekey: the count alone must refuse the bundle */
	last = xmlnode_get_child(node, "prekeys")->lastchild;
	xmlnode_set_attrib(last, "preKeyId", "broken");
	assert_int_equal(wire_parse_bundle(node, &out), OMEMO_ERR_WIRE_TOO_MANY_PREKEYS);
	omemo_bundle_clear(&in);
	xmlnode_free(node);
	g_rand_free(rand);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_conversations_message),
		cmocka_unit_test(test_parse_dino_message_with_iv_before_keys),
		cmocka_unit_test(test_parse_gajim_message),
		cmocka_unit_test(test_parse_python_oldmemo_message),
		cmocka_unit_test(test_parse_lurch_message_without_prekey_attribute),
		cmocka_unit_test(test_parse_message_with_16_byte_iv),
		cmocka_unit_test(test_parse_message_with_numeric_prekey_booleans),
		cmocka_unit_test(test_parse_message_keeps_both_keys_for_same_rid),
		cmocka_unit_test(test_parse_message_ignores_unknown_children_and_attributes),
		cmocka_unit_test(test_parse_message_with_line_wrapped_base64),
		cmocka_unit_test(test_parse_key_transport_message_without_payload),
		cmocka_unit_test(test_parse_encrypted_with_prefixed_names),
		cmocka_unit_test(test_parse_accepts_every_valid_base64_form),
		cmocka_unit_test(test_parse_devicelist_event_from_conversations),
		cmocka_unit_test(test_parse_devicelist_ignores_labels_and_keeps_duplicates_once),
		cmocka_unit_test(test_parse_devicelist_from_dino),
		cmocka_unit_test(test_parse_empty_devicelist_is_valid),
		cmocka_unit_test(test_parse_bundle_from_conversations),
		cmocka_unit_test(test_parse_bundle_from_dino_item_1_in_any_order),
		cmocka_unit_test(test_parse_bundle_with_wrapped_base64_and_extensions),
		cmocka_unit_test(test_find_item_payload_any_item_id_and_only_our_namespace),
		cmocka_unit_test(test_find_item_payload_absent_gives_null),
		cmocka_unit_test(test_devicelist_round_trip),
		cmocka_unit_test(test_empty_devicelist_round_trip),
		cmocka_unit_test(test_bundle_round_trip_in_published_order),
		cmocka_unit_test(test_encrypted_round_trip),
		cmocka_unit_test(test_key_transport_round_trip_has_no_payload),
		cmocka_unit_test(test_build_encrypted_writes_prekey_true_only_and_padded_base64),
		cmocka_unit_test(test_builders_refuse_what_no_peer_accepts),
		cmocka_unit_test(test_parse_accepts_children_without_namespace),
		cmocka_unit_test(test_parse_null_arguments),
		cmocka_unit_test(test_malformed_table_templates_are_valid),
		cmocka_unit_test(test_malformed_inputs_give_their_exact_error),
		cmocka_unit_test(test_devicelist_of_100000_ids_is_refused_quickly),
		cmocka_unit_test(test_devicelist_limit_counts_distinct_ids),
		cmocka_unit_test(test_payload_of_10_mib_is_refused_quickly),
		cmocka_unit_test(test_payload_limit_is_exact),
		cmocka_unit_test(test_header_of_10001_keys_is_refused),
		cmocka_unit_test(test_key_of_4096_bytes_is_the_largest_accepted),
		cmocka_unit_test(test_bundle_prekey_count_limits),
		cmocka_unit_test(test_bundle_with_1001_prekeys_is_refused_before_reading_them),
	};

	return cmocka_run_group_tests(tests, group_setup, NULL);
}
