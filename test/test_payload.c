/*
 * Payload module tests: the libgcrypt crypto provider and the legacy OMEMO
 * AES-128-GCM payload, checked against known answers made by an independent
 * implementation (test/kat/gen_payload_kat.py, python3-cryptography), plus
 * the refusals (bad tags, keys, padding) and the Signal library driving the
 * provider for real.
 */
#define _GNU_SOURCE /* RTLD_NEXT */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <gcrypt.h>
#include <glib.h>

#include "data/payload_kat.h"
#include "err.h"
#include "payload.h"
#include "signal_compat.h"

#include <hkdf.h>

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define FOREIGN_CHILD_FLAG "--foreign-libgcrypt-child"

static char *self_exe;

/* gcry_md_open and gcry_cipher_open are interposed (payload.c is linked into
 * this program, so its calls land here) to count the handles it opens:
 * opening one per call is what makes a provider slow. */
static unsigned int hmac_opens;
static unsigned int cipher_opens;

gcry_error_t gcry_md_open(gcry_md_hd_t *h, int algo, unsigned int flags)
{
	gcry_error_t (*real)(gcry_md_hd_t *, int, unsigned int);

	*(void **)&real = dlsym(RTLD_NEXT, "gcry_md_open");
	if (!real)
		return gcry_error(GPG_ERR_INTERNAL);
	if (flags & GCRY_MD_FLAG_HMAC)
		hmac_opens++;
	return real(h, algo, flags);
}

gcry_error_t gcry_cipher_open(gcry_cipher_hd_t *h, int algo, int mode, unsigned int flags)
{
	gcry_error_t (*real)(gcry_cipher_hd_t *, int, int, unsigned int);

	*(void **)&real = dlsym(RTLD_NEXT, "gcry_cipher_open");
	if (!real)
		return gcry_error(GPG_ERR_INTERNAL);
	cipher_opens++;
	return real(h, algo, mode, flags);
}

static void check_bytes(const char *vector, const char *what, const uint8_t *got,
			const uint8_t *want, size_t len)
{
	if (len && memcmp(got, want, len) != 0)
		fail_msg("%s: %s differs from the known answer", vector, what);
}

/* HMAC-SHA256 through the provider, fed in chunks of `chunk` bytes (0: all
 * at once). */
static void hmac_via_provider(const uint8_t *key, size_t key_len, const uint8_t *msg,
			      size_t msg_len, size_t chunk, uint8_t mac[32])
{
	const signal_crypto_provider *p = payload_crypto_provider();
	void *ctx = NULL;
	signal_buffer *out = NULL;
	size_t off = 0;

	assert_int_equal(p->hmac_sha256_init_func(&ctx, key, key_len, p->user_data), 0);
	assert_non_null(ctx);
	do {
		size_t n = chunk && msg_len - off > chunk ? chunk : msg_len - off;

		assert_int_equal(p->hmac_sha256_update_func(ctx, msg + off, n, p->user_data), 0);
		off += n;
	} while (off < msg_len);
	assert_int_equal(p->hmac_sha256_final_func(ctx, &out, p->user_data), 0);
	assert_non_null(out);
	assert_int_equal(signal_buffer_len(out), 32);
	memcpy(mac, signal_buffer_data(out), 32);
	signal_buffer_free(out);
	p->hmac_sha256_cleanup_func(ctx, p->user_data);
}

static int run_cipher(bool encrypt, int cipher, const uint8_t *key, size_t key_len,
		      const uint8_t *iv, const uint8_t *in, size_t in_len, signal_buffer **out)
{
	const signal_crypto_provider *p = payload_crypto_provider();

	if (encrypt)
		return p->encrypt_func(out, cipher, key, key_len, iv, 16, in, in_len, p->user_data);
	return p->decrypt_func(out, cipher, key, key_len, iv, 16, in, in_len, p->user_data);
}

static void check_cipher_kat(int cipher, const struct kat_cipher *v)
{
	signal_buffer *out = NULL;

	assert_int_equal(
		run_cipher(true, cipher, v->key, v->key_len, v->iv, v->pt, v->pt_len, &out), 0);
	assert_non_null(out);
	assert_int_equal(signal_buffer_len(out), v->ct_len);
	check_bytes(v->name, "ciphertext", signal_buffer_data(out), v->ct, v->ct_len);
	signal_buffer_free(out);

	out = NULL;
	assert_int_equal(
		run_cipher(false, cipher, v->key, v->key_len, v->iv, v->ct, v->ct_len, &out), 0);
	assert_non_null(out);
	assert_int_equal(signal_buffer_len(out), v->pt_len);
	check_bytes(v->name, "plaintext", signal_buffer_data(out), v->pt, v->pt_len);
	signal_buffer_free(out);
}

static int group_setup(void **state)
{
	return payload_crypto_init() == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	payload_crypto_shutdown();
	return 0;
}

/* ---- libgcrypt initialisation ---- */

static void test_crypto_init_twice_is_harmless(void **state)
{
	int rng = 0;
	uint8_t mac[32];

	assert_int_equal(payload_crypto_init(), 0);
	assert_int_equal(payload_crypto_init(), 0);
	assert_true(gcry_control(GCRYCTL_INITIALIZATION_FINISHED_P));
	/* Nobody else in this process set libgcrypt up: our choice holds. */
	assert_int_equal(gcry_control(GCRYCTL_GET_CURRENT_RNG_TYPE, &rng), 0);
	assert_int_equal(rng, GCRY_RNG_TYPE_SYSTEM);

	hmac_via_provider(kat_hmac[2].key, kat_hmac[2].key_len, kat_hmac[2].msg,
			  kat_hmac[2].msg_len, 0, mac);
	check_bytes(kat_hmac[2].name, "mac", mac, kat_hmac[2].mac, 32);
}

