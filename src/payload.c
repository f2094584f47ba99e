/*
 * Symmetric crypto on libgcrypt. This file owns libgcrypt's initialisation
 * (unless another plugin in the process got there first), the crypto
 * provider the Signal library calls for random bytes, HMAC-SHA256, SHA-512
 * and AES-CBC/CTR together with its cache of long-lived gcry handles, and
 * the legacy OMEMO payload cipher: AES-128-GCM whose tag travels with the
 * key, not with the ciphertext (XEP-0384 v0.3.0).
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <gcrypt.h>
#include <glib.h>

#include "err.h"
#include "payload.h"

#define AES_BLOCK_LEN 16
#define HMAC_SHA256_LEN 32
#define SHA512_LEN 64

/* Secure memory we ask for when we initialise libgcrypt: the cached cipher
 * and HMAC handles need a few KiB; overflow pools cover bursts. */
#define SECMEM_POOL_LEN (64 * 1024)

/* The Signal library runs its HMACs one after another; the pool still has
 * room for a few open at once, should a caller nest them. */
#define HMAC_POOL_MAX 8

enum {
	SLOT_CBC,
	SLOT_CTR,
	SLOT_MODES
};
enum {
	SLOT_AES128,
	SLOT_AES192,
	SLOT_AES256,
	SLOT_KEYS
};

static bool crypto_ready;
/* True when we ran libgcrypt's initialisation, so secure memory auto-expands
 * and never fails an allocation. A foreign setup may have a small fixed pool,
 * and libgcrypt aborts the process when a secure HMAC cannot allocate its
 * scratch block in gcry_md_read: HMAC handles then stay in normal memory. */
static bool crypto_own_secmem;

/* Opening a gcry handle costs a random-pool fast poll with libgcrypt's
 * default generator (omemo-facts.md section 6), so handles are opened once
 * and re-keyed per call. libpurple runs on one thread; so does this cache. */
static gcry_md_hd_t hmac_pool[HMAC_POOL_MAX];
static size_t hmac_pool_len;
static gcry_cipher_hd_t cipher_cache[SLOT_MODES][SLOT_KEYS];
static gcry_cipher_hd_t gcm_handle;

int payload_crypto_init(void)
{
	int ret = 0;

	if (crypto_ready)
		goto out;

	/* Pidgin may host OTR or another OMEMO plugin on the same libgcrypt:
	 * whoever initialised it chose its settings, and they stand. */
	if (gcry_control(GCRYCTL_INITIALIZATION_FINISHED_P)) {
		crypto_ready = true;
		goto out;
	}

	/* Only honoured before gcry_check_version. The system generator avoids
	 * the CSPRNG's fast poll on every handle open and reads getrandom(). */
	if (gcry_control(GCRYCTL_SET_PREFERRED_RNG_TYPE, GCRY_RNG_TYPE_SYSTEM)) {
		ret = OMEMO_ERR_CRYPTO;
		goto out;
	}
	if (!gcry_check_version(GCRYPT_VERSION)) {
		ret = OMEMO_ERR_CRYPTO;
		goto out;
	}
	/* A user without CAP_IPC_LOCK or enough RLIMIT_MEMLOCK gets an unlocked
	 * pool: still wiped on free, so use it without a warning on stderr. */
	if (gcry_control(GCRYCTL_DISABLE_SECMEM_WARN)) {
		ret = OMEMO_ERR_CRYPTO;
		goto out;
	}
	/* Reports an error when the pool could not be locked; the pool is
	 * usable all the same, so that is not a failure here. */
	(void)gcry_control(GCRYCTL_INIT_SECMEM, SECMEM_POOL_LEN, 0);
	if (gcry_control(GCRYCTL_AUTO_EXPAND_SECMEM, SECMEM_POOL_LEN)) {
		ret = OMEMO_ERR_CRYPTO;
		goto out;
	}
	if (gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0)) {
		ret = OMEMO_ERR_CRYPTO;
		goto out;
	}
	crypto_own_secmem = true;
	crypto_ready = true;

out:
	return ret;
}

static bool crypto_ensure(void)
{
	return crypto_ready || payload_crypto_init() == 0;
}

