/*
 * `make bench`: figures for the engine with the store settings production
 * uses (WAL, synchronous=FULL, on the disk that holds $TMPDIR or /tmp).
 * It prints medians over repeated runs; it asserts nothing and is no test.
 *
 *   bench [--quick]          all figures (--quick: fewer repetitions)
 *   bench --open-only DB JID (internal) open one store and exit, so the
 *                            parent can read this process's peak RSS
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <sqlite3.h>

#include "engine.h"
#include "err.h"
#include "group.h"
#include "payload.h"
#include "signal_compat.h"
#include "store.h"
#include "wire.h"

#define ALICE "alice@example.org"
#define BOB "bob@example.org"
#define MAX_DEVICES 1000
/* The room of the group-chat figure: members of devices each. */
#define ROOM_MEMBERS 50
#define ROOM_DEVICES 3

/* Debian's libpurple registers every xmlnode in its D-Bus pointer map and
 * warns on each while the map does not exist; weak, for a libpurple built
 * without D-Bus. */
extern void purple_dbus_init_ids(void) __attribute__((weak));

static double wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static double cpu_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Per-operation samples of wall and CPU time; medians are reported. */
typedef struct {
	double *wall, *cpu;
	int n;
	double w0, c0;
} timing;

static void timing_init(timing *t, int reps)
{
	memset(t, 0, sizeof(*t));
	t->wall = g_new(double, reps);
	t->cpu = g_new(double, reps);
}

static void timing_start(timing *t)
{
	t->c0 = cpu_us();
	t->w0 = wall_us();
}

static void timing_stop(timing *t)
{
	t->wall[t->n] = wall_us() - t->w0;
	t->cpu[t->n] = cpu_us() - t->c0;
	t->n++;
}

static void timing_print(timing *t, const char *what, double commits_per_op)
{
	printf("| %s | %.3f ms | %.3f ms | %.2f |\n", what, median(t->wall, t->n) / 1000,
	       median(t->cpu, t->n) / 1000, commits_per_op);
	g_free(t->wall);
	g_free(t->cpu);
}

static void die(const char *what, int ret)
{
	fprintf(stderr, "bench: %s failed: %s (%d)\n", what, omemo_strerror(ret), ret);
	exit(1);
}

static engine_t *open_engine(const char *dir, const char *name, const char *jid)
{
	char *file = g_strdup_printf("%s.db", name);
	char *path = g_build_filename(dir, file, NULL);
	engine_t *e = NULL;
	int ret = engine_open(path, jid, &e);

	if (ret < 0)
		die("engine_open", ret);
	g_free(file);
	g_free(path);
	return e;
}

/*
 * Give `a` established sessions with devices 1..n of BOB. One peer engine
 * stands in for all of them: for each device, a builds a session from the
 * peer's bundle, sends a prekey message, and the peer's reply (relabelled
 * as coming from device k) completes it, so later messages are ordinary
 * WhisperMessages as in a long-running conversation.
 */
static void establish_jid(engine_t *a, engine_t *peer, const char *jid, int n)
{
	omemo_bundle bundle;
	int ret;

	for (int k = 1; k <= n; k++) {
		omemo_address to = { jid, (uint32_t)k };
		omemo_address back = { ALICE, engine_device_id(a) };
		omemo_message m, r;
		engine_decrypted d;
		bool changed;

		if ((ret = engine_get_bundle(peer, &bundle)) < 0)
			die("engine_get_bundle", ret);
		if ((ret = engine_build_session(a, jid, (uint32_t)k, &bundle)) < 0)
			die("engine_build_session", ret);
		omemo_bundle_clear(&bundle);
		if ((ret = engine_encrypt(a, (const uint8_t *)"hi", 2, &to, 1, &m, NULL)) < 0)
			die("engine_encrypt", ret);
		m.keys[0].rid = engine_device_id(peer);
		if ((ret = engine_decrypt(peer, ALICE, &m, &d)) < 0)
			die("engine_decrypt (peer)", ret);
		engine_decrypted_clear(&d);
		omemo_message_clear(&m);
		if ((ret = engine_encrypt(peer, NULL, 0, &back, 1, &r, NULL)) < 0)
			die("engine_encrypt (peer)", ret);
		r.sid = (uint32_t)k;
		if ((ret = engine_decrypt(a, jid, &r, &d)) < 0)
			die("engine_decrypt", ret);
		engine_decrypted_clear(&d);
		omemo_message_clear(&r);
		if (k % 50 == 0 && (ret = engine_maintain(peer, time(NULL), &changed)) < 0)
			die("engine_maintain", ret);
	}
}

