/*
 * The legacy OMEMO elements (eu.siacs.conversations.axolotl, XEP-0384 0.3.0)
 * as libpurple xmlnode trees: parsing the device list, the bundle and
 * <encrypted> into the structs of omemo_types.h, and building them back.
 * Everything a peer sends is bounded and checked here, before it reaches the
 * engine; every defect maps to one OMEMO_ERR_WIRE_* code.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>
#include <xmlnode.h>

#include "err.h"
#include "wire.h"

#define IV_MAX 64 /* 12 and 16 are what clients send; anything up to this is tolerated */

enum num_result {
	NUM_OK,
	NUM_INVALID,
	NUM_RANGE
};
enum b64_result {
	B64_OK,
	B64_BAD,
	B64_TOO_LARGE
};

/* ---- tree helpers --------------------------------------------------- */

static bool node_is_root(const xmlnode *node, const char *name)
{
	return node && node->type == XMLNODE_TYPE_TAG && g_strcmp0(node->name, name) == 0 &&
	       g_strcmp0(node->xmlns, OMEMO_NS_LEGACY) == 0;
}

/*
 * Parsed stanzas give every child its resolved namespace; trees from our own
 * builders leave it NULL (inherited from the root). Elements of any other
 * namespace are someone else's extension and are skipped.
 */
static bool node_is_child(const xmlnode *node, const char *name)
{
	return node->type == XMLNODE_TYPE_TAG && g_strcmp0(node->name, name) == 0 &&
	       (node->xmlns == NULL || strcmp(node->xmlns, OMEMO_NS_LEGACY) == 0);
}

/*
 * An unprefixed attribute. xmlnode_get_attrib() would also return a prefixed
 * one from another namespace (x:sid='...'), which is not ours to read.
 */
static const char *node_attr(const xmlnode *node, const char *name)
{
	for (const xmlnode *a = node->child; a; a = a->next) {
		if (a->type == XMLNODE_TYPE_ATTRIB && a->prefix == NULL && a->xmlns == NULL &&
		    g_strcmp0(a->name, name) == 0)
			return a->data;
	}
	return NULL;
}

/* ---- numbers -------------------------------------------------------- */

/*
 * Decimal digits only (no sign, no blanks, no hex). The value stops growing
 * once it passes max, so any number of digits is safe and ends in NUM_RANGE.
 */
static enum num_result parse_decimal(const char *text, uint32_t min, uint32_t max, uint32_t *out)
{
	uint64_t value = 0;
	bool over = false;

	if (!text || !*text)
		return NUM_INVALID;
	for (const char *p = text; *p; p++) {
		if (*p < '0' || *p > '9')
			return NUM_INVALID;
		if (!over) {
			value = value * 10 + (uint64_t)(*p - '0');
			over = value > max;
		}
	}
	if (over || value < min)
		return NUM_RANGE;
	*out = (uint32_t)value;
	return NUM_OK;
}

static int parse_device_id(const char *text, uint32_t *out, int missing, int invalid, int range)
{
	if (!text)
		return missing;
	switch (parse_decimal(text, OMEMO_DEVICE_ID_MIN, OMEMO_DEVICE_ID_MAX, out)) {
	case NUM_OK:
		return 0;
	case NUM_INVALID:
		return invalid;
	default:
		return range;
	}
}

/* Prekey ids are libsignal uint32 values, 0 included. */
static int parse_prekey_id(const char *text, uint32_t *out, int missing, int invalid)
{
	if (!text)
		return missing;
	return parse_decimal(text, 0, UINT32_MAX, out) == NUM_OK ? 0 : invalid;
}

/* ---- base64 --------------------------------------------------------- */

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Some clients wrap their base64 in lines (and indent them). */
static bool b64_is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

/*
 * Validates the text of `node` as standard base64 and computes its decoded
 * length without allocating. The text is read from the DATA children in
 * place (libxml2 may deliver one text in several pieces), and the scan stops
 * as soon as the decoded size must exceed `max`, so an oversized payload
 * costs a bounded amount of work.
 */
