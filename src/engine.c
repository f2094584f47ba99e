/*
 * The OMEMO engine of one account: it owns the Signal context and store
 * context, creates and maintains the own identity (device id, identity key,
 * prekeys, signed prekeys), builds sessions from bundles, and turns a
 * payload into per-device keys and back. Each state-changing call is one
 * store transaction, committed before the call returns: what the caller then
 * sends or shows is always backed by durable ratchet state.
 */
#include <string.h>

#include <glib.h>

#include "engine.h"
#include "err.h"
#include "payload.h"
#include "signal_compat.h"
#include "store.h"

/* Prekey ids live in 1..2^24-1 (libsignal's Medium range). */
#define PREKEY_ID_MAX 0xffffffu

struct engine {
	char *own_jid;
	store_t *store;
	signal_context *ctx;
	signal_protocol_store_context *sctx;
	uint32_t device_id;
	uint32_t registration_id;
	uint8_t ik[OMEMO_PUBKEY_LEN];
};

static int64_t now_seconds(void)
{
	return g_get_real_time() / G_USEC_PER_SEC;
}

static void engine_log_cb(int level, const char *message, size_t len, void *user_data)
{
	if (level <= SG_LOG_ERROR)
		g_warning("signal: %.*s", (int)len, message);
	else
		g_debug("signal: %.*s", (int)len, message);
}

/* Map a failure the Signal library reported to our code: a store failure
 * underneath wins, since it names the real cause (disk full, read-only). */
static int engine_map_error(engine_t *engine, int sg)
{
	int st = store_last_error(engine->store);

	if (st != 0)
		return st;
	switch (sg) {
	case SG_ERR_NOMEM:
		return OMEMO_ERR_NOMEM;
	case SG_ERR_DUPLICATE_MESSAGE:
		return OMEMO_ERR_DUPLICATE;
	case SG_ERR_NO_SESSION:
		return OMEMO_ERR_NO_SESSION;
	case SG_ERR_INVALID_KEY_ID:
	case SG_ERR_INVALID_MESSAGE:
	case SG_ERR_INVALID_MAC:
	case SG_ERR_INVALID_PROTO_BUF:
	case SG_ERR_INVALID_VERSION:
	case SG_ERR_LEGACY_MESSAGE:
	case SG_ERR_INVALID_KEY:
	case SG_ERR_STALE_KEY_EXCHANGE:
	case SG_ERR_UNTRUSTED_IDENTITY:
		return OMEMO_ERR_UNDECRYPTABLE;
	default:
		return sg < 0 ? sg : OMEMO_ERR_CRYPTO;
	}
}

static int serialize_public(const ec_public_key *key, uint8_t out[OMEMO_PUBKEY_LEN])
{
	signal_buffer *buf = NULL;
	int ret = ec_public_key_serialize(&buf, key);

	if (ret < 0)
		return ret;
	if (signal_buffer_len(buf) != OMEMO_PUBKEY_LEN) {
		ret = OMEMO_ERR_CRYPTO;
	} else {
		memcpy(out, signal_buffer_data(buf), OMEMO_PUBKEY_LEN);
		ret = 0;
	}
	signal_buffer_free(buf);
	return ret;
}

/* ---- prekeys and signed prekeys ---- */

static int engine_next_id(engine_t *engine, const char *key, uint32_t max, uint32_t *id)
{
	int64_t next = 1;
	int ret = store_meta_get_int(engine->store, key, &next);

	if (ret == OMEMO_ERR_NOT_FOUND)
		next = 1;
	else if (ret < 0)
		return ret;
	if (next < 1 || next > (int64_t)max)
		next = 1;
	*id = (uint32_t)next;
	return store_meta_set_int(engine->store, key, next >= (int64_t)max ? 1 : next + 1);
}