void payload_crypto_shutdown(void)
{
	while (hmac_pool_len > 0)
		gcry_md_close(hmac_pool[--hmac_pool_len]);
	for (int m = 0; m < SLOT_MODES; m++) {
		for (int k = 0; k < SLOT_KEYS; k++) {
			gcry_cipher_close(cipher_cache[m][k]);
			cipher_cache[m][k] = NULL;
		}
	}
	gcry_cipher_close(gcm_handle);
	gcm_handle = NULL;
}

/* Key schedules belong in secure memory. Should a foreign setup's fixed pool
 * be full, a handle in normal memory is better than failing the message. */
static gcry_error_t payload_cipher_open(gcry_cipher_hd_t *hd, int algo, int mode)
{
	gcry_error_t err = gcry_cipher_open(hd, algo, mode, GCRY_CIPHER_SECURE);

	if (gcry_err_code(err) == GPG_ERR_ENOMEM)
		err = gcry_cipher_open(hd, algo, mode, 0);
	return err;
}

int payload_random(uint8_t *buf, size_t len)
{
	if (!buf && len)
		return OMEMO_ERR_INVALID_ARG;
	if (!crypto_ensure())
		return OMEMO_ERR_RANDOM;
	if (len)
		gcry_randomize(buf, len, GCRY_STRONG_RANDOM);
	return 0;
}

/* ---- the Signal library's crypto provider ---- */

static int provider_random(uint8_t *data, size_t len, void *user_data)
{
	switch (payload_random(data, len)) {
	case 0:
		return 0;
	case OMEMO_ERR_INVALID_ARG:
		return SG_ERR_INVAL;
	default:
		return SG_ERR_UNKNOWN;
	}
}

static int provider_hmac_init(void **hmac_context, const uint8_t *key, size_t key_len,
			      void *user_data)
{
	int ret = 0;
	gcry_md_hd_t hd = NULL;

	if (!hmac_context || (!key && key_len)) {
		ret = SG_ERR_INVAL;
		goto out;
	}
	if (!crypto_ensure()) {
		ret = SG_ERR_UNKNOWN;
		goto out;
	}

	if (hmac_pool_len > 0) {
		hd = hmac_pool[--hmac_pool_len];
	} else {
		unsigned int flags = GCRY_MD_FLAG_HMAC;
		gcry_error_t err;

		if (crypto_own_secmem)
			flags |= GCRY_MD_FLAG_SECURE;
		err = gcry_md_open(&hd, GCRY_MD_SHA256, flags);
		if (err) {
			hd = NULL;
			ret = gcry_err_code(err) == GPG_ERR_ENOMEM ? SG_ERR_NOMEM : SG_ERR_UNKNOWN;
			goto out;
		}
	}

	/* Setting the key also resets the handle, so a pooled handle carries
	 * nothing of its previous message into this one. */
	if (gcry_md_setkey(hd, key_len ? key : (const uint8_t *)"", key_len)) {
		ret = SG_ERR_UNKNOWN;
		goto out;
	}
	*hmac_context = hd;
	hd = NULL;

out:
	gcry_md_close(hd);
	return ret;
}

static int provider_hmac_update(void *hmac_context, const uint8_t *data, size_t data_len,
				void *user_data)
{
	if (!hmac_context || (!data && data_len))
		return SG_ERR_INVAL;
	gcry_md_write(hmac_context, data, data_len);
	return 0;
}

static int provider_hmac_final(void *hmac_context, signal_buffer **output, void *user_data)
{
	const unsigned char *mac;
	signal_buffer *buf;

	if (!hmac_context || !output)
		return SG_ERR_INVAL;
	mac = gcry_md_read(hmac_context, GCRY_MD_SHA256);
	if (!mac)
		return SG_ERR_UNKNOWN;
	buf = signal_buffer_create(mac, HMAC_SHA256_LEN);
	if (!buf)
		return SG_ERR_NOMEM;
	*output = buf;
	return 0;
}

static void provider_hmac_cleanup(void *hmac_context, void *user_data)
{
	if (!hmac_context)
		return;
	if (hmac_pool_len < HMAC_POOL_MAX)
		hmac_pool[hmac_pool_len++] = hmac_context;
	else
		gcry_md_close(hmac_context);
}