static void establish(engine_t *a, engine_t *peer, int n)
{
	establish_jid(a, peer, BOB, n);
}

/*
 * One message to a room of ROOM_MEMBERS members with ROOM_DEVICES devices
 * each, all with sessions, as the plugin sends it: who the recipients are
 * (device lists, sessions, identity keys and trust from the store), the
 * encryption in one transaction, and the <encrypted> element serialised.
 */
static void bench_group(engine_t *a, engine_t *peer, int reps)
{
	const char *text = "The quick brown fox jumps over the lazy dog, twice over.";
	char *jids[ROOM_MEMBERS + 1];
	uint32_t ids[ROOM_DEVICES];
	timing t, tr;
	store_stats s0, s1;
	int ret;

	for (int k = 0; k < ROOM_DEVICES; k++)
		ids[k] = (uint32_t)k + 1;
	for (int j = 0; j < ROOM_MEMBERS; j++) {
		jids[j] = g_strdup_printf("member%02d@example.org", j);
		establish_jid(a, peer, jids[j], ROOM_DEVICES);
		ret = store_devices_update(engine_store(a), OMEMO_NS_LEGACY, jids[j], ids,
		                           ROOM_DEVICES, time(NULL));
		if (ret < 0)
			die("store_devices_update", ret);
	}
	jids[ROOM_MEMBERS] = g_strdup(ALICE);
	timing_init(&t, reps);
	timing_init(&tr, reps);
	for (int r = -1; r < reps; r++) {
		GArray *cands = NULL;
		omemo_address rcpts[ROOM_MEMBERS * ROOM_DEVICES];
		omemo_message m;
		xmlnode *node;
		char *xml;
		size_t n = 0;

		/* The first round decides the trust of the new keys (blind
		 * trust, as the plugin's default) and is not timed. */
		if (r == 0)
			store_get_stats(engine_store(a), &s0);
		if (r >= 0) {
			timing_start(&t);
			timing_start(&tr);
		}
		/* As the plugin does: the reads and the encryption in one
		 * transaction. */
		if ((ret = store_begin(engine_store(a))) < 0)
			die("store_begin", ret);
		ret = group_candidates(a, TRUST_MODE_BTBV, (const char *const *)jids,
		                       ROOM_MEMBERS + 1, time(NULL), &cands);
		if (ret < 0)
			die("group_candidates", ret);
		if (r >= 0)
			timing_stop(&tr);
		for (guint i = 0; i < cands->len; i++) {
			group_device *d = &g_array_index(cands, group_device, i);

			if (d->has_session && trust_is_trusted(d->trust.state)) {
				rcpts[n].jid = d->jid;
				rcpts[n].device_id = d->device;
				n++;
			}
		}
		ret = engine_encrypt(a, (const uint8_t *)text, strlen(text), rcpts, n, &m, NULL);
		if (ret < 0)
			die("engine_encrypt (room)", ret);
		if ((ret = store_commit(engine_store(a))) < 0)
			die("store_commit", ret);
		node = wire_build_encrypted(&m);
		xml = xmlnode_to_str(node, NULL);
		if (r >= 0)
			timing_stop(&t);
		if (n != ROOM_MEMBERS * ROOM_DEVICES || m.n_keys != n)
			die("the room's recipients", OMEMO_ERR_NO_SESSION);
		g_free(xml);
		xmlnode_free(node);
		omemo_message_clear(&m);
		g_array_free(cands, TRUE);
	}
	store_get_stats(engine_store(a), &s1);
	timing_print(&t, "group message: 50 members x 3 devices (recipients, encrypt, XML)",
	             (double)(s1.commits - s0.commits) / reps);
	timing_print(&tr, "of which finding the 150 recipients (lists, sessions, keys, trust)", 0);
	for (int j = 0; j <= ROOM_MEMBERS; j++)
		g_free(jids[j]);
}

