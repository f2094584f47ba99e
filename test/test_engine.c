/*
 * Engine tests: two (or more) engines in one process, each with its own
 * database in a fresh temporary directory, talk to each other through the
 * structs the wire module would carry.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "engine.h"
#include "err.h"
#include "payload.h"
#include "signal_compat.h"
#include "store.h"

#define ALICE "alice@example.org"
#define BOB "bob@example.org"

typedef struct {
	char *dir;
} fixture;

static int setup(void **state)
{
	fixture *f = g_new0(fixture, 1);

	f->dir = g_dir_make_tmp("omemo-engine-XXXXXX", NULL);
	assert_non_null(f->dir);
	*state = f;
	return 0;
}

static void rm_rf(const char *dir)
{
	GDir *d = g_dir_open(dir, 0, NULL);
	const char *name;

	if (!d)
		return;
	while ((name = g_dir_read_name(d))) {
		char *p = g_build_filename(dir, name, NULL);
		g_unlink(p);
		g_free(p);
	}
	g_dir_close(d);
	g_rmdir(dir);
}

static int teardown(void **state)
{
	fixture *f = *state;

	rm_rf(f->dir);
	g_free(f->dir);
	g_free(f);
	return 0;
}

static char *db_path(fixture *f, const char *name)
{
	char *file = g_strdup_printf("%s.db", name);
	char *p = g_build_filename(f->dir, file, NULL);

	g_free(file);
	return p;
}

static engine_t *open_engine(fixture *f, const char *name, const char *jid)
{
	char *p = db_path(f, name);
	engine_t *e = NULL;
	int ret = engine_open(p, jid, &e);

	g_free(p);
	assert_int_equal(ret, 0);
	assert_non_null(e);
	return e;
}

/* a builds a session with b from b's published bundle. */
static void connect_engines(engine_t *a, engine_t *b, const char *b_jid)
{
	omemo_bundle bundle;

	assert_int_equal(engine_get_bundle(b, &bundle), 0);
	assert_int_equal(engine_build_session(a, b_jid, engine_device_id(b), &bundle), 0);
	omemo_bundle_clear(&bundle);
}

static void encrypt_text(engine_t *from, const char *to_jid, engine_t *to, const char *text,
                         omemo_message *msg)
{
	omemo_address rcpt = { to_jid, engine_device_id(to) };
	engine_rcpt_status st;

	assert_int_equal(engine_encrypt(from, (const uint8_t *)text, strlen(text), &rcpt, 1, msg,
	                                &st),
	                 0);
	assert_int_equal(st.result, 0);
	assert_int_equal(msg->n_keys, 1);
}

static void expect_text(engine_t *to, const char *from_jid, const omemo_message *msg,
                        const char *text)
{
	engine_decrypted d;

	assert_int_equal(engine_decrypt(to, from_jid, msg, &d), 0);
	assert_false(d.key_transport);
	assert_int_equal(d.len, strlen(text));
	assert_string_equal((const char *)d.plaintext, text);
	engine_decrypted_clear(&d);
}

static void test_open_creates_identity_and_bundle(void **state)
{
	fixture *f = *state;
	engine_t *e = open_engine(f, "a", ALICE);
	omemo_bundle b;
	ec_public_key *ik = NULL;
	signal_context *ctx = NULL;

	assert_in_range(engine_device_id(e), 1, 0x7fffffff);
	assert_int_equal(engine_identity_key(e)[0], 0x05);
	assert_int_equal(engine_get_bundle(e, &b), 0);
	assert_int_equal(b.n_prekeys, ENGINE_PREKEY_COUNT);
	assert_memory_equal(b.ik, engine_identity_key(e), OMEMO_PUBKEY_LEN);
	for (size_t i = 0; i < b.n_prekeys; i++) {
		assert_int_equal(b.prekeys[i].key[0], 0x05);
		for (size_t j = 0; j < i; j++)
			assert_int_not_equal(b.prekeys[i].id, b.prekeys[j].id);
	}
	/* The signed prekey's signature verifies with the identity key. */
	assert_int_equal(signal_context_create(&ctx, NULL), 0);
	assert_int_equal(payload_crypto_provider_set(ctx), 0);
	assert_int_equal(curve_decode_point(&ik, b.ik, OMEMO_PUBKEY_LEN, ctx), 0);
	assert_int_equal(curve_verify_signature(ik, b.spk, OMEMO_PUBKEY_LEN, b.spk_sig,
	                                        OMEMO_SIGNATURE_LEN),
	                 1);
	SIGNAL_UNREF(ik);
	signal_context_destroy(ctx);
	omemo_bundle_clear(&b);
	engine_close(e);
}