static enum b64_result b64_measure(const xmlnode *node, size_t max, size_t *out_len)
{
	size_t n_data = 0, n_pad = 0, len;

	for (const xmlnode *c = node->child; c; c = c->next) {
		if (c->type != XMLNODE_TYPE_DATA || !c->data)
			continue;
		for (size_t i = 0; i < c->data_sz; i++) {
			unsigned char ch = (unsigned char)c->data[i];

			if (b64_is_space(ch))
				continue;
			if (ch == '=') {
				if (++n_pad > 2)
					return B64_BAD;
				continue;
			}
			/* '=' only ever ends the text */
			if (n_pad || b64_value(ch) < 0)
				return B64_BAD;
			n_data++;
			if (n_data / 4 * 3 > max)
				return B64_TOO_LARGE;
		}
	}
	/* a lone 6-bit group cannot encode a byte; padding completes a quantum */
	if (n_data % 4 == 1 || (n_pad && (n_data + n_pad) % 4 != 0))
		return B64_BAD;
	len = n_data / 4 * 3 + (n_data % 4 ? n_data % 4 - 1 : 0);
	if (len > max)
		return B64_TOO_LARGE;
	*out_len = len;
	return B64_OK;
}

/* Decodes text already accepted by b64_measure() into exactly `len` bytes. */
static void b64_decode_into(const xmlnode *node, uint8_t *out, size_t len)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t n = 0;

	for (const xmlnode *c = node->child; c && n < len; c = c->next) {
		if (c->type != XMLNODE_TYPE_DATA || !c->data)
			continue;
		for (size_t i = 0; i < c->data_sz && n < len; i++) {
			int v = b64_value((unsigned char)c->data[i]);

			if (v < 0)
				continue; /* blanks and padding */
			acc = (acc << 6) | (uint32_t)v;
			bits += 6;
			if (bits >= 8) {
				bits -= 8;
				out[n++] = (uint8_t)(acc >> bits);
				acc &= (1u << bits) - 1;
			}
		}
	}
}

/* Variable-length field: *out is NULL when the text decodes to nothing. */
static enum b64_result b64_decode_alloc(const xmlnode *node, size_t max, uint8_t **out,
					size_t *out_len)
{
	enum b64_result r;
	size_t len = 0;

	*out = NULL;
	*out_len = 0;
	r = b64_measure(node, max, &len);
	if (r != B64_OK)
		return r;
	if (len) {
		*out = g_malloc(len);
		b64_decode_into(node, *out, len);
	}
	*out_len = len;
	return B64_OK;
}

/* Fixed-length field (keys, signature): any other length is a length error. */
static int b64_decode_fixed(const xmlnode *node, uint8_t *out, size_t len, int bad, int wrong_len)
{
	size_t got = 0;

	switch (b64_measure(node, len, &got)) {
	case B64_OK:
		break;
	case B64_BAD:
		return bad;
	default:
		return wrong_len;
	}
	if (got != len)
		return wrong_len;
	b64_decode_into(node, out, len);
	return 0;
}

/* ---- device list ---------------------------------------------------- */

int wire_parse_devicelist(const xmlnode *list, omemo_devicelist *out)
{
	int ret = 0;
	GHashTable *seen = NULL;
	omemo_devicelist res = { 0 };
	size_t cap = 0;

	if (!out)
		return OMEMO_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	if (!node_is_root(list, "list"))
		return OMEMO_ERR_WIRE_ELEMENT;

	seen = g_hash_table_new(g_direct_hash, g_direct_equal);
	for (const xmlnode *c = list->child; c; c = c->next) {
		uint32_t id = 0;

		if (!node_is_child(c, "device"))
			continue;
		/* label and anything newer are not ours to judge */
		ret = parse_device_id(node_attr(c, "id"), &id, OMEMO_ERR_WIRE_DEVICE_ID_MISSING,
				      OMEMO_ERR_WIRE_DEVICE_ID_INVALID,
				      OMEMO_ERR_WIRE_DEVICE_ID_RANGE);
		if (ret)
			goto out;
		if (!g_hash_table_add(seen, GUINT_TO_POINTER(id)))
			continue;
		/* stop at the first id over the limit: the rest is never looked at */
		if (res.n_ids == OMEMO_DEVICELIST_MAX) {
			ret = OMEMO_ERR_WIRE_TOO_MANY_DEVICES;
			goto out;
		}
		if (res.n_ids == cap) {
			cap = cap ? MIN(cap * 2, (size_t)OMEMO_DEVICELIST_MAX) : 16;
			res.ids = g_renew(uint32_t, res.ids, cap);
		}
		res.ids[res.n_ids++] = id;
	}
	*out = res;
	res = (omemo_devicelist){ 0 };

out:
	omemo_devicelist_clear(&res);
	if (seen)
		g_hash_table_destroy(seen);
	return ret;
}