static void count_gcry_log_cb(void *opaque, int level, const char *fmt, va_list args)
{
	(*(int *)opaque)++;
}

/* Runs in a fresh process: another plugin initialised libgcrypt first. */
static int foreign_libgcrypt_child(void)
{
	const signal_crypto_provider *p;
	int logs = 0;
	int rng = 0;
	void *ctx = NULL;
	uint8_t mac[32];
	uint8_t ct[1000];
	uint8_t tag[16];
	const struct kat_gcm *g = &kat_gcm[5];

	gcry_set_log_handler(count_gcry_log_cb, &logs);
	if (!gcry_check_version(NULL))
		return 10;
	gcry_control(GCRYCTL_DISABLE_SECMEM_WARN);
	/* A second INIT_SECMEM would log "pool already initialized". */
	gcry_control(GCRYCTL_INIT_SECMEM, 16384, 0);
	gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);

	if (payload_crypto_init() != 0 || payload_crypto_init() != 0)
		return 11;
	if (gcry_control(GCRYCTL_GET_CURRENT_RNG_TYPE, &rng) || rng != GCRY_RNG_TYPE_STANDARD)
		return 12;

	p = payload_crypto_provider();
	if (p->hmac_sha256_init_func(&ctx, kat_hmac[3].key, kat_hmac[3].key_len, NULL) != 0)
		return 13;
	/* Foreign secure memory may be a small fixed pool: stay out of it. */
	if (gcry_md_is_secure(ctx))
		return 14;
	p->hmac_sha256_cleanup_func(ctx, NULL);

	hmac_via_provider(kat_hmac[3].key, kat_hmac[3].key_len, kat_hmac[3].msg,
			  kat_hmac[3].msg_len, 0, mac);
	if (memcmp(mac, kat_hmac[3].mac, 32) != 0)
		return 15;
	if (payload_gcm_encrypt(g->key, g->iv, g->iv_len, g->pt, g->pt_len, ct, tag) != 0 ||
	    memcmp(ct, g->ct, g->pt_len) != 0 || memcmp(tag, g->tag, 16) != 0)
		return 16;
	payload_crypto_shutdown();
	if (logs != 0)
		return 17;
	return 0;
}

static void test_crypto_init_leaves_foreign_libgcrypt_setup_alone(void **state)
{
	char *argv[] = { self_exe, (char *)FOREIGN_CHILD_FLAG, NULL };
	char *out = NULL;
	char *err = NULL;
	int status = -1;
	GError *error = NULL;

	assert_non_null(self_exe);
	if (!g_spawn_sync(NULL, argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err, &status,
			  &error))
		fail_msg("spawning %s: %s", self_exe, error->message);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("foreign-libgcrypt child failed (status %d):\n%s%s", status, out, err);
	g_free(out);
	g_free(err);
}

/* ---- the crypto provider ---- */

static void test_provider_hmac_matches_kat(void **state)
{
	static const size_t chunks[] = { 0, 1, 7, 64 };
	uint8_t mac[32];

	for (size_t i = 0; i < N_ELEMS(kat_hmac); i++) {
		const struct kat_hmac *v = &kat_hmac[i];

		for (size_t c = 0; c < N_ELEMS(chunks); c++) {
			hmac_via_provider(v->key, v->key_len, v->msg, v->msg_len, chunks[c], mac);
			check_bytes(v->name, "mac", mac, v->mac, 32);
		}
	}
}

static void test_provider_hmac_handle_reuse_stays_correct_over_many_cycles(void **state)
{
	const signal_crypto_provider *p = payload_crypto_provider();
	const size_t n = N_ELEMS(kat_hmac);
	void *warm[2] = { NULL, NULL };
	uint8_t mac[32];

	/* Two handles in the pool, as many as the loop keeps open at once. */
	for (int i = 0; i < 2; i++)
		assert_int_equal(p->hmac_sha256_init_func(&warm[i], kat_hmac[i].key,
							  kat_hmac[i].key_len, NULL),
				 0);
	for (int i = 0; i < 2; i++)
		p->hmac_sha256_cleanup_func(warm[i], NULL);
	hmac_opens = 0;

	for (size_t i = 0; i < 3000; i++) {
		const struct kat_hmac *a = &kat_hmac[i % n];
		const struct kat_hmac *b = &kat_hmac[(i * 7 + 3) % n];
		void *ca = NULL;
		void *cb = NULL;
		signal_buffer *oa = NULL;
		signal_buffer *ob = NULL;

		if (i % 5 == 0) {
			/* Abandoned half-way: the next user of the handle must not
			 * see this message. */
			void *junk = NULL;

			assert_int_equal(p->hmac_sha256_init_func(&junk, b->key, b->key_len, NULL),
					 0);
			assert_int_equal(p->hmac_sha256_update_func(junk, a->msg, a->msg_len, NULL),
					 0);
			p->hmac_sha256_cleanup_func(junk, NULL);
		}
		if (i % 3 != 0) {
			hmac_via_provider(a->key, a->key_len, a->msg, a->msg_len, i % 11, mac);
			check_bytes(a->name, "mac (sequential reuse)", mac, a->mac, 32);
			continue;
		}

		/* Two HMACs open at once, fed alternately. */
		assert_int_equal(p->hmac_sha256_init_func(&ca, a->key, a->key_len, NULL), 0);
		assert_int_equal(p->hmac_sha256_init_func(&cb, b->key, b->key_len, NULL), 0);
		assert_ptr_not_equal(ca, cb);
		assert_int_equal(p->hmac_sha256_update_func(ca, a->msg, a->msg_len / 2, NULL), 0);
		assert_int_equal(p->hmac_sha256_update_func(cb, b->msg, b->msg_len / 2, NULL), 0);
		assert_int_equal(p->hmac_sha256_update_func(ca, a->msg + a->msg_len / 2,
							    a->msg_len - a->msg_len / 2, NULL),
				 0);
		assert_int_equal(p->hmac_sha256_update_func(cb, b->msg + b->msg_len / 2,
							    b->msg_len - b->msg_len / 2, NULL),
				 0);
		assert_int_equal(p->hmac_sha256_final_func(cb, &ob, NULL), 0);
		assert_int_equal(p->hmac_sha256_final_func(ca, &oa, NULL), 0);
		check_bytes(a->name, "mac (interleaved)", signal_buffer_data(oa), a->mac, 32);
		check_bytes(b->name, "mac (interleaved)", signal_buffer_data(ob), b->mac, 32);
		signal_buffer_free(oa);
		signal_buffer_free(ob);
		p->hmac_sha256_cleanup_func(ca, NULL);
		p->hmac_sha256_cleanup_func(cb, NULL);
	}
	/* Every cycle above ran on the two pooled handles. */
	assert_int_equal(hmac_opens, 0);
}