static int provider_sha512_init(void **digest_context, void *user_data)
{
	gcry_md_hd_t hd = NULL;
	gcry_error_t err;

	if (!digest_context)
		return SG_ERR_INVAL;
	if (!crypto_ensure())
		return SG_ERR_UNKNOWN;
	/* The inputs are public keys (fingerprints): no secure memory needed. */
	err = gcry_md_open(&hd, GCRY_MD_SHA512, 0);
	if (err)
		return gcry_err_code(err) == GPG_ERR_ENOMEM ? SG_ERR_NOMEM : SG_ERR_UNKNOWN;
	*digest_context = hd;
	return 0;
}

static int provider_sha512_update(void *digest_context, const uint8_t *data, size_t data_len,
				  void *user_data)
{
	if (!digest_context || (!data && data_len))
		return SG_ERR_INVAL;
	gcry_md_write(digest_context, data, data_len);
	return 0;
}

static int provider_sha512_final(void *digest_context, signal_buffer **output, void *user_data)
{
	const unsigned char *digest;
	signal_buffer *buf;

	if (!digest_context || !output)
		return SG_ERR_INVAL;
	digest = gcry_md_read(digest_context, GCRY_MD_SHA512);
	if (!digest)
		return SG_ERR_UNKNOWN;
	buf = signal_buffer_create(digest, SHA512_LEN);
	if (!buf)
		return SG_ERR_NOMEM;
	/* The contract: final leaves the context ready for the next digest
	 * (the fingerprint code hashes thousands of rounds on one context). */
	gcry_md_reset(digest_context);
	*output = buf;
	return 0;
}

static void provider_sha512_cleanup(void *digest_context, void *user_data)
{
	gcry_md_close(digest_context);
}

/* The cached handle for cipher (an SG_CIPHER_*) and key_len, keyed and with
 * its IV or counter set. */
static int provider_cipher_prepare(int cipher, const uint8_t *key, size_t key_len,
				   const uint8_t *iv, size_t iv_len, gcry_cipher_hd_t *out)
{
	static const int algos[SLOT_KEYS] = { GCRY_CIPHER_AES128, GCRY_CIPHER_AES192,
					      GCRY_CIPHER_AES256 };
	static const int modes[SLOT_MODES] = { GCRY_CIPHER_MODE_CBC, GCRY_CIPHER_MODE_CTR };
	int ret = 0;
	int m, k;
	gcry_cipher_hd_t *slot;
	gcry_error_t err;

	switch (cipher) {
	case SG_CIPHER_AES_CBC_PKCS5:
		m = SLOT_CBC;
		break;
	case SG_CIPHER_AES_CTR_NOPADDING:
		m = SLOT_CTR;
		break;
	default:
		ret = SG_ERR_INVAL;
		goto out;
	}
	switch (key_len) {
	case 16:
		k = SLOT_AES128;
		break;
	case 24:
		k = SLOT_AES192;
		break;
	case 32:
		k = SLOT_AES256;
		break;
	default:
		ret = SG_ERR_INVAL;
		goto out;
	}
	if (!key || !iv || iv_len != AES_BLOCK_LEN) {
		ret = SG_ERR_INVAL;
		goto out;
	}
	if (!crypto_ensure()) {
		ret = SG_ERR_UNKNOWN;
		goto out;
	}

	slot = &cipher_cache[m][k];
	if (!*slot) {
		err = payload_cipher_open(slot, algos[k], modes[m]);
		if (err) {
			*slot = NULL;
			ret = gcry_err_code(err) == GPG_ERR_ENOMEM ? SG_ERR_NOMEM : SG_ERR_UNKNOWN;
			goto out;
		}
	}
	if (gcry_cipher_setkey(*slot, key, key_len)) {
		ret = SG_ERR_UNKNOWN;
		goto out;
	}
	/* setctr also drops keystream left over from a previous partial block. */
	if (m == SLOT_CBC)
		err = gcry_cipher_setiv(*slot, iv, iv_len);
	else
		err = gcry_cipher_setctr(*slot, iv, iv_len);
	if (err) {
		ret = SG_ERR_UNKNOWN;
		goto out;
	}
	*out = *slot;

out:
	return ret;
}