static void test_reopen_keeps_identity(void **state)
{
	fixture *f = *state;
	engine_t *e = open_engine(f, "a", ALICE);
	uint32_t id = engine_device_id(e);
	uint8_t ik[OMEMO_PUBKEY_LEN];
	omemo_bundle b1, b2;

	memcpy(ik, engine_identity_key(e), sizeof(ik));
	assert_int_equal(engine_get_bundle(e, &b1), 0);
	engine_close(e);
	e = open_engine(f, "a", ALICE);
	assert_int_equal(engine_device_id(e), id);
	assert_memory_equal(engine_identity_key(e), ik, sizeof(ik));
	assert_int_equal(engine_get_bundle(e, &b2), 0);
	assert_int_equal(b1.spk_id, b2.spk_id);
	assert_memory_equal(b1.spk, b2.spk, OMEMO_PUBKEY_LEN);
	assert_int_equal(b1.n_prekeys, b2.n_prekeys);
	assert_memory_equal(b1.prekeys, b2.prekeys, b1.n_prekeys * sizeof(omemo_prekey_pub));
	omemo_bundle_clear(&b1);
	omemo_bundle_clear(&b2);
	engine_close(e);
}

static void test_fingerprint_format(void **state)
{
	uint8_t key[OMEMO_PUBKEY_LEN];
	char *fp, *hex;

	key[0] = 0x05;
	for (int i = 1; i < OMEMO_PUBKEY_LEN; i++)
		key[i] = (uint8_t)(i * 7 + 0xa0);
	fp = engine_fingerprint_format(key, sizeof(key));
	hex = engine_fingerprint_hex(key, sizeof(key));
	assert_non_null(fp);
	assert_non_null(hex);
	assert_int_equal(strlen(hex), 64);
	assert_int_equal(strlen(fp), 71);
	assert_string_equal(fp, "a7aeb5bc c3cad1d8 dfe6edf4 fb020910 171e252c 333a4148 4f565d64 "
	                        "6b727980");
	assert_string_equal(hex, "a7aeb5bcc3cad1d8dfe6edf4fb020910171e252c333a41484f565d646b727980");
	g_free(fp);
	g_free(hex);
	assert_null(engine_fingerprint_format(key, 32));
}

static void test_session_both_ways(void **state)
{
	fixture *f = *state;
	engine_t *a = open_engine(f, "a", ALICE);
	engine_t *b = open_engine(f, "b", BOB);
	omemo_message m;
	engine_decrypted d;

	connect_engines(a, b, BOB);
	assert_true(engine_has_session(a, BOB, engine_device_id(b)));

	encrypt_text(a, BOB, b, "hello bob", &m);
	assert_true(m.keys[0].prekey);
	assert_int_equal(engine_decrypt(b, ALICE, &m, &d), 0);
	assert_true(d.prekey);
	assert_string_equal((char *)d.plaintext, "hello bob");
	assert_memory_equal(d.sender_ik, engine_identity_key(a), OMEMO_PUBKEY_LEN);
	engine_decrypted_clear(&d);
	omemo_message_clear(&m);

	encrypt_text(b, ALICE, a, "hi alice", &m);
	assert_false(m.keys[0].prekey);
	expect_text(a, BOB, &m, "hi alice");
	omemo_message_clear(&m);

	/* Alice heard back: her messages are no longer prekey messages. */
	encrypt_text(a, BOB, b, "second", &m);
	assert_false(m.keys[0].prekey);
	expect_text(b, ALICE, &m, "second");
	omemo_message_clear(&m);
	engine_close(a);
	engine_close(b);
}