static void bench_encrypt(engine_t *a, int n, int reps)
{
	omemo_address *rcpts = g_new(omemo_address, n);
	timing t;
	char what[64];
	const char *text = "The quick brown fox jumps over the lazy dog, twice over.";
	store_stats s0, s1;
	int prekeys = 0;

	for (int k = 0; k < n; k++) {
		rcpts[k].jid = BOB;
		rcpts[k].device_id = (uint32_t)k + 1;
	}
	timing_init(&t, reps);
	store_get_stats(engine_store(a), &s0);
	for (int r = 0; r < reps; r++) {
		omemo_message m;
		int ret;

		timing_start(&t);
		ret = engine_encrypt(a, (const uint8_t *)text, strlen(text), rcpts, (size_t)n, &m,
		                     NULL);
		timing_stop(&t);
		if (ret < 0)
			die("engine_encrypt", ret);
		if (m.n_keys != (size_t)n)
			die("engine_encrypt (some devices skipped)", OMEMO_ERR_NO_SESSION);
		for (size_t i = 0; i < m.n_keys; i++)
			prekeys += m.keys[i].prekey;
		omemo_message_clear(&m);
	}
	store_get_stats(engine_store(a), &s1);
	if (prekeys)
		die("the benchmark's sessions (prekey messages sent)", OMEMO_ERR_NO_SESSION);
	g_snprintf(what, sizeof(what), "encrypt for %d device%s", n, n == 1 ? "" : "s");
	timing_print(&t, what, (double)(s1.commits - s0.commits) / reps);
	g_free(rcpts);
}

/*
 * The floor on this machine: the Signal library's own work for n devices
 * (session_cipher_encrypt with the records held in memory, no database),
 * the payload encryption, and the curve operations a session build needs.
 * Our figures are judged against these plus one durable commit.
 */
static int mem_load_session(signal_buffer **record, signal_buffer **user_record,
                            const signal_protocol_address *address, void *user_data)
{
	signal_buffer *b = g_hash_table_lookup(user_data, GINT_TO_POINTER(address->device_id));

	if (!b)
		return 0;
	*record = signal_buffer_copy(b);
	return 1;
}

static int mem_store_session(const signal_protocol_address *address, uint8_t *record,
                             size_t record_len, uint8_t *user_record, size_t user_record_len,
                             void *user_data)
{
	g_hash_table_replace(user_data, GINT_TO_POINTER(address->device_id),
	                     signal_buffer_create(record, record_len));
	return 0;
}

static int mem_contains_session(const signal_protocol_address *address, void *user_data)
{
	return g_hash_table_contains(user_data, GINT_TO_POINTER(address->device_id));
}

static int mem_is_trusted(const signal_protocol_address *address, uint8_t *key_data,
                          size_t key_len, void *user_data)
{
	return 1;
}

/* A Signal context whose sessions live in `records` (device id -> record). */
static void mem_context(GHashTable *records, signal_context **ctx,
                        signal_protocol_store_context **sctx)
{
	signal_protocol_session_store ss = {
		.load_session_func = mem_load_session,
		.store_session_func = mem_store_session,
		.contains_session_func = mem_contains_session,
		.user_data = records,
	};
	signal_protocol_identity_key_store is = {
		.is_trusted_identity = mem_is_trusted,
	};

	if (signal_context_create(ctx, NULL) < 0 || payload_crypto_provider_set(*ctx) < 0 ||
	    signal_protocol_store_context_create(sctx, *ctx) < 0 ||
	    signal_protocol_store_context_set_session_store(*sctx, &ss) < 0 ||
	    signal_protocol_store_context_set_identity_key_store(*sctx, &is) < 0)
		die("floor set-up", OMEMO_ERR_CRYPTO);
}

/* Copy the session rows of jid out of a benchmark database. */
static void mem_load_records(GHashTable *records, const char *db_path, const char *jid)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT device, record FROM sessions WHERE jid = ?", -1, &st,
	                       NULL) != SQLITE_OK)
		die("reading the sessions", OMEMO_ERR_STORE);
	sqlite3_bind_text(st, 1, jid, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW)
		g_hash_table_replace(records, GINT_TO_POINTER(sqlite3_column_int(st, 0)),
		                     signal_buffer_create(sqlite3_column_blob(st, 1),
		                                          (size_t)sqlite3_column_bytes(st, 1)));
	sqlite3_finalize(st);
	sqlite3_close(db);
}

/* The library's own decrypt of the same kind of message, records in
 * memory: the rest of the chain, after the engine's run above. */
static double decrypt_floor_ms;