static int provider_encrypt(signal_buffer **output, int cipher, const uint8_t *key, size_t key_len,
			    const uint8_t *iv, size_t iv_len, const uint8_t *plaintext,
			    size_t plaintext_len, void *user_data)
{
	int ret = 0;
	gcry_cipher_hd_t hd;
	signal_buffer *buf = NULL;
	size_t pad = 0;
	uint8_t *data;

	if (!output || (!plaintext && plaintext_len)) {
		ret = SG_ERR_INVAL;
		goto out;
	}
	ret = provider_cipher_prepare(cipher, key, key_len, iv, iv_len, &hd);
	if (ret < 0)
		goto out;

	if (cipher == SG_CIPHER_AES_CBC_PKCS5) {
		if (plaintext_len > SIZE_MAX - AES_BLOCK_LEN) {
			ret = SG_ERR_INVAL;
			goto out;
		}
		/* PKCS#7: always 1..16 bytes, a whole block when already aligned. */
		pad = AES_BLOCK_LEN - plaintext_len % AES_BLOCK_LEN;
	}
	buf = signal_buffer_alloc(plaintext_len + pad);
	if (!buf) {
		ret = SG_ERR_NOMEM;
		goto out;
	}
	data = signal_buffer_data(buf);
	if (plaintext_len)
		memcpy(data, plaintext, plaintext_len);
	memset(data + plaintext_len, (int)pad, pad);
	if (plaintext_len + pad && gcry_cipher_encrypt(hd, data, plaintext_len + pad, NULL, 0)) {
		ret = SG_ERR_UNKNOWN;
		goto out;
	}
	*output = buf;
	buf = NULL;

out:
	if (buf)
		signal_buffer_bzero_free(buf);
	return ret;
}

/* The PKCS#7 pad length of the decrypted buffer (whole blocks, len >= 16),
 * or 0 when the padding is invalid. The last 16 bytes are all examined
 * whatever the pad value, so the time taken does not tell where a forged
 * ciphertext's padding went wrong. */
static size_t provider_pkcs7_pad_len(const uint8_t *data, size_t len)
{
	unsigned int pad = data[len - 1];
	/* 1 when pad is 0 or above 16, by unsigned wrap-around, no branches. */
	unsigned int bad = ((pad - 1u) >> 31) | ((AES_BLOCK_LEN - pad) >> 31);

	for (unsigned int i = 0; i < AES_BLOCK_LEN; i++) {
		unsigned int in_pad = (i - pad) >> 31; /* 1 when i < pad */
		unsigned int diff = data[len - 1 - i] ^ pad;

		bad |= (0u - in_pad) & diff;
	}
	return bad ? 0 : pad;
}

static int provider_decrypt(signal_buffer **output, int cipher, const uint8_t *key, size_t key_len,
			    const uint8_t *iv, size_t iv_len, const uint8_t *ciphertext,
			    size_t ciphertext_len, void *user_data)
{
	int ret = 0;
	gcry_cipher_hd_t hd;
	signal_buffer *buf = NULL;
	signal_buffer *plain = NULL;
	size_t pad;

	if (!output || (!ciphertext && ciphertext_len)) {
		ret = SG_ERR_INVAL;
		goto out;
	}
	ret = provider_cipher_prepare(cipher, key, key_len, iv, iv_len, &hd);
	if (ret < 0)
		goto out;

	/* SG_ERR_INVALID_MESSAGE for a broken ciphertext: the Signal library
	 * then tries the session's older states, as for a bad MAC. */
	if (cipher == SG_CIPHER_AES_CBC_PKCS5 &&
	    (ciphertext_len == 0 || ciphertext_len % AES_BLOCK_LEN)) {
		ret = SG_ERR_INVALID_MESSAGE;
		goto out;
	}
	buf = signal_buffer_alloc(ciphertext_len);
	if (!buf) {
		ret = SG_ERR_NOMEM;
		goto out;
	}
	if (ciphertext_len && gcry_cipher_decrypt(hd, signal_buffer_data(buf), ciphertext_len,
						  ciphertext, ciphertext_len)) {
		ret = SG_ERR_UNKNOWN;
		goto out;
	}
	if (cipher == SG_CIPHER_AES_CTR_NOPADDING) {
		*output = buf;
		buf = NULL;
		goto out;
	}

	pad = provider_pkcs7_pad_len(signal_buffer_data(buf), ciphertext_len);
	if (!pad) {
		ret = SG_ERR_INVALID_MESSAGE;
		goto out;
	}
	plain = signal_buffer_create(signal_buffer_data(buf), ciphertext_len - pad);
	if (!plain) {
		ret = SG_ERR_NOMEM;
		goto out;
	}
	*output = plain;

out:
	if (buf)
		signal_buffer_bzero_free(buf);
	return ret;
}