static void set_attrib_u32(xmlnode *node, const char *attr, uint32_t value)
{
	char buf[16];

	snprintf(buf, sizeof(buf), "%" PRIu32, value);
	xmlnode_set_attrib(node, attr, buf);
}

static bool device_id_ok(uint32_t id)
{
	return id >= OMEMO_DEVICE_ID_MIN && id <= OMEMO_DEVICE_ID_MAX;
}

xmlnode *wire_build_devicelist(const omemo_devicelist *list)
{
	xmlnode *node;

	if (!list || (list->n_ids && !list->ids))
		return NULL;
	for (size_t i = 0; i < list->n_ids; i++) {
		if (!device_id_ok(list->ids[i]))
			return NULL;
	}
	node = xmlnode_new("list");
	xmlnode_set_namespace(node, OMEMO_NS_LEGACY);
	/* no label: python-oldmemo's schema rejects the whole list over it */
	for (size_t i = 0; i < list->n_ids; i++)
		set_attrib_u32(xmlnode_new_child(node, "device"), "id", list->ids[i]);
	return node;
}

/* ---- bundle --------------------------------------------------------- */

/* An element that may occur at most once among its parent's children. */
struct single_child {
	const char *name;
	const xmlnode **slot;
	int duplicate; /* the error for a second one */
};

static int collect_single_children(const xmlnode *parent, const struct single_child *wanted,
				   size_t n_wanted)
{
	for (const xmlnode *c = parent->child; c; c = c->next) {
		for (size_t i = 0; i < n_wanted; i++) {
			if (!node_is_child(c, wanted[i].name))
				continue;
			if (*wanted[i].slot)
				return wanted[i].duplicate;
			*wanted[i].slot = c;
			break;
		}
	}
	return 0;
}

static int parse_prekeys(const xmlnode *prekeys, omemo_bundle *res)
{
	int ret = 0;
	GHashTable *seen = NULL;
	size_t n = 0;

	for (const xmlnode *c = prekeys->child; c; c = c->next) {
		if (!node_is_child(c, "preKeyPublic"))
			continue;
		/* stop counting at the limit: a huge list is refused unread */
		if (++n > OMEMO_BUNDLE_MAX_PREKEYS)
			return OMEMO_ERR_WIRE_TOO_MANY_PREKEYS;
	}
	if (n < OMEMO_BUNDLE_MIN_PREKEYS)
		return OMEMO_ERR_WIRE_TOO_FEW_PREKEYS;

	res->prekeys = g_new0(omemo_prekey_pub, n);
	seen = g_hash_table_new(g_direct_hash, g_direct_equal);
	for (const xmlnode *c = prekeys->child; c; c = c->next) {
		omemo_prekey_pub *pk;

		if (!node_is_child(c, "preKeyPublic"))
			continue;
		pk = &res->prekeys[res->n_prekeys];
		ret = parse_prekey_id(node_attr(c, "preKeyId"), &pk->id,
				      OMEMO_ERR_WIRE_PREKEY_ID_MISSING,
				      OMEMO_ERR_WIRE_PREKEY_ID_INVALID);
		if (ret)
			goto out;
		if (!g_hash_table_add(seen, GUINT_TO_POINTER(pk->id))) {
			ret = OMEMO_ERR_WIRE_PREKEY_ID_DUPLICATE;
			goto out;
		}
		ret = b64_decode_fixed(c, pk->key, OMEMO_PUBKEY_LEN, OMEMO_ERR_WIRE_PREKEY_BASE64,
				       OMEMO_ERR_WIRE_PREKEY_LENGTH);
		if (ret)
			goto out;
		res->n_prekeys++;
	}

out:
	g_hash_table_destroy(seen);
	return ret;
}

