/*
 * Trust transitions: blind trust before verification, manual mode, and a
 * known device showing up with another identity key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "err.h"
#include "store.h"
#include "trust.h"

#define BOB "bob@example.org"

typedef struct {
	char *dir;
	char *path;
	store_t *store;
} fixture;

static int setup(void **state)
{
	fixture *f = g_new0(fixture, 1);

	f->dir = g_dir_make_tmp("omemo-trust-XXXXXX", NULL);
	f->path = g_build_filename(f->dir, "t.db", NULL);
	assert_int_equal(store_open(f->path, &f->store), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	const char *suffix[] = { "", "-wal", "-shm" };

	store_close(f->store);
	for (int i = 0; i < 3; i++) {
		char *p = g_strconcat(f->path, suffix[i], NULL);
		g_unlink(p);
		g_free(p);
	}
	g_rmdir(f->dir);
	g_free(f->path);
	g_free(f->dir);
	g_free(f);
	return 0;
}

static void key_of(uint8_t ik[OMEMO_PUBKEY_LEN], uint8_t seed)
{
	ik[0] = 0x05;
	for (int i = 1; i < OMEMO_PUBKEY_LEN; i++)
		ik[i] = (uint8_t)(seed * 31 + i);
}

static trust_result eval(fixture *f, trust_mode mode, uint32_t dev, uint8_t seed)
{
	uint8_t ik[OMEMO_PUBKEY_LEN];
	trust_result r;

	key_of(ik, seed);
	assert_int_equal(trust_evaluate(f->store, mode, BOB, dev, ik, 1000, &r), 0);
	return r;
}

static void test_btbv_trusts_new_devices_blindly_before_verification(void **state)
{
	fixture *f = *state;
	trust_result r = eval(f, TRUST_MODE_BTBV, 1, 1);

	assert_int_equal(r.state, TRUST_BLIND);
	assert_true(r.is_new);
	assert_false(r.key_changed);
	assert_true(trust_is_trusted(r.state));
	/* Seen again: the recorded decision, no longer new. */
	r = eval(f, TRUST_MODE_BTBV, 1, 1);
	assert_int_equal(r.state, TRUST_BLIND);
	assert_false(r.is_new);
	r = eval(f, TRUST_MODE_BTBV, 2, 2);
	assert_int_equal(r.state, TRUST_BLIND);
	assert_false(trust_has_verified(f->store, BOB));
}

static void test_btbv_new_device_after_verification_is_undecided(void **state)
{
	fixture *f = *state;
	uint8_t ik[OMEMO_PUBKEY_LEN];
	trust_result r = eval(f, TRUST_MODE_BTBV, 1, 1);

	assert_int_equal(r.state, TRUST_BLIND);
	key_of(ik, 1);
	assert_int_equal(trust_set(f->store, BOB, 1, ik, TRUST_VERIFIED, 2000), 0);
	assert_true(trust_has_verified(f->store, BOB));
	r = eval(f, TRUST_MODE_BTBV, 1, 1);
	assert_int_equal(r.state, TRUST_VERIFIED);

	r = eval(f, TRUST_MODE_BTBV, 7, 7);
	assert_int_equal(r.state, TRUST_UNDECIDED);
	assert_true(r.is_new);
	assert_false(trust_is_trusted(r.state));
	/* Until the user decides, it stays undecided. */
	r = eval(f, TRUST_MODE_BTBV, 7, 7);
	assert_int_equal(r.state, TRUST_UNDECIDED);
	assert_false(r.is_new);
	key_of(ik, 7);
	assert_int_equal(trust_set(f->store, BOB, 7, ik, TRUST_BLIND, 3000), 0);
	assert_int_equal(eval(f, TRUST_MODE_BTBV, 7, 7).state, TRUST_BLIND);
}

static void test_manual_mode_asks_about_every_new_device(void **state)
{
	fixture *f = *state;

	assert_int_equal(eval(f, TRUST_MODE_MANUAL, 1, 1).state, TRUST_UNDECIDED);
	assert_int_equal(eval(f, TRUST_MODE_MANUAL, 2, 2).state, TRUST_UNDECIDED);
	/* A device decided earlier keeps its decision in either mode. */
	assert_int_equal(eval(f, TRUST_MODE_BTBV, 1, 1).state, TRUST_UNDECIDED);
	assert_int_equal(eval(f, TRUST_MODE_BTBV, 3, 3).state, TRUST_BLIND);
	assert_int_equal(eval(f, TRUST_MODE_MANUAL, 3, 3).state, TRUST_BLIND);
}