static void test_forged_bundle_refused(void **state)
{
	fixture *f = *state;
	engine_t *a = open_engine(f, "a", ALICE);
	engine_t *b = open_engine(f, "b", BOB);
	omemo_bundle bundle;

	assert_int_equal(engine_get_bundle(b, &bundle), 0);
	bundle.spk_sig[10] ^= 0x01;
	assert_int_equal(engine_build_session(a, BOB, engine_device_id(b), &bundle),
	                 OMEMO_ERR_BUNDLE_SIGNATURE);
	bundle.spk_sig[10] ^= 0x01;
	bundle.spk[5] ^= 0x80; /* signed prekey swapped for another */
	assert_int_equal(engine_build_session(a, BOB, engine_device_id(b), &bundle),
	                 OMEMO_ERR_BUNDLE_SIGNATURE);
	assert_false(engine_has_session(a, BOB, engine_device_id(b)));
	omemo_bundle_clear(&bundle);
	engine_close(a);
	engine_close(b);
}

static void test_message_for_three_devices(void **state)
{
	fixture *f = *state;
	engine_t *a = open_engine(f, "a", ALICE);
	engine_t *b[3];
	omemo_address rcpts[3];
	engine_rcpt_status st[3];
	omemo_message m;
	const char *names[3] = { "b1", "b2", "b3" };

	for (int i = 0; i < 3; i++) {
		b[i] = open_engine(f, names[i], BOB);
		connect_engines(a, b[i], BOB);
		rcpts[i].jid = BOB;
		rcpts[i].device_id = engine_device_id(b[i]);
	}
	assert_int_equal(engine_encrypt(a, (const uint8_t *)"to all", 6, rcpts, 3, &m, st), 0);
	assert_int_equal(m.n_keys, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(st[i].result, 0);
		assert_true(st[i].prekey);
		expect_text(b[i], ALICE, &m, "to all");
	}
	omemo_message_clear(&m);
	for (int i = 0; i < 3; i++)
		engine_close(b[i]);
	engine_close(a);
}

static void test_encrypt_is_one_transaction(void **state)
{
	fixture *f = *state;
	engine_t *a = open_engine(f, "a", ALICE);
	engine_t *b[3];
	omemo_address rcpts[4];
	engine_rcpt_status st[4];
	store_stats before, after;
	omemo_message m;
	const char *names[3] = { "b1", "b2", "b3" };

	for (int i = 0; i < 3; i++) {
		b[i] = open_engine(f, names[i], BOB);
		connect_engines(a, b[i], BOB);
		rcpts[i].jid = BOB;
		rcpts[i].device_id = engine_device_id(b[i]);
	}
	/* A fourth device without a session is reported, not fatal. */
	rcpts[3].jid = BOB;
	rcpts[3].device_id = 4242;
	store_get_stats(engine_store(a), &before);
	assert_int_equal(engine_encrypt(a, (const uint8_t *)"x", 1, rcpts, 4, &m, st), 0);
	store_get_stats(engine_store(a), &after);
	assert_int_equal(after.commits - before.commits, 1);
	assert_int_equal(st[3].result, OMEMO_ERR_NO_SESSION);
	assert_int_equal(m.n_keys, 3);
	omemo_message_clear(&m);

	/* Nobody reachable: nothing to send, nothing written. */
	store_get_stats(engine_store(a), &before);
	assert_int_equal(engine_encrypt(a, (const uint8_t *)"x", 1, &rcpts[3], 1, &m, st),
	                 OMEMO_ERR_NO_RECIPIENTS);
	store_get_stats(engine_store(a), &after);
	assert_int_equal(after.commits, before.commits);
	assert_null(m.keys);
	assert_null(m.payload);
	for (int i = 0; i < 3; i++)
		engine_close(b[i]);
	engine_close(a);
}