int wire_parse_bundle(const xmlnode *bundle, omemo_bundle *out)
{
	int ret = 0;
	omemo_bundle res = { 0 };
	const xmlnode *spk = NULL, *sig = NULL, *ik = NULL, *prekeys = NULL;
	const struct single_child wanted[] = {
		{ "signedPreKeyPublic", &spk, OMEMO_ERR_WIRE_SPK_DUPLICATE },
		{ "signedPreKeySignature", &sig, OMEMO_ERR_WIRE_SIG_DUPLICATE },
		{ "identityKey", &ik, OMEMO_ERR_WIRE_IK_DUPLICATE },
		{ "prekeys", &prekeys, OMEMO_ERR_WIRE_PREKEYS_DUPLICATE },
	};

	if (!out)
		return OMEMO_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	if (!node_is_root(bundle, "bundle"))
		return OMEMO_ERR_WIRE_ELEMENT;

	ret = collect_single_children(bundle, wanted, G_N_ELEMENTS(wanted));
	if (ret)
		goto out;
	if (!spk) {
		ret = OMEMO_ERR_WIRE_SPK_MISSING;
		goto out;
	}
	if (!sig) {
		ret = OMEMO_ERR_WIRE_SIG_MISSING;
		goto out;
	}
	if (!ik) {
		ret = OMEMO_ERR_WIRE_IK_MISSING;
		goto out;
	}
	if (!prekeys) {
		ret = OMEMO_ERR_WIRE_PREKEYS_MISSING;
		goto out;
	}

	ret = parse_prekey_id(node_attr(spk, "signedPreKeyId"), &res.spk_id,
			      OMEMO_ERR_WIRE_SPK_ID_MISSING, OMEMO_ERR_WIRE_SPK_ID_INVALID);
	if (ret)
		goto out;
	ret = b64_decode_fixed(spk, res.spk, OMEMO_PUBKEY_LEN, OMEMO_ERR_WIRE_SPK_BASE64,
			       OMEMO_ERR_WIRE_SPK_LENGTH);
	if (ret)
		goto out;
	ret = b64_decode_fixed(sig, res.spk_sig, OMEMO_SIGNATURE_LEN, OMEMO_ERR_WIRE_SIG_BASE64,
			       OMEMO_ERR_WIRE_SIG_LENGTH);
	if (ret)
		goto out;
	ret = b64_decode_fixed(ik, res.ik, OMEMO_PUBKEY_LEN, OMEMO_ERR_WIRE_IK_BASE64,
			       OMEMO_ERR_WIRE_IK_LENGTH);
	if (ret)
		goto out;
	ret = parse_prekeys(prekeys, &res);
	if (ret)
		goto out;
	*out = res;
	res = (omemo_bundle){ 0 };

out:
	omemo_bundle_clear(&res);
	return ret;
}

static void insert_b64(xmlnode *node, const uint8_t *data, size_t len)
{
	char *text = g_base64_encode(data, len);

	xmlnode_insert_data(node, text, -1);
	g_free(text);
}

