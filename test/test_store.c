/*
 * Store module tests, each on a fresh database in its own temporary
 * directory: file creation and modes, refusing damaged or newer files
 * without touching them, forward migration of a real v1 database, nesting
 * transactions and failures, every table, and the Signal library driving
 * the store through its callbacks (including two peers building sessions).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <sqlite3.h>

#include "err.h"
#include "omemo_types.h"
#include "payload.h"
#include "signal_compat.h"
#include "store.h"

#define NS_LEGACY OMEMO_NS_LEGACY
#define NS_OTHER "urn:xmpp:omemo:2"
#define BOB "bob@example.org"
#define CAROL "carol@example.org"

typedef struct {
	char *dir;
	char *path;
	store_t *store;
	signal_context *gctx;
	signal_protocol_store_context *sctx;
} fixture;

/* ------------------------------------------------------------------ */
/* Helpers                                                              */
/* ------------------------------------------------------------------ */

static void remove_tree(const char *dir)
{
	GDir *d = g_dir_open(dir, 0, NULL);
	const char *name;

	if (!d)
		return;
	while ((name = g_dir_read_name(d))) {
		char *p = g_build_filename(dir, name, NULL);

		if (g_file_test(p, G_FILE_TEST_IS_DIR))
			remove_tree(p);
		else
			g_unlink(p);
		g_free(p);
	}
	g_dir_close(d);
	g_rmdir(dir);
}

static int setup(void **state)
{
	fixture *f = g_new0(fixture, 1);
	GError *err = NULL;

	f->dir = g_dir_make_tmp("store-test-XXXXXX", &err);
	if (!f->dir) {
		fprintf(stderr, "g_dir_make_tmp: %s\n", err->message);
		g_error_free(err);
		g_free(f);
		return -1;
	}
	f->path = g_build_filename(f->dir, "account.db", NULL);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	if (f->sctx)
		signal_protocol_store_context_destroy(f->sctx);
	if (f->gctx)
		signal_context_destroy(f->gctx);
	store_close(f->store);
	remove_tree(f->dir);
	g_free(f->path);
	g_free(f->dir);
	g_free(f);
	return 0;
}

static store_t *open_ok(const char *path)
{
	store_t *s = NULL;

	assert_int_equal(store_open(path, &s), 0);
	assert_non_null(s);
	return s;
}

static void reopen(fixture *f)
{
	store_close(f->store);
	f->store = open_ok(f->path);
}

static signal_context *signal_ctx_new(void)
{
	signal_context *gctx = NULL;

	assert_int_equal(signal_context_create(&gctx, NULL), 0);
	assert_int_equal(payload_crypto_provider_set(gctx), 0);
	return gctx;
}

/* Store, Signal context and store context registered for ns. */
static void open_with_signal(fixture *f, const char *ns)
{
	f->store = open_ok(f->path);
	f->gctx = signal_ctx_new();
	assert_int_equal(signal_protocol_store_context_create(&f->sctx, f->gctx), 0);
	assert_int_equal(store_signal_register(f->store, f->sctx, ns), 0);
}

static GBytes *read_file(const char *path)
{
	char *data = NULL;
	gsize len = 0;

	assert_true(g_file_get_contents(path, &data, &len, NULL));
	return g_bytes_new_take(data, len);
}

static void assert_file_is(const char *path, GBytes *want)
{
	GBytes *now = read_file(path);

	assert_true(g_bytes_equal(now, want));
	g_bytes_unref(now);
}

static int64_t now_seconds(void)
{
	return g_get_real_time() / G_USEC_PER_SEC;
}