static void test_provider_and_payload_keep_gcry_handles_between_calls(void **state)
{
	const struct kat_gcm *g = &kat_gcm[12];
	uint8_t keymat[32];
	uint8_t ct[200];
	uint8_t tag[16];
	uint8_t mac[32];

	memcpy(keymat, g->key, 16);
	memcpy(keymat + 16, g->tag, 16);
	/* The first pass over the tables opens what the cache needs (every
	 * mode and key size in them); the 100 rounds after it open nothing. */
	const int warm = (int)N_ELEMS(kat_cbc);

	for (int round = 0; round < warm + 100; round++) {
		const struct kat_hmac *h = &kat_hmac[round % N_ELEMS(kat_hmac)];
		uint8_t *plain = NULL;
		size_t plain_len = 0;

		if (round == warm) {
			hmac_opens = 0;
			cipher_opens = 0;
		}
		hmac_via_provider(h->key, h->key_len, h->msg, h->msg_len, 0, mac);
		check_bytes(h->name, "mac", mac, h->mac, 32);
		check_cipher_kat(SG_CIPHER_AES_CBC_PKCS5, &kat_cbc[round % N_ELEMS(kat_cbc)]);
		check_cipher_kat(SG_CIPHER_AES_CTR_NOPADDING, &kat_ctr[round % N_ELEMS(kat_ctr)]);
		assert_int_equal(
			payload_gcm_encrypt(g->key, g->iv, g->iv_len, g->pt, g->pt_len, ct, tag),
			0);
		check_bytes(g->name, "tag", tag, g->tag, 16);
		assert_int_equal(payload_decrypt(g->ct, g->pt_len, g->iv, g->iv_len, keymat, 32,
						 &plain, &plain_len),
				 0);
		g_free(plain);
	}
	assert_int_equal(hmac_opens, 0);
	assert_int_equal(cipher_opens, 0);
}

static void test_provider_hmac_handles_live_in_secure_memory(void **state)
{
	const signal_crypto_provider *p = payload_crypto_provider();
	void *ctx = NULL;

	assert_int_equal(p->hmac_sha256_init_func(&ctx, kat_hmac[3].key, 32, NULL), 0);
	assert_true(gcry_md_is_secure(ctx));
	p->hmac_sha256_cleanup_func(ctx, NULL);
}

static void test_provider_sha512_matches_kat_and_context_is_reusable(void **state)
{
	const signal_crypto_provider *p = payload_crypto_provider();
	void *ctx = NULL;

	/* One context for every vector: final must leave it ready again. */
	assert_int_equal(p->sha512_digest_init_func(&ctx, NULL), 0);
	for (int round = 0; round < 2; round++) {
		for (size_t i = 0; i < N_ELEMS(kat_sha512); i++) {
			const struct kat_sha512 *v = &kat_sha512[i];
			size_t chunk = round ? 50 : v->msg_len;
			signal_buffer *out = NULL;

			for (size_t off = 0; off < v->msg_len; off += chunk) {
				size_t len = v->msg_len - off < chunk ? v->msg_len - off : chunk;

				assert_int_equal(
					p->sha512_digest_update_func(ctx, v->msg + off, len, NULL),
					0);
			}
			assert_int_equal(p->sha512_digest_final_func(ctx, &out, NULL), 0);
			assert_int_equal(signal_buffer_len(out), 64);
			check_bytes(v->name, "digest", signal_buffer_data(out), v->digest, 64);
			signal_buffer_free(out);
		}
	}
	p->sha512_digest_cleanup_func(ctx, NULL);
}

static void test_provider_cbc_matches_kat(void **state)
{
	for (size_t i = 0; i < N_ELEMS(kat_cbc); i++)
		check_cipher_kat(SG_CIPHER_AES_CBC_PKCS5, &kat_cbc[i]);
}

static void test_provider_ctr_matches_kat(void **state)
{
	/* In table order a 1-byte message precedes a 16-byte one on the same
	 * cached handle: left-over keystream would show. */
	for (int round = 0; round < 2; round++)
		for (size_t i = 0; i < N_ELEMS(kat_ctr); i++)
			check_cipher_kat(SG_CIPHER_AES_CTR_NOPADDING, &kat_ctr[i]);
}

