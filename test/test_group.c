/*
 * Who a message reaches: the devices group_candidates offers for a set of
 * JIDs (a room's members and our own account), with their sessions and
 * trust, against real engines and stores.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "engine.h"
#include "err.h"
#include "group.h"
#include "payload.h"
#include "store.h"
#include "trust.h"

#define ALICE "alice@example.org"
#define BOB "bob@example.org"
#define CAROL "carol@example.org"

typedef struct {
	char *dir;
	engine_t *alice, *alice2, *bob, *carol;
} fixture;

static engine_t *open_in(const char *dir, const char *name, const char *jid)
{
	char *file = g_strdup_printf("%s.db", name);
	char *path = g_build_filename(dir, file, NULL);
	engine_t *e = NULL;

	assert_int_equal(engine_open(path, jid, &e), 0);
	g_free(file);
	g_free(path);
	return e;
}

static void session_with(engine_t *from, engine_t *to)
{
	omemo_bundle b;

	assert_int_equal(engine_get_bundle(to, &b), 0);
	assert_int_equal(engine_build_session(from, engine_own_jid(to), engine_device_id(to), &b), 0);
	omemo_bundle_clear(&b);
}

static void list_of(engine_t *e, const char *jid, const uint32_t *ids, size_t n)
{
	assert_int_equal(store_devices_update(engine_store(e), OMEMO_NS_LEGACY, jid, ids, n,
	                                      time(NULL)),
	                 0);
}

static int setup(void **state)
{
	fixture *f = g_new0(fixture, 1);

	f->dir = g_dir_make_tmp("omemo-group-XXXXXX", NULL);
	f->alice = open_in(f->dir, "alice", ALICE);
	f->alice2 = open_in(f->dir, "alice2", ALICE);
	f->bob = open_in(f->dir, "bob", BOB);
	f->carol = open_in(f->dir, "carol", CAROL);
	*state = f;
	return 0;
}

static void rm_dir(const char *dir)
{
	GDir *d = g_dir_open(dir, 0, NULL);
	const char *name;

	while (d && (name = g_dir_read_name(d))) {
		char *p = g_build_filename(dir, name, NULL);

		g_unlink(p);
		g_free(p);
	}
	if (d)
		g_dir_close(d);
	g_rmdir(dir);
}

static int teardown(void **state)
{
	fixture *f = *state;

	engine_close(f->alice);
	engine_close(f->alice2);
	engine_close(f->bob);
	engine_close(f->carol);
	rm_dir(f->dir);
	g_free(f->dir);
	g_free(f);
	return 0;
}

static const group_device *find(GArray *c, const char *jid, uint32_t id)
{
	for (guint i = 0; i < c->len; i++) {
		const group_device *d = &g_array_index(c, group_device, i);

		if (strcmp(d->jid, jid) == 0 && d->device == id)
			return d;
	}
	return NULL;
}

static void test_members_and_own_other_devices_but_never_this_one(void **state)
{
	fixture *f = *state;
	uint32_t own[] = { engine_device_id(f->alice), engine_device_id(f->alice2) };
	uint32_t bob[] = { engine_device_id(f->bob) };
	uint32_t carol[] = { engine_device_id(f->carol) };
	const char *jids[] = { BOB, CAROL, ALICE };
	GArray *c = NULL;
	const group_device *d;

	list_of(f->alice, ALICE, own, 2);
	list_of(f->alice, BOB, bob, 1);
	list_of(f->alice, CAROL, carol, 1);
	session_with(f->alice, f->alice2);
	session_with(f->alice, f->bob);
	session_with(f->alice, f->carol);
	assert_int_equal(group_candidates(f->alice, TRUST_MODE_BTBV, jids, 3, time(NULL), &c), 0);
	assert_int_equal(c->len, 3);
	assert_null(find(c, ALICE, engine_device_id(f->alice)));
	for (size_t i = 0; i < 3; i++) {
		engine_t *e = i == 0 ? f->bob : i == 1 ? f->carol : f->alice2;
		uint8_t ik[OMEMO_PUBKEY_LEN];

		d = find(c, engine_own_jid(e), engine_device_id(e));
		assert_non_null(d);
		assert_true(d->has_session);
		/* Blind trust on first sight, recorded. */
		assert_true(d->trust.is_new);
		assert_int_equal(d->trust.state, TRUST_BLIND);
		assert_int_equal(engine_remote_identity(f->alice, d->jid, d->device, ik), 0);
		assert_memory_equal(d->ik, ik, OMEMO_PUBKEY_LEN);
	}
	g_array_free(c, TRUE);
	/* Asked again: the same keys are known now, nothing new. */
	assert_int_equal(group_candidates(f->alice, TRUST_MODE_BTBV, jids, 3, time(NULL), &c), 0);
	for (guint i = 0; i < c->len; i++)
		assert_false(g_array_index(c, group_device, i).trust.is_new);
	g_array_free(c, TRUE);
}