xmlnode *wire_build_bundle(const omemo_bundle *bundle)
{
	xmlnode *node, *child, *prekeys;

	if (!bundle || (bundle->n_prekeys && !bundle->prekeys))
		return NULL;
	node = xmlnode_new("bundle");
	xmlnode_set_namespace(node, OMEMO_NS_LEGACY);

	/* the order of XEP-0384 0.3.0's example; some readers expect it */
	child = xmlnode_new_child(node, "signedPreKeyPublic");
	set_attrib_u32(child, "signedPreKeyId", bundle->spk_id);
	insert_b64(child, bundle->spk, sizeof(bundle->spk));
	insert_b64(xmlnode_new_child(node, "signedPreKeySignature"), bundle->spk_sig,
		   sizeof(bundle->spk_sig));
	insert_b64(xmlnode_new_child(node, "identityKey"), bundle->ik, sizeof(bundle->ik));
	prekeys = xmlnode_new_child(node, "prekeys");
	for (size_t i = 0; i < bundle->n_prekeys; i++) {
		child = xmlnode_new_child(prekeys, "preKeyPublic");
		set_attrib_u32(child, "preKeyId", bundle->prekeys[i].id);
		insert_b64(child, bundle->prekeys[i].key, sizeof(bundle->prekeys[i].key));
	}
	return node;
}

/* ---- <encrypted> ---------------------------------------------------- */

/* xs:boolean, as XEP-0384 declares it; absent means a plain WhisperMessage */
static int parse_prekey_attr(const char *text, bool *out)
{
	if (!text || strcmp(text, "false") == 0 || strcmp(text, "0") == 0) {
		*out = false;
		return 0;
	}
	if (strcmp(text, "true") == 0 || strcmp(text, "1") == 0) {
		*out = true;
		return 0;
	}
	return OMEMO_ERR_WIRE_PREKEY_ATTR;
}

static int parse_key(const xmlnode *node, omemo_key *key)
{
	int ret;

	ret = parse_device_id(node_attr(node, "rid"), &key->rid, OMEMO_ERR_WIRE_RID_MISSING,
			      OMEMO_ERR_WIRE_RID_INVALID, OMEMO_ERR_WIRE_RID_RANGE);
	if (ret)
		return ret;
	ret = parse_prekey_attr(node_attr(node, "prekey"), &key->prekey);
	if (ret)
		return ret;
	switch (b64_decode_alloc(node, OMEMO_KEY_MAX, &key->data, &key->len)) {
	case B64_OK:
		return key->len ? 0 : OMEMO_ERR_WIRE_KEY_EMPTY;
	case B64_BAD:
		return OMEMO_ERR_WIRE_KEY_BASE64;
	default:
		return OMEMO_ERR_WIRE_KEY_TOO_LONG;
	}
}

static int parse_header(const xmlnode *header, omemo_message *res)
{
	int ret = 0;
	const xmlnode *iv = NULL;
	size_t n_keys = 0;

	ret = parse_device_id(node_attr(header, "sid"), &res->sid, OMEMO_ERR_WIRE_SID_MISSING,
			      OMEMO_ERR_WIRE_SID_INVALID, OMEMO_ERR_WIRE_SID_RANGE);
	if (ret)
		return ret;

	/* Dino puts <iv> before the keys: collect first, in any order */
	for (const xmlnode *c = header->child; c; c = c->next) {
		if (node_is_child(c, "key")) {
			if (++n_keys > OMEMO_MESSAGE_MAX_KEYS)
				return OMEMO_ERR_WIRE_TOO_MANY_KEYS;
		} else if (node_is_child(c, "iv")) {
			if (iv)
				return OMEMO_ERR_WIRE_IV_DUPLICATE;
			iv = c;
		}
	}
	if (n_keys == 0)
		return OMEMO_ERR_WIRE_NO_KEYS;
	if (!iv)
		return OMEMO_ERR_WIRE_IV_MISSING;

	/* every key is kept, a repeated rid too: the receiver tries each */
	res->keys = g_new0(omemo_key, n_keys);
	for (const xmlnode *c = header->child; c; c = c->next) {
		if (!node_is_child(c, "key"))
			continue;
		/* counted before parsing so that clearing frees a half-parsed key */
		ret = parse_key(c, &res->keys[res->n_keys++]);
		if (ret)
			return ret;
	}

	switch (b64_decode_alloc(iv, IV_MAX, &res->iv, &res->iv_len)) {
	case B64_OK:
		return res->iv_len ? 0 : OMEMO_ERR_WIRE_IV_LENGTH;
	case B64_BAD:
		return OMEMO_ERR_WIRE_IV_BASE64;
	default:
		return OMEMO_ERR_WIRE_IV_LENGTH;
	}
}