static void test_provider_cipher_round_trips_for_every_key_size(void **state)
{
	static const int ciphers[] = { SG_CIPHER_AES_CBC_PKCS5, SG_CIPHER_AES_CTR_NOPADDING };
	uint8_t key[32];
	uint8_t iv[16];
	uint8_t msg[70];

	assert_int_equal(payload_random(key, sizeof(key)), 0);
	assert_int_equal(payload_random(iv, sizeof(iv)), 0);
	assert_int_equal(payload_random(msg, sizeof(msg)), 0);
	for (size_t c = 0; c < N_ELEMS(ciphers); c++) {
		for (size_t key_len = 16; key_len <= 32; key_len += 8) {
			for (size_t len = 0; len <= sizeof(msg); len++) {
				signal_buffer *ct = NULL;
				signal_buffer *pt = NULL;
				size_t want = ciphers[c] == SG_CIPHER_AES_CBC_PKCS5 ?
						      (len / 16 + 1) * 16 :
						      len;

				assert_int_equal(run_cipher(true, ciphers[c], key, key_len, iv, msg,
							    len, &ct),
						 0);
				assert_int_equal(signal_buffer_len(ct), want);
				assert_int_equal(run_cipher(false, ciphers[c], key, key_len, iv,
							    signal_buffer_data(ct),
							    signal_buffer_len(ct), &pt),
						 0);
				assert_int_equal(signal_buffer_len(pt), len);
				if (len)
					assert_memory_equal(signal_buffer_data(pt), msg, len);
				signal_buffer_free(ct);
				signal_buffer_free(pt);
			}
		}
	}
}

static void test_provider_cbc_decrypt_refuses_bad_padding(void **state)
{
	const struct kat_cipher *ok = &kat_badpad_valid;
	signal_buffer *out = NULL;

	/* Control: key and IV are right, so only the padding can be at fault. */
	assert_int_equal(run_cipher(false, SG_CIPHER_AES_CBC_PKCS5, ok->key, ok->key_len, ok->iv,
				    ok->ct, ok->ct_len, &out),
			 0);
	assert_int_equal(signal_buffer_len(out), ok->pt_len);
	check_bytes(ok->name, "plaintext", signal_buffer_data(out), ok->pt, ok->pt_len);
	signal_buffer_free(out);

	for (size_t i = 0; i < N_ELEMS(kat_badpad); i++) {
		const struct kat_badpad *v = &kat_badpad[i];
		int ret;

		out = NULL;
		ret = run_cipher(false, SG_CIPHER_AES_CBC_PKCS5, kat_badpad_key, 32, kat_badpad_iv,
				 v->ct, v->ct_len, &out);
		if (ret != SG_ERR_INVALID_MESSAGE)
			fail_msg("%s: decrypt returned %d, expected SG_ERR_INVALID_MESSAGE",
				 v->name, ret);
		assert_null(out);
	}
}

static void test_provider_refuses_bad_cipher_key_and_iv(void **state)
{
	const signal_crypto_provider *p = payload_crypto_provider();
	const struct kat_cipher *v = &kat_cbc[4];
	signal_buffer *out = NULL;

	assert_int_equal(p->encrypt_func(&out, 0, v->key, 16, v->iv, 16, v->pt, v->pt_len, NULL),
			 SG_ERR_INVAL);
	assert_int_equal(p->encrypt_func(&out, 3, v->key, 16, v->iv, 16, v->pt, v->pt_len, NULL),
			 SG_ERR_INVAL);
	assert_int_equal(p->encrypt_func(&out, SG_CIPHER_AES_CBC_PKCS5, v->key, 20, v->iv, 16,
					 v->pt, v->pt_len, NULL),
			 SG_ERR_INVAL);
	assert_int_equal(p->encrypt_func(&out, SG_CIPHER_AES_CTR_NOPADDING, v->key, 16, v->iv, 12,
					 v->pt, v->pt_len, NULL),
			 SG_ERR_INVAL);
	assert_int_equal(p->decrypt_func(&out, SG_CIPHER_AES_CBC_PKCS5, v->key, 16, v->iv, 8, v->ct,
					 v->ct_len, NULL),
			 SG_ERR_INVAL);
	assert_int_equal(p->decrypt_func(&out, SG_CIPHER_AES_CBC_PKCS5, v->key, 0, v->iv, 16, v->ct,
					 v->ct_len, NULL),
			 SG_ERR_INVAL);
	assert_null(out);
}

static void test_provider_random_fills_the_buffer(void **state)
{
	const signal_crypto_provider *p = payload_crypto_provider();
	static const uint8_t zero[64];
	uint8_t a[64] = { 0 };
	uint8_t b[64] = { 0 };

	assert_int_equal(p->random_func(a, sizeof(a), NULL), 0);
	assert_int_equal(p->random_func(b, sizeof(b), NULL), 0);
	/* Each comparison is wrong by chance with probability 2^-512. */
	assert_memory_not_equal(a, zero, sizeof(a));
	assert_memory_not_equal(a, b, sizeof(a));
}

/* ---- legacy OMEMO payload ---- */

static void test_gcm_encrypt_matches_kat(void **state)
{
	for (size_t i = 0; i < N_ELEMS(kat_gcm); i++) {
		const struct kat_gcm *v = &kat_gcm[i];
		uint8_t *ct = g_malloc(v->pt_len + 1);
		uint8_t tag[16];

		assert_int_equal(
			payload_gcm_encrypt(v->key, v->iv, v->iv_len, v->pt, v->pt_len, ct, tag),
			0);
		check_bytes(v->name, "ciphertext", ct, v->ct, v->pt_len);
		check_bytes(v->name, "tag", tag, v->tag, 16);
		g_free(ct);
	}
}