static void bench_decrypt_floor(const char *bob_db, uint32_t alice_device, omemo_message *msgs,
                                int reps)
{
	GHashTable *records = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
	                                            (GDestroyNotify)signal_buffer_free);
	signal_protocol_address addr = { ALICE, strlen(ALICE), (int32_t)alice_device };
	signal_context *ctx = NULL;
	signal_protocol_store_context *sctx = NULL;
	double *wall = g_new(double, reps);

	mem_load_records(records, bob_db, ALICE);
	mem_context(records, &ctx, &sctx);
	for (int r = 0; r < reps; r++) {
		session_cipher *c = NULL;
		signal_message *m = NULL;
		signal_buffer *keymat = NULL;
		uint8_t *plain = NULL;
		size_t plain_len;
		double w = wall_us();

		if (session_cipher_create(&c, sctx, &addr, ctx) < 0 ||
		    signal_message_deserialize(&m, msgs[r].keys[0].data, msgs[r].keys[0].len, ctx) < 0 ||
		    session_cipher_decrypt_signal_message(c, m, NULL, &keymat) < 0 ||
		    payload_decrypt(msgs[r].payload, msgs[r].payload_len, msgs[r].iv, msgs[r].iv_len,
		                    signal_buffer_data(keymat), signal_buffer_len(keymat), &plain,
		                    &plain_len) < 0)
			die("library decrypt", OMEMO_ERR_UNDECRYPTABLE);
		wall[r] = wall_us() - w;
		g_free(plain);
		signal_buffer_bzero_free(keymat);
		SIGNAL_UNREF(m);
		session_cipher_free(c);
		omemo_message_clear(&msgs[r]);
	}
	decrypt_floor_ms = median(wall, reps) / 1000;
	signal_protocol_store_context_destroy(sctx);
	signal_context_destroy(ctx);
	g_hash_table_destroy(records);
	g_free(wall);
}

static void bench_decrypt(const char *dir, int reps)
{
	engine_t *a = open_engine(dir, "dec-a", ALICE);
	engine_t *b = open_engine(dir, "dec-b", BOB);
	omemo_message *msgs = g_new0(omemo_message, 2 * reps);
	timing t;
	omemo_address to_b = { BOB, engine_device_id(b) };
	omemo_address to_a = { ALICE, engine_device_id(a) };
	omemo_bundle bundle;
	omemo_message m;
	engine_decrypted d;
	store_stats s0, s1;
	int ret;

	/* Establish, then queue `reps` messages of one sending chain. */
	if ((ret = engine_get_bundle(b, &bundle)) < 0 ||
	    (ret = engine_build_session(a, BOB, engine_device_id(b), &bundle)) < 0)
		die("session setup", ret);
	omemo_bundle_clear(&bundle);
	if ((ret = engine_encrypt(a, (const uint8_t *)"x", 1, &to_b, 1, &m, NULL)) < 0 ||
	    (ret = engine_decrypt(b, ALICE, &m, &d)) < 0)
		die("first message", ret);
	engine_decrypted_clear(&d);
	omemo_message_clear(&m);
	if ((ret = engine_encrypt(b, NULL, 0, &to_a, 1, &m, NULL)) < 0 ||
	    (ret = engine_decrypt(a, BOB, &m, &d)) < 0)
		die("key transport", ret);
	engine_decrypted_clear(&d);
	omemo_message_clear(&m);
	for (int r = 0; r < 2 * reps; r++) {
		const char *text = "A message of ordinary length, decrypted in a running chain.";

		if ((ret = engine_encrypt(a, (const uint8_t *)text, strlen(text), &to_b, 1,
		                          &msgs[r], NULL)) < 0)
			die("engine_encrypt", ret);
	}
	timing_init(&t, reps);
	store_get_stats(engine_store(b), &s0);
	for (int r = 0; r < reps; r++) {
		timing_start(&t);
		ret = engine_decrypt(b, ALICE, &msgs[r], &d);
		timing_stop(&t);
		if (ret < 0)
			die("engine_decrypt", ret);
		engine_decrypted_clear(&d);
		omemo_message_clear(&msgs[r]);
	}
	store_get_stats(engine_store(b), &s1);
	timing_print(&t, "decrypt one message", (double)(s1.commits - s0.commits) / reps);
	bench_decrypt_floor(store_path(engine_store(b)), engine_device_id(a), msgs + reps, reps);
	g_free(msgs);
	engine_close(a);
	engine_close(b);
}

/* The floor under every figure above: one durable commit of one small row. */
static void bench_commit(engine_t *a, int reps)
{
	store_t *st = engine_store(a);
	timing t;
	int ret;

	timing_init(&t, reps);
	for (int r = 0; r < reps; r++) {
		timing_start(&t);
		ret = store_begin(st);
		if (ret == 0)
			ret = store_meta_set_int(st, "bench_counter", r);
		if (ret == 0)
			ret = store_commit(st);
		timing_stop(&t);
		if (ret < 0)
			die("commit", ret);
	}
	timing_print(&t, "one durable commit of one small row (the floor under each)", 1);
}