int wire_parse_encrypted(const xmlnode *encrypted, omemo_message *out)
{
	int ret = 0;
	omemo_message res = { 0 };
	const xmlnode *header = NULL, *payload = NULL;
	const struct single_child wanted[] = {
		{ "header", &header, OMEMO_ERR_WIRE_HEADER_DUPLICATE },
		{ "payload", &payload, OMEMO_ERR_WIRE_PAYLOAD_DUPLICATE },
	};

	if (!out)
		return OMEMO_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	if (!node_is_root(encrypted, "encrypted"))
		return OMEMO_ERR_WIRE_ELEMENT;

	ret = collect_single_children(encrypted, wanted, G_N_ELEMENTS(wanted));
	if (ret)
		goto out;
	if (!header) {
		ret = OMEMO_ERR_WIRE_HEADER_MISSING;
		goto out;
	}
	ret = parse_header(header, &res);
	if (ret)
		goto out;

	/* no <payload>: a key-transport message, payload stays NULL */
	if (payload) {
		switch (b64_decode_alloc(payload, OMEMO_PAYLOAD_MAX, &res.payload,
					 &res.payload_len)) {
		case B64_OK:
			ret = res.payload_len ? 0 : OMEMO_ERR_WIRE_PAYLOAD_EMPTY;
			break;
		case B64_BAD:
			ret = OMEMO_ERR_WIRE_PAYLOAD_BASE64;
			break;
		default:
			ret = OMEMO_ERR_WIRE_PAYLOAD_TOO_LARGE;
			break;
		}
		if (ret)
			goto out;
	}
	*out = res;
	res = (omemo_message){ 0 };

out:
	omemo_message_clear(&res);
	return ret;
}

xmlnode *wire_build_encrypted(const omemo_message *msg)
{
	xmlnode *node, *header, *child;

	/* refuse what no receiver could parse rather than emit it */
	if (!msg || !device_id_ok(msg->sid) || !msg->n_keys || !msg->keys || !msg->iv ||
	    !msg->iv_len || (msg->payload && !msg->payload_len))
		return NULL;
	for (size_t i = 0; i < msg->n_keys; i++) {
		if (!device_id_ok(msg->keys[i].rid) || !msg->keys[i].data || !msg->keys[i].len)
			return NULL;
	}

	node = xmlnode_new("encrypted");
	xmlnode_set_namespace(node, OMEMO_NS_LEGACY);
	header = xmlnode_new_child(node, "header");
	set_attrib_u32(header, "sid", msg->sid);
	for (size_t i = 0; i < msg->n_keys; i++) {
		child = xmlnode_new_child(header, "key");
		set_attrib_u32(child, "rid", msg->keys[i].rid);
		/* only ever 'true': absent already means false to every reader */
		if (msg->keys[i].prekey)
			xmlnode_set_attrib(child, "prekey", "true");
		insert_b64(child, msg->keys[i].data, msg->keys[i].len);
	}
	insert_b64(xmlnode_new_child(header, "iv"), msg->iv, msg->iv_len);
	if (msg->payload)
		insert_b64(xmlnode_new_child(node, "payload"), msg->payload, msg->payload_len);
	return node;
}

/* ---- pubsub items --------------------------------------------------- */

xmlnode *wire_find_item_payload(xmlnode *items, const char *name)
{
	if (!items || !name)
		return NULL;
	/* any item id: Conversations publishes 'current', Dino '1' */
	for (xmlnode *item = items->child; item; item = item->next) {
		if (item->type != XMLNODE_TYPE_TAG || g_strcmp0(item->name, "item") != 0)
			continue;
		for (xmlnode *c = item->child; c; c = c->next) {
			if (c->type == XMLNODE_TYPE_TAG && g_strcmp0(c->name, name) == 0 &&
			    g_strcmp0(c->xmlns, OMEMO_NS_LEGACY) == 0)
				return c;
		}
	}
	return NULL;
}