/* Direct SQL on the file, as another program (or an older version) would. */
static void sql_exec(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	char *msg = NULL;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("sql: %s", msg ? msg : "?");
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static int64_t sql_int(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *stmt = NULL;
	int64_t v;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
	v = sqlite3_column_int64(stmt, 0);
	assert_int_equal(sqlite3_finalize(stmt), SQLITE_OK);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	return v;
}

static void assert_buffer_is(signal_buffer *buf, const void *data, size_t len)
{
	assert_non_null(buf);
	assert_int_equal(signal_buffer_len(buf), len);
	assert_memory_equal(signal_buffer_data(buf), data, len);
}

static signal_protocol_address addr_of(const char *jid, int32_t device)
{
	signal_protocol_address a = { .name = jid, .name_len = strlen(jid), .device_id = device };

	return a;
}

static uint64_t commits_of(store_t *s)
{
	store_stats st;

	store_get_stats(s, &st);
	return st.commits;
}

static uint64_t rollbacks_of(store_t *s)
{
	store_stats st;

	store_get_stats(s, &st);
	return st.rollbacks;
}

static size_t unused_prekeys(store_t *s, uint32_t **ids)
{
	size_t n = 99;

	assert_int_equal(store_prekey_list_unused(s, ids, &n), 0);
	return n;
}

static const uint8_t REC_A[] = { 0x0a, 0x03, 'a', 'b', 'c', 0x00, 0xff };
static const uint8_t REC_B[] = { 0x12, 0x01, 0x7f };
static const uint8_t KEY_1[OMEMO_PUBKEY_LEN] = { 0x05, 1, 2, 3, 4, 5, 6, 7, 8 };
static const uint8_t KEY_2[OMEMO_PUBKEY_LEN] = { 0x05, 9, 9, 9, 9, 9, 9, 9, 9 };
static const uint8_t PRIV_1[32] = { 0x40, 0x41, 0x42 };

/* ------------------------------------------------------------------ */
/* Opening                                                              */
/* ------------------------------------------------------------------ */

static void test_open_creates_db_wal_and_shm_with_mode_0600_under_umask_0(void **state)
{
	fixture *f = *state;
	char *wal = g_strconcat(f->path, "-wal", NULL);
	char *shm = g_strconcat(f->path, "-shm", NULL);
	const char *files[] = { f->path, wal, shm };
	mode_t old = umask(0);
	struct stat st;

	f->store = open_ok(f->path);
	umask(old);
	assert_int_equal(store_meta_set_int(f->store, "k", 1), 0);
	for (size_t i = 0; i < G_N_ELEMENTS(files); i++) {
		assert_int_equal(stat(files[i], &st), 0);
		if ((st.st_mode & 07777) != 0600)
			fail_msg("%s has mode %o", files[i], (unsigned)(st.st_mode & 07777));
	}
	assert_string_equal(store_path(f->store), f->path);
	g_free(wal);
	g_free(shm);
}

static void test_open_fixes_mode_when_umask_removes_owner_write(void **state)
{
	fixture *f = *state;
	mode_t old = umask(0277);
	struct stat st;

	f->store = open_ok(f->path);
	umask(old);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(store_meta_set_int(f->store, "k", 1), 0);
}

static void test_open_puts_database_in_wal_mode(void **state)
{
	fixture *f = *state;
	GBytes *bytes;
	const uint8_t *hdr;

	f->store = open_ok(f->path);
	store_close(f->store);
	f->store = NULL;
	bytes = read_file(f->path);
	assert_true(g_bytes_get_size(bytes) >= 100);
	hdr = g_bytes_get_data(bytes, NULL);
	/* File format bytes 18/19: 2 means WAL. */
	assert_int_equal(hdr[18], 2);
	assert_int_equal(hdr[19], 2);
	g_bytes_unref(bytes);
	assert_int_equal(sql_int(f->path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
}

static void test_open_refuses_missing_parent_dir_and_bad_args(void **state)
{
	fixture *f = *state;
	char *missing = g_build_filename(f->dir, "no-such-dir", "account.db", NULL);
	store_t *s = (store_t *)0x1;

	assert_int_equal(store_open(missing, &s), OMEMO_ERR_STORE_OPEN);
	assert_null(s);
	assert_false(g_file_test(missing, G_FILE_TEST_EXISTS));
	assert_int_equal(store_open(NULL, &s), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_open("", &s), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_open(f->path, NULL), OMEMO_ERR_INVALID_ARG);
	/* A directory is no database. */
	assert_int_not_equal(store_open(f->dir, &s), 0);
	assert_null(s);
	g_free(missing);
}

static void test_open_takes_empty_file_left_by_interrupted_create(void **state)
{
	fixture *f = *state;
	int fd = open(f->path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	int64_t v = 0;

	assert_true(fd >= 0);
	assert_int_equal(close(fd), 0);
	f->store = open_ok(f->path);
	assert_int_equal(store_meta_set_int(f->store, "k", 8), 0);
	reopen(f);
	assert_int_equal(store_meta_get_int(f->store, "k", &v), 0);
	assert_int_equal(v, 8);
}

static void test_open_refuses_random_bytes_and_leaves_them(void **state)
{
	fixture *f = *state;
	uint8_t junk[8192];
	GBytes *before;
	store_t *s = NULL;

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)g_random_int();
	assert_true(g_file_set_contents(f->path, (const char *)junk, sizeof(junk), NULL));
	before = read_file(f->path);
	assert_int_equal(store_open(f->path, &s), OMEMO_ERR_STORE_CORRUPT);
	assert_null(s);
	assert_file_is(f->path, before);
	g_bytes_unref(before);
}

static void test_open_refuses_truncated_database_and_leaves_it(void **state)
{
	fixture *f = *state;
	uint8_t rec[3000];
	GBytes *full;
	GBytes *before;
	gsize len;
	store_t *s = NULL;

	memset(rec, 0x5a, sizeof(rec));
	f->store = open_ok(f->path);
	assert_int_equal(store_begin(f->store), 0);
	for (uint32_t id = 1; id <= 40; id++)
		assert_int_equal(store_prekey_save(f->store, id, rec, sizeof(rec)), 0);
	assert_int_equal(store_commit(f->store), 0);
	store_close(f->store);
	f->store = NULL;

	full = read_file(f->path);
	len = g_bytes_get_size(full);
	assert_true(len > 40 * 3000);
	assert_true(g_file_set_contents(f->path, g_bytes_get_data(full, NULL), (gssize)(len / 2),
	                                NULL));
	g_bytes_unref(full);
	before = read_file(f->path);
	assert_int_equal(store_open(f->path, &s), OMEMO_ERR_STORE_CORRUPT);
	assert_null(s);
	assert_file_is(f->path, before);
	g_bytes_unref(before);
}

static void test_open_refuses_damaged_page_and_leaves_it(void **state)
{
	fixture *f = *state;
	uint8_t rec[3000];
	char *data = NULL;
	gsize len = 0;
	GBytes *before;
	store_t *s = NULL;

	memset(rec, 0x33, sizeof(rec));
	f->store = open_ok(f->path);
	assert_int_equal(store_begin(f->store), 0);
	for (uint32_t id = 1; id <= 20; id++)
		assert_int_equal(store_prekey_save(f->store, id, rec, sizeof(rec)), 0);
	assert_int_equal(store_commit(f->store), 0);
	store_close(f->store);
	f->store = NULL;

	/* Scribble over the second half of the file, page headers included. */
	assert_true(g_file_get_contents(f->path, &data, &len, NULL));
	for (gsize i = len / 2; i < len; i++)
		data[i] = (char)(i * 7);
	assert_true(g_file_set_contents(f->path, data, (gssize)len, NULL));
	g_free(data);
	before = read_file(f->path);
	assert_int_equal(store_open(f->path, &s), OMEMO_ERR_STORE_CORRUPT);
	assert_null(s);
	assert_file_is(f->path, before);
	g_bytes_unref(before);
}

static void test_open_refuses_newer_schema_and_leaves_file(void **state)
{
	fixture *f = *state;
	char *sql = g_strdup_printf("CREATE TABLE future (x); INSERT INTO future VALUES (1);"
	                            "PRAGMA user_version = %d;",
	                            STORE_SCHEMA_VERSION + 1);
	GBytes *before;
	store_t *s = NULL;

	sql_exec(f->path, sql);
	g_free(sql);
	before = read_file(f->path);
	assert_int_equal(store_open(f->path, &s), OMEMO_ERR_STORE_TOO_NEW);
	assert_null(s);
	assert_file_is(f->path, before);
	g_bytes_unref(before);
}

/* The first schema, as version 1 of this code wrote it. Frozen here on
 * purpose: it is what users' files contain. */
static const char V1_SCHEMA[] =
	"CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);"
	"CREATE TABLE own_identity (slot INTEGER PRIMARY KEY CHECK (slot = 0),"
	"  device_id INTEGER NOT NULL, registration_id INTEGER NOT NULL,"
	"  public_key BLOB NOT NULL, private_key BLOB NOT NULL);"
	"CREATE TABLE prekeys (id INTEGER PRIMARY KEY, record BLOB NOT NULL);"
	"CREATE TABLE signed_prekeys (id INTEGER PRIMARY KEY, record BLOB NOT NULL,"
	"  created INTEGER NOT NULL);"
	"CREATE TABLE sessions (ns TEXT NOT NULL, jid TEXT NOT NULL, device INTEGER NOT NULL,"
	"  record BLOB NOT NULL, user_record BLOB, PRIMARY KEY (ns, jid, device));"
	"CREATE TABLE remote_identities (ns TEXT NOT NULL, jid TEXT NOT NULL,"
	"  device INTEGER NOT NULL, key BLOB NOT NULL, PRIMARY KEY (ns, jid, device));"
	"CREATE TABLE devices (ns TEXT NOT NULL, jid TEXT NOT NULL, device INTEGER NOT NULL,"
	"  active INTEGER NOT NULL, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,"
	"  PRIMARY KEY (ns, jid, device));"
	"CREATE TABLE trust (jid TEXT NOT NULL, device INTEGER NOT NULL,"
	"  identity_key BLOB NOT NULL, state INTEGER NOT NULL, updated INTEGER NOT NULL,"
	"  PRIMARY KEY (jid, device, identity_key));"
	"CREATE TABLE settings (conv TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
	"  PRIMARY KEY (conv, key));";

static const char V1_DATA[] =
	"INSERT INTO meta VALUES ('next_prekey_id', 104);"
	"INSERT INTO own_identity VALUES (0, 4242, 77, x'05010203', x'404142');"
	"INSERT INTO prekeys VALUES (101, x'0a0101'), (102, x'0a0202'), (103, x'0a0303');"
	"INSERT INTO signed_prekeys VALUES (7, x'1a0101', 1600000000);"
	"INSERT INTO sessions VALUES ('eu.siacs.conversations.axolotl', 'bob@example.org', 31,"
	"  x'0a0b0c', NULL);"
	"INSERT INTO remote_identities VALUES ('eu.siacs.conversations.axolotl',"
	"  'bob@example.org', 31, x'05aabb');"
	"INSERT INTO devices VALUES ('eu.siacs.conversations.axolotl', 'bob@example.org', 31,"
	"  1, 1500000000, 1600000000);"
	"INSERT INTO trust VALUES ('bob@example.org', 31, x'05aabb', 2, 1600000001);"
	"INSERT INTO settings VALUES ('bob@example.org', 'encrypt', 'always');"
	"PRAGMA user_version = 1;";

static void test_migrates_v1_database_with_data_to_current(void **state)
{
	fixture *f = *state;
	uint32_t *ids = NULL;
	uint32_t dev = 0, reg = 0;
	signal_buffer *pub = NULL, *priv = NULL, *buf = NULL;
	store_device *devs = NULL;
	size_t n = 0;
	int64_t v = 0;
	int trust = 0;
	char *value = NULL;
	static const uint8_t aabb[] = { 0x05, 0xaa, 0xbb };

	sql_exec(f->path, V1_SCHEMA);
	sql_exec(f->path, V1_DATA);
	assert_int_equal(sql_int(f->path, "PRAGMA user_version"), 1);

	f->store = open_ok(f->path);
	/* Prekeys of v1 had no used mark: all of them are unused. */
	assert_int_equal(unused_prekeys(f->store, &ids), 3);
	assert_int_equal(ids[0], 101);
	assert_int_equal(ids[2], 103);
	g_free(ids);
	assert_int_equal(store_prekey_load(f->store, 102, &buf), 0);
	assert_buffer_is(buf, "\x0a\x02\x02", 3);
	signal_buffer_free(buf);
	/* The new column works: mark one used, and it drops out of the list. */
	assert_int_equal(store_begin(f->store), 0);
	f->gctx = signal_ctx_new();
	assert_int_equal(signal_protocol_store_context_create(&f->sctx, f->gctx), 0);
	assert_int_equal(store_signal_register(f->store, f->sctx, NS_LEGACY), 0);
	assert_int_equal(signal_protocol_pre_key_remove_key(f->sctx, 101), 0);
	assert_int_equal(store_commit(f->store), 0);
	assert_int_equal(unused_prekeys(f->store, &ids), 2);
	assert_int_equal(ids[0], 102);
	g_free(ids);

	assert_int_equal(store_meta_get_int(f->store, "next_prekey_id", &v), 0);
	assert_int_equal(v, 104);
	assert_int_equal(store_identity_get(f->store, &dev, &reg, &pub, &priv), 0);
	assert_int_equal(dev, 4242);
	assert_int_equal(reg, 77);
	assert_buffer_is(pub, "\x05\x01\x02\x03", 4);
	assert_buffer_is(priv, "\x40\x41\x42", 3);
	signal_buffer_free(pub);
	signal_buffer_free(priv);
	assert_int_equal(store_signed_prekey_load(f->store, 7, &buf), 0);
	assert_buffer_is(buf, "\x1a\x01\x01", 3);
	signal_buffer_free(buf);
	assert_true(store_session_exists(f->store, NS_LEGACY, BOB, 31));
	assert_int_equal(store_remote_identity_get(f->store, NS_LEGACY, BOB, 31, &buf), 0);
	assert_buffer_is(buf, aabb, sizeof(aabb));
	signal_buffer_free(buf);
	assert_int_equal(store_devices_get(f->store, NS_LEGACY, BOB, true, &devs, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(devs[0].id, 31);
	assert_int_equal(devs[0].first_seen, 1500000000);
	g_free(devs);
	assert_int_equal(store_trust_get(f->store, BOB, 31, aabb, sizeof(aabb), &trust), 0);
	assert_int_equal(trust, 2);
	assert_int_equal(store_setting_get(f->store, BOB, "encrypt", &value), 0);
	assert_string_equal(value, "always");
	g_free(value);

	signal_protocol_store_context_destroy(f->sctx);
	f->sctx = NULL;
	store_close(f->store);
	f->store = NULL;
	assert_int_equal(sql_int(f->path, "PRAGMA user_version"), 2);
	assert_int_equal(sql_int(f->path, "SELECT count(*) FROM prekeys WHERE used_at IS NOT NULL"),
	                 1);
}

static void test_failed_migration_step_keeps_v1_version_and_data(void **state)
{
	fixture *f = *state;
	store_t *s = NULL;

	/* A v1 file whose prekeys table someone dropped: step 1 -> 2 fails. */
	sql_exec(f->path, V1_SCHEMA);
	sql_exec(f->path, V1_DATA);
	sql_exec(f->path, "DROP TABLE prekeys;");
	assert_int_equal(store_open(f->path, &s), OMEMO_ERR_STORE);
	assert_null(s);
	assert_int_equal(sql_int(f->path, "PRAGMA user_version"), 1);
	assert_int_equal(sql_int(f->path, "SELECT value FROM meta WHERE key = 'next_prekey_id'"),
	                 104);
	assert_int_equal(sql_int(f->path, "SELECT count(*) FROM sqlite_master"
	                                  " WHERE name = 'prekeys_used_at'"),
	                 0);
}

/* ------------------------------------------------------------------ */
/* Reopen                                                               */
/* ------------------------------------------------------------------ */

static void test_reopen_keeps_every_table(void **state)
{
	fixture *f = *state;
	const uint32_t devices[] = { 31, 32 };
	signal_protocol_address bob = addr_of(BOB, 31);
	session_record *rec = NULL;
	signal_buffer *ser = NULL, *ser2 = NULL, *buf = NULL, *pub = NULL, *priv = NULL;
	uint32_t *ids = NULL, dev = 0, reg = 0;
	int64_t *created = NULL, v = 0;
	store_device *devs = NULL;
	size_t n = 0;
	int trust = 0;
	char *value = NULL;

	open_with_signal(f, NS_LEGACY);
	assert_int_equal(store_meta_set_int(f->store, "counter", -5), 0);
	assert_int_equal(store_identity_set(f->store, 1234, 56, KEY_1, sizeof(KEY_1), PRIV_1,
	                                    sizeof(PRIV_1)),
	                 0);
	assert_int_equal(store_prekey_save(f->store, 1, REC_A, sizeof(REC_A)), 0);
	assert_int_equal(store_prekey_save(f->store, 2, REC_B, sizeof(REC_B)), 0);
	assert_int_equal(signal_protocol_pre_key_remove_key(f->sctx, 2), 0);
	assert_int_equal(store_signed_prekey_save(f->store, 9, REC_B, sizeof(REC_B), 1700000000), 0);
	assert_int_equal(session_record_create(&rec, NULL, f->gctx), 0);
	assert_int_equal(signal_protocol_session_store_session(f->sctx, &bob, rec), 0);
	assert_int_equal(session_record_serialize(&ser, rec), 0);
	SIGNAL_UNREF(rec);
	assert_int_equal(signal_protocol_identity_save_identity(f->sctx, &bob, NULL), 0);
	{
		ec_key_pair *pair = NULL;

		assert_int_equal(curve_generate_key_pair(f->gctx, &pair), 0);
		assert_int_equal(signal_protocol_identity_save_identity(
		                     f->sctx, &bob, ec_key_pair_get_public(pair)),
		                 0);
		assert_int_equal(store_remote_identity_get(f->store, NS_LEGACY, BOB, 31, &buf), 0);
		SIGNAL_UNREF(pair);
	}
	assert_int_equal(store_devices_update(f->store, NS_LEGACY, BOB, devices, 2, 1000), 0);
	assert_int_equal(store_trust_set(f->store, BOB, 31, KEY_1, sizeof(KEY_1), 3, 1001), 0);
	assert_int_equal(store_setting_set(f->store, BOB, "encrypt", "never"), 0);

	signal_protocol_store_context_destroy(f->sctx);
	f->sctx = NULL;
	reopen(f);
	assert_int_equal(signal_protocol_store_context_create(&f->sctx, f->gctx), 0);
	assert_int_equal(store_signal_register(f->store, f->sctx, NS_LEGACY), 0);

	assert_int_equal(store_meta_get_int(f->store, "counter", &v), 0);
	assert_int_equal(v, -5);
	assert_int_equal(store_identity_get(f->store, &dev, &reg, &pub, &priv), 0);
	assert_int_equal(dev, 1234);
	assert_int_equal(reg, 56);
	assert_buffer_is(pub, KEY_1, sizeof(KEY_1));
	assert_buffer_is(priv, PRIV_1, sizeof(PRIV_1));
	signal_buffer_free(pub);
	signal_buffer_free(priv);
	assert_int_equal(unused_prekeys(f->store, &ids), 1);
	assert_int_equal(ids[0], 1);
	g_free(ids);
	assert_int_equal(signal_protocol_pre_key_contains_key(f->sctx, 2), 1);
	assert_int_equal(store_signed_prekey_list(f->store, &ids, &created, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], 9);
	assert_int_equal(created[0], 1700000000);
	g_free(ids);
	g_free(created);
	assert_int_equal(compat_session_load_session(f->sctx, &rec, &bob), 0);
	assert_int_equal(session_record_serialize(&ser2, rec), 0);
	assert_buffer_is(ser2, signal_buffer_data(ser), signal_buffer_len(ser));
	SIGNAL_UNREF(rec);
	signal_buffer_free(ser);
	signal_buffer_free(ser2);
	assert_int_equal(store_remote_identity_get(f->store, NS_LEGACY, BOB, 31, &ser), 0);
	assert_buffer_is(ser, signal_buffer_data(buf), signal_buffer_len(buf));
	signal_buffer_free(ser);
	signal_buffer_free(buf);
	assert_int_equal(store_devices_get(f->store, NS_LEGACY, BOB, false, &devs, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(devs[1].id, 32);
	assert_true(devs[1].active);
	assert_int_equal(devs[1].last_seen, 1000);
	g_free(devs);
	assert_int_equal(store_trust_get(f->store, BOB, 31, KEY_1, sizeof(KEY_1), &trust), 0);
	assert_int_equal(trust, 3);
	assert_int_equal(store_setting_get(f->store, BOB, "encrypt", &value), 0);
	assert_string_equal(value, "never");
	g_free(value);
}

/* ------------------------------------------------------------------ */
/* Transactions                                                         */
/* ------------------------------------------------------------------ */

static void test_rollback_leaves_nothing_even_after_reopen(void **state)
{
	fixture *f = *state;
	const uint32_t devices[] = { 5 };
	uint32_t *ids = NULL;
	store_device *devs = NULL;
	size_t n = 9;
	char *value = NULL;
	int64_t v = 0;

	f->store = open_ok(f->path);
	assert_int_equal(store_meta_set_int(f->store, "kept", 1), 0);
	assert_int_equal(store_begin(f->store), 0);
	assert_int_equal(store_meta_set_int(f->store, "kept", 2), 0);
	assert_int_equal(store_prekey_save(f->store, 1, REC_A, sizeof(REC_A)), 0);
	assert_int_equal(store_devices_update(f->store, NS_LEGACY, BOB, devices, 1, 10), 0);
	assert_int_equal(store_setting_set(f->store, BOB, "k", "v"), 0);
	assert_int_equal(store_trust_set(f->store, BOB, 5, KEY_1, sizeof(KEY_1), 1, 10), 0);
	store_rollback(f->store);

	for (int round = 0; round < 2; round++) {
		assert_int_equal(store_meta_get_int(f->store, "kept", &v), 0);
		assert_int_equal(v, 1);
		assert_int_equal(unused_prekeys(f->store, &ids), 0);
		assert_null(ids);
		assert_int_equal(store_devices_get(f->store, NS_LEGACY, BOB, false, &devs, &n), 0);
		assert_int_equal(n, 0);
		assert_null(devs);
		assert_int_equal(store_setting_get(f->store, BOB, "k", &value), OMEMO_ERR_NOT_FOUND);
		assert_int_equal(store_trust_get(f->store, BOB, 5, KEY_1, sizeof(KEY_1), (int[]){ 0 }),
		                 OMEMO_ERR_NOT_FOUND);
		reopen(f);
	}
}

static void test_nested_commit_becomes_visible_only_at_outermost(void **state)
{
	fixture *f = *state;
	store_t *other = NULL;
	int64_t v = 0;

	f->store = open_ok(f->path);
	other = open_ok(f->path);
	assert_int_equal(store_begin(f->store), 0);
	assert_int_equal(store_meta_set_int(f->store, "a", 1), 0);
	assert_int_equal(store_begin(f->store), 0);
	assert_int_equal(store_meta_set_int(f->store, "b", 2), 0);
	assert_int_equal(store_commit(f->store), 0);
	/* Another connection sees nothing until the outermost commit. */
	assert_int_equal(store_meta_get_int(other, "b", &v), OMEMO_ERR_NOT_FOUND);
	assert_int_equal(commits_of(f->store), 0);
	assert_int_equal(store_commit(f->store), 0);
	assert_int_equal(commits_of(f->store), 1);
	assert_int_equal(store_meta_get_int(other, "a", &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(store_meta_get_int(other, "b", &v), 0);
	assert_int_equal(v, 2);
	store_close(other);
}

static void test_inner_rollback_dooms_the_outer_levels(void **state)
{
	fixture *f = *state;
	int64_t v = 0;

	f->store = open_ok(f->path);
	assert_int_equal(store_begin(f->store), 0);
	assert_int_equal(store_meta_set_int(f->store, "outer", 1), 0);
	assert_int_equal(store_begin(f->store), 0);
	assert_int_equal(store_meta_set_int(f->store, "inner", 1), 0);
	store_rollback(f->store);
	/* Between the inner rollback and the end of the outer level nothing
	 * may be written (it would autocommit) and nothing may begin. */
	assert_int_equal(store_meta_set_int(f->store, "late", 1), OMEMO_ERR_STORE);
	assert_int_equal(store_last_error(f->store), OMEMO_ERR_STORE);
	assert_int_equal(store_begin(f->store), OMEMO_ERR_STORE);
	assert_int_equal(store_meta_get_int(f->store, "outer", &v), OMEMO_ERR_NOT_FOUND);
	assert_int_equal(store_commit(f->store), OMEMO_ERR_STORE);
	assert_int_equal(rollbacks_of(f->store), 1);
	assert_int_equal(commits_of(f->store), 0);

	reopen(f);
	assert_int_equal(store_meta_get_int(f->store, "outer", &v), OMEMO_ERR_NOT_FOUND);
	assert_int_equal(store_meta_get_int(f->store, "inner", &v), OMEMO_ERR_NOT_FOUND);
	assert_int_equal(store_meta_get_int(f->store, "late", &v), OMEMO_ERR_NOT_FOUND);
	/* The store is usable again. */
	assert_int_equal(store_begin(f->store), 0);
	assert_int_equal(store_meta_set_int(f->store, "after", 3), 0);
	assert_int_equal(store_commit(f->store), 0);
	assert_int_equal(store_meta_get_int(f->store, "after", &v), 0);
	assert_int_equal(v, 3);
}

static void test_three_levels_rollback_in_middle_then_outer_rollback(void **state)
{
	fixture *f = *state;
	int64_t v = 0;

	f->store = open_ok(f->path);
	assert_int_equal(store_begin(f->store), 0);
	assert_int_equal(store_begin(f->store), 0);
	assert_int_equal(store_begin(f->store), 0);
	assert_int_equal(store_meta_set_int(f->store, "x", 1), 0);
	assert_int_equal(store_commit(f->store), 0);
	store_rollback(f->store);
	store_rollback(f->store);
	assert_int_equal(rollbacks_of(f->store), 1);
	assert_int_equal(store_meta_get_int(f->store, "x", &v), OMEMO_ERR_NOT_FOUND);
	/* All levels ended: a write now autocommits and counts. */
	assert_int_equal(store_meta_set_int(f->store, "y", 1), 0);
	assert_int_equal(commits_of(f->store), 1);
}

static void test_commit_without_begin_fails_and_rollback_without_begin_is_harmless(void **state)
{
	fixture *f = *state;
	int64_t v = 0;

	f->store = open_ok(f->path);
	assert_int_equal(store_commit(f->store), OMEMO_ERR_INVALID_ARG);
	store_rollback(f->store);
	assert_int_equal(rollbacks_of(f->store), 0);
	assert_int_equal(store_meta_set_int(f->store, "z", 4), 0);
	assert_int_equal(store_meta_get_int(f->store, "z", &v), 0);
	assert_int_equal(v, 4);
}

static void test_stats_count_outermost_commits_and_autocommit_writes(void **state)
{
	fixture *f = *state;
	const uint32_t devices[] = { 1, 2, 3 };
	int64_t v = 0;

	f->store = open_ok(f->path);
	assert_int_equal(commits_of(f->store), 0);
	/* One transaction holding many writes: one commit. */
	assert_int_equal(store_begin(f->store), 0);
	for (uint32_t id = 1; id <= 50; id++)
		assert_int_equal(store_prekey_save(f->store, id, REC_A, sizeof(REC_A)), 0);
	assert_int_equal(store_devices_update(f->store, NS_LEGACY, BOB, devices, 3, 5), 0);
	assert_int_equal(store_commit(f->store), 0);
	assert_int_equal(commits_of(f->store), 1);
	/* Reads are no commits; each autocommit write is one. */
	assert_int_equal(store_meta_get_int(f->store, "none", &v), OMEMO_ERR_NOT_FOUND);
	assert_int_equal(commits_of(f->store), 1);
	assert_int_equal(store_meta_set_int(f->store, "a", 1), 0);
	assert_int_equal(store_meta_set_int(f->store, "b", 1), 0);
	assert_int_equal(commits_of(f->store), 3);
	/* store_devices_update on its own is one transaction. */
	assert_int_equal(store_devices_update(f->store, NS_LEGACY, BOB, devices, 3, 6), 0);
	assert_int_equal(commits_of(f->store), 4);
	assert_int_equal(rollbacks_of(f->store), 0);
}

/* Child process: a commit that the file system refuses (file size limit
 * reached while writing the WAL). Exit status: 0 ok, else the failed check. */
static int child_failing_commit(const char *path)
{
	store_t *s = NULL;
	uint8_t rec[3000];
	struct rlimit lim;
	struct rlimit low;
	uint32_t *ids = NULL;
	size_t n = 99;
	int ret;

	memset(rec, 0x77, sizeof(rec));
	if (signal(SIGXFSZ, SIG_IGN) == SIG_ERR)
		return 2;
	if (store_open(path, &s) != 0)
		return 3;
	if (store_begin(s) != 0)
		return 4;
	for (uint32_t id = 1; id <= 10; id++)
		if (store_prekey_save(s, id, rec, sizeof(rec)) != 0)
			return 5;
	if (getrlimit(RLIMIT_FSIZE, &lim) != 0)
		return 6;
	low = lim;
	low.rlim_cur = 4096;
	if (setrlimit(RLIMIT_FSIZE, &low) != 0)
		return 7;
	ret = store_commit(s);
	if (setrlimit(RLIMIT_FSIZE, &lim) != 0)
		return 8;
	/* EFBIG is an I/O error to SQLite, not a full disk. */
	if (ret != OMEMO_ERR_STORE)
		return 9;
	if (store_last_error(s) != ret)
		return 10;
	if (store_prekey_list_unused(s, &ids, &n) != 0 || n != 0)
		return 11;
	if (rollbacks_of(s) != 1)
		return 12;
	/* The level ended with the failed commit: a rollback now is a no-op
	 * and new work goes through. */
	store_rollback(s);
	if (store_begin(s) != 0 || store_meta_set_int(s, "after", 1) != 0 || store_commit(s) != 0)
		return 13;
	store_close(s);
	return 0;
}

static void test_failed_commit_rolls_back_everything(void **state)
{
	fixture *f = *state;
	pid_t pid;
	int status = 0;
	uint32_t *ids = NULL;
	int64_t v = 0;

	/* Created and closed here, so the child starts on an empty WAL. */
	f->store = open_ok(f->path);
	store_close(f->store);
	f->store = NULL;
	fflush(stdout);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(child_failing_commit(f->path));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) != 0)
		fail_msg("child check %d failed", WEXITSTATUS(status));

	f->store = open_ok(f->path);
	assert_int_equal(unused_prekeys(f->store, &ids), 0);
	assert_int_equal(store_meta_get_int(f->store, "after", &v), 0);
	assert_int_equal(v, 1);
}

static void test_busy_database_reports_busy_and_last_error(void **state)
{
	fixture *f = *state;
	store_t *other = NULL;
	signal_protocol_store_context *osctx = NULL;
	signal_protocol_address bob = addr_of(BOB, 1);
	session_record *rec = NULL;
	gint64 t0;
	int64_t v = 0;

	open_with_signal(f, NS_LEGACY);
	other = open_ok(f->path);
	assert_int_equal(signal_protocol_store_context_create(&osctx, f->gctx), 0);
	assert_int_equal(store_signal_register(other, osctx, NS_LEGACY), 0);
	assert_int_equal(session_record_create(&rec, NULL, f->gctx), 0);

	assert_int_equal(store_begin(f->store), 0); /* holds the write lock */
	t0 = g_get_monotonic_time();
	assert_int_equal(store_meta_set_int(other, "x", 1), OMEMO_ERR_STORE_BUSY);
	/* It waited for the lock before giving up. */
	assert_true(g_get_monotonic_time() - t0 >= 1500 * 1000);
	assert_int_equal(store_last_error(other), OMEMO_ERR_STORE_BUSY);
	/* Through the library: a plain failure, the cause kept for the engine. */
	assert_int_equal(signal_protocol_session_store_session(osctx, &bob, rec), SG_ERR_UNKNOWN);
	assert_int_equal(store_last_error(other), OMEMO_ERR_STORE_BUSY);
	/* Reading still works in WAL mode, and resets the error. */
	assert_int_equal(store_meta_get_int(other, "x", &v), OMEMO_ERR_NOT_FOUND);
	assert_int_equal(store_last_error(other), 0);
	assert_int_equal(store_commit(f->store), 0);
	assert_int_equal(store_meta_set_int(other, "x", 1), 0);

	SIGNAL_UNREF(rec);
	signal_protocol_store_context_destroy(osctx);
	store_close(other);
}

/* Child process for the read-only test. Exit status: 0 ok, else the check
 * that failed. */
static int child_write_readonly(const char *path, bool drop_root)
{
	store_t *s = NULL;
	signal_context *gctx = NULL;
	signal_protocol_store_context *sctx = NULL;
	int64_t v = 0;
	int ret;

	if (drop_root && (setgid(65534) != 0 || setuid(65534) != 0))
		return 2;
	if (access(path, W_OK) == 0)
		return 3; /* the file is writable after all: no test */
	ret = store_open(path, &s);
	if (ret != 0)
		return 4;
	if (store_meta_get_int(s, "before", &v) != 0 || v != 7)
		return 5;
	if (store_meta_set_int(s, "x", 1) != OMEMO_ERR_STORE_READONLY)
		return 6;
	if (store_last_error(s) != OMEMO_ERR_STORE_READONLY)
		return 7;
	if (signal_context_create(&gctx, NULL) != 0 ||
	    signal_protocol_store_context_create(&sctx, gctx) != 0 ||
	    store_signal_register(s, sctx, NS_LEGACY) != 0)
		return 8;
	if (signal_protocol_pre_key_remove_key(sctx, 1) != SG_ERR_UNKNOWN ||
	    store_last_error(s) != OMEMO_ERR_STORE_READONLY)
		return 9;
	if (store_begin(s) != OMEMO_ERR_STORE_READONLY)
		return 10;
	signal_protocol_store_context_destroy(sctx);
	signal_context_destroy(gctx);
	store_close(s);
	return 0;
}

static void test_readonly_file_reports_readonly_on_write(void **state)
{
	fixture *f = *state;
	bool root = geteuid() == 0;
	pid_t pid;
	int status = 0;

	f->store = open_ok(f->path);
	assert_int_equal(store_meta_set_int(f->store, "before", 7), 0);
	store_close(f->store);
	f->store = NULL;
	assert_int_equal(chmod(f->path, 0400), 0);
	if (root) {
		/* chmod does not stop root: write as an unprivileged user. */
		printf("running as root: checking the read-only file as uid 65534\n");
		assert_int_equal(chown(f->dir, 65534, 65534), 0);
		assert_int_equal(chown(f->path, 65534, 65534), 0);
	}
	fflush(stdout);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(child_write_readonly(f->path, root));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 2) {
		printf("cannot switch to uid 65534 here: read-only check skipped\n");
		skip();
	}
	if (WEXITSTATUS(status) != 0)
		fail_msg("child check %d failed", WEXITSTATUS(status));
}

/* ------------------------------------------------------------------ */
/* Tables                                                               */
/* ------------------------------------------------------------------ */

static void test_devices_update_tracks_active_and_seen_times(void **state)
{
	fixture *f = *state;
	const uint32_t first[] = { 10, 20 };
	const uint32_t second[] = { 20, 30 };
	store_device *devs = NULL;
	size_t n = 0;

	f->store = open_ok(f->path);
	assert_int_equal(store_devices_update(f->store, NS_LEGACY, BOB, first, 2, 100), 0);
	assert_int_equal(store_devices_update(f->store, NS_LEGACY, BOB, second, 2, 200), 0);

	assert_int_equal(store_devices_get(f->store, NS_LEGACY, BOB, false, &devs, &n), 0);
	assert_int_equal(n, 3);
	/* 10 left the list: kept, inactive, times untouched. */
	assert_int_equal(devs[0].id, 10);
	assert_false(devs[0].active);
	assert_int_equal(devs[0].first_seen, 100);
	assert_int_equal(devs[0].last_seen, 100);
	/* 20 stayed: first_seen kept, last_seen moves. */
	assert_int_equal(devs[1].id, 20);
	assert_true(devs[1].active);
	assert_int_equal(devs[1].first_seen, 100);
	assert_int_equal(devs[1].last_seen, 200);
	/* 30 is new. */
	assert_int_equal(devs[2].id, 30);
	assert_true(devs[2].active);
	assert_int_equal(devs[2].first_seen, 200);
	g_free(devs);

	assert_int_equal(store_devices_get(f->store, NS_LEGACY, BOB, true, &devs, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(devs[0].id, 20);
	assert_int_equal(devs[1].id, 30);
	g_free(devs);

	/* 10 comes back: active again, with its old first_seen. */
	assert_int_equal(store_devices_update(f->store, NS_LEGACY, BOB, first, 1, 300), 0);
	assert_int_equal(store_devices_get(f->store, NS_LEGACY, BOB, true, &devs, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(devs[0].id, 10);
	assert_int_equal(devs[0].first_seen, 100);
	assert_int_equal(devs[0].last_seen, 300);
	g_free(devs);

	/* Other JIDs and namespaces are separate lists. */
	assert_int_equal(store_devices_get(f->store, NS_LEGACY, CAROL, false, &devs, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(store_devices_get(f->store, NS_OTHER, BOB, false, &devs, &n), 0);
	assert_int_equal(n, 0);

	/* An empty list marks everyone inactive. */
	assert_int_equal(store_devices_update(f->store, NS_LEGACY, BOB, NULL, 0, 400), 0);
	assert_int_equal(store_devices_get(f->store, NS_LEGACY, BOB, true, &devs, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(store_device_remove(f->store, NS_LEGACY, BOB, 20), 0);
	assert_int_equal(store_devices_get(f->store, NS_LEGACY, BOB, false, &devs, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(devs[0].id, 10);
	assert_int_equal(devs[1].id, 30);
	g_free(devs);
}

static void test_trust_is_kept_per_identity_key(void **state)
{
	fixture *f = *state;
	int st = 0;

	f->store = open_ok(f->path);
	assert_int_equal(store_trust_set(f->store, BOB, 31, KEY_1, sizeof(KEY_1), 1, 10), 0);
	/* A different key for the same device is another decision. */
	assert_int_equal(store_trust_get(f->store, BOB, 31, KEY_2, sizeof(KEY_2), &st),
	                 OMEMO_ERR_NOT_FOUND);
	assert_int_equal(store_trust_set(f->store, BOB, 31, KEY_2, sizeof(KEY_2), 4, 20), 0);
	assert_int_equal(store_trust_get(f->store, BOB, 31, KEY_1, sizeof(KEY_1), &st), 0);
	assert_int_equal(st, 1);
	assert_int_equal(store_trust_get(f->store, BOB, 31, KEY_2, sizeof(KEY_2), &st), 0);
	assert_int_equal(st, 4);
	/* Overwriting changes only that row. */
	assert_int_equal(store_trust_set(f->store, BOB, 31, KEY_1, sizeof(KEY_1), 2, 30), 0);
	assert_int_equal(store_trust_get(f->store, BOB, 31, KEY_1, sizeof(KEY_1), &st), 0);
	assert_int_equal(st, 2);
	assert_int_equal(store_trust_get(f->store, BOB, 31, KEY_2, sizeof(KEY_2), &st), 0);
	assert_int_equal(st, 4);
	/* Same key, other device or other JID: no decision. */
	assert_int_equal(store_trust_get(f->store, BOB, 32, KEY_1, sizeof(KEY_1), &st),
	                 OMEMO_ERR_NOT_FOUND);
	assert_int_equal(store_trust_get(f->store, CAROL, 31, KEY_1, sizeof(KEY_1), &st),
	                 OMEMO_ERR_NOT_FOUND);
	assert_int_equal(sql_int(f->path, "SELECT count(*) FROM trust"), 2);
}

/* The per-JID reads are kept between calls: a write, a rollback or a
 * failed write must never leave an old answer behind. */
static void test_kept_reads_follow_writes_and_rollbacks(void **state)
{
	fixture *f = *state;
	const uint32_t one[] = { 5 }, two[] = { 5, 6 };
	store_device *devs = NULL;
	store_trust_row *rows = NULL;
	size_t n = 0;

	f->store = open_ok(f->path);
	assert_int_equal(store_devices_update(f->store, NS_LEGACY, BOB, one, 1, 10), 0);
	assert_int_equal(store_devices_get(f->store, NS_LEGACY, BOB, true, &devs, &n), 0);
	assert_int_equal(n, 1);
	g_free(devs);
	/* Asked again: the same answer, a copy of its own. */
	assert_int_equal(store_devices_get(f->store, NS_LEGACY, BOB, true, &devs, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(devs[0].id, 5);
	g_free(devs);
	assert_int_equal(store_devices_update(f->store, NS_LEGACY, BOB, two, 2, 20), 0);
	assert_int_equal(store_devices_get(f->store, NS_LEGACY, BOB, true, &devs, &n), 0);
	assert_int_equal(n, 2);
	g_free(devs);

	/* Written and read inside a transaction that is rolled back. */
	assert_int_equal(store_trust_list(f->store, BOB, &rows, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(store_begin(f->store), 0);
	assert_int_equal(store_trust_set(f->store, BOB, 5, KEY_1, sizeof(KEY_1), 1, 30), 0);
	assert_int_equal(store_trust_list(f->store, BOB, &rows, &n), 0);
	assert_int_equal(n, 1);
	g_free(rows);
	store_rollback(f->store);
	assert_int_equal(store_trust_list(f->store, BOB, &rows, &n), 0);
	assert_int_equal(n, 0);
	assert_null(rows);

	/* Committed: seen, and still after a reopen. */
	assert_int_equal(store_begin(f->store), 0);
	assert_int_equal(store_trust_set(f->store, BOB, 5, KEY_1, sizeof(KEY_1), 1, 40), 0);
	assert_int_equal(store_commit(f->store), 0);
	assert_int_equal(store_trust_list(f->store, BOB, &rows, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(rows[0].state, 1);
	g_free(rows);
	reopen(f);
	assert_int_equal(store_trust_list(f->store, BOB, &rows, &n), 0);
	assert_int_equal(n, 1);
	g_free(rows);
}

static void test_settings_and_meta_round_trip_and_overwrite(void **state)
{
	fixture *f = *state;
	char *value = NULL;
	int64_t v = 0;

	f->store = open_ok(f->path);
	assert_int_equal(store_setting_get(f->store, BOB, "encrypt", &value), OMEMO_ERR_NOT_FOUND);
	assert_null(value);
	assert_int_equal(store_last_error(f->store), 0);
	assert_int_equal(store_setting_set(f->store, BOB, "encrypt", "always"), 0);
	assert_int_equal(store_setting_set(f->store, "room@conference.example.org", "encrypt", ""),
	                 0);
	assert_int_equal(store_setting_set(f->store, BOB, "encrypt", "ask \xc3\xa9"), 0);
	assert_int_equal(store_setting_get(f->store, BOB, "encrypt", &value), 0);
	assert_string_equal(value, "ask \xc3\xa9");
	g_free(value);
	assert_int_equal(store_setting_get(f->store, "room@conference.example.org", "encrypt",
	                                   &value),
	                 0);
	assert_string_equal(value, "");
	g_free(value);
	assert_int_equal(store_setting_get(f->store, BOB, "other", &value), OMEMO_ERR_NOT_FOUND);

	assert_int_equal(store_meta_get_int(f->store, "n", &v), OMEMO_ERR_NOT_FOUND);
	assert_int_equal(store_meta_set_int(f->store, "n", INT64_MAX), 0);
	assert_int_equal(store_meta_get_int(f->store, "n", &v), 0);
	assert_true(v == INT64_MAX);
	assert_int_equal(store_meta_set_int(f->store, "n", INT64_MIN), 0);
	assert_int_equal(store_meta_get_int(f->store, "n", &v), 0);
	assert_true(v == INT64_MIN);
}

static void test_identity_and_signed_prekeys_direct_api(void **state)
{
	fixture *f = *state;
	uint32_t dev = 0, reg = 0, *ids = NULL;
	int64_t *created = NULL;
	signal_buffer *pub = NULL, *priv = NULL, *buf = NULL;
	size_t n = 0;

	f->store = open_ok(f->path);
	assert_int_equal(store_identity_get(f->store, &dev, &reg, &pub, &priv), OMEMO_ERR_NOT_FOUND);
	assert_null(pub);
	assert_int_equal(store_identity_set(f->store, 1, 2, KEY_1, sizeof(KEY_1), PRIV_1,
	                                    sizeof(PRIV_1)),
	                 0);
	/* Setting again replaces the one identity. */
	assert_int_equal(store_identity_set(f->store, 3, 4, KEY_2, sizeof(KEY_2), PRIV_1, 16), 0);
	assert_int_equal(store_identity_get(f->store, &dev, &reg, &pub, &priv), 0);
	assert_int_equal(dev, 3);
	assert_int_equal(reg, 4);
	assert_buffer_is(pub, KEY_2, sizeof(KEY_2));
	assert_buffer_is(priv, PRIV_1, 16);
	signal_buffer_free(pub);
	signal_buffer_free(priv);
	assert_int_equal(sql_int(f->path, "SELECT count(*) FROM own_identity"), 1);

	assert_int_equal(store_signed_prekey_save(f->store, 1, REC_A, sizeof(REC_A), 100), 0);
	assert_int_equal(store_signed_prekey_save(f->store, 2, REC_B, sizeof(REC_B), 300), 0);
	assert_int_equal(store_signed_prekey_save(f->store, 3, REC_A, sizeof(REC_A), 200), 0);
	assert_int_equal(store_signed_prekey_list(f->store, &ids, &created, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(ids[0], 2); /* newest first */
	assert_int_equal(ids[1], 3);
	assert_int_equal(ids[2], 1);
	assert_int_equal(created[0], 300);
	assert_int_equal(created[2], 100);
	g_free(ids);
	g_free(created);
	assert_int_equal(store_signed_prekey_load(f->store, 2, &buf), 0);
	assert_buffer_is(buf, REC_B, sizeof(REC_B));
	signal_buffer_free(buf);
	assert_int_equal(store_signed_prekey_remove(f->store, 2), 0);
	assert_int_equal(store_signed_prekey_load(f->store, 2, &buf), OMEMO_ERR_NOT_FOUND);
}

static void test_invalid_arguments_are_refused(void **state)
{
	fixture *f = *state;
	signal_buffer *buf = NULL;
	uint32_t *ids = NULL;
	int64_t *created = NULL;
	size_t n = 0;
	int64_t v = 0;
	char *value = NULL;
	store_device *devs = NULL;
	store_stats st = { 1, 1 };
	int s = 0;

	/* No store at all. */
	assert_int_equal(store_begin(NULL), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_commit(NULL), OMEMO_ERR_INVALID_ARG);
	store_rollback(NULL);
	store_close(NULL);
	assert_null(store_path(NULL));
	assert_int_equal(store_last_error(NULL), OMEMO_ERR_INVALID_ARG);
	store_get_stats(NULL, &st);
	assert_int_equal(st.commits, 0);
	assert_int_equal(store_meta_get_int(NULL, "k", &v), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_meta_set_int(NULL, "k", 1), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_identity_get(NULL, NULL, NULL, NULL, NULL), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_prekey_save(NULL, 1, REC_A, 1), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_prekey_purge_used(NULL, 0), OMEMO_ERR_INVALID_ARG);
	assert_false(store_session_exists(NULL, NS_LEGACY, BOB, 1));
	assert_int_equal(store_devices_update(NULL, NS_LEGACY, BOB, NULL, 0, 0),
	                 OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_signal_register(NULL, NULL, NS_LEGACY), OMEMO_ERR_INVALID_ARG);

	/* A store but bad arguments: refused, and remembered. */
	f->store = open_ok(f->path);
	assert_int_equal(store_meta_get_int(f->store, NULL, &v), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_last_error(f->store), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_meta_get_int(f->store, "k", NULL), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_meta_set_int(f->store, NULL, 1), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_identity_set(f->store, 1, 1, NULL, 33, PRIV_1, 32),
	                 OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_identity_set(f->store, 1, 1, KEY_1, 0, PRIV_1, 32),
	                 OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_prekey_save(f->store, 1, NULL, 3), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_prekey_save(f->store, 1, REC_A, 0), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_prekey_load(f->store, 1, NULL), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_prekey_list_unused(f->store, NULL, &n), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_prekey_list_unused(f->store, &ids, NULL), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_signed_prekey_save(f->store, 1, NULL, 1, 0), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_signed_prekey_load(f->store, 1, NULL), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_signed_prekey_list(f->store, &ids, NULL, &n), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_signed_prekey_list(f->store, NULL, &created, &n),
	                 OMEMO_ERR_INVALID_ARG);
	assert_false(store_session_exists(f->store, NULL, BOB, 1));
	assert_int_equal(store_last_error(f->store), OMEMO_ERR_INVALID_ARG);
	assert_false(store_session_exists(f->store, NS_LEGACY, NULL, 1));
	assert_int_equal(store_session_delete(f->store, NS_LEGACY, NULL, 1), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_remote_identity_get(f->store, NS_LEGACY, BOB, 1, NULL),
	                 OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_remote_identity_get(f->store, NULL, BOB, 1, &buf),
	                 OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_devices_update(f->store, NS_LEGACY, BOB, NULL, 2, 0),
	                 OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_devices_update(f->store, NULL, BOB, NULL, 0, 0),
	                 OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_devices_get(f->store, NS_LEGACY, BOB, false, NULL, &n),
	                 OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_devices_get(f->store, NS_LEGACY, NULL, false, &devs, &n),
	                 OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_device_remove(f->store, NULL, BOB, 1), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_trust_set(f->store, BOB, 1, NULL, 33, 1, 0), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_trust_set(f->store, NULL, 1, KEY_1, 33, 1, 0),
	                 OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_trust_get(f->store, BOB, 1, KEY_1, 33, NULL), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_trust_get(f->store, BOB, 1, KEY_1, 0, &s), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_setting_set(f->store, BOB, "k", NULL), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_setting_set(f->store, NULL, "k", "v"), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_setting_get(f->store, BOB, NULL, &value), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_setting_get(f->store, BOB, "k", NULL), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_signal_register(f->store, NULL, NS_LEGACY), OMEMO_ERR_INVALID_ARG);
	store_get_stats(f->store, NULL);
	/* None of that wrote anything. */
	assert_int_equal(commits_of(f->store), 0);
	/* And a good call clears the error. */
	assert_int_equal(store_meta_set_int(f->store, "k", 1), 0);
	assert_int_equal(store_last_error(f->store), 0);
}

static void test_register_refuses_missing_namespace(void **state)
{
	fixture *f = *state;

	f->store = open_ok(f->path);
	f->gctx = signal_ctx_new();
	assert_int_equal(signal_protocol_store_context_create(&f->sctx, f->gctx), 0);
	assert_int_equal(store_signal_register(f->store, f->sctx, NULL), OMEMO_ERR_INVALID_ARG);
	assert_int_equal(store_signal_register(f->store, f->sctx, ""), OMEMO_ERR_INVALID_ARG);
}

/* ------------------------------------------------------------------ */
/* Signal callbacks                                                     */
/* ------------------------------------------------------------------ */

static void test_signal_session_callbacks_round_trip(void **state)
{
	fixture *f = *state;
	signal_protocol_store_context *other = NULL;
	signal_protocol_address bob1 = addr_of(BOB, 1);
	signal_protocol_address bob2 = addr_of(BOB, 2);
	signal_protocol_address bob3 = addr_of(BOB, 3);
	signal_protocol_address carol = addr_of(CAROL, 1);
	/* A name that is not NUL-terminated where name_len ends. */
	signal_protocol_address bob1_long = { .name = BOB "/resource", .name_len = strlen(BOB),
	                                      .device_id = 1 };
	static const uint8_t user[] = { 'u', 's', 'e', 'r' };
	session_record *rec = NULL, *loaded = NULL;
	signal_buffer *ser = NULL, *ser2 = NULL;
	signal_int_list *list = NULL;

	open_with_signal(f, NS_LEGACY);
	assert_int_equal(signal_protocol_store_context_create(&other, f->gctx), 0);
	assert_int_equal(store_signal_register(f->store, other, NS_OTHER), 0);

	assert_int_equal(signal_protocol_session_contains_session(f->sctx, &bob1), 0);
	/* Not found: the library hands out a fresh record. */
	assert_int_equal(compat_session_load_session(f->sctx, &loaded, &bob1), 0);
	assert_non_null(loaded);
	assert_true(session_record_is_fresh(loaded));
	SIGNAL_UNREF(loaded);

	assert_int_equal(session_record_create(&rec, NULL, f->gctx), 0);
	session_record_set_user_record(rec, signal_buffer_create(user, sizeof(user)));
	assert_int_equal(signal_protocol_session_store_session(f->sctx, &bob1_long, rec), 0);
	assert_int_equal(session_record_serialize(&ser, rec), 0);
	SIGNAL_UNREF(rec);
	assert_int_equal(session_record_create(&rec, NULL, f->gctx), 0);
	assert_int_equal(signal_protocol_session_store_session(f->sctx, &bob2, rec), 0);
	assert_int_equal(signal_protocol_session_store_session(f->sctx, &bob3, rec), 0);
	assert_int_equal(signal_protocol_session_store_session(f->sctx, &carol, rec), 0);
	SIGNAL_UNREF(rec);

	assert_int_equal(signal_protocol_session_contains_session(f->sctx, &bob1), 1);
	assert_true(store_session_exists(f->store, NS_LEGACY, BOB, 1));
	assert_int_equal(compat_session_load_session(f->sctx, &loaded, &bob1), 0);
	assert_int_equal(session_record_serialize(&ser2, loaded), 0);
	assert_buffer_is(ser2, signal_buffer_data(ser), signal_buffer_len(ser));
	assert_buffer_is(session_record_get_user_record(loaded), user, sizeof(user));
	SIGNAL_UNREF(loaded);
	signal_buffer_free(ser);
	signal_buffer_free(ser2);

	/* The other namespace holds none of these. */
	assert_int_equal(signal_protocol_session_contains_session(other, &bob1), 0);
	assert_int_equal(signal_protocol_session_get_sub_device_sessions(other, &list, BOB,
	                                                                 strlen(BOB)),
	                 0);
	assert_int_equal(signal_int_list_size(list), 0);
	signal_int_list_free(list);
	list = NULL;
	assert_false(store_session_exists(f->store, NS_OTHER, BOB, 1));

	assert_int_equal(signal_protocol_session_get_sub_device_sessions(f->sctx, &list, BOB,
	                                                                 strlen(BOB)),
	                 3);
	assert_int_equal(signal_int_list_size(list), 3);
	assert_int_equal(signal_int_list_at(list, 0), 1);
	assert_int_equal(signal_int_list_at(list, 1), 2);
	assert_int_equal(signal_int_list_at(list, 2), 3);
	signal_int_list_free(list);

	assert_int_equal(signal_protocol_session_delete_session(f->sctx, &bob2), 1);
	assert_int_equal(signal_protocol_session_delete_session(f->sctx, &bob2), 0);
	assert_int_equal(signal_protocol_session_contains_session(f->sctx, &bob2), 0);
	assert_int_equal(store_session_delete(f->store, NS_LEGACY, BOB, 3), 0);
	assert_int_equal(signal_protocol_session_contains_session(f->sctx, &bob3), 0);
	signal_protocol_store_context_destroy(other);
}

static void test_signal_delete_all_sessions_counts_and_spares_others(void **state)
{
	fixture *f = *state;
	session_record *rec = NULL;
	signal_protocol_address a[] = { addr_of(BOB, 1), addr_of(BOB, 2), addr_of(BOB, 3),
		                        addr_of(CAROL, 1) };

	open_with_signal(f, NS_LEGACY);
	assert_int_equal(session_record_create(&rec, NULL, f->gctx), 0);
	for (size_t i = 0; i < G_N_ELEMENTS(a); i++)
		assert_int_equal(signal_protocol_session_store_session(f->sctx, &a[i], rec), 0);
	SIGNAL_UNREF(rec);
	assert_int_equal(signal_protocol_session_delete_all_sessions(f->sctx, BOB, strlen(BOB)), 3);
	assert_int_equal(signal_protocol_session_delete_all_sessions(f->sctx, BOB, strlen(BOB)), 0);
	assert_int_equal(signal_protocol_session_contains_session(f->sctx, &a[0]), 0);
	assert_int_equal(signal_protocol_session_contains_session(f->sctx, &a[3]), 1);
}

static void test_signal_prekey_callbacks_mark_used_instead_of_deleting(void **state)
{
	fixture *f = *state;
	ec_key_pair *pair = NULL;
	session_pre_key *pk = NULL, *loaded = NULL;
	signal_buffer *ser = NULL, *ser2 = NULL;
	uint32_t *ids = NULL;
	int64_t t0 = now_seconds();

	open_with_signal(f, NS_LEGACY);
	for (uint32_t id = 1; id <= 3; id++) {
		assert_int_equal(curve_generate_key_pair(f->gctx, &pair), 0);
		assert_int_equal(session_pre_key_create(&pk, id, pair), 0);
		assert_int_equal(signal_protocol_pre_key_store_key(f->sctx, pk), 0);
		if (id == 2)
			assert_int_equal(session_pre_key_serialize(&ser, pk), 0);
		SIGNAL_UNREF(pk);
		SIGNAL_UNREF(pair);
	}
	assert_int_equal(signal_protocol_pre_key_contains_key(f->sctx, 2), 1);
	assert_int_equal(signal_protocol_pre_key_contains_key(f->sctx, 4), 0);
	assert_int_equal(signal_protocol_pre_key_load_key(f->sctx, &loaded, 4),
	                 SG_ERR_INVALID_KEY_ID);
	assert_null(loaded);
	assert_int_equal(store_last_error(f->store), 0);
	assert_int_equal(signal_protocol_pre_key_load_key(f->sctx, &loaded, 2), 0);
	assert_int_equal(session_pre_key_serialize(&ser2, loaded), 0);
	assert_buffer_is(ser2, signal_buffer_data(ser), signal_buffer_len(ser));
	SIGNAL_UNREF(loaded);
	signal_buffer_free(ser2);

	assert_int_equal(signal_protocol_pre_key_remove_key(f->sctx, 2), 0);
	/* A duplicate delivery still finds the key ... */
	assert_int_equal(signal_protocol_pre_key_contains_key(f->sctx, 2), 1);
	assert_int_equal(signal_protocol_pre_key_load_key(f->sctx, &loaded, 2), 0);
	SIGNAL_UNREF(loaded);
	/* ... but it is no longer offered, and removing twice is fine. */
	assert_int_equal(signal_protocol_pre_key_remove_key(f->sctx, 2), 0);
	assert_int_equal(signal_protocol_pre_key_remove_key(f->sctx, 99), 0);
	assert_int_equal(unused_prekeys(f->store, &ids), 2);
	assert_int_equal(ids[0], 1);
	assert_int_equal(ids[1], 3);
	g_free(ids);
	assert_true(sql_int(f->path, "SELECT used_at FROM prekeys WHERE id = 2") >= t0);

	/* Purging keeps keys used at or after `before`, and all unused ones. */
	assert_int_equal(store_prekey_purge_used(f->store, t0 - 60), 0);
	assert_int_equal(signal_protocol_pre_key_contains_key(f->sctx, 2), 1);
	assert_int_equal(store_prekey_purge_used(f->store, now_seconds() + 1), 0);
	assert_int_equal(signal_protocol_pre_key_contains_key(f->sctx, 2), 0);
	assert_int_equal(signal_protocol_pre_key_contains_key(f->sctx, 1), 1);
	assert_int_equal(signal_protocol_pre_key_contains_key(f->sctx, 3), 1);

	/* Saving under a used id gives a new, unused key. */
	assert_int_equal(signal_protocol_pre_key_remove_key(f->sctx, 3), 0);
	assert_int_equal(store_prekey_save(f->store, 3, signal_buffer_data(ser),
	                                   signal_buffer_len(ser)),
	                 0);
	assert_int_equal(unused_prekeys(f->store, &ids), 2);
	assert_int_equal(ids[1], 3);
	g_free(ids);
	signal_buffer_free(ser);
}

static void test_signal_signed_prekey_callbacks_round_trip(void **state)
{
	fixture *f = *state;
	ratchet_identity_key_pair *ikp = NULL;
	session_signed_pre_key *spk = NULL, *loaded = NULL;
	signal_buffer *ser = NULL, *ser2 = NULL;
	uint32_t *ids = NULL;
	int64_t *created = NULL;
	size_t n = 0;
	int64_t t0 = now_seconds();

	open_with_signal(f, NS_LEGACY);
	assert_int_equal(signal_protocol_key_helper_generate_identity_key_pair(&ikp, f->gctx), 0);
	assert_int_equal(signal_protocol_key_helper_generate_signed_pre_key(&spk, ikp, 5, 1234,
	                                                                    f->gctx),
	                 0);
	assert_int_equal(signal_protocol_signed_pre_key_contains_key(f->sctx, 5), 0);
	assert_int_equal(signal_protocol_signed_pre_key_load_key(f->sctx, &loaded, 5),
	                 SG_ERR_INVALID_KEY_ID);
	assert_int_equal(signal_protocol_signed_pre_key_store_key(f->sctx, spk), 0);
	assert_int_equal(signal_protocol_signed_pre_key_contains_key(f->sctx, 5), 1);
	assert_int_equal(signal_protocol_signed_pre_key_load_key(f->sctx, &loaded, 5), 0);
	assert_int_equal(session_signed_pre_key_serialize(&ser, spk), 0);
	assert_int_equal(session_signed_pre_key_serialize(&ser2, loaded), 0);
	assert_buffer_is(ser2, signal_buffer_data(ser), signal_buffer_len(ser));
	assert_int_equal(session_signed_pre_key_get_id(loaded), 5);
	SIGNAL_UNREF(loaded);
	signal_buffer_free(ser);
	signal_buffer_free(ser2);

	/* created is the time it was stored. */
	assert_int_equal(store_signed_prekey_list(f->store, &ids, &created, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], 5);
	assert_true(created[0] >= t0 && created[0] <= now_seconds());
	g_free(ids);
	g_free(created);

	assert_int_equal(signal_protocol_signed_pre_key_remove_key(f->sctx, 5), 0);
	assert_int_equal(signal_protocol_signed_pre_key_contains_key(f->sctx, 5), 0);
	assert_int_equal(signal_protocol_signed_pre_key_load_key(f->sctx, &loaded, 5),
	                 SG_ERR_INVALID_KEY_ID);
	SIGNAL_UNREF(spk);
	SIGNAL_UNREF(ikp);
}

static void test_signal_identity_callbacks_round_trip(void **state)
{
	fixture *f = *state;
	ratchet_identity_key_pair *ikp = NULL, *loaded = NULL;
	ec_key_pair *other = NULL;
	signal_buffer *pub = NULL, *priv = NULL, *pub2 = NULL, *priv2 = NULL, *buf = NULL;
	signal_protocol_address bob = addr_of(BOB, 31);
	uint32_t reg = 0;

	open_with_signal(f, NS_LEGACY);
	/* No identity yet: a failure the engine can name precisely. */
	assert_true(signal_protocol_identity_get_key_pair(f->sctx, &loaded) < 0);
	assert_int_equal(store_last_error(f->store), OMEMO_ERR_NO_IDENTITY);
	assert_true(signal_protocol_identity_get_local_registration_id(f->sctx, &reg) < 0);
	assert_int_equal(store_last_error(f->store), OMEMO_ERR_NO_IDENTITY);

	assert_int_equal(signal_protocol_key_helper_generate_identity_key_pair(&ikp, f->gctx), 0);
	assert_int_equal(ec_public_key_serialize(&pub, ratchet_identity_key_pair_get_public(ikp)),
	                 0);
	assert_int_equal(ec_private_key_serialize(&priv, ratchet_identity_key_pair_get_private(ikp)),
	                 0);
	assert_int_equal(store_identity_set(f->store, 4321, 99, signal_buffer_data(pub),
	                                    signal_buffer_len(pub), signal_buffer_data(priv),
	                                    signal_buffer_len(priv)),
	                 0);
	assert_int_equal(signal_protocol_identity_get_key_pair(f->sctx, &loaded), 0);
	assert_int_equal(store_last_error(f->store), 0);
	assert_int_equal(ec_public_key_serialize(&pub2, ratchet_identity_key_pair_get_public(loaded)),
	                 0);
	assert_int_equal(
	    ec_private_key_serialize(&priv2, ratchet_identity_key_pair_get_private(loaded)), 0);
	assert_buffer_is(pub2, signal_buffer_data(pub), signal_buffer_len(pub));
	assert_buffer_is(priv2, signal_buffer_data(priv), signal_buffer_len(priv));
	assert_int_equal(signal_protocol_identity_get_local_registration_id(f->sctx, &reg), 0);
	assert_int_equal(reg, 99);

	/* Remote identities: saved per (ns, jid, device) ... */
	assert_int_equal(signal_protocol_identity_save_identity(
	                     f->sctx, &bob, ratchet_identity_key_pair_get_public(ikp)),
	                 0);
	assert_int_equal(store_remote_identity_get(f->store, NS_LEGACY, BOB, 31, &buf), 0);
	assert_buffer_is(buf, signal_buffer_data(pub), signal_buffer_len(pub));
	signal_buffer_free(buf);
	assert_int_equal(store_remote_identity_get(f->store, NS_OTHER, BOB, 31, &buf),
	                 OMEMO_ERR_NOT_FOUND);
	assert_int_equal(store_remote_identity_get(f->store, NS_LEGACY, BOB, 32, &buf),
	                 OMEMO_ERR_NOT_FOUND);
	/* ... always trusted here, even a different key (trust.c decides) ... */
	assert_int_equal(curve_generate_key_pair(f->gctx, &other), 0);
	assert_int_equal(signal_protocol_identity_is_trusted_identity(
	                     f->sctx, &bob, ec_key_pair_get_public(other)),
	                 1);
	/* ... replaced by a new save, deleted by a NULL one. */
	assert_int_equal(signal_protocol_identity_save_identity(f->sctx, &bob,
	                                                        ec_key_pair_get_public(other)),
	                 0);
	assert_int_equal(store_remote_identity_get(f->store, NS_LEGACY, BOB, 31, &buf), 0);
	signal_buffer_free(pub2);
	assert_int_equal(ec_public_key_serialize(&pub2, ec_key_pair_get_public(other)), 0);
	assert_buffer_is(buf, signal_buffer_data(pub2), signal_buffer_len(pub2));
	signal_buffer_free(buf);
	assert_int_equal(signal_protocol_identity_save_identity(f->sctx, &bob, NULL), 0);
	assert_int_equal(store_remote_identity_get(f->store, NS_LEGACY, BOB, 31, &buf),
	                 OMEMO_ERR_NOT_FOUND);

	SIGNAL_UNREF(other);
	SIGNAL_UNREF(loaded);
	SIGNAL_UNREF(ikp);
	signal_buffer_free(pub);
	signal_buffer_free(pub2);
	signal_buffer_bzero_free(priv);
	signal_buffer_bzero_free(priv2);
}

static void test_signal_sender_key_callbacks_store_nothing(void **state)
{
	fixture *f = *state;
	sender_key_record *rec = NULL, *loaded = NULL;
	signal_protocol_sender_key_name name = { .group_id = "room", .group_id_len = 4,
		                                 .sender = addr_of(BOB, 1) };

	open_with_signal(f, NS_LEGACY);
	assert_int_equal(sender_key_record_create(&rec, f->gctx), 0);
	assert_int_equal(signal_protocol_sender_key_store_key(f->sctx, &name, rec), 0);
	assert_int_equal(signal_protocol_sender_key_load_key(f->sctx, &loaded, &name), 0);
	assert_non_null(loaded);
	assert_true(sender_key_record_is_empty(loaded));
	SIGNAL_UNREF(loaded);
	SIGNAL_UNREF(rec);
	assert_int_equal(commits_of(f->store), 0);
}

/* One side of a conversation: its own database and Signal store context. */
typedef struct {
	store_t *store;
	signal_protocol_store_context *sctx;
	ratchet_identity_key_pair *ikp;
	uint32_t device_id;
} peer;

static void peer_open(peer *p, const char *dir, const char *name, signal_context *gctx,
                      uint32_t device_id)
{
	char *path = g_build_filename(dir, name, NULL);
	signal_buffer *pub = NULL, *priv = NULL;

	memset(p, 0, sizeof(*p));
	p->store = open_ok(path);
	g_free(path);
	p->device_id = device_id;
	assert_int_equal(signal_protocol_store_context_create(&p->sctx, gctx), 0);
	assert_int_equal(store_signal_register(p->store, p->sctx, NS_LEGACY), 0);
	assert_int_equal(signal_protocol_key_helper_generate_identity_key_pair(&p->ikp, gctx), 0);
	assert_int_equal(ec_public_key_serialize(&pub, ratchet_identity_key_pair_get_public(p->ikp)),
	                 0);
	assert_int_equal(
	    ec_private_key_serialize(&priv, ratchet_identity_key_pair_get_private(p->ikp)), 0);
	assert_int_equal(store_identity_set(p->store, device_id, device_id % 16380 + 1,
	                                    signal_buffer_data(pub), signal_buffer_len(pub),
	                                    signal_buffer_data(priv), signal_buffer_len(priv)),
	                 0);
	signal_buffer_free(pub);
	signal_buffer_bzero_free(priv);
}

static void peer_close(peer *p)
{
	signal_protocol_store_context_destroy(p->sctx);
	SIGNAL_UNREF(p->ikp);
	store_close(p->store);
}

/* Publish one prekey and a signed prekey: what a bundle would carry. */
static session_pre_key_bundle *peer_bundle(peer *p, signal_context *gctx, uint32_t prekey_id)
{
	ec_key_pair *pair = NULL;
	session_pre_key *pk = NULL;
	session_signed_pre_key *spk = NULL;
	session_pre_key_bundle *bundle = NULL;

	assert_int_equal(curve_generate_key_pair(gctx, &pair), 0);
	assert_int_equal(session_pre_key_create(&pk, prekey_id, pair), 0);
	assert_int_equal(signal_protocol_pre_key_store_key(p->sctx, pk), 0);
	assert_int_equal(signal_protocol_key_helper_generate_signed_pre_key(&spk, p->ikp, 1, 0, gctx),
	                 0);
	assert_int_equal(signal_protocol_signed_pre_key_store_key(p->sctx, spk), 0);
	assert_int_equal(session_pre_key_bundle_create(
	                     &bundle, p->device_id % 16380 + 1, (int)p->device_id, prekey_id,
	                     ec_key_pair_get_public(pair), 1,
	                     ec_key_pair_get_public(session_signed_pre_key_get_key_pair(spk)),
	                     session_signed_pre_key_get_signature(spk),
	                     session_signed_pre_key_get_signature_len(spk),
	                     ratchet_identity_key_pair_get_public(p->ikp)),
	                 0);
	SIGNAL_UNREF(spk);
	SIGNAL_UNREF(pk);
	SIGNAL_UNREF(pair);
	return bundle;
}

/* sender builds a session from bundle and encrypts msg for rcpt. */
static signal_buffer *peer_first_message(peer *sender, const char *rcpt_jid, uint32_t rcpt_dev,
                                         session_pre_key_bundle *bundle, signal_context *gctx,
                                         const char *msg)
{
	signal_protocol_address addr = addr_of(rcpt_jid, (int32_t)rcpt_dev);
	session_builder *builder = NULL;
	session_cipher *cipher = NULL;
	ciphertext_message *ct = NULL;
	signal_buffer *out;

	assert_int_equal(session_builder_create(&builder, sender->sctx, &addr, gctx), 0);
	assert_int_equal(store_begin(sender->store), 0);
	assert_int_equal(session_builder_process_pre_key_bundle(builder, bundle), 0);
	assert_int_equal(store_commit(sender->store), 0);
	session_builder_free(builder);
	assert_int_equal(session_cipher_create(&cipher, sender->sctx, &addr, gctx), 0);
	assert_int_equal(session_cipher_encrypt(cipher, (const uint8_t *)msg, strlen(msg), &ct), 0);
	assert_int_equal(ciphertext_message_get_type(ct), CIPHERTEXT_PREKEY_TYPE);
	out = signal_buffer_copy(ciphertext_message_get_serialized(ct));
	SIGNAL_UNREF(ct);
	session_cipher_free(cipher);
	return out;
}

static int peer_decrypt_prekey_message(peer *rcpt, const char *from_jid, uint32_t from_dev,
                                       signal_buffer *data, signal_context *gctx,
                                       signal_buffer **plain)
{
	signal_protocol_address addr = addr_of(from_jid, (int32_t)from_dev);
	pre_key_signal_message *pm = NULL;
	session_cipher *cipher = NULL;
	int ret;

	assert_int_equal(pre_key_signal_message_deserialize(&pm, signal_buffer_data(data),
	                                                    signal_buffer_len(data), gctx),
	                 0);
	assert_int_equal(session_cipher_create(&cipher, rcpt->sctx, &addr, gctx), 0);
	assert_int_equal(store_begin(rcpt->store), 0);
	ret = session_cipher_decrypt_pre_key_signal_message(cipher, pm, NULL, plain);
	if (ret == 0)
		assert_int_equal(store_commit(rcpt->store), 0);
	else
		store_rollback(rcpt->store);
	session_cipher_free(cipher);
	SIGNAL_UNREF(pm);
	return ret;
}

static void test_library_sessions_through_store_survive_shared_prekey(void **state)
{
	fixture *f = *state;
	peer bob, alice1, alice2;
	session_pre_key_bundle *bundle = NULL;
	signal_buffer *m1 = NULL, *m2 = NULL, *plain = NULL, *ik = NULL, *want = NULL;
	uint32_t *ids = NULL;
	signal_int_list *list = NULL;

	f->gctx = signal_ctx_new();
	peer_open(&bob, f->dir, "bob.db", f->gctx, 700);
	peer_open(&alice1, f->dir, "alice1.db", f->gctx, 101);
	peer_open(&alice2, f->dir, "alice2.db", f->gctx, 102);

	bundle = peer_bundle(&bob, f->gctx, 55);
	/* Two devices of the same contact happen to pick the same prekey. */
	m1 = peer_first_message(&alice1, BOB, 700, bundle, f->gctx, "hello from 101");
	m2 = peer_first_message(&alice2, BOB, 700, bundle, f->gctx, "hello from 102");
	assert_true(store_session_exists(alice1.store, NS_LEGACY, BOB, 700));
	/* The library saved bob's identity key in alice's store. */
	assert_int_equal(store_remote_identity_get(alice1.store, NS_LEGACY, BOB, 700, &ik), 0);
	assert_int_equal(ec_public_key_serialize(&want, ratchet_identity_key_pair_get_public(bob.ikp)),
	                 0);
	assert_buffer_is(ik, signal_buffer_data(want), signal_buffer_len(want));
	signal_buffer_free(ik);
	signal_buffer_free(want);

	assert_int_equal(peer_decrypt_prekey_message(&bob, "alice@example.org", 101, m1, f->gctx,
	                                             &plain),
	                 0);
	assert_buffer_is(plain, "hello from 101", 14);
	signal_buffer_free(plain);
	/* The prekey is used now: no longer offered, still there. */
	assert_int_equal(unused_prekeys(bob.store, &ids), 0);
	assert_int_equal(peer_decrypt_prekey_message(&bob, "alice@example.org", 102, m2, f->gctx,
	                                             &plain),
	                 0);
	assert_buffer_is(plain, "hello from 102", 14);
	signal_buffer_free(plain);
	/* The very same message again: the library sees a duplicate. */
	assert_int_equal(peer_decrypt_prekey_message(&bob, "alice@example.org", 101, m1, f->gctx,
	                                             &plain),
	                 SG_ERR_DUPLICATE_MESSAGE);
	assert_int_equal(signal_protocol_session_get_sub_device_sessions(
	                     bob.sctx, &list, "alice@example.org", strlen("alice@example.org")),
	                 2);
	signal_int_list_free(list);

	signal_buffer_free(m1);
	signal_buffer_free(m2);
	SIGNAL_UNREF(bundle);
	peer_close(&alice2);
	peer_close(&alice1);
	peer_close(&bob);
}

/* The Signal library aborts on a signed prekey record with an empty
 * signature; a damaged database must give an error instead, both to our
 * own reads and to the library's. */
static void test_damaged_signed_prekey_record_is_refused_not_parsed(void **state)
{
	fixture *f = *state;
	static const uint8_t empty_sig[] = { 0x08, 0x07, 0x22, 0x00 };
	static const uint8_t truncated[] = { 0x08, 0x07, 0x12, 0x21, 0x05 };
	session_signed_pre_key *spk = NULL;
	signal_buffer *buf = NULL;

	open_with_signal(f, NS_LEGACY);
	assert_int_equal(store_signed_prekey_save(f->store, 7, empty_sig, sizeof(empty_sig), 1), 0);
	assert_int_equal(store_signed_prekey_save(f->store, 8, truncated, sizeof(truncated), 1), 0);
	assert_int_equal(store_signed_prekey_load(f->store, 7, &buf), OMEMO_ERR_STORE_CORRUPT);
	assert_null(buf);
	assert_int_equal(store_signed_prekey_load(f->store, 8, &buf), OMEMO_ERR_STORE_CORRUPT);
	assert_true(signal_protocol_signed_pre_key_load_key(f->sctx, &spk, 7) < 0);
	assert_null(spk);
	assert_int_equal(store_last_error(f->store), OMEMO_ERR_STORE_CORRUPT);
}

/* A session row written behind the store's back, as damage would. */
static void insert_raw_session(const char *path, const char *jid, int device,
                               const uint8_t *record, size_t len)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *stmt = NULL;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
	                                    "INSERT INTO sessions (ns, jid, device, record)"
	                                    " VALUES (?, ?, ?, ?)",
	                                    -1, &stmt, NULL),
	                 SQLITE_OK);
	sqlite3_bind_text(stmt, 1, NS_LEGACY, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, jid, -1, SQLITE_STATIC);
	sqlite3_bind_int(stmt, 3, device);
	sqlite3_bind_blob(stmt, 4, record, (int)len, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(stmt), SQLITE_DONE);
	sqlite3_finalize(stmt);
	sqlite3_close(db);
}

/* A session record with broken framing (the fuzzer's input that made the
 * Signal library leak) is refused as corrupt before the library parses it,
 * from the cache path as from the database. */
static void test_damaged_session_record_is_refused_not_parsed(void **state)
{
	fixture *f = *state;
	static const uint8_t leak[] = { 0x00, 0x21, 0x12, 0x00, 0x1a, 0x00, 0x02, 0x00,
		                        0x1a, 0x00, 0x12, 0x00, 0x20, 0x00, 0x1a, 0x00,
		                        0x00, 0x1a, 0x12, 0x02, 0x1a, 0x00 };
	signal_protocol_address carol = { "carol@example.org", 17, 3 };
	session_record *rec = NULL;

	open_with_signal(f, NS_LEGACY);
	insert_raw_session(f->path, carol.name, 3, leak, sizeof(leak));
	assert_true(compat_session_load_session(f->sctx, &rec, &carol) < 0);
	assert_null(rec);
	assert_int_equal(store_last_error(f->store), OMEMO_ERR_STORE_CORRUPT);
	/* Again, now that the row may be cached. */
	assert_true(compat_session_load_session(f->sctx, &rec, &carol) < 0);
	assert_null(rec);
}

/* Well framed, but its second previous session does not parse: the library
 * would leak the first. With the library context set, the store parses each
 * session state on its own first and refuses the record. */
static void test_session_record_with_unparsable_state_is_refused(void **state)
{
	fixture *f = *state;
	static const uint8_t rec_bytes[] = { 0x12, 0x00, 0x12, 0x04, 0x12, 0x00, 0x12, 0x00 };
	signal_protocol_address dave = { "dave@example.org", 16, 5 };
	session_record *rec = NULL;

	open_with_signal(f, NS_LEGACY);
	store_set_signal_context(f->store, f->gctx);
	insert_raw_session(f->path, dave.name, 5, rec_bytes, sizeof(rec_bytes));
	assert_true(compat_session_load_session(f->sctx, &rec, &dave) < 0);
	assert_null(rec);
	assert_int_equal(store_last_error(f->store), OMEMO_ERR_STORE_CORRUPT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_damaged_signed_prekey_record_is_refused_not_parsed,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_session_record_is_refused_not_parsed,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_session_record_with_unparsable_state_is_refused,
		                                setup, teardown),
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(test_open_creates_db_wal_and_shm_with_mode_0600_under_umask_0),
		T(test_open_fixes_mode_when_umask_removes_owner_write),
		T(test_open_puts_database_in_wal_mode),
		T(test_open_refuses_missing_parent_dir_and_bad_args),
		T(test_open_takes_empty_file_left_by_interrupted_create),
		T(test_open_refuses_random_bytes_and_leaves_them),
		T(test_open_refuses_truncated_database_and_leaves_it),
		T(test_open_refuses_damaged_page_and_leaves_it),
		T(test_open_refuses_newer_schema_and_leaves_file),
		T(test_migrates_v1_database_with_data_to_current),
		T(test_failed_migration_step_keeps_v1_version_and_data),
		T(test_reopen_keeps_every_table),
		T(test_rollback_leaves_nothing_even_after_reopen),
		T(test_nested_commit_becomes_visible_only_at_outermost),
		T(test_inner_rollback_dooms_the_outer_levels),
		T(test_three_levels_rollback_in_middle_then_outer_rollback),
		T(test_commit_without_begin_fails_and_rollback_without_begin_is_harmless),
		T(test_stats_count_outermost_commits_and_autocommit_writes),
		T(test_failed_commit_rolls_back_everything),
		T(test_busy_database_reports_busy_and_last_error),
		T(test_readonly_file_reports_readonly_on_write),
		T(test_devices_update_tracks_active_and_seen_times),
		T(test_trust_is_kept_per_identity_key),
		T(test_kept_reads_follow_writes_and_rollbacks),
		T(test_settings_and_meta_round_trip_and_overwrite),
		T(test_identity_and_signed_prekeys_direct_api),
		T(test_invalid_arguments_are_refused),
		T(test_register_refuses_missing_namespace),
		T(test_signal_session_callbacks_round_trip),
		T(test_signal_delete_all_sessions_counts_and_spares_others),
		T(test_signal_prekey_callbacks_mark_used_instead_of_deleting),
		T(test_signal_signed_prekey_callbacks_round_trip),
		T(test_signal_identity_callbacks_round_trip),
		T(test_signal_sender_key_callbacks_store_nothing),
		T(test_library_sessions_through_store_survive_shared_prekey),
#undef T
	};
	int ret;

	ret = cmocka_run_group_tests(tests, NULL, NULL);
	payload_crypto_shutdown();
	return ret;
}
