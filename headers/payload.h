/*
 * Symmetric crypto on libgcrypt: the crypto provider the Signal library
 * calls for random bytes, HMAC-SHA256, SHA-512 and AES-CBC/CTR, and the
 * legacy OMEMO payload encryption (AES-128-GCM, tag carried with the key).
 */
#ifndef PURPLE_OMEMO_PAYLOAD_H
#define PURPLE_OMEMO_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

#include <signal_protocol.h>

#define PAYLOAD_KEY_LEN 16
#define PAYLOAD_TAG_LEN 16
#define PAYLOAD_IV_LEN 12
#define PAYLOAD_KEYMAT_LEN (PAYLOAD_KEY_LEN + PAYLOAD_TAG_LEN)

/* Initialise libgcrypt unless someone in the process already has (other
 * plugins share it). Idempotent. Returns 0 or OMEMO_ERR_CRYPTO. */
int payload_crypto_init(void);

/* Install the libgcrypt provider on a Signal context (initialises
 * libgcrypt first). 0, OMEMO_ERR_CRYPTO or the Signal library's code. */
int payload_crypto_provider_set(signal_context *ctx);

/* The provider itself, for tests that call its functions directly. All
 * Signal contexts of the process share it and its cached handles. */
const signal_crypto_provider *payload_crypto_provider(void);

/* Release cached cipher/HMAC handles (plugin unload, end of tests). The
 * provider stays usable: handles are opened again on demand. */
void payload_crypto_shutdown(void);

/* Strong random bytes. 0 or OMEMO_ERR_RANDOM. */
int payload_random(uint8_t *buf, size_t len);

/* Encrypt one message body: fresh key and 12-byte IV. On success
 * *ct (g_malloc'd, *ct_len == len) holds the ciphertext without tag, iv[]
 * the IV, keymat[] key||tag for the per-device encryption. */
int payload_encrypt(const uint8_t *plain, size_t len, uint8_t **ct, size_t *ct_len,
                    uint8_t iv[PAYLOAD_IV_LEN], uint8_t keymat[PAYLOAD_KEYMAT_LEN]);

/* Decrypt: any IV length >= 1; keymat of 32 bytes (key||tag) or of 16 bytes
 * (the pre-2017 layout: tag is the last 16 bytes of ct). *plain is g_malloc'd
 * with a NUL after the *plain_len bytes. Tag mismatch: OMEMO_ERR_PAYLOAD_AUTH. */
int payload_decrypt(const uint8_t *ct, size_t ct_len, const uint8_t *iv, size_t iv_len,
                    const uint8_t *keymat, size_t keymat_len, uint8_t **plain,
                    size_t *plain_len);

/* The deterministic core of payload_encrypt, for known-answer tests:
 * AES-128-GCM with the given key and IV; writes len bytes to ct and the tag. */
int payload_gcm_encrypt(const uint8_t key[PAYLOAD_KEY_LEN], const uint8_t *iv, size_t iv_len,
                        const uint8_t *plain, size_t len, uint8_t *ct,
                        uint8_t tag[PAYLOAD_TAG_LEN]);

/* Key-transport key material: 16 random bytes (Conversations' layout). */
#define PAYLOAD_KEY_TRANSPORT_LEN 16
int payload_key_transport(uint8_t keymat[PAYLOAD_KEY_TRANSPORT_LEN]);

#endif