static void bench_build_session(engine_t *a, engine_t *peer, int reps)
{
	omemo_bundle bundle;
	store_stats s0, s1;
	timing t;
	int ret;

	if ((ret = engine_get_bundle(peer, &bundle)) < 0)
		die("engine_get_bundle", ret);
	timing_init(&t, reps);
	store_get_stats(engine_store(a), &s0);
	for (int r = 0; r < reps; r++) {
		timing_start(&t);
		ret = engine_build_session(a, "carol@example.org", (uint32_t)r + 1, &bundle);
		timing_stop(&t);
		if (ret < 0)
			die("engine_build_session", ret);
	}
	store_get_stats(engine_store(a), &s1);
	omemo_bundle_clear(&bundle);
	timing_print(&t, "build a session from a bundle", (double)(s1.commits - s0.commits) / reps);
}

static void bench_floor(const char *alice_db, const int *sizes, size_t n_sizes, int reps)
{
	GHashTable *records = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
	                                            (GDestroyNotify)signal_buffer_free);
	signal_context *ctx = NULL;
	signal_protocol_store_context *sctx = NULL;
	double *wall = g_new(double, reps);

	mem_load_records(records, alice_db, BOB);
	mem_context(records, &ctx, &sctx);

	for (size_t i = 0; i < n_sizes; i++) {
		int n = sizes[i];
		int r_max = n >= 1000 ? reps / 3 + 1 : reps;

		for (int r = 0; r < r_max; r++) {
			uint8_t iv[PAYLOAD_IV_LEN], keymat[PAYLOAD_KEYMAT_LEN], *ct = NULL;
			size_t ct_len;
			double w = wall_us();

			if (payload_encrypt((const uint8_t *)"The quick brown fox", 19, &ct, &ct_len,
			                    iv, keymat) < 0)
				die("payload_encrypt", OMEMO_ERR_CRYPTO);
			for (int k = 1; k <= n; k++) {
				signal_protocol_address addr = { BOB, strlen(BOB), k };
				session_cipher *c = NULL;
				ciphertext_message *m = NULL;

				if (session_cipher_create(&c, sctx, &addr, ctx) < 0 ||
				    session_cipher_encrypt(c, keymat, sizeof(keymat), &m) < 0)
					die("session_cipher_encrypt", OMEMO_ERR_CRYPTO);
				SIGNAL_UNREF(m);
				session_cipher_free(c);
			}
			g_free(ct);
			wall[r] = wall_us() - w;
		}
		printf("| %d device%s | %.3f ms |\n", n, n == 1 ? "" : "s",
		       median(wall, r_max) / 1000);
	}
	{
		ec_key_pair *a = NULL, *b = NULL;
		uint8_t *shared = NULL;
		double w;

		if (curve_generate_key_pair(ctx, &a) < 0 || curve_generate_key_pair(ctx, &b) < 0)
			die("curve_generate_key_pair", OMEMO_ERR_CRYPTO);
		for (int r = 0; r < reps; r++) {
			w = wall_us();
			if (curve_calculate_agreement(&shared, ec_key_pair_get_public(a),
			                              ec_key_pair_get_private(b)) < 0)
				die("curve_calculate_agreement", OMEMO_ERR_CRYPTO);
			wall[r] = wall_us() - w;
			free(shared);
		}
		printf("\none X25519 agreement (curve25519_donna): %.3f ms\n", median(wall, reps) / 1000);
		SIGNAL_UNREF(a);
		SIGNAL_UNREF(b);
	}
	signal_protocol_store_context_destroy(sctx);
	signal_context_destroy(ctx);
	g_hash_table_destroy(records);
	g_free(wall);
}