static void keymat_of(const struct kat_gcm *v, uint8_t keymat[32])
{
	memcpy(keymat, v->key, 16);
	memcpy(keymat + 16, v->tag, 16);
}

static void test_payload_decrypt_matches_kat(void **state)
{
	for (size_t i = 0; i < N_ELEMS(kat_gcm); i++) {
		const struct kat_gcm *v = &kat_gcm[i];
		uint8_t keymat[32];
		uint8_t *plain = NULL;
		size_t plain_len = 12345;

		keymat_of(v, keymat);
		assert_int_equal(payload_decrypt(v->ct, v->pt_len, v->iv, v->iv_len, keymat, 32,
						 &plain, &plain_len),
				 0);
		assert_non_null(plain);
		assert_int_equal(plain_len, v->pt_len);
		check_bytes(v->name, "plaintext", plain, v->pt, v->pt_len);
		assert_int_equal(plain[plain_len], '\0');
		g_free(plain);
	}
}

static void test_payload_decrypt_accepts_16_byte_keymat_with_tag_on_payload(void **state)
{
	for (size_t i = 0; i < N_ELEMS(kat_gcm); i++) {
		const struct kat_gcm *v = &kat_gcm[i];
		uint8_t *wire = g_malloc(v->pt_len + 16);
		uint8_t *plain = NULL;
		size_t plain_len = 0;

		/* The pre-2017 layout: ciphertext||tag in <payload>, key alone. */
		memcpy(wire, v->ct, v->pt_len);
		memcpy(wire + v->pt_len, v->tag, 16);
		assert_int_equal(payload_decrypt(wire, v->pt_len + 16, v->iv, v->iv_len, v->key, 16,
						 &plain, &plain_len),
				 0);
		assert_int_equal(plain_len, v->pt_len);
		check_bytes(v->name, "plaintext (16-byte keymat)", plain, v->pt, v->pt_len);
		assert_int_equal(plain[plain_len], '\0');
		g_free(plain);

		/* Still authenticated: a flipped tag bit is refused. */
		wire[v->pt_len + 15] ^= 0x80;
		plain = NULL;
		assert_int_equal(payload_decrypt(wire, v->pt_len + 16, v->iv, v->iv_len, v->key, 16,
						 &plain, &plain_len),
				 OMEMO_ERR_PAYLOAD_AUTH);
		assert_null(plain);
		g_free(wire);
	}
}

static void test_payload_decrypt_16_byte_keymat_refuses_payload_shorter_than_tag(void **state)
{
	const struct kat_gcm *v = &kat_gcm[6];
	uint8_t *plain = NULL;
	size_t plain_len = 0;

	for (size_t len = 0; len < 16; len++) {
		assert_int_equal(payload_decrypt(v->ct, len, v->iv, v->iv_len, v->key, 16, &plain,
						 &plain_len),
				 OMEMO_ERR_PAYLOAD_TOO_SHORT);
		assert_null(plain);
	}
}

static void expect_auth_failure(const uint8_t *ct, size_t ct_len, const uint8_t *iv, size_t iv_len,
				const uint8_t *keymat, const char *what)
{
	uint8_t *plain = NULL;
	size_t plain_len = 777;
	int ret = payload_decrypt(ct, ct_len, iv, iv_len, keymat, 32, &plain, &plain_len);

	if (ret != OMEMO_ERR_PAYLOAD_AUTH)
		fail_msg("%s: payload_decrypt returned %d, expected OMEMO_ERR_PAYLOAD_AUTH", what,
			 ret);
	assert_null(plain);
	assert_int_equal(plain_len, 777);
}

static void test_payload_decrypt_refuses_tampered_ciphertext(void **state)
{
	for (size_t i = 0; i < N_ELEMS(kat_gcm); i++) {
		const struct kat_gcm *v = &kat_gcm[i];
		uint8_t keymat[32];
		uint8_t *ct;

		if (v->pt_len == 0)
			continue;
		keymat_of(v, keymat);
		ct = g_memdup2(v->ct, v->pt_len);
		ct[0] ^= 0x01;
		expect_auth_failure(ct, v->pt_len, v->iv, v->iv_len, keymat, v->name);
		ct[0] ^= 0x01;
		ct[v->pt_len - 1] ^= 0x40;
		expect_auth_failure(ct, v->pt_len, v->iv, v->iv_len, keymat, v->name);
		ct[v->pt_len - 1] ^= 0x40;
		/* Truncated by one byte. */
		expect_auth_failure(ct, v->pt_len - 1, v->iv, v->iv_len, keymat, v->name);
		g_free(ct);
	}
}

static void test_payload_decrypt_refuses_tampered_tag(void **state)
{
	const struct kat_gcm *v = &kat_gcm[5];
	uint8_t keymat[32];

	keymat_of(v, keymat);
	for (size_t i = 16; i < 32; i++) {
		keymat[i] ^= 0x10;
		expect_auth_failure(v->ct, v->pt_len, v->iv, v->iv_len, keymat, "tag byte flipped");
		keymat[i] ^= 0x10;
	}
}

