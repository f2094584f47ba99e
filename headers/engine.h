/*
 * The OMEMO engine for one account: own identity and bundle, sessions with
 * other devices, encrypting one payload for a set of devices and decrypting
 * what arrives. Legacy OMEMO (eu.siacs.conversations.axolotl) only for now.
 * No XML, no libpurple: it takes and returns the structs of omemo_types.h.
 *
 * Every call that changes state commits its writes in one transaction before
 * it returns, or rolls all of them back on failure.
 */
#ifndef PURPLE_OMEMO_ENGINE_H
#define PURPLE_OMEMO_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "omemo_types.h"
#include "store.h"

typedef struct engine engine_t;

#define ENGINE_PREKEY_COUNT 100
#define ENGINE_SPK_ROTATE_SECONDS (7 * 24 * 3600)
#define ENGINE_SPK_KEEP_SECONDS (30 * 24 * 3600)
#define ENGINE_USED_PREKEY_KEEP_SECONDS (7 * 24 * 3600)

/* Open the account's store at db_path and load its identity, creating one
 * (device id, identity key pair, 100 prekeys, a signed prekey) on first use.
 * own_jid is the account's bare JID: a new device id avoids the ids already
 * known for it. */
int engine_open(const char *db_path, const char *own_jid, engine_t **out);
void engine_close(engine_t *engine);

uint32_t engine_device_id(const engine_t *engine);
const char *engine_own_jid(const engine_t *engine);
store_t *engine_store(engine_t *engine);

/* Own identity public key (33 bytes). */
const uint8_t *engine_identity_key(const engine_t *engine);

/* Fingerprint of a 33-byte identity key: 64 lower-case hex characters of the
 * key without its 0x05 prefix, in 8 groups of 8 separated by spaces (71
 * characters). g_free the result; NULL if the key is not 33 bytes. */
char *engine_fingerprint_format(const uint8_t *key, size_t len);
/* The same 64 characters without spaces. */
char *engine_fingerprint_hex(const uint8_t *key, size_t len);

/* The bundle to publish: identity key, current signed prekey and every
 * unused prekey. omemo_bundle_clear() it. */
int engine_get_bundle(engine_t *engine, omemo_bundle *out);

/* Housekeeping at time `now` (seconds), e.g. at sign-on and daily: top the
 * unused prekeys up to 100 (engine_decrypt already replaces each one it uses),
 * rotate the signed prekey when older than a week, drop signed prekeys older
 * than a month (never the current one) and used prekeys past their grace.
 * *bundle_changed says whether the bundle must be republished. */
int engine_maintain(engine_t *engine, int64_t now, bool *bundle_changed);

/* Build a session with jid/device_id from its bundle, using one of its
 * prekeys at random. Refuses a bad signed-prekey signature
 * (OMEMO_ERR_BUNDLE_SIGNATURE). Replaces an existing session. */
int engine_build_session(engine_t *engine, const char *jid, uint32_t device_id,
                         const omemo_bundle *bundle);
bool engine_has_session(engine_t *engine, const char *jid, uint32_t device_id);

/* Identity key (33 bytes) of a device we have a session with: OMEMO_ERR_NOT_FOUND. */
int engine_remote_identity(engine_t *engine, const char *jid, uint32_t device_id,
                           uint8_t key[OMEMO_PUBKEY_LEN]);

typedef struct {
	const char *jid;
	uint32_t device_id;
} omemo_address;

/* Per-recipient outcome of engine_encrypt. */
typedef struct {
	int result;  /* 0, OMEMO_ERR_NO_SESSION, or another error */
	bool prekey; /* the key is a PreKeyWhisperMessage */
} engine_rcpt_status;

/* Encrypt plain (len bytes) for every recipient with a session; plain == NULL
 * makes a key-transport message. *out gets the sid, one key per recipient
 * that worked, the IV and the payload. status (n entries, may be NULL) says
 * what happened per recipient. Returns 0 when at least one recipient got a
 * key, OMEMO_ERR_NO_RECIPIENTS when none did; all ratchet state is written in
 * one transaction, committed before returning. */
int engine_encrypt(engine_t *engine, const uint8_t *plain, size_t len,
                   const omemo_address *rcpts, size_t n, omemo_message *out,
                   engine_rcpt_status *status);

typedef struct {
	uint8_t *plaintext;  /* g_malloc'd, NUL-terminated; NULL for key transport */
	size_t len;
	bool key_transport;  /* no payload: session bookkeeping only */
	bool prekey;         /* it was a PreKeyWhisperMessage: a session was built
	                      * and a prekey used, already replaced by a new one
	                      * (republish the bundle, and answer with a
	                      * key-transport message) */
	uint8_t sender_ik[OMEMO_PUBKEY_LEN]; /* sender device's identity key */
} engine_decrypted;

/* Decrypt a message from jid. Tries every <key> with our rid; a key without
 * prekey='true' that does not parse as a WhisperMessage is tried as a
 * PreKeyWhisperMessage (lurch omits the flag). Errors: OMEMO_ERR_NOT_FOR_US,
 * OMEMO_ERR_DUPLICATE, OMEMO_ERR_NO_SESSION, OMEMO_ERR_UNDECRYPTABLE,
 * OMEMO_ERR_PAYLOAD_*, store errors. On any error nothing is written: the
 * session stays as it was. */
int engine_decrypt(engine_t *engine, const char *jid, const omemo_message *msg,
                   engine_decrypted *out);
void engine_decrypted_clear(engine_decrypted *d);

#endif