static int engine_generate_prekeys(engine_t *engine, unsigned count)
{
	int ret = 0;

	for (unsigned i = 0; i < count; i++) {
		uint32_t id;
		ec_key_pair *pair = NULL;
		session_pre_key *pk = NULL;
		signal_buffer *rec = NULL;

		ret = engine_next_id(engine, "next_prekey_id", PREKEY_ID_MAX, &id);
		if (ret < 0)
			return ret;
		ret = curve_generate_key_pair(engine->ctx, &pair);
		if (ret == 0)
			ret = session_pre_key_create(&pk, id, pair);
		if (ret == 0)
			ret = session_pre_key_serialize(&rec, pk);
		if (ret == 0)
			ret = store_prekey_save(engine->store, id, signal_buffer_data(rec),
			                        signal_buffer_len(rec));
		signal_buffer_bzero_free(rec);
		SIGNAL_UNREF(pk);
		SIGNAL_UNREF(pair);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static int engine_load_identity_pair(engine_t *engine, ratchet_identity_key_pair **out)
{
	uint32_t device_id, registration_id;
	signal_buffer *pub = NULL, *priv = NULL;
	ec_public_key *pub_key = NULL;
	ec_private_key *priv_key = NULL;
	int ret;

	ret = store_identity_get(engine->store, &device_id, &registration_id, &pub, &priv);
	if (ret < 0)
		goto out;
	ret = curve_decode_point(&pub_key, signal_buffer_data(pub), signal_buffer_len(pub),
	                         engine->ctx);
	if (ret < 0)
		goto out;
	ret = curve_decode_private_point(&priv_key, signal_buffer_data(priv),
	                                 signal_buffer_len(priv), engine->ctx);
	if (ret < 0)
		goto out;
	ret = ratchet_identity_key_pair_create(out, pub_key, priv_key);
out:
	SIGNAL_UNREF(pub_key);
	SIGNAL_UNREF(priv_key);
	signal_buffer_free(pub);
	signal_buffer_bzero_free(priv);
	return ret;
}

static int engine_generate_signed_prekey(engine_t *engine, int64_t now)
{
	ratchet_identity_key_pair *ikp = NULL;
	session_signed_pre_key *spk = NULL;
	signal_buffer *rec = NULL;
	uint32_t id;
	int ret;

	ret = engine_load_identity_pair(engine, &ikp);
	if (ret < 0)
		goto out;
	ret = engine_next_id(engine, "next_signed_prekey_id", PREKEY_ID_MAX, &id);
	if (ret < 0)
		goto out;
	ret = signal_protocol_key_helper_generate_signed_pre_key(&spk, ikp, id,
	                                                         (uint64_t)now * 1000,
	                                                         engine->ctx);
	if (ret < 0)
		goto out;
	ret = session_signed_pre_key_serialize(&rec, spk);
	if (ret < 0)
		goto out;
	ret = store_signed_prekey_save(engine->store, id, signal_buffer_data(rec),
	                               signal_buffer_len(rec), now);
out:
	signal_buffer_bzero_free(rec);
	SIGNAL_UNREF(spk);
	SIGNAL_UNREF(ikp);
	return ret;
}

static bool id_in(uint32_t id, const store_device *devs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (devs[i].id == id)
			return true;
	return false;
}

/* A new account: device id, identity, prekeys, signed prekey, in one commit. */
static int engine_create_identity(engine_t *engine)
{
	ratchet_identity_key_pair *ikp = NULL;
	signal_buffer *pub = NULL, *priv = NULL;
	store_device *known = NULL;
	size_t n_known = 0;
	uint32_t device_id = 0, registration_id = 0;
	int64_t now = now_seconds();
	int ret;

	ret = store_begin(engine->store);
	if (ret < 0)
		return ret;
	ret = store_devices_get(engine->store, OMEMO_NS_LEGACY, engine->own_jid, false, &known,
	                        &n_known);
	if (ret < 0)
		goto out;
	do {
		ret = payload_random((uint8_t *)&device_id, sizeof(device_id));
		if (ret < 0)
			goto out;
		device_id &= OMEMO_DEVICE_ID_MAX;
	} while (device_id < OMEMO_DEVICE_ID_MIN || id_in(device_id, known, n_known));

	ret = signal_protocol_key_helper_generate_registration_id(&registration_id, 0, engine->ctx);
	if (ret < 0)
		goto out;
	ret = signal_protocol_key_helper_generate_identity_key_pair(&ikp, engine->ctx);
	if (ret < 0)
		goto out;
	ret = ec_public_key_serialize(&pub, ratchet_identity_key_pair_get_public(ikp));
	if (ret < 0)
		goto out;
	ret = ec_private_key_serialize(&priv, ratchet_identity_key_pair_get_private(ikp));
	if (ret < 0)
		goto out;
	ret = store_identity_set(engine->store, device_id, registration_id,
	                         signal_buffer_data(pub), signal_buffer_len(pub),
	                         signal_buffer_data(priv), signal_buffer_len(priv));
	if (ret < 0)
		goto out;
	ret = engine_generate_prekeys(engine, ENGINE_PREKEY_COUNT);
	if (ret < 0)
		goto out;
	ret = engine_generate_signed_prekey(engine, now);
	if (ret < 0)
		goto out;
	ret = store_commit(engine->store);
out:
	if (ret < 0)
		store_rollback(engine->store);
	g_free(known);
	signal_buffer_free(pub);
	signal_buffer_bzero_free(priv);
	SIGNAL_UNREF(ikp);
	return ret;
}

static int engine_load_identity(engine_t *engine)
{
	signal_buffer *pub = NULL, *priv = NULL;
	int ret;

	ret = store_identity_get(engine->store, &engine->device_id, &engine->registration_id, &pub,
	                         &priv);
	if (ret < 0)
		return ret;
	if (signal_buffer_len(pub) != OMEMO_PUBKEY_LEN) {
		ret = OMEMO_ERR_STORE_CORRUPT;
	} else {
		memcpy(engine->ik, signal_buffer_data(pub), OMEMO_PUBKEY_LEN);
		ret = 0;
	}
	signal_buffer_free(pub);
	signal_buffer_bzero_free(priv);
	return ret;
}

int engine_open(const char *db_path, const char *own_jid, engine_t **out)
{
	engine_t *engine = NULL;
	int ret;

	if (!db_path || !own_jid || !out)
		return OMEMO_ERR_INVALID_ARG;
	*out = NULL;
	ret = payload_crypto_init();
	if (ret < 0)
		return ret;

	engine = g_new0(engine_t, 1);
	engine->own_jid = g_strdup(own_jid);
	ret = store_open(db_path, &engine->store);
	if (ret < 0)
		goto out;
	ret = signal_context_create(&engine->ctx, engine);
	if (ret < 0)
		goto out;
	signal_context_set_log_function(engine->ctx, engine_log_cb);
	ret = payload_crypto_provider_set(engine->ctx);
	if (ret < 0)
		goto out;
	store_set_signal_context(engine->store, engine->ctx);
	ret = signal_protocol_store_context_create(&engine->sctx, engine->ctx);
	if (ret < 0)
		goto out;
	ret = store_signal_register(engine->store, engine->sctx, OMEMO_NS_LEGACY);
	if (ret < 0)
		goto out;

	ret = engine_load_identity(engine);
	if (ret == OMEMO_ERR_NOT_FOUND) {
		ret = engine_create_identity(engine);
		if (ret == 0)
			ret = engine_load_identity(engine);
	}
out:
	if (ret < 0) {
		engine_close(engine);
		return ret;
	}
	*out = engine;
	return 0;
}

void engine_close(engine_t *engine)
{
	if (!engine)
		return;
	if (engine->sctx)
		signal_protocol_store_context_destroy(engine->sctx);
	if (engine->ctx)
		signal_context_destroy(engine->ctx);
	store_close(engine->store);
	g_free(engine->own_jid);
	g_free(engine);
}

uint32_t engine_device_id(const engine_t *engine)
{
	return engine->device_id;
}

const char *engine_own_jid(const engine_t *engine)
{
	return engine->own_jid;
}

store_t *engine_store(engine_t *engine)
{
	return engine->store;
}

const uint8_t *engine_identity_key(const engine_t *engine)
{
	return engine->ik;
}

char *engine_fingerprint_hex(const uint8_t *key, size_t len)
{
	GString *s;

	if (!key || len != OMEMO_PUBKEY_LEN)
		return NULL;
	s = g_string_sized_new(2 * (OMEMO_PUBKEY_LEN - 1) + 1);
	for (size_t i = 1; i < len; i++)
		g_string_append_printf(s, "%02x", key[i]);
	return g_string_free(s, FALSE);
}

char *engine_fingerprint_format(const uint8_t *key, size_t len)
{
	char *hex = engine_fingerprint_hex(key, len);
	GString *s;

	if (!hex)
		return NULL;
	s = g_string_sized_new(72);
	for (size_t i = 0; i < 64; i += 8) {
		if (i)
			g_string_append_c(s, ' ');
		g_string_append_len(s, hex + i, 8);
	}
	g_free(hex);
	return g_string_free(s, FALSE);
}

/* ---- bundle ---- */

static int engine_bundle_signed_prekey(engine_t *engine, omemo_bundle *out)
{
	uint32_t *ids = NULL;
	int64_t *created = NULL;
	size_t n = 0;
	signal_buffer *rec = NULL;
	session_signed_pre_key *spk = NULL;
	int ret;

	ret = store_signed_prekey_list(engine->store, &ids, &created, &n);
	if (ret < 0)
		goto out;
	if (n == 0) {
		ret = OMEMO_ERR_NO_IDENTITY;
		goto out;
	}
	ret = store_signed_prekey_load(engine->store, ids[0], &rec);
	if (ret < 0)
		goto out;
	ret = session_signed_pre_key_deserialize(&spk, signal_buffer_data(rec),
	                                         signal_buffer_len(rec), engine->ctx);
	if (ret < 0)
		goto out;
	if (session_signed_pre_key_get_signature_len(spk) != OMEMO_SIGNATURE_LEN) {
		ret = OMEMO_ERR_STORE_CORRUPT;
		goto out;
	}
	out->spk_id = ids[0];
	memcpy(out->spk_sig, session_signed_pre_key_get_signature(spk), OMEMO_SIGNATURE_LEN);
	ret = serialize_public(ec_key_pair_get_public(session_signed_pre_key_get_key_pair(spk)),
	                       out->spk);
out:
	SIGNAL_UNREF(spk);
	signal_buffer_bzero_free(rec);
	g_free(ids);
	g_free(created);
	return ret;
}

int engine_get_bundle(engine_t *engine, omemo_bundle *out)
{
	uint32_t *ids = NULL;
	size_t n = 0;
	int ret;

	if (!engine || !out)
		return OMEMO_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	memcpy(out->ik, engine->ik, OMEMO_PUBKEY_LEN);
	ret = engine_bundle_signed_prekey(engine, out);
	if (ret < 0)
		goto out;
	ret = store_prekey_list_unused(engine->store, &ids, &n);
	if (ret < 0)
		goto out;
	out->prekeys = g_new0(omemo_prekey_pub, n ? n : 1);
	for (size_t i = 0; i < n; i++) {
		signal_buffer *rec = NULL;
		session_pre_key *pk = NULL;

		ret = store_prekey_load(engine->store, ids[i], &rec);
		if (ret == 0)
			ret = session_pre_key_deserialize(&pk, signal_buffer_data(rec),
			                                  signal_buffer_len(rec), engine->ctx);
		if (ret == 0)
			ret = serialize_public(
				ec_key_pair_get_public(session_pre_key_get_key_pair(pk)),
				out->prekeys[out->n_prekeys].key);
		SIGNAL_UNREF(pk);
		signal_buffer_bzero_free(rec);
		if (ret < 0)
			goto out;
		out->prekeys[out->n_prekeys++].id = ids[i];
	}
out:
	g_free(ids);
	if (ret < 0)
		omemo_bundle_clear(out);
	return ret;
}

/* Generate prekeys until ENGINE_PREKEY_COUNT are unused. */
static int engine_top_up_prekeys(engine_t *engine, bool *changed)
{
	uint32_t *ids = NULL;
	size_t n = 0;
	int ret = store_prekey_list_unused(engine->store, &ids, &n);

	g_free(ids);
	if (ret < 0 || n >= ENGINE_PREKEY_COUNT)
		return ret;
	if (changed)
		*changed = true;
	return engine_generate_prekeys(engine, ENGINE_PREKEY_COUNT - (unsigned)n);
}

int engine_maintain(engine_t *engine, int64_t now, bool *bundle_changed)
{
	uint32_t *spk_ids = NULL;
	int64_t *created = NULL;
	size_t n_spk = 0;
	bool changed = false;
	int ret;

	if (!engine)
		return OMEMO_ERR_INVALID_ARG;
	ret = store_begin(engine->store);
	if (ret < 0)
		return ret;
	ret = store_prekey_purge_used(engine->store, now - ENGINE_USED_PREKEY_KEEP_SECONDS);
	if (ret < 0)
		goto out;
	ret = engine_top_up_prekeys(engine, &changed);
	if (ret < 0)
		goto out;

	ret = store_signed_prekey_list(engine->store, &spk_ids, &created, &n_spk);
	if (ret < 0)
		goto out;
	if (n_spk == 0 || now - created[0] >= ENGINE_SPK_ROTATE_SECONDS) {
		ret = engine_generate_signed_prekey(engine, now);
		if (ret < 0)
			goto out;
		changed = true;
	}
	/* Keep older signed prekeys for a month: messages built on them may
	 * still be in flight (offline storage, MAM). Never drop the newest. */
	for (size_t i = 1; i < n_spk; i++) {
		if (now - created[i] > ENGINE_SPK_KEEP_SECONDS) {
			ret = store_signed_prekey_remove(engine->store, spk_ids[i]);
			if (ret < 0)
				goto out;
		}
	}
	ret = store_commit(engine->store);
out:
	if (ret < 0)
		store_rollback(engine->store);
	g_free(spk_ids);
	g_free(created);
	if (bundle_changed)
		*bundle_changed = ret == 0 && changed;
	return ret;
}

/* ---- sessions ---- */

static signal_protocol_address engine_address(const char *jid, uint32_t device_id)
{
	signal_protocol_address addr = {
		.name = jid,
		.name_len = strlen(jid),
		.device_id = (int32_t)device_id,
	};
	return addr;
}

int engine_build_session(engine_t *engine, const char *jid, uint32_t device_id,
                         const omemo_bundle *bundle)
{
	ec_public_key *ik = NULL, *spk = NULL, *pk = NULL;
	session_pre_key_bundle *pkb = NULL;
	session_builder *builder = NULL;
	signal_protocol_address addr;
	uint32_t pick = 0;
	int ret;

	if (!engine || !jid || !bundle || device_id < OMEMO_DEVICE_ID_MIN ||
	    device_id > OMEMO_DEVICE_ID_MAX || bundle->n_prekeys == 0)
		return OMEMO_ERR_INVALID_ARG;
	addr = engine_address(jid, device_id);

	/* An undecodable key (wrong type byte) fails with SG_ERR_INVALID_KEY. */
	ret = curve_decode_point(&ik, bundle->ik, OMEMO_PUBKEY_LEN, engine->ctx);
	if (ret < 0)
		goto out;
	ret = curve_decode_point(&spk, bundle->spk, OMEMO_PUBKEY_LEN, engine->ctx);
	if (ret < 0)
		goto out;
	ret = payload_random((uint8_t *)&pick, sizeof(pick));
	if (ret < 0)
		goto out;
	pick %= (uint32_t)bundle->n_prekeys;
	ret = curve_decode_point(&pk, bundle->prekeys[pick].key, OMEMO_PUBKEY_LEN, engine->ctx);
	if (ret < 0)
		goto out;
	ret = session_pre_key_bundle_create(&pkb, 0, (int)device_id, bundle->prekeys[pick].id, pk,
	                                    bundle->spk_id, spk, bundle->spk_sig,
	                                    OMEMO_SIGNATURE_LEN, ik);
	if (ret < 0)
		goto out;
	ret = session_builder_create(&builder, engine->sctx, &addr, engine->ctx);
	if (ret < 0)
		goto out;

	ret = store_begin(engine->store);
	if (ret < 0)
		goto out;
	ret = session_builder_process_pre_key_bundle(builder, pkb);
	if (ret == 0) {
		ret = store_commit(engine->store);
	} else {
		/* Every key decoded above, so the library's SG_ERR_INVALID_KEY
		 * here means the signed prekey's signature did not verify (it
		 * checks it before anything else; checking it twice would cost a
		 * tenth of the whole build). */
		ret = ret == SG_ERR_INVALID_KEY ? OMEMO_ERR_BUNDLE_SIGNATURE
		                                : engine_map_error(engine, ret);
		store_rollback(engine->store);
	}
out:
	if (builder)
		session_builder_free(builder);
	SIGNAL_UNREF(pkb);
	SIGNAL_UNREF(ik);
	SIGNAL_UNREF(spk);
	SIGNAL_UNREF(pk);
	return ret;
}

bool engine_has_session(engine_t *engine, const char *jid, uint32_t device_id)
{
	if (!engine || !jid)
		return false;
	return store_session_exists(engine->store, OMEMO_NS_LEGACY, jid, device_id);
}

int engine_remote_identity(engine_t *engine, const char *jid, uint32_t device_id,
                           uint8_t key[OMEMO_PUBKEY_LEN])
{
	signal_buffer *buf = NULL;
	int ret;

	if (!engine || !jid || !key)
		return OMEMO_ERR_INVALID_ARG;
	ret = store_remote_identity_get(engine->store, OMEMO_NS_LEGACY, jid, device_id, &buf);
	if (ret < 0)
		return ret;
	if (signal_buffer_len(buf) != OMEMO_PUBKEY_LEN)
		ret = OMEMO_ERR_STORE_CORRUPT;
	else
		memcpy(key, signal_buffer_data(buf), OMEMO_PUBKEY_LEN);
	signal_buffer_free(buf);
	return ret;
}

/* ---- encrypt ---- */

static int engine_encrypt_one(engine_t *engine, const omemo_address *rcpt,
                              const uint8_t *keymat, size_t keymat_len, omemo_key *key)
{
	signal_protocol_address addr = engine_address(rcpt->jid, rcpt->device_id);
	session_cipher *cipher = NULL;
	ciphertext_message *msg = NULL;
	signal_buffer *ser;
	int ret;

	if (!store_session_exists(engine->store, OMEMO_NS_LEGACY, rcpt->jid, rcpt->device_id))
		return store_last_error(engine->store) ? store_last_error(engine->store)
		                                       : OMEMO_ERR_NO_SESSION;
	ret = session_cipher_create(&cipher, engine->sctx, &addr, engine->ctx);
	if (ret < 0)
		goto out;
	ret = session_cipher_encrypt(cipher, keymat, keymat_len, &msg);
	if (ret < 0)
		goto out;
	ser = ciphertext_message_get_serialized(msg);
	key->rid = rcpt->device_id;
	key->prekey = ciphertext_message_get_type(msg) == CIPHERTEXT_PREKEY_TYPE;
	key->len = signal_buffer_len(ser);
	key->data = g_memdup2(signal_buffer_data(ser), key->len);
out:
	SIGNAL_UNREF(msg);
	if (cipher)
		session_cipher_free(cipher);
	return ret < 0 ? engine_map_error(engine, ret) : 0;
}

static bool is_store_error(int ret)
{
	return ret <= OMEMO_ERR_STORE && ret >= OMEMO_ERR_STORE_TOO_NEW;
}

int engine_encrypt(engine_t *engine, const uint8_t *plain, size_t len,
                   const omemo_address *rcpts, size_t n, omemo_message *out,
                   engine_rcpt_status *status)
{
	uint8_t keymat[PAYLOAD_KEYMAT_LEN];
	size_t keymat_len;
	int ret;

	if (!engine || !out || (n && !rcpts))
		return OMEMO_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	out->sid = engine->device_id;
	out->iv = g_malloc(PAYLOAD_IV_LEN);
	out->iv_len = PAYLOAD_IV_LEN;
	if (plain) {
		ret = payload_encrypt(plain, len, &out->payload, &out->payload_len, out->iv,
		                      keymat);
		keymat_len = PAYLOAD_KEYMAT_LEN;
	} else {
		/* Key transport: key material and IV only, no payload. */
		ret = payload_key_transport(keymat);
		if (ret == 0)
			ret = payload_random(out->iv, PAYLOAD_IV_LEN);
		keymat_len = PAYLOAD_KEY_TRANSPORT_LEN;
	}
	if (ret < 0)
		goto out;

	out->keys = g_new0(omemo_key, n ? n : 1);
	ret = store_begin(engine->store);
	if (ret < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		int r = engine_encrypt_one(engine, &rcpts[i], keymat, keymat_len,
		                           &out->keys[out->n_keys]);

		if (status) {
			status[i].result = r;
			status[i].prekey = r == 0 && out->keys[out->n_keys].prekey;
		}
		if (r == 0) {
			out->n_keys++;
		} else if (is_store_error(r)) {
			/* The store failing is no per-device matter: stop. */
			ret = r;
			store_rollback(engine->store);
			goto out;
		}
	}
	if (out->n_keys == 0) {
		store_rollback(engine->store);
		ret = OMEMO_ERR_NO_RECIPIENTS;
		goto out;
	}
	ret = store_commit(engine->store);
out:
	memset(keymat, 0, sizeof(keymat));
	if (ret < 0)
		omemo_message_clear(out);
	return ret;
}

/* ---- decrypt ---- */

static int engine_decrypt_key(engine_t *engine, signal_protocol_address *addr,
                              const omemo_key *key, signal_buffer **keymat, bool *was_prekey)
{
	session_cipher *cipher = NULL;
	signal_message *msg = NULL;
	pre_key_signal_message *pmsg = NULL;
	int ret;

	ret = session_cipher_create(&cipher, engine->sctx, addr, engine->ctx);
	if (ret < 0)
		return engine_map_error(engine, ret);
	if (!key->prekey) {
		ret = signal_message_deserialize(&msg, key->data, key->len, engine->ctx);
		if (ret == 0) {
			*was_prekey = false;
			ret = session_cipher_decrypt_signal_message(cipher, msg, NULL, keymat);
			goto out;
		}
		/* lurch 0.7 never sets prekey='true': a key that is no
		 * WhisperMessage may be a PreKeyWhisperMessage. */
	}
	ret = pre_key_signal_message_deserialize(&pmsg, key->data, key->len, engine->ctx);
	if (ret == 0) {
		*was_prekey = true;
		ret = session_cipher_decrypt_pre_key_signal_message(cipher, pmsg, NULL, keymat);
	}
out:
	SIGNAL_UNREF(msg);
	SIGNAL_UNREF(pmsg);
	session_cipher_free(cipher);
	return ret < 0 ? engine_map_error(engine, ret) : 0;
}

static int engine_open_payload(engine_t *engine, const omemo_message *msg,
                               const signal_buffer *keymat, engine_decrypted *out)
{
	size_t klen = signal_buffer_len((signal_buffer *)keymat);

	if (!msg->payload) {
		/* Key transport: the key material is only there to advance the
		 * session; any length is fine. */
		out->key_transport = true;
		return 0;
	}
	return payload_decrypt(msg->payload, msg->payload_len, msg->iv, msg->iv_len,
	                       signal_buffer_data((signal_buffer *)keymat), klen, &out->plaintext,
	                       &out->len);
}

int engine_decrypt(engine_t *engine, const char *jid, const omemo_message *msg,
                   engine_decrypted *out)
{
	signal_protocol_address addr;
	int ret = OMEMO_ERR_NOT_FOR_US;

	if (!engine || !jid || !msg || !out)
		return OMEMO_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	if (msg->sid < OMEMO_DEVICE_ID_MIN || msg->sid > OMEMO_DEVICE_ID_MAX)
		return OMEMO_ERR_INVALID_ARG;
	addr = engine_address(jid, msg->sid);

	/* A rid may occur more than once (a client that re-encrypted after a
	 * failure): try each until one works. Each try is its own transaction
	 * so a failed one leaves no trace. */
	for (size_t i = 0; i < msg->n_keys; i++) {
		signal_buffer *keymat = NULL;
		bool was_prekey = false;
		int r;

		if (msg->keys[i].rid != engine->device_id)
			continue;
		r = store_begin(engine->store);
		if (r < 0)
			return r;
		r = engine_decrypt_key(engine, &addr, &msg->keys[i], &keymat, &was_prekey);
		if (r == 0)
			r = engine_open_payload(engine, msg, keymat, out);
		signal_buffer_bzero_free(keymat);
		if (r == 0)
			r = engine_remote_identity(engine, jid, msg->sid, out->sender_ik);
		/* A prekey was used: replace it in the same commit, so the bundle
		 * the caller republishes holds 100 again. */
		if (r == 0 && was_prekey)
			r = engine_top_up_prekeys(engine, NULL);
		if (r == 0)
			r = store_commit(engine->store);
		if (r == 0) {
			out->prekey = was_prekey;
			return 0;
		}
		store_rollback(engine->store);
		engine_decrypted_clear(out);
		/* Keep the most telling error: a duplicate or store failure says
		 * more than "not for us". */
		if (ret == OMEMO_ERR_NOT_FOR_US || r == OMEMO_ERR_DUPLICATE || is_store_error(r))
			ret = r;
		if (is_store_error(r))
			break;
	}
	return ret;
}

void engine_decrypted_clear(engine_decrypted *d)
{
	if (!d)
		return;
	if (d->plaintext) {
		memset(d->plaintext, 0, d->len);
		g_free(d->plaintext);
	}
	memset(d, 0, sizeof(*d));
}