static void test_payload_decrypt_refuses_wrong_key_or_iv(void **state)
{
	const struct kat_gcm *v = &kat_gcm[12]; /* 16-byte IV, 200 bytes */
	uint8_t keymat[32];
	uint8_t iv[16];

	keymat_of(v, keymat);
	keymat[3] ^= 0x04;
	expect_auth_failure(v->ct, v->pt_len, v->iv, v->iv_len, keymat, "wrong key");
	keymat[3] ^= 0x04;

	memcpy(iv, v->iv, 16);
	iv[15] ^= 0x01;
	expect_auth_failure(v->ct, v->pt_len, iv, 16, keymat, "wrong IV");
	/* The same IV cut to 12 bytes is a different IV to GCM. */
	expect_auth_failure(v->ct, v->pt_len, v->iv, 12, keymat, "IV cut to 12 bytes");
}

static void test_payload_decrypt_refuses_unsupported_keymat_length(void **state)
{
	static const size_t lens[] = { 0, 1, 15, 17, 24, 31, 33, 48 };
	const struct kat_gcm *v = &kat_gcm[4];
	uint8_t keymat[48] = { 0 };
	uint8_t *plain = NULL;
	size_t plain_len = 0;

	keymat_of(v, keymat);
	for (size_t i = 0; i < N_ELEMS(lens); i++) {
		assert_int_equal(payload_decrypt(v->ct, v->pt_len, v->iv, v->iv_len, keymat,
						 lens[i], &plain, &plain_len),
				 OMEMO_ERR_PAYLOAD_KEY_LEN);
		assert_null(plain);
	}
}

static void test_payload_refuses_empty_iv(void **state)
{
	const struct kat_gcm *v = &kat_gcm[4];
	uint8_t keymat[32];
	uint8_t ct[32];
	uint8_t tag[16];
	uint8_t *plain = NULL;
	size_t plain_len = 0;

	keymat_of(v, keymat);
	assert_int_equal(
		payload_decrypt(v->ct, v->pt_len, v->iv, 0, keymat, 32, &plain, &plain_len),
		OMEMO_ERR_PAYLOAD_IV_LEN);
	assert_null(plain);
	assert_int_equal(payload_gcm_encrypt(v->key, v->iv, 0, v->pt, v->pt_len, ct, tag),
			 OMEMO_ERR_PAYLOAD_IV_LEN);
}

static void test_payload_encrypt_round_trips(void **state)
{
	static const size_t lens[] = { 0, 1, 15, 16, 17, 200, 1000, 65536 };

	for (size_t i = 0; i < N_ELEMS(lens); i++) {
		uint8_t *msg = g_malloc(lens[i] + 1);
		uint8_t *ct = NULL;
		size_t ct_len = 99;
		uint8_t iv[PAYLOAD_IV_LEN];
		uint8_t keymat[PAYLOAD_KEYMAT_LEN];
		uint8_t *plain = NULL;
		size_t plain_len = 0;

		for (size_t j = 0; j < lens[i]; j++)
			msg[j] = (uint8_t)('a' + j % 26);
		assert_int_equal(payload_encrypt(msg, lens[i], &ct, &ct_len, iv, keymat), 0);
		assert_non_null(ct);
		assert_int_equal(ct_len, lens[i]);
		if (lens[i] >= 16)
			assert_memory_not_equal(ct, msg, lens[i]);
		assert_int_equal(payload_decrypt(ct, ct_len, iv, sizeof(iv), keymat, sizeof(keymat),
						 &plain, &plain_len),
				 0);
		assert_int_equal(plain_len, lens[i]);
		if (lens[i])
			assert_memory_equal(plain, msg, lens[i]);
		assert_int_equal(plain[plain_len], '\0');
		g_free(plain);
		g_free(ct);
		g_free(msg);
	}
}

static void test_payload_encrypt_gives_fresh_key_and_iv_each_call(void **state)
{
	static const uint8_t msg[] = "the same message every time";
	enum {
		CALLS = 64
	};
	uint8_t ivs[CALLS][PAYLOAD_IV_LEN];
	uint8_t keys[CALLS][PAYLOAD_KEYMAT_LEN];
	uint8_t *cts[CALLS];

	for (int i = 0; i < CALLS; i++) {
		size_t ct_len = 0;

		assert_int_equal(
			payload_encrypt(msg, sizeof(msg), &cts[i], &ct_len, ivs[i], keys[i]), 0);
		assert_int_equal(ct_len, sizeof(msg));
	}
	for (int i = 0; i < CALLS; i++) {
		for (int j = i + 1; j < CALLS; j++) {
			assert_memory_not_equal(ivs[i], ivs[j], PAYLOAD_IV_LEN);
			assert_memory_not_equal(keys[i], keys[j], PAYLOAD_KEY_LEN);
			assert_memory_not_equal(keys[i] + 16, keys[j] + 16, PAYLOAD_TAG_LEN);
			assert_memory_not_equal(cts[i], cts[j], sizeof(msg));
		}
	}
	for (int i = 0; i < CALLS; i++)
		g_free(cts[i]);
}

static void test_payload_key_transport_gives_fresh_16_bytes(void **state)
{
	static const uint8_t zero[PAYLOAD_KEY_TRANSPORT_LEN];
	uint8_t a[PAYLOAD_KEY_TRANSPORT_LEN + 1];
	uint8_t b[PAYLOAD_KEY_TRANSPORT_LEN];

	a[PAYLOAD_KEY_TRANSPORT_LEN] = 0xa5; /* guard byte: exactly 16 are written */
	assert_int_equal(payload_key_transport(a), 0);
	assert_int_equal(payload_key_transport(b), 0);
	assert_int_equal(a[PAYLOAD_KEY_TRANSPORT_LEN], 0xa5);
	assert_memory_not_equal(a, zero, PAYLOAD_KEY_TRANSPORT_LEN);
	assert_memory_not_equal(a, b, PAYLOAD_KEY_TRANSPORT_LEN);
}