static void test_listed_device_without_session_is_offered_for_a_bundle_fetch(void **state)
{
	fixture *f = *state;
	uint32_t bob[] = { engine_device_id(f->bob), 4242 };
	const char *jids[] = { BOB };
	GArray *c = NULL;
	const group_device *d;

	list_of(f->alice, BOB, bob, 2);
	session_with(f->alice, f->bob);
	assert_int_equal(group_candidates(f->alice, TRUST_MODE_BTBV, jids, 1, time(NULL), &c), 0);
	assert_int_equal(c->len, 2);
	d = find(c, BOB, 4242);
	assert_non_null(d);
	assert_false(d->has_session);
	assert_int_equal(d->trust.state, TRUST_UNDECIDED);
	assert_false(d->trust.is_new);
	assert_true(find(c, BOB, engine_device_id(f->bob))->has_session);
	g_array_free(c, TRUE);
}

static void test_dropped_device_stays_out_and_unlisted_session_stays_in(void **state)
{
	fixture *f = *state;
	uint32_t both[] = { engine_device_id(f->bob), 777 };
	uint32_t only_777[] = { 777 };
	uint32_t none[] = { 0 };
	const char *jids[] = { BOB, CAROL };
	GArray *c = NULL;

	/* bob's device was listed, then dropped from the list: out, though
	 * its session remains. */
	list_of(f->alice, BOB, both, 2);
	session_with(f->alice, f->bob);
	list_of(f->alice, BOB, only_777, 1);
	/* carol never published a list but wrote with a session (a client
	 * whose server lost its publish): in. */
	list_of(f->alice, CAROL, none, 0);
	session_with(f->alice, f->carol);
	assert_int_equal(group_candidates(f->alice, TRUST_MODE_BTBV, jids, 2, time(NULL), &c), 0);
	assert_null(find(c, BOB, engine_device_id(f->bob)));
	assert_non_null(find(c, BOB, 777));
	assert_non_null(find(c, CAROL, engine_device_id(f->carol)));
	assert_int_equal(c->len, 2);
	g_array_free(c, TRUE);
}

static void test_new_device_after_verification_is_undecided(void **state)
{
	fixture *f = *state;
	uint32_t bob[] = { engine_device_id(f->bob), engine_device_id(f->carol) };
	const char *jids[] = { BOB };
	uint8_t ik[OMEMO_PUBKEY_LEN];
	GArray *c = NULL;
	omemo_bundle b;
	const group_device *d;

	/* The carol engine stands in for a second device of bob. */
	list_of(f->alice, BOB, bob, 2);
	session_with(f->alice, f->bob);
	assert_int_equal(engine_remote_identity(f->alice, BOB, engine_device_id(f->bob), ik), 0);
	assert_int_equal(trust_set(engine_store(f->alice), BOB, engine_device_id(f->bob), ik,
	                           TRUST_VERIFIED, time(NULL)),
	                 0);
	assert_int_equal(engine_get_bundle(f->carol, &b), 0);
	assert_int_equal(engine_build_session(f->alice, BOB, engine_device_id(f->carol), &b), 0);
	omemo_bundle_clear(&b);
	assert_int_equal(group_candidates(f->alice, TRUST_MODE_BTBV, jids, 1, time(NULL), &c), 0);
	d = find(c, BOB, engine_device_id(f->bob));
	assert_int_equal(d->trust.state, TRUST_VERIFIED);
	d = find(c, BOB, engine_device_id(f->carol));
	assert_true(d->trust.is_new);
	assert_int_equal(d->trust.state, TRUST_UNDECIDED);
	g_array_free(c, TRUE);
}

static void test_bad_arguments_are_refused(void **state)
{
	fixture *f = *state;
	GArray *c = NULL;

	assert_int_equal(group_candidates(f->alice, TRUST_MODE_BTBV, NULL, 2, 0, &c),
	                 OMEMO_ERR_INVALID_ARG);
	assert_int_equal(group_candidates(f->alice, TRUST_MODE_BTBV, NULL, 0, 0, NULL),
	                 OMEMO_ERR_INVALID_ARG);
	assert_null(c);
	assert_int_equal(group_candidates(f->alice, TRUST_MODE_BTBV, NULL, 0, 0, &c), 0);
	assert_int_equal(c->len, 0);
	g_array_free(c, TRUE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_members_and_own_other_devices_but_never_this_one,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_listed_device_without_session_is_offered_for_a_bundle_fetch, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_dropped_device_stays_out_and_unlisted_session_stays_in, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_device_after_verification_is_undecided, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_bad_arguments_are_refused, setup, teardown),
	};
	int ret;

	ret = cmocka_run_group_tests(tests, NULL, NULL);
	payload_crypto_shutdown();
	return ret;
}