static void test_key_transport_both_ways(void **state)
{
	fixture *f = *state;
	engine_t *a = open_engine(f, "a", ALICE);
	engine_t *b = open_engine(f, "b", BOB);
	omemo_address rcpt;
	omemo_message m;
	engine_decrypted d;

	connect_engines(a, b, BOB);
	encrypt_text(a, BOB, b, "start", &m);
	expect_text(b, ALICE, &m, "start");
	omemo_message_clear(&m);

	/* Bob answers the prekey message with an empty message. */
	rcpt.jid = ALICE;
	rcpt.device_id = engine_device_id(a);
	assert_int_equal(engine_encrypt(b, NULL, 0, &rcpt, 1, &m, NULL), 0);
	assert_null(m.payload);
	assert_int_equal(m.iv_len, PAYLOAD_IV_LEN);
	assert_int_equal(engine_decrypt(a, BOB, &m, &d), 0);
	assert_true(d.key_transport);
	assert_null(d.plaintext);
	engine_decrypted_clear(&d);
	omemo_message_clear(&m);

	/* ... and Alice stops sending prekey messages. */
	encrypt_text(a, BOB, b, "after", &m);
	assert_false(m.keys[0].prekey);
	expect_text(b, ALICE, &m, "after");
	omemo_message_clear(&m);
	engine_close(a);
	engine_close(b);
}

static void test_not_for_us_and_tampering_leave_session_intact(void **state)
{
	fixture *f = *state;
	engine_t *a = open_engine(f, "a", ALICE);
	engine_t *b = open_engine(f, "b", BOB);
	omemo_message m;
	engine_decrypted d;
	uint32_t rid;

	connect_engines(a, b, BOB);
	encrypt_text(a, BOB, b, "secret", &m);

	rid = m.keys[0].rid;
	m.keys[0].rid = rid + 1;
	assert_int_equal(engine_decrypt(b, ALICE, &m, &d), OMEMO_ERR_NOT_FOR_US);
	m.keys[0].rid = rid;

	m.payload[0] ^= 0x01;
	assert_int_equal(engine_decrypt(b, ALICE, &m, &d), OMEMO_ERR_PAYLOAD_AUTH);
	assert_null(d.plaintext);
	m.payload[0] ^= 0x01;

	m.keys[0].data[m.keys[0].len - 1] ^= 0x01; /* breaks the Signal MAC */
	assert_int_not_equal(engine_decrypt(b, ALICE, &m, &d), 0);
	m.keys[0].data[m.keys[0].len - 1] ^= 0x01;

	/* None of that moved the session: the genuine message still opens. */
	expect_text(b, ALICE, &m, "secret");
	omemo_message_clear(&m);
	engine_close(a);
	engine_close(b);
}

static void test_prekey_message_without_flag_decrypts(void **state)
{
	fixture *f = *state;
	engine_t *a = open_engine(f, "a", ALICE);
	engine_t *b = open_engine(f, "b", BOB);
	omemo_message m;

	connect_engines(a, b, BOB);
	encrypt_text(a, BOB, b, "lurch style", &m);
	assert_true(m.keys[0].prekey);
	m.keys[0].prekey = false; /* lurch 0.7 never sets prekey='true' */
	expect_text(b, ALICE, &m, "lurch style");
	omemo_message_clear(&m);
	engine_close(a);
	engine_close(b);
}

static void test_duplicate_prekey_message_and_replenish(void **state)
{
	fixture *f = *state;
	engine_t *a = open_engine(f, "a", ALICE);
	engine_t *b = open_engine(f, "b", BOB);
	omemo_message m, m2;
	engine_decrypted d;
	omemo_bundle bundle;
	uint32_t used_id;
	bool changed = false;

	/* Alice uses the one prekey her copy of Bob's bundle has left. */
	assert_int_equal(engine_get_bundle(b, &bundle), 0);
	used_id = bundle.prekeys[7].id;
	bundle.prekeys[0] = bundle.prekeys[7];
	bundle.n_prekeys = 1;
	assert_int_equal(engine_build_session(a, BOB, engine_device_id(b), &bundle), 0);
	omemo_bundle_clear(&bundle);
	encrypt_text(a, BOB, b, "once", &m);
	expect_text(b, ALICE, &m, "once");

	/* The bundle no longer offers the used prekey, and still holds 100. */
	assert_int_equal(engine_get_bundle(b, &bundle), 0);
	assert_int_equal(bundle.n_prekeys, ENGINE_PREKEY_COUNT);
	for (size_t i = 0; i < bundle.n_prekeys; i++)
		assert_int_not_equal(bundle.prekeys[i].id, used_id);
	omemo_bundle_clear(&bundle);

	/* ... the same message delivered again (offline storage and a copy)
	 * is recognised, and does not break the session. */
	assert_int_equal(engine_decrypt(b, ALICE, &m, &d), OMEMO_ERR_DUPLICATE);
	omemo_message_clear(&m);

	/* A second prekey message of the same session still works. */
	encrypt_text(a, BOB, b, "twice", &m2);
	assert_true(m2.keys[0].prekey);
	expect_text(b, ALICE, &m2, "twice");
	omemo_message_clear(&m2);

	/* Nothing left for housekeeping to top up. */
	assert_int_equal(engine_maintain(b, g_get_real_time() / G_USEC_PER_SEC, &changed), 0);
	assert_false(changed);
	assert_int_equal(engine_get_bundle(b, &bundle), 0);
	assert_int_equal(bundle.n_prekeys, ENGINE_PREKEY_COUNT);
	omemo_bundle_clear(&bundle);
	engine_close(a);
	engine_close(b);
}