static void test_crypto_shutdown_then_provider_reopens_handles(void **state)
{
	const struct kat_gcm *g = &kat_gcm[11]; /* 16-byte IV, 17 bytes */
	uint8_t mac[32];
	uint8_t ct[17];
	uint8_t tag[16];

	for (int round = 0; round < 3; round++) {
		hmac_via_provider(kat_hmac[5].key, kat_hmac[5].key_len, kat_hmac[5].msg,
				  kat_hmac[5].msg_len, 0, mac);
		check_bytes(kat_hmac[5].name, "mac", mac, kat_hmac[5].mac, 32);
		check_cipher_kat(SG_CIPHER_AES_CBC_PKCS5, &kat_cbc[12]);
		check_cipher_kat(SG_CIPHER_AES_CTR_NOPADDING, &kat_ctr[3]);
		assert_int_equal(g->pt_len, sizeof(ct));
		assert_int_equal(
			payload_gcm_encrypt(g->key, g->iv, g->iv_len, g->pt, g->pt_len, ct, tag),
			0);
		check_bytes(g->name, "tag", tag, g->tag, 16);
		payload_crypto_shutdown();
		if (round == 1)
			payload_crypto_shutdown();
	}
}

/* Sums the "secmem usage: N/M bytes in B blocks" lines libgcrypt logs for
 * GCRYCTL_DUMP_SECMEM_STATS (one per pool). */
typedef struct {
	unsigned int lines;
	unsigned int blocks;
} secmem_stats;

static void secmem_stats_log_cb(void *opaque, int level, const char *fmt, va_list args)
{
	secmem_stats *st = opaque;
	char line[256];
	unsigned int used = 0;
	unsigned long size = 0;
	unsigned int blocks = 0;

	vsnprintf(line, sizeof(line), fmt, args);
	if (sscanf(line, "%*[^0-9]%u/%lu bytes in %u blocks", &used, &size, &blocks) == 3) {
		st->lines++;
		st->blocks += blocks;
	}
}

static void test_crypto_shutdown_returns_all_secure_memory(void **state)
{
	static const int ciphers[] = { SG_CIPHER_AES_CBC_PKCS5, SG_CIPHER_AES_CTR_NOPADDING };
	const struct kat_gcm *g = &kat_gcm[3];
	secmem_stats before = { 0, 0 };
	secmem_stats after = { 0, 0 };
	uint8_t key[32] = { 0 };
	uint8_t iv[16] = { 0 };
	uint8_t ct[16];
	uint8_t tag[16];
	uint8_t mac[32];

	/* Fill every cache: HMAC pool, all six CBC/CTR handles, GCM. */
	hmac_via_provider(kat_hmac[4].key, kat_hmac[4].key_len, kat_hmac[4].msg,
			  kat_hmac[4].msg_len, 0, mac);
	for (size_t c = 0; c < N_ELEMS(ciphers); c++) {
		for (size_t key_len = 16; key_len <= 32; key_len += 8) {
			signal_buffer *out = NULL;

			assert_int_equal(
				run_cipher(true, ciphers[c], key, key_len, iv, key, 5, &out), 0);
			signal_buffer_free(out);
		}
	}
	assert_int_equal(payload_gcm_encrypt(g->key, g->iv, g->iv_len, g->pt, g->pt_len, ct, tag),
			 0);

	gcry_set_log_handler(secmem_stats_log_cb, &before);
	gcry_control(GCRYCTL_DUMP_SECMEM_STATS);
	payload_crypto_shutdown();
	gcry_set_log_handler(secmem_stats_log_cb, &after);
	gcry_control(GCRYCTL_DUMP_SECMEM_STATS);
	gcry_set_log_handler(NULL, NULL);

	assert_true(before.lines > 0);
	assert_true(before.blocks >= 8); /* the cached handles really are in there */
	assert_true(after.lines > 0);
	assert_int_equal(after.blocks, 0);
}

/* ---- the Signal library on this provider ---- */

static signal_context *signal_context_with_provider(void)
{
	signal_context *ctx = NULL;

	assert_int_equal(signal_context_create(&ctx, NULL), 0);
	assert_int_equal(payload_crypto_provider_set(ctx), 0);
	return ctx;
}

