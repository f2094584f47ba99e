/*
 * Fuzz target for the records the store hands back to the Signal library:
 * session records, prekeys, signed prekeys, remote identity keys and the
 * own identity pair, as a damaged or tampered database would return them.
 * Each input goes to every deserialiser the store feeds (they are tried on
 * the same bytes: a record of one kind is a good mutation seed for the
 * others), after the same checks the store makes (records.h); none may
 * crash, leak or misbehave, whatever the bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <glib.h>

#include "err.h"
#include "payload.h"
#include "records.h"
#include "signal_compat.h"

static signal_context *fuzz_ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (signal_context_create(&fuzz_ctx, NULL) != 0 ||
	    payload_crypto_provider_set(fuzz_ctx) != 0) {
		fprintf(stderr, "fuzz_store_records: no Signal context\n");
		abort();
	}
	return 0;
}

/* What the store does to a session record read from disk: step its
 * sending chain one key on. A stepped record is itself a record the store
 * accepts, and can be stepped again. */
static void exercise_session_step(const uint8_t *data, size_t size)
{
	signal_buffer *once = NULL, *twice = NULL;
	int ret = records_session_step_sender(data, size, fuzz_ctx, &once);

	if (ret <= 0) {
		if (once)
			abort();
		return;
	}
	if (!records_session_states_ok(signal_buffer_data(once), signal_buffer_len(once),
	                               fuzz_ctx) ||
	    records_session_step_sender(signal_buffer_data(once), signal_buffer_len(once),
	                                fuzz_ctx, &twice) != 1)
		abort();
	signal_buffer_free(twice);
	signal_buffer_free(once);
}

/* What the library does with a loaded session: serialise it again on save. */
static void exercise_session(const uint8_t *data, size_t size)
{
	session_record *record = NULL;
	signal_buffer *out = NULL;

	/* What the store refuses as corrupt never reaches the library. */
	if (!records_session_states_ok(data, size, fuzz_ctx))
		return;
	if (session_record_deserialize(&record, data, size, fuzz_ctx) != 0)
		return;
	(void)session_record_is_fresh(record);
	if (session_record_serialize(&out, record) == 0)
		signal_buffer_free(out);
	SIGNAL_UNREF(record);
	exercise_session_step(data, size);
}

static void exercise_prekey(const uint8_t *data, size_t size)
{
	session_pre_key *pk = NULL;
	signal_buffer *out = NULL;

	if (!records_framing_ok(data, size))
		return;
	if (session_pre_key_deserialize(&pk, data, size, fuzz_ctx) != 0)
		return;
	(void)session_pre_key_get_id(pk);
	(void)session_pre_key_get_key_pair(pk);
	if (session_pre_key_serialize(&out, pk) == 0)
		signal_buffer_bzero_free(out);
	SIGNAL_UNREF(pk);
}

static void exercise_signed_prekey(const uint8_t *data, size_t size)
{
	session_signed_pre_key *spk = NULL;
	signal_buffer *out = NULL;

	if (!records_signed_prekey_ok(data, size))
		return;
	if (session_signed_pre_key_deserialize(&spk, data, size, fuzz_ctx) != 0)
		return;
	(void)session_signed_pre_key_get_id(spk);
	(void)session_signed_pre_key_get_timestamp(spk);
	(void)session_signed_pre_key_get_signature_len(spk);
	if (session_signed_pre_key_serialize(&out, spk) == 0)
		signal_buffer_bzero_free(out);
	SIGNAL_UNREF(spk);
}

/* A remote identity key: the library decodes it before comparing. */
static void exercise_public_key(const uint8_t *data, size_t size)
{
	ec_public_key *key = NULL;
	signal_buffer *out = NULL;

	if (curve_decode_point(&key, data, size, fuzz_ctx) != 0)
		return;
	if (ec_public_key_serialize(&out, key) == 0)
		signal_buffer_free(out);
	SIGNAL_UNREF(key);
}

/*
 * The engine's own identity: the public and private halves as the store
 * keeps them in two columns, decoded and paired the way the engine loads
 * them. The first byte says how many of the rest are the public half.
 */
static void exercise_identity_pair(const uint8_t *data, size_t size)
{
	ec_public_key *pub = NULL;
	ec_private_key *priv = NULL;
	ratchet_identity_key_pair *pair = NULL;
	signal_buffer *out = NULL;
	size_t pub_len;

	if (size < 1)
		return;
	pub_len = data[0] < size - 1 ? data[0] : size - 1;
	if (curve_decode_point(&pub, data + 1, pub_len, fuzz_ctx) != 0)
		goto out;
	if (curve_decode_private_point(&priv, data + 1 + pub_len, size - 1 - pub_len,
	                               fuzz_ctx) != 0)
		goto out;
	if (ratchet_identity_key_pair_create(&pair, pub, priv) != 0)
		goto out;
	if (ratchet_identity_key_pair_serialize(&out, pair) == 0)
		signal_buffer_bzero_free(out);
out:
	SIGNAL_UNREF(pair);
	SIGNAL_UNREF(pub);
	SIGNAL_UNREF(priv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* no record the store writes comes near this */
	if (size > 64 * 1024)
		return 0;
	exercise_session(data, size);
	exercise_prekey(data, size);
	exercise_signed_prekey(data, size);
	exercise_public_key(data, size);
	exercise_identity_pair(data, size);
	return 0;
}