static void test_signed_prekey_rotation(void **state)
{
	fixture *f = *state;
	engine_t *a = open_engine(f, "a", ALICE);
	engine_t *b = open_engine(f, "b", BOB);
	int64_t now = g_get_real_time() / G_USEC_PER_SEC;
	omemo_bundle b1, b2;
	uint32_t *ids = NULL;
	int64_t *created = NULL;
	size_t n = 0;
	bool changed;
	omemo_message m;

	/* A session built on the old signed prekey ... */
	connect_engines(a, b, BOB);
	assert_int_equal(engine_get_bundle(b, &b1), 0);
	assert_int_equal(engine_maintain(b, now + 8 * 24 * 3600, &changed), 0);
	assert_true(changed);
	assert_int_equal(engine_get_bundle(b, &b2), 0);
	assert_int_not_equal(b1.spk_id, b2.spk_id);
	assert_memory_not_equal(b1.spk, b2.spk, OMEMO_PUBKEY_LEN);
	/* ... still works after the rotation: the old key is kept. */
	encrypt_text(a, BOB, b, "old spk", &m);
	expect_text(b, ALICE, &m, "old spk");
	omemo_message_clear(&m);

	assert_int_equal(store_signed_prekey_list(engine_store(b), &ids, &created, &n), 0);
	assert_int_equal(n, 2);
	g_free(ids);
	g_free(created);
	/* A month after it was replaced, the old one goes; the current stays. */
	assert_int_equal(engine_maintain(b, now + 40 * 24 * 3600, &changed), 0);
	assert_int_equal(store_signed_prekey_list(engine_store(b), &ids, &created, &n), 0);
	assert_true(n >= 1);
	for (size_t i = 0; i < n; i++)
		assert_int_not_equal(ids[i], b1.spk_id);
	g_free(ids);
	g_free(created);
	omemo_bundle_clear(&b1);
	omemo_bundle_clear(&b2);
	engine_close(a);
	engine_close(b);
}

/* ---- the long conversation ---- */

typedef struct {
	omemo_message msg;
	char *text;
	bool from_a;
	int seq;
} pending;

static void pending_free(gpointer p)
{
	pending *x = p;

	omemo_message_clear(&x->msg);
	g_free(x->text);
	g_free(x);
}

static void copy_message(const omemo_message *src, omemo_message *dst)
{
	*dst = *src;
	dst->keys = g_new0(omemo_key, src->n_keys);
	for (size_t i = 0; i < src->n_keys; i++) {
		dst->keys[i] = src->keys[i];
		dst->keys[i].data = g_memdup2(src->keys[i].data, src->keys[i].len);
	}
	dst->iv = g_memdup2(src->iv, src->iv_len);
	dst->payload = src->payload ? g_memdup2(src->payload, src->payload_len) : NULL;
}

static void reopen(fixture *f, engine_t **e, const char *name, const char *jid)
{
	engine_close(*e);
	*e = open_engine(f, name, jid);
}

/*
 * 1,000 messages both ways over a channel that reorders (a message may be
 * overtaken by up to 12 later ones), loses about 5% and duplicates about 5%, with a restart of
 * each side along the way. Every message that arrives opens to its text;
 * every duplicate is refused as such; nothing breaks the session.
 */