static void bench_open(const char *self, const char *path, int reps)
{
	double *wall = g_new(double, reps);
	long rss_kb = 0;

	for (int r = 0; r < reps; r++) {
		engine_t *e = NULL;
		double w = wall_us();
		int ret = engine_open(path, ALICE, &e);

		wall[r] = wall_us() - w;
		if (ret < 0)
			die("engine_open", ret);
		engine_close(e);
	}
	/* Peak RSS of a fresh process that does nothing but open the store. */
	{
		pid_t pid = fork();
		int status;
		struct rusage ru;

		if (pid == 0) {
			execl(self, self, "--open-only", path, ALICE, (char *)NULL);
			_exit(127);
		}
		if (pid > 0 && wait4(pid, &status, 0, &ru) == pid && WIFEXITED(status) &&
		    WEXITSTATUS(status) == 0)
			rss_kb = ru.ru_maxrss;
	}
	printf("| open a store of 1000 devices with sessions | %.3f ms | | |\n",
	       median(wall, reps) / 1000);
	printf("\npeak RSS of a process that only opens that store: %ld KiB\n", rss_kb);
	g_free(wall);
}

static void print_machine(const char *dir)
{
	struct utsname u;
	char *cpuinfo = NULL;
	const char *model = "unknown";
	GDateTime *now = g_date_time_new_now_utc();
	char *date = g_date_time_format(now, "%Y-%m-%d");

	if (g_file_get_contents("/proc/cpuinfo", &cpuinfo, NULL, NULL)) {
		char *p = strstr(cpuinfo, "model name");

		if (p && (p = strchr(p, ':'))) {
			char *nl;

			model = p + 2;
			if ((nl = strchr(model, '\n')))
				*nl = '\0';
		}
	}
	uname(&u);
	printf("purple-omemo %s benchmark, %s, %s\n", PURPLE_OMEMO_VERSION, date,
	       COMPAT_SIGNAL_LIBRARY);
	printf("machine: %s, %ld cores, %s %s; store in %s (WAL, synchronous=FULL)\n\n", model,
	       sysconf(_SC_NPROCESSORS_ONLN), u.sysname, u.release, dir);
	g_free(cpuinfo);
	g_free(date);
	g_date_time_unref(now);
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

int main(int argc, char **argv)
{
	bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
	int reps = quick ? 5 : 31;
	char *dir, *alice_db;
	engine_t *a, *peer;
	const int sizes[] = { 1, 10, 100, 150, 1000 };

	if (argc == 4 && strcmp(argv[1], "--open-only") == 0) {
		engine_t *e = NULL;
		int ret = engine_open(argv[2], argv[3], &e);

		engine_close(e);
		return ret < 0;
	}
	if (purple_dbus_init_ids)
		purple_dbus_init_ids();
	dir = g_dir_make_tmp("purple-omemo-bench-XXXXXX", NULL);
	if (!dir)
		die("creating a temporary directory", OMEMO_ERR_STORE_OPEN);
	print_machine(dir);

	a = open_engine(dir, "alice", ALICE);
	peer = open_engine(dir, "peer", BOB);
	{
		double w = wall_us();

		establish(a, peer, MAX_DEVICES);
		printf("(set-up: %d established sessions in %.1f s)\n\n", MAX_DEVICES,
		       (wall_us() - w) / 1e6);
	}
	printf("| operation | wall (median) | CPU (median) | commits per op |\n");
	printf("|---|---|---|---|\n");
	for (size_t i = 0; i < G_N_ELEMENTS(sizes); i++)
		bench_encrypt(a, sizes[i], sizes[i] >= 1000 ? (quick ? 3 : 11) : reps);
	bench_group(a, peer, reps);
	bench_commit(a, quick ? 20 : 201);
	bench_decrypt(dir, quick ? 20 : 201);
	bench_build_session(a, peer, reps);

	{
		uint32_t ids[MAX_DEVICES];
		int ret;

		for (int k = 0; k < MAX_DEVICES; k++)
			ids[k] = (uint32_t)k + 1;
		ret = store_devices_update(engine_store(a), OMEMO_NS_LEGACY, BOB, ids, MAX_DEVICES,
		                           time(NULL));
		if (ret < 0)
			die("store_devices_update", ret);
	}
	alice_db = g_strdup(store_path(engine_store(a)));
	engine_close(a);
	engine_close(peer);
	bench_open(argv[0], alice_db, reps);
	printf("\nThe floor on this machine: the Signal library alone (records in memory,\n"
	       "no database), payload encryption included, median wall time:\n\n");
	printf("| library encrypt for | wall |\n|---|---|\n");
	bench_floor(alice_db, sizes, G_N_ELEMENTS(sizes), reps);
	printf("\nlibrary decrypt of one message in a running chain: %.3f ms\n", decrypt_floor_ms);

	g_free(alice_db);
	rm_rf(dir);
	g_free(dir);
	payload_crypto_shutdown();
	return 0;
}