static void test_changed_key_on_known_device_is_never_accepted_silently(void **state)
{
	fixture *f = *state;
	trust_result r = eval(f, TRUST_MODE_BTBV, 5, 1);

	assert_int_equal(r.state, TRUST_BLIND);
	/* Same device id, another identity key: even with no verification
	 * anywhere, this is a new and undecided key, flagged as a change. */
	r = eval(f, TRUST_MODE_BTBV, 5, 2);
	assert_int_equal(r.state, TRUST_UNDECIDED);
	assert_true(r.is_new);
	assert_true(r.key_changed);
	/* The old key keeps its own decision. */
	assert_int_equal(eval(f, TRUST_MODE_BTBV, 5, 1).state, TRUST_BLIND);
}

static void test_distrusted_stays_distrusted(void **state)
{
	fixture *f = *state;
	uint8_t ik[OMEMO_PUBKEY_LEN];

	eval(f, TRUST_MODE_BTBV, 9, 9);
	key_of(ik, 9);
	assert_int_equal(trust_set(f->store, BOB, 9, ik, TRUST_DISTRUSTED, 5000), 0);
	assert_int_equal(eval(f, TRUST_MODE_BTBV, 9, 9).state, TRUST_DISTRUSTED);
	assert_false(trust_is_trusted(TRUST_DISTRUSTED));
	assert_int_equal(trust_set(f->store, BOB, 9, ik, (trust_state)7, 5000),
	                 OMEMO_ERR_INVALID_ARG);
}

static void test_decisions_survive_reopen(void **state)
{
	fixture *f = *state;
	uint8_t ik[OMEMO_PUBKEY_LEN];

	eval(f, TRUST_MODE_BTBV, 1, 1);
	key_of(ik, 1);
	assert_int_equal(trust_set(f->store, BOB, 1, ik, TRUST_VERIFIED, 2000), 0);
	store_close(f->store);
	assert_int_equal(store_open(f->path, &f->store), 0);
	assert_int_equal(eval(f, TRUST_MODE_BTBV, 1, 1).state, TRUST_VERIFIED);
	assert_int_equal(eval(f, TRUST_MODE_BTBV, 2, 2).state, TRUST_UNDECIDED);
}

static void test_fingerprint_comparison_ignores_spaces_and_case(void **state)
{
	uint8_t ik[OMEMO_PUBKEY_LEN];
	char hex[65];
	char *spaced;

	key_of(ik, 3);
	for (int i = 0; i < 32; i++)
		g_snprintf(hex + 2 * i, 3, "%02x", ik[i + 1]);
	assert_true(trust_fingerprint_matches(hex, ik));
	spaced = g_strdup_printf("%.8s %.8s %.8s %.8s %.8s %.8s %.8s %.8s", hex, hex + 8, hex + 16,
	                         hex + 24, hex + 32, hex + 40, hex + 48, hex + 56);
	assert_true(trust_fingerprint_matches(spaced, ik));
	g_free(spaced);
	spaced = g_ascii_strup(hex, -1);
	assert_true(trust_fingerprint_matches(spaced, ik));
	g_free(spaced);

	hex[10] = hex[10] == 'a' ? 'b' : 'a';
	assert_false(trust_fingerprint_matches(hex, ik));
	hex[10] = '\0';
	assert_false(trust_fingerprint_matches(hex, ik)); /* too short */
	assert_false(trust_fingerprint_matches("", ik));
	assert_false(trust_fingerprint_matches("zz", ik));
	assert_false(trust_fingerprint_matches(NULL, ik));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_btbv_trusts_new_devices_blindly_before_verification,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_btbv_new_device_after_verification_is_undecided,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_manual_mode_asks_about_every_new_device, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(
			test_changed_key_on_known_device_is_never_accepted_silently, setup, teardown),
		cmocka_unit_test_setup_teardown(test_distrusted_stays_distrusted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decisions_survive_reopen, setup, teardown),
		cmocka_unit_test(test_fingerprint_comparison_ignores_spaces_and_case),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