static const signal_crypto_provider payload_provider = {
	.random_func = provider_random,
	.hmac_sha256_init_func = provider_hmac_init,
	.hmac_sha256_update_func = provider_hmac_update,
	.hmac_sha256_final_func = provider_hmac_final,
	.hmac_sha256_cleanup_func = provider_hmac_cleanup,
	.sha512_digest_init_func = provider_sha512_init,
	.sha512_digest_update_func = provider_sha512_update,
	.sha512_digest_final_func = provider_sha512_final,
	.sha512_digest_cleanup_func = provider_sha512_cleanup,
	.encrypt_func = provider_encrypt,
	.decrypt_func = provider_decrypt,
	.user_data = NULL,
};

const signal_crypto_provider *payload_crypto_provider(void)
{
	return &payload_provider;
}

int payload_crypto_provider_set(signal_context *ctx)
{
	int ret;

	if (!ctx)
		return OMEMO_ERR_INVALID_ARG;
	ret = payload_crypto_init();
	if (ret < 0)
		return ret;
	return signal_context_set_crypto_provider(ctx, &payload_provider);
}

/* ---- legacy OMEMO payload: AES-128-GCM ---- */

/* The cached GCM handle, keyed and with its IV set. */
static int payload_gcm_prepare(const uint8_t key[PAYLOAD_KEY_LEN], const uint8_t *iv, size_t iv_len,
			       gcry_cipher_hd_t *out)
{
	gcry_error_t err;

	if (!crypto_ensure())
		return OMEMO_ERR_CRYPTO;
	if (!gcm_handle) {
		err = payload_cipher_open(&gcm_handle, GCRY_CIPHER_AES128, GCRY_CIPHER_MODE_GCM);
		if (err) {
			gcm_handle = NULL;
			return gcry_err_code(err) == GPG_ERR_ENOMEM ? OMEMO_ERR_NOMEM :
								      OMEMO_ERR_CRYPTO;
		}
	}
	/* Neither setkey nor setiv clears GHASH input left buffered by an
	 * operation that never reached its tag (an error path): with an IV
	 * other than 12 bytes, which is hashed, the next message would come out
	 * wrong. Resetting first costs a memset. */
	if (gcry_cipher_reset(gcm_handle) || gcry_cipher_setkey(gcm_handle, key, PAYLOAD_KEY_LEN) ||
	    gcry_cipher_setiv(gcm_handle, iv, iv_len))
		return OMEMO_ERR_CRYPTO;
	*out = gcm_handle;
	return 0;
}

int payload_gcm_encrypt(const uint8_t key[PAYLOAD_KEY_LEN], const uint8_t *iv, size_t iv_len,
			const uint8_t *plain, size_t len, uint8_t *ct, uint8_t tag[PAYLOAD_TAG_LEN])
{
	int ret = 0;
	gcry_cipher_hd_t hd;

	if (!key || !iv || !tag || (len && (!plain || !ct))) {
		ret = OMEMO_ERR_INVALID_ARG;
		goto out;
	}
	if (iv_len == 0) {
		ret = OMEMO_ERR_PAYLOAD_IV_LEN;
		goto out;
	}
	ret = payload_gcm_prepare(key, iv, iv_len, &hd);
	if (ret < 0)
		goto out;
	if (len && gcry_cipher_encrypt(hd, ct, len, plain, len)) {
		ret = OMEMO_ERR_CRYPTO;
		goto out;
	}
	if (gcry_cipher_gettag(hd, tag, PAYLOAD_TAG_LEN)) {
		ret = OMEMO_ERR_CRYPTO;
		goto out;
	}

out:
	return ret;
}