static void test_thousand_messages_reorder_loss_duplicates_restart(void **state)
{
	fixture *f = *state;
	engine_t *a = open_engine(f, "a", ALICE);
	engine_t *b = open_engine(f, "b", BOB);
	GRand *rng = g_rand_new_with_seed(20261126);
	GPtrArray *to_a = g_ptr_array_new_with_free_func(pending_free);
	GPtrArray *to_b = g_ptr_array_new_with_free_func(pending_free);
	int delivered = 0, duplicates = 0, lost = 0;

	connect_engines(a, b, BOB);
	for (int i = 0; i < 1000; i++) {
		/* Bursts: the sender changes every few messages. */
		bool from_a = (i / 4) % 2 == 0;
		pending *p = g_new0(pending, 1);
		GPtrArray *q = from_a ? to_b : to_a;

		p->text = g_strdup_printf("message %d from %s", i, from_a ? "alice" : "bob");
		p->from_a = from_a;
		p->seq = i;
		encrypt_text(from_a ? a : b, from_a ? BOB : ALICE, from_a ? b : a, p->text,
		             &p->msg);
		g_ptr_array_add(q, p);

		if (i == 400)
			reopen(f, &a, "a", ALICE);
		if (i == 700)
			reopen(f, &b, "b", BOB);

		/* Deliver from each queue while it holds more than a small
		 * window, picking a random element: reordering. */
		for (int side = 0; side < 2; side++) {
			GPtrArray *dq = side ? to_a : to_b;
			engine_t *rcv = side ? a : b;

			while (dq->len > 3 || (dq->len > 0 && i == 999)) {
				guint k = (guint)g_rand_int_range(rng, 0, (gint32)dq->len);
				pending *x;
				int roll = g_rand_int_range(rng, 0, 100);

				/* The ratchet keeps five old receiving chains: a
				 * message held back across more turns than that is
				 * lost by design. Hold none longer than 12 sends. */
				for (guint j = 0; j < dq->len; j++)
					if (i - ((pending *)dq->pdata[j])->seq > 12)
						k = j;
				x = g_ptr_array_steal_index(dq, k);

				if (roll < 5 && i > 10) {
					lost++;
				} else {
					const char *from = x->from_a ? ALICE : BOB;
					engine_decrypted d;

					expect_text(rcv, from, &x->msg, x->text);
					delivered++;
					if (roll >= 95) {
						omemo_message dup;

						copy_message(&x->msg, &dup);
						assert_int_equal(engine_decrypt(rcv, from, &dup, &d),
						                 OMEMO_ERR_DUPLICATE);
						omemo_message_clear(&dup);
						duplicates++;
					}
				}
				pending_free(x);
			}
		}
	}
	assert_int_equal(to_a->len + to_b->len, 0);
	assert_int_equal(delivered + lost, 1000);
	assert_true(delivered > 900);
	assert_true(duplicates > 20);
	print_message("delivered %d, lost %d, duplicates refused %d\n", delivered, lost,
	              duplicates);
	g_ptr_array_free(to_a, TRUE);
	g_ptr_array_free(to_b, TRUE);
	g_rand_free(rng);
	engine_close(a);
	engine_close(b);
}

static void test_restart_between_every_message(void **state)
{
	fixture *f = *state;
	engine_t *a = open_engine(f, "a", ALICE);
	engine_t *b = open_engine(f, "b", BOB);
	omemo_message m;

	connect_engines(a, b, BOB);
	for (int i = 0; i < 20; i++) {
		char text[32];
		bool from_a = i % 3 != 2;

		g_snprintf(text, sizeof(text), "msg %d", i);
		if (from_a) {
			encrypt_text(a, BOB, b, text, &m);
			reopen(f, &a, "a", ALICE);
			reopen(f, &b, "b", BOB);
			expect_text(b, ALICE, &m, text);
		} else {
			encrypt_text(b, ALICE, a, text, &m);
			reopen(f, &b, "b", BOB);
			reopen(f, &a, "a", ALICE);
			expect_text(a, BOB, &m, text);
		}
		omemo_message_clear(&m);
	}
	engine_close(a);
	engine_close(b);
}