static void test_signal_context_generates_keys_and_signs_with_provider(void **state)
{
	static const uint8_t msg[] = "signed prekey bytes stand-in";
	signal_context *ctx1 = signal_context_with_provider();
	signal_context *ctx2 = signal_context_with_provider();
	ratchet_identity_key_pair *kp1 = NULL;
	ratchet_identity_key_pair *kp2 = NULL;
	signal_buffer *sig = NULL;
	signal_buffer *pub1 = NULL;
	signal_buffer *pub2 = NULL;
	uint8_t bad[64];
	uint8_t bad_msg[sizeof(msg)];

	/* Two contexts share the provider and its handle cache. */
	assert_int_equal(signal_protocol_key_helper_generate_identity_key_pair(&kp1, ctx1), 0);
	assert_int_equal(signal_protocol_key_helper_generate_identity_key_pair(&kp2, ctx2), 0);
	assert_int_equal(ec_public_key_serialize(&pub1, ratchet_identity_key_pair_get_public(kp1)),
			 0);
	assert_int_equal(ec_public_key_serialize(&pub2, ratchet_identity_key_pair_get_public(kp2)),
			 0);
	assert_int_equal(signal_buffer_len(pub1), 33);
	assert_int_equal(signal_buffer_data(pub1)[0], 0x05);
	assert_memory_not_equal(signal_buffer_data(pub1), signal_buffer_data(pub2), 33);

	assert_int_equal(curve_calculate_signature(ctx1, &sig,
						   ratchet_identity_key_pair_get_private(kp1), msg,
						   sizeof(msg)),
			 0);
	assert_int_equal(signal_buffer_len(sig), 64);
	assert_int_equal(curve_verify_signature(ratchet_identity_key_pair_get_public(kp1), msg,
						sizeof(msg), signal_buffer_data(sig), 64),
			 1);

	memcpy(bad_msg, msg, sizeof(msg));
	bad_msg[0] ^= 0x01;
	assert_int_equal(curve_verify_signature(ratchet_identity_key_pair_get_public(kp1), bad_msg,
						sizeof(msg), signal_buffer_data(sig), 64),
			 0);
	memcpy(bad, signal_buffer_data(sig), 64);
	bad[10] ^= 0x20;
	assert_int_equal(curve_verify_signature(ratchet_identity_key_pair_get_public(kp1), msg,
						sizeof(msg), bad, 64),
			 0);
	assert_int_equal(curve_verify_signature(ratchet_identity_key_pair_get_public(kp2), msg,
						sizeof(msg), signal_buffer_data(sig), 64),
			 0);

	signal_buffer_free(sig);
	signal_buffer_free(pub1);
	signal_buffer_free(pub2);
	SIGNAL_UNREF(kp1);
	SIGNAL_UNREF(kp2);
	signal_context_destroy(ctx1);
	signal_context_destroy(ctx2);
}

static void test_signal_hkdf_on_provider_matches_kat(void **state)
{
	signal_context *ctx = signal_context_with_provider();
	hkdf_context *hkdf = NULL;

	/* Message version 3 is RFC 5869 HKDF, which the ratchet runs on. */
	assert_int_equal(hkdf_create(&hkdf, 3, ctx), 0);
	for (size_t i = 0; i < N_ELEMS(kat_hkdf); i++) {
		const struct kat_hkdf *v = &kat_hkdf[i];
		uint8_t *okm = NULL;
		ssize_t n = hkdf_derive_secrets(hkdf, &okm, v->ikm, v->ikm_len, v->salt,
						v->salt_len, v->info, v->info_len, v->okm_len);

		assert_int_equal(n, (ssize_t)v->okm_len);
		check_bytes(v->name, "okm", okm, v->okm, v->okm_len);
		free(okm);
	}
	SIGNAL_UNREF(hkdf);
	signal_context_destroy(ctx);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crypto_init_twice_is_harmless),
		cmocka_unit_test(test_crypto_init_leaves_foreign_libgcrypt_setup_alone),
		cmocka_unit_test(test_provider_hmac_matches_kat),
		cmocka_unit_test(test_provider_hmac_handle_reuse_stays_correct_over_many_cycles),
		cmocka_unit_test(test_provider_and_payload_keep_gcry_handles_between_calls),
		cmocka_unit_test(test_provider_hmac_handles_live_in_secure_memory),
		cmocka_unit_test(test_provider_sha512_matches_kat_and_context_is_reusable),
		cmocka_unit_test(test_provider_cbc_matches_kat),
		cmocka_unit_test(test_provider_ctr_matches_kat),
		cmocka_unit_test(test_provider_cipher_round_trips_for_every_key_size),
		cmocka_unit_test(test_provider_cbc_decrypt_refuses_bad_padding),
		cmocka_unit_test(test_provider_refuses_bad_cipher_key_and_iv),
		cmocka_unit_test(test_provider_random_fills_the_buffer),
		cmocka_unit_test(test_gcm_encrypt_matches_kat),
		cmocka_unit_test(test_payload_decrypt_matches_kat),
		cmocka_unit_test(test_payload_decrypt_accepts_16_byte_keymat_with_tag_on_payload),
		cmocka_unit_test(
			test_payload_decrypt_16_byte_keymat_refuses_payload_shorter_than_tag),
		cmocka_unit_test(test_payload_decrypt_refuses_tampered_ciphertext),
		cmocka_unit_test(test_payload_decrypt_refuses_tampered_tag),
		cmocka_unit_test(test_payload_decrypt_refuses_wrong_key_or_iv),
		cmocka_unit_test(test_payload_decrypt_refuses_unsupported_keymat_length),
		cmocka_unit_test(test_payload_refuses_empty_iv),
		cmocka_unit_test(test_payload_encrypt_round_trips),
		cmocka_unit_test(test_payload_encrypt_gives_fresh_key_and_iv_each_call),
		cmocka_unit_test(test_payload_key_transport_gives_fresh_16_bytes),
		cmocka_unit_test(test_crypto_shutdown_then_provider_reopens_handles),
		cmocka_unit_test(test_crypto_shutdown_returns_all_secure_memory),
		cmocka_unit_test(test_signal_context_generates_keys_and_signs_with_provider),
		cmocka_unit_test(test_signal_hkdf_on_provider_matches_kat),
	};
	int ret;

	if (argc == 2 && strcmp(argv[1], FOREIGN_CHILD_FLAG) == 0)
		return foreign_libgcrypt_child();

	/* Under valgrind /proc/self/exe is the tool; readlink gives our path. */
	self_exe = g_file_read_link("/proc/self/exe", NULL);
	ret = cmocka_run_group_tests(tests, group_setup, group_teardown);
	g_free(self_exe);
	return ret;
}