int payload_encrypt(const uint8_t *plain, size_t len, uint8_t **ct, size_t *ct_len,
		    uint8_t iv[PAYLOAD_IV_LEN], uint8_t keymat[PAYLOAD_KEYMAT_LEN])
{
	int ret = 0;
	uint8_t key[PAYLOAD_KEY_LEN];
	uint8_t *out = NULL;

	if (!ct || !ct_len || !iv || !keymat || (!plain && len)) {
		ret = OMEMO_ERR_INVALID_ARG;
		goto out;
	}
	ret = payload_random(key, sizeof(key));
	if (ret < 0)
		goto out;
	/* An IV only has to be unique per key, and the key is new: libgcrypt's
	 * nonce generator spares the strong pool. */
	gcry_create_nonce(iv, PAYLOAD_IV_LEN);

	/* Never NULL, even for an empty body, so callers can tell success. */
	out = g_malloc(len ? len : 1);
	ret = payload_gcm_encrypt(key, iv, PAYLOAD_IV_LEN, plain, len, out,
				  keymat + PAYLOAD_KEY_LEN);
	if (ret < 0)
		goto out;
	memcpy(keymat, key, PAYLOAD_KEY_LEN);
	*ct = out;
	*ct_len = len;
	out = NULL;

out:
	explicit_bzero(key, sizeof(key));
	g_free(out);
	return ret;
}

int payload_decrypt(const uint8_t *ct, size_t ct_len, const uint8_t *iv, size_t iv_len,
		    const uint8_t *keymat, size_t keymat_len, uint8_t **plain, size_t *plain_len)
{
	int ret = 0;
	const uint8_t *tag;
	size_t body_len;
	uint8_t *out = NULL;
	gcry_cipher_hd_t hd;
	gcry_error_t err;

	if ((!ct && ct_len) || !iv || !keymat || !plain || !plain_len) {
		ret = OMEMO_ERR_INVALID_ARG;
		goto out;
	}
	/* Old Conversations and ChatSecure sent 16-byte IVs; GCM takes any. */
	if (iv_len == 0) {
		ret = OMEMO_ERR_PAYLOAD_IV_LEN;
		goto out;
	}
	if (keymat_len == PAYLOAD_KEYMAT_LEN) {
		tag = keymat + PAYLOAD_KEY_LEN;
		body_len = ct_len;
	} else if (keymat_len == PAYLOAD_KEY_LEN) {
		/* Before 2017 the tag stayed on the ciphertext and only the key
		 * went through the Signal session. */
		if (ct_len < PAYLOAD_TAG_LEN) {
			ret = OMEMO_ERR_PAYLOAD_TOO_SHORT;
			goto out;
		}
		body_len = ct_len - PAYLOAD_TAG_LEN;
		tag = ct + body_len;
	} else {
		ret = OMEMO_ERR_PAYLOAD_KEY_LEN;
		goto out;
	}

	ret = payload_gcm_prepare(keymat, iv, iv_len, &hd);
	if (ret < 0)
		goto out;
	out = g_malloc(body_len + 1);
	if (body_len && gcry_cipher_decrypt(hd, out, body_len, ct, body_len)) {
		ret = OMEMO_ERR_CRYPTO;
		goto out;
	}
	err = gcry_cipher_checktag(hd, tag, PAYLOAD_TAG_LEN);
	if (err) {
		ret = gcry_err_code(err) == GPG_ERR_CHECKSUM ? OMEMO_ERR_PAYLOAD_AUTH :
							       OMEMO_ERR_CRYPTO;
		goto out;
	}
	out[body_len] = '\0';
	*plain = out;
	*plain_len = body_len;
	out = NULL;

out:
	/* Unauthenticated plaintext must not outlive the failed check. */
	if (out) {
		explicit_bzero(out, body_len);
		g_free(out);
	}
	return ret;
}

int payload_key_transport(uint8_t keymat[PAYLOAD_KEY_TRANSPORT_LEN])
{
	if (!keymat)
		return OMEMO_ERR_INVALID_ARG;
	return payload_random(keymat, PAYLOAD_KEY_TRANSPORT_LEN);
}