/*
 * A message may leave before the transaction that used its key commits
 * (store_tx_may_send_early). If that commit never happens (a crash: the
 * store closes with the transaction open), the record read back from disk
 * steps past the key, so the next message uses another and both open.
 * Without the step, the next message would reuse the key and be refused as
 * a duplicate.
 */
static void test_sent_before_commit_never_reuses_a_key(void **state)
{
	fixture *f = *state;
	engine_t *a = open_engine(f, "a", ALICE);
	engine_t *b = open_engine(f, "b", BOB);
	engine_t *c = open_engine(f, "c", "carol@example.org");
	omemo_message m0, m1, m2, m3, mc;
	store_t *st;

	connect_engines(a, b, BOB);
	encrypt_text(a, BOB, b, "first", &m0);
	expect_text(b, ALICE, &m0, "first");

	/* The session was written and committed by the message before. */
	st = engine_store(a);
	assert_int_equal(store_begin(st), 0);
	encrypt_text(a, BOB, b, "sent early", &m1);
	assert_true(store_tx_may_send_early(st));
	reopen(f, &a, "a", ALICE); /* the crash: never committed */

	/* Read from disk in this transaction: this one waits for its commit. */
	st = engine_store(a);
	assert_int_equal(store_begin(st), 0);
	encrypt_text(a, BOB, b, "after the crash", &m2);
	assert_false(store_tx_may_send_early(st));
	assert_int_equal(store_commit(st), 0);
	assert_int_equal(store_begin(st), 0);
	encrypt_text(a, BOB, b, "next", &m3);
	assert_true(store_tx_may_send_early(st));
	assert_int_equal(store_commit(st), 0);

	expect_text(b, ALICE, &m1, "sent early");
	expect_text(b, ALICE, &m2, "after the crash");
	expect_text(b, ALICE, &m3, "next");

	/* A session built in the same transaction: not before the commit. */
	st = engine_store(c);
	assert_int_equal(store_begin(st), 0);
	connect_engines(c, b, BOB);
	encrypt_text(c, BOB, b, "from a new session", &mc);
	assert_false(store_tx_may_send_early(st));
	assert_int_equal(store_commit(st), 0);
	expect_text(b, "carol@example.org", &mc, "from a new session");

	omemo_message_clear(&m0);
	omemo_message_clear(&m1);
	omemo_message_clear(&m2);
	omemo_message_clear(&m3);
	omemo_message_clear(&mc);
	engine_close(a);
	engine_close(b);
	engine_close(c);
}

static void test_invalid_arguments(void **state)
{
	fixture *f = *state;
	engine_t *a = open_engine(f, "a", ALICE);
	omemo_message m;
	engine_decrypted d;
	omemo_bundle empty = { 0 };

	assert_int_equal(engine_open(NULL, ALICE, &a), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(engine_build_session(a, BOB, 0, &empty), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(engine_build_session(a, BOB, 5, &empty), OMEMO_ERR_INVALID_ARG);
	memset(&m, 0, sizeof(m));
	m.sid = 0;
	assert_int_equal(engine_decrypt(a, BOB, &m, &d), OMEMO_ERR_INVALID_ARG);
	m.sid = 77;
	assert_int_equal(engine_decrypt(a, BOB, &m, &d), OMEMO_ERR_NOT_FOR_US);
	engine_close(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_creates_identity_and_bundle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_keeps_identity, setup, teardown),
		cmocka_unit_test(test_fingerprint_format),
		cmocka_unit_test_setup_teardown(test_session_both_ways, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forged_bundle_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_message_for_three_devices, setup, teardown),
		cmocka_unit_test_setup_teardown(test_encrypt_is_one_transaction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_transport_both_ways, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_for_us_and_tampering_leave_session_intact,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_prekey_message_without_flag_decrypts, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_duplicate_prekey_message_and_replenish, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_signed_prekey_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_thousand_messages_reorder_loss_duplicates_restart,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_between_every_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sent_before_commit_never_reuses_a_key, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_invalid_arguments, setup, teardown),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);

	payload_crypto_shutdown();
	return ret;
}
