/*
 * The per-account SQLite database. It owns the file (created 0600, never
 * overwritten when damaged), the schema and its forward migrations, the one
 * connection kept open with its cache of prepared statements, the nesting
 * transactions, and the Signal library's five store interfaces, which it
 * serves from the same tables the engine reads directly.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <sqlite3.h>

#include "err.h"
#include "omemo_types.h"
#include "records.h"
#include "store.h"

/* A writer elsewhere (a second client on the same profile, a backup tool)
 * gets this long before we report OMEMO_ERR_STORE_BUSY. */
#define STORE_BUSY_TIMEOUT_MS 2000

struct store {
	sqlite3 *db;
	char *path;
	GHashTable *stmts; /* SQL text (owned by the statement) -> sqlite3_stmt */
	int depth;         /* store_begin() levels open */
	bool doomed;       /* the transaction was rolled back; levels still open */
	int last_error;
	store_stats stats;
	/* Session rows by address ("ns\njid\ndevice"), so encrypting for many
	 * devices reads no session from SQLite twice and writes each by rowid.
	 * Valid because this connection is the database's only writer. */
	GHashTable *sessions;  /* key -> store_session_entry */
	GPtrArray *tx_touched; /* keys written in the open transaction */
	/* Every session record written in the open transaction replaced one
	 * that was committed (see store_tx_may_send_early). */
	bool tx_early;
	/* For checking session records read from disk (records.h). */
	signal_context *gctx;
	/* What the per-JID reads below returned (kind, ns, jid -> rows), so
	 * every message does not ask SQLite again who its recipients are.
	 * Emptied by every write but the rewrite of a session record in
	 * place, and by every rollback: valid for the same reason as the
	 * session cache. */
	GHashTable *reads;
	/* The statement running is such a rewrite, or BEGIN/COMMIT/ROLLBACK
	 * (a rollback empties them itself). */
	bool keep_reads;
};

typedef struct {
	void *rows;
	size_t n;
} store_read;

typedef struct {
	int64_t rowid;  /* 0: there is no row */
	GBytes *record; /* NULL when there is no row */
	bool checked;   /* written by the library, or read and checked */
	/* Written by the library in the open transaction. */
	bool pending;
	/* Written by the library and committed since: the disk holds this
	 * very record, and reading it back would step past its next message
	 * key. Never true for a record read from disk (that one was stepped
	 * in memory, or may be). */
	bool committed;
} store_session_entry;

/* ------------------------------------------------------------------ */
/* Session cache                                                        */
/* ------------------------------------------------------------------ */

#define SESSION_KEY_MAX 1200

static void store_session_entry_free(gpointer p)
{
	store_session_entry *e = p;

	if (e->record)
		g_bytes_unref(e->record);
	g_free(e);
}

/* Fills buf with the cache key "ns\njid\ndevice"; false when the address
 * cannot be cached (too long, or a NUL inside the name that would make two
 * names one key): such an address simply goes to SQLite every time. Built
 * by hand: this runs three times per device per message. */
static bool store_session_key(char *buf, const char *ns, const char *jid, size_t jid_len,
                              int64_t device)
{
	size_t ns_len = strlen(ns);
	char digits[24];
	size_t nd = 0;
	uint64_t v = device < 0 ? (uint64_t)-device : (uint64_t)device;
	char *p;

	if (ns_len + jid_len + sizeof(digits) + 3 > SESSION_KEY_MAX ||
	    (jid_len && memchr(jid, '\0', jid_len)))
		return false;
	do {
		digits[nd++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	if (device < 0)
		digits[nd++] = '-';
	p = buf;
	memcpy(p, ns, ns_len);
	p += ns_len;
	*p++ = '\n';
	memcpy(p, jid, jid_len);
	p += jid_len;
	*p++ = '\n';
	while (nd)
		*p++ = digits[--nd];
	*p = '\0';
	return true;
}

/* checked: the record was written by the library itself, or was read and
 * passed the checks of records.h. */
static store_session_entry *store_session_cache_put(store_t *store, const char *key,
                                                   int64_t rowid, const void *record, size_t len,
                                                   bool checked)
{
	store_session_entry *e = g_new0(store_session_entry, 1);

	e->rowid = rowid;
	e->checked = checked;
	e->record = rowid ? g_bytes_new(record, len) : NULL;
	g_hash_table_replace(store->sessions, g_strdup(key), e);
	if (store->depth > 0)
		g_ptr_array_add(store->tx_touched, g_strdup(key));
	return e;
}

/* The library wrote this record (cached as e, or not cachable when e is
 * NULL) over one that was committed, or not. */
static void store_session_written(store_t *store, bool over_committed, store_session_entry *e)
{
	if (!over_committed || !e)
		store->tx_early = false;
	if (!e)
		return;
	if (store->depth > 0)
		e->pending = true;
	else
		e->committed = true; /* autocommit */
}

static void store_session_cache_drop(store_t *store, const char *key)
{
	g_hash_table_remove(store->sessions, key);
}

static void store_session_forget(store_t *store, const char *ns, const char *jid,
                                 size_t jid_len, int64_t device)
{
	char key[SESSION_KEY_MAX];

	if (store_session_key(key, ns, jid, jid_len, device))
		store_session_cache_drop(store, key);
}

/* The outermost transaction ended: rolled-back writes leave the cache,
 * committed ones are now what the disk holds. */
static void store_session_cache_tx_end(store_t *store, bool committed)
{
	if (!committed)
		g_hash_table_remove_all(store->reads);
	for (guint i = 0; i < store->tx_touched->len; i++) {
		const char *key = store->tx_touched->pdata[i];
		store_session_entry *e;

		if (!committed) {
			g_hash_table_remove(store->sessions, key);
		} else if ((e = g_hash_table_lookup(store->sessions, key)) && e->pending) {
			e->pending = false;
			e->committed = true;
		}
	}
	g_ptr_array_set_size(store->tx_touched, 0);
}


/* ------------------------------------------------------------------ */
/* Schema                                                               */
/* ------------------------------------------------------------------ */

/* Step i takes user_version i to i + 1. Never edit a step once released:
 * add one. */
static const char *const store_migrations[] = {
	/* 0 -> 1: the first schema. Used prekeys were deleted outright. */
	"CREATE TABLE meta ("
	"  key TEXT PRIMARY KEY NOT NULL,"
	"  value INTEGER NOT NULL);"
	"CREATE TABLE own_identity ("
	"  slot INTEGER PRIMARY KEY CHECK (slot = 0),"
	"  device_id INTEGER NOT NULL,"
	"  registration_id INTEGER NOT NULL,"
	"  public_key BLOB NOT NULL,"
	"  private_key BLOB NOT NULL);"
	"CREATE TABLE prekeys ("
	"  id INTEGER PRIMARY KEY,"
	"  record BLOB NOT NULL);"
	"CREATE TABLE signed_prekeys ("
	"  id INTEGER PRIMARY KEY,"
	"  record BLOB NOT NULL,"
	"  created INTEGER NOT NULL);"
	"CREATE TABLE sessions ("
	"  ns TEXT NOT NULL,"
	"  jid TEXT NOT NULL,"
	"  device INTEGER NOT NULL,"
	"  record BLOB NOT NULL,"
	"  user_record BLOB,"
	"  PRIMARY KEY (ns, jid, device));"
	"CREATE TABLE remote_identities ("
	"  ns TEXT NOT NULL,"
	"  jid TEXT NOT NULL,"
	"  device INTEGER NOT NULL,"
	"  key BLOB NOT NULL,"
	"  PRIMARY KEY (ns, jid, device));"
	"CREATE TABLE devices ("
	"  ns TEXT NOT NULL,"
	"  jid TEXT NOT NULL,"
	"  device INTEGER NOT NULL,"
	"  active INTEGER NOT NULL,"
	"  first_seen INTEGER NOT NULL,"
	"  last_seen INTEGER NOT NULL,"
	"  PRIMARY KEY (ns, jid, device));"
	"CREATE TABLE trust ("
	"  jid TEXT NOT NULL,"
	"  device INTEGER NOT NULL,"
	"  identity_key BLOB NOT NULL,"
	"  state INTEGER NOT NULL,"
	"  updated INTEGER NOT NULL,"
	"  PRIMARY KEY (jid, device, identity_key));"
	"CREATE TABLE settings ("
	"  conv TEXT NOT NULL,"
	"  key TEXT NOT NULL,"
	"  value TEXT NOT NULL,"
	"  PRIMARY KEY (conv, key));",

	/* 1 -> 2: a prekey message can arrive twice (offline storage plus a
	 * carbon or MAM copy), so a used prekey is only marked and purged
	 * later. Existing rows are unused. */
	"ALTER TABLE prekeys ADD COLUMN used_at INTEGER;"
	"CREATE INDEX prekeys_used_at ON prekeys (used_at) WHERE used_at IS NOT NULL;",
};

G_STATIC_ASSERT(G_N_ELEMENTS(store_migrations) == STORE_SCHEMA_VERSION);

/* ------------------------------------------------------------------ */
/* Errors                                                               */
/* ------------------------------------------------------------------ */

static int store_map_sqlite(int rc, bool opening)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_NOMEM:
		return OMEMO_ERR_NOMEM;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return OMEMO_ERR_STORE_CORRUPT;
	case SQLITE_FULL:
		return OMEMO_ERR_STORE_FULL;
	case SQLITE_READONLY:
		return OMEMO_ERR_STORE_READONLY;
	case SQLITE_CANTOPEN:
		/* Once open, failing to open a file means the journal or WAL
		 * could not be created for a write. */
		return opening ? OMEMO_ERR_STORE_OPEN : OMEMO_ERR_STORE_READONLY;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return OMEMO_ERR_STORE_BUSY;
	default:
		return OMEMO_ERR_STORE;
	}
}

static int store_fail(store_t *store, int err)
{
	if (err != OMEMO_ERR_NOT_FOUND)
		store->last_error = err;
	return err;
}

/* After a failed statement: SQLite abandons the whole transaction on some
 * errors (disk full, I/O, busy on commit). The levels above us must then
 * fail instead of carrying on in autocommit mode. */
static int store_fail_sqlite(store_t *store, int rc)
{
	if (store->depth > 0 && !store->doomed && sqlite3_get_autocommit(store->db)) {
		store->doomed = true;
		store->stats.rollbacks++;
	}
	return store_fail(store, store_map_sqlite(rc, false));
}

int store_last_error(const store_t *store)
{
	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	return store->last_error;
}

/* ------------------------------------------------------------------ */
/* Statements                                                           */
/* ------------------------------------------------------------------ */

typedef enum { SV_END = 0, SV_TEXT, SV_INT, SV_BLOB, SV_NULL } store_val_type;

typedef struct {
	store_val_type type;
	const void *ptr;
	size_t len; /* SIZE_MAX: NUL-terminated text */
	int64_t num;
} store_val;

#define V_TEXT(s) { .type = SV_TEXT, .ptr = (s), .len = SIZE_MAX }
#define V_TEXTN(s, n) { .type = SV_TEXT, .ptr = (s), .len = (n) }
#define V_INT(v) { .type = SV_INT, .num = (int64_t)(v) }
#define V_BLOB(p, n) { .type = SV_BLOB, .ptr = (p), .len = (n) }
#define V_END { .type = SV_END }
#define VALS(...) ((const store_val[]){ __VA_ARGS__, V_END })

static void store_stmt_finalize(gpointer stmt)
{
	sqlite3_finalize(stmt);
}

static int store_bind(sqlite3_stmt *stmt, const store_val *vals)
{
	int rc = SQLITE_OK;

	for (int i = 0; vals && vals[i].type != SV_END && rc == SQLITE_OK; i++) {
		const store_val *v = &vals[i];

		switch (v->type) {
		case SV_TEXT:
			if (v->len == SIZE_MAX)
				rc = sqlite3_bind_text(stmt, i + 1, v->ptr, -1, SQLITE_STATIC);
			else
				rc = sqlite3_bind_text64(stmt, i + 1, v->ptr, v->len, SQLITE_STATIC,
				                         SQLITE_UTF8);
			break;
		case SV_INT:
			rc = sqlite3_bind_int64(stmt, i + 1, v->num);
			break;
		case SV_NULL:
			rc = sqlite3_bind_null(stmt, i + 1);
			break;
		case SV_BLOB:
			/* A NULL pointer would bind SQL NULL, not an empty blob. */
			if (v->len == 0)
				rc = sqlite3_bind_zeroblob(stmt, i + 1, 0);
			else
				rc = sqlite3_bind_blob64(stmt, i + 1, v->ptr, v->len, SQLITE_STATIC);
			break;
		default:
			rc = SQLITE_MISUSE;
			break;
		}
	}
	return rc;
}

static void store_stmt_done(sqlite3_stmt *stmt)
{
	/* The error, if any, was taken from sqlite3_step() already. */
	(void)sqlite3_reset(stmt);
	(void)sqlite3_clear_bindings(stmt);
}

/* Fetch the statement for sql from the cache (preparing it the first time)
 * and bind vals. */
static int store_stmt(store_t *store, const char *sql, const store_val *vals,
                      sqlite3_stmt **out)
{
	sqlite3_stmt *stmt = g_hash_table_lookup(store->stmts, sql);
	int rc;

	if (!stmt) {
		rc = sqlite3_prepare_v3(store->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL);
		if (rc != SQLITE_OK)
			return store_fail_sqlite(store, rc);
		g_hash_table_insert(store->stmts, (gpointer)sql, stmt);
	}
	/* After a rollback inside nested levels, a write would run in
	 * autocommit mode and persist half of what the caller meant. */
	if (store->doomed && !sqlite3_stmt_readonly(stmt))
		return store_fail(store, OMEMO_ERR_STORE);
	rc = store_bind(stmt, vals);
	if (rc != SQLITE_OK) {
		store_stmt_done(stmt);
		return store_fail_sqlite(store, rc);
	}
	*out = stmt;
	return 0;
}

static void store_read_free(gpointer p)
{
	store_read *r = p;

	g_free(r->rows);
	g_free(r);
}

static char *store_read_key(char kind, const char *ns, const char *jid)
{
	return g_strdup_printf("%c\n%s\n%s", kind, ns ? ns : "", jid);
}

/* A copy of what the read under key returned before: true and *rows (n
 * rows of size bytes, g_free; NULL when none), or false. */
static bool store_read_get(store_t *store, const char *key, size_t size, void **rows, size_t *n)
{
	store_read *r = g_hash_table_lookup(store->reads, key);

	if (!r)
		return false;
	*rows = r->n ? g_memdup2(r->rows, r->n * size) : NULL;
	*n = r->n;
	return true;
}

/* Keep what a read returned (key is taken). */
static void store_read_put(store_t *store, char *key, const void *rows, size_t n, size_t size)
{
	store_read *r = g_new0(store_read, 1);

	r->rows = n ? g_memdup2(rows, n * size) : NULL;
	r->n = n;
	g_hash_table_replace(store->reads, key, r);
}

/* 1: a row is there; 0: done (statement reset); negative: error (reset). */
static int store_step(store_t *store, sqlite3_stmt *stmt)
{
	int rc;

	/* Whatever it changes, or fails to, the reads kept may be stale. */
	if (!store->keep_reads && !sqlite3_stmt_readonly(stmt))
		g_hash_table_remove_all(store->reads);
	rc = sqlite3_step(stmt);

	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE) {
		store_stmt_done(stmt);
		return 0;
	}
	store_stmt_done(stmt);
	return store_fail_sqlite(store, rc);
}

/* Run a statement that returns no rows (any it does are ignored); *changes
 * gets the rows it touched. */
static int store_exec(store_t *store, const char *sql, const store_val *vals, int *changes)
{
	sqlite3_stmt *stmt = NULL;
	int ret;

	ret = store_stmt(store, sql, vals, &stmt);
	if (ret < 0)
		return ret;
	ret = store_step(store, stmt);
	if (ret == 1) {
		store_stmt_done(stmt);
		ret = 0;
	}
	if (ret < 0)
		return ret;
	/* Outside a transaction each write is one (autocommit). */
	if (store->depth == 0 && !sqlite3_stmt_readonly(stmt))
		store->stats.commits++;
	if (changes)
		*changes = sqlite3_changes(store->db);
	return 0;
}

/* Copy a blob column into a fresh signal_buffer (never NULL on success). */
static int store_column_buffer(sqlite3_stmt *stmt, int col, signal_buffer **out)
{
	const void *data = sqlite3_column_blob(stmt, col);
	int len = sqlite3_column_bytes(stmt, col);
	signal_buffer *buf;

	if (len > 0 && !data)
		return OMEMO_ERR_NOMEM;
	buf = signal_buffer_alloc(len > 0 ? (size_t)len : 0);
	if (!buf)
		return OMEMO_ERR_NOMEM;
	if (len > 0)
		memcpy(signal_buffer_data(buf), data, (size_t)len);
	*out = buf;
	return 0;
}

/* Run a query for one blob column of one row: 0 and *out, or NOT_FOUND. */
static int store_query_buffer(store_t *store, const char *sql, const store_val *vals,
                              signal_buffer **out)
{
	sqlite3_stmt *stmt = NULL;
	int ret;

	ret = store_stmt(store, sql, vals, &stmt);
	if (ret < 0)
		return ret;
	ret = store_step(store, stmt);
	if (ret == 0)
		return OMEMO_ERR_NOT_FOUND;
	if (ret < 0)
		return ret;
	ret = store_column_buffer(stmt, 0, out);
	store_stmt_done(stmt);
	return ret < 0 ? store_fail(store, ret) : 0;
}

/* ------------------------------------------------------------------ */
/* Open, migrate, close                                                 */
/* ------------------------------------------------------------------ */

/* Create the file ourselves so it is never, even briefly, readable by
 * others; SQLite then gives -wal and -shm the same mode. */
static int store_create_file(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0) {
		switch (errno) {
		case EEXIST:
			return 0;
		case EACCES:
		case EPERM:
		case EROFS:
			return OMEMO_ERR_STORE_READONLY;
		case ENOSPC:
		case EDQUOT:
			return OMEMO_ERR_STORE_FULL;
		default:
			return OMEMO_ERR_STORE_OPEN;
		}
	}
	/* A umask like 0277 would leave us a file we cannot write. */
	if (fchmod(fd, 0600) < 0) {
		close(fd);
		unlink(path);
		return OMEMO_ERR_STORE_OPEN;
	}
	if (close(fd) < 0) {
		unlink(path);
		return OMEMO_ERR_STORE_OPEN;
	}
	return 0;
}

/* Run one statement returning a single value (PRAGMAs at open time), before
 * the statement cache is in use. *text is g_malloc'd when asked for. */
static int store_pragma(sqlite3 *db, const char *sql, int64_t *num, char **text)
{
	sqlite3_stmt *stmt = NULL;
	int rc;
	int ret = 0;

	rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
	if (rc != SQLITE_OK) {
		ret = store_map_sqlite(rc, true);
		goto out;
	}
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		if (num)
			*num = sqlite3_column_int64(stmt, 0);
		if (text)
			*text = g_strdup((const char *)sqlite3_column_text(stmt, 0));
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_OK)
		ret = store_map_sqlite(rc, true);
out:
	sqlite3_finalize(stmt);
	return ret;
}

/* Everything here only reads: a file that is not ours stays as it is. */
static int store_check_file(sqlite3 *db, int64_t *version)
{
	char *check = NULL;
	int ret;

	ret = store_pragma(db, "PRAGMA user_version", version, NULL);
	if (ret < 0)
		goto out;
	/* A truncated or damaged file can still have a readable first page. */
	ret = store_pragma(db, "PRAGMA quick_check", NULL, &check);
	if (ret < 0)
		goto out;
	if (!check || strcmp(check, "ok") != 0)
		ret = OMEMO_ERR_STORE_CORRUPT;
out:
	g_free(check);
	return ret;
}

static int store_configure(sqlite3 *db)
{
	char *mode = NULL;
	int ret;

	ret = store_pragma(db, "PRAGMA foreign_keys = ON", NULL, NULL);
	if (ret < 0)
		goto out;
	/* WAL commits are durable only with FULL: every commit syncs. */
	ret = store_pragma(db, "PRAGMA synchronous = FULL", NULL, NULL);
	if (ret < 0)
		goto out;
	/* Old prekeys and sessions are private key material: zero freed space. */
	ret = store_pragma(db, "PRAGMA secure_delete = ON", NULL, NULL);
	if (ret < 0)
		goto out;
	/* Switching modes writes the header: only when needed, so a database
	 * that is already WAL opens on a read-only file too. */
	ret = store_pragma(db, "PRAGMA journal_mode", NULL, &mode);
	if (ret < 0)
		goto out;
	if (!mode || g_ascii_strcasecmp(mode, "wal") != 0) {
		g_free(mode);
		mode = NULL;
		ret = store_pragma(db, "PRAGMA journal_mode = WAL", NULL, &mode);
		if (ret < 0)
			goto out;
		if (!mode || g_ascii_strcasecmp(mode, "wal") != 0)
			ret = sqlite3_db_readonly(db, "main") == 1 ? OMEMO_ERR_STORE_READONLY
			                                           : OMEMO_ERR_STORE_OPEN;
	}
out:
	g_free(mode);
	return ret;
}

static int store_exec_raw(sqlite3 *db, const char *sql)
{
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);

	return store_map_sqlite(rc, false);
}

/* Each step commits together with its user_version bump, so a crash or a
 * failure leaves the database at a version it really has. */
static int store_migrate(sqlite3 *db)
{
	int ret = 0;

	for (;;) {
		int64_t version = 0;
		char *bump = NULL;

		ret = store_exec_raw(db, "BEGIN IMMEDIATE");
		if (ret < 0)
			return ret;
		/* Read again under the write lock: another process may have
		 * migrated since we looked. */
		ret = store_pragma(db, "PRAGMA user_version", &version, NULL);
		if (ret == 0 && version > STORE_SCHEMA_VERSION)
			ret = OMEMO_ERR_STORE_TOO_NEW;
		if (ret == 0 && version < 0)
			ret = OMEMO_ERR_STORE_CORRUPT;
		if (ret < 0 || version == STORE_SCHEMA_VERSION) {
			if (ret < 0)
				(void)store_exec_raw(db, "ROLLBACK");
			else
				ret = store_exec_raw(db, "COMMIT");
			return ret;
		}
		ret = store_exec_raw(db, store_migrations[version]);
		if (ret == 0) {
			bump = g_strdup_printf("PRAGMA user_version = %d", (int)version + 1);
			ret = store_exec_raw(db, bump);
			g_free(bump);
		}
		if (ret == 0)
			ret = store_exec_raw(db, "COMMIT");
		if (ret < 0) {
			if (!sqlite3_get_autocommit(db))
				(void)store_exec_raw(db, "ROLLBACK");
			return ret;
		}
	}
}

int store_open(const char *path, store_t **out)
{
	store_t *store = NULL;
	int64_t version = 0;
	int ret = 0;
	int rc;

	if (!out)
		return OMEMO_ERR_INVALID_ARG;
	*out = NULL;
	if (!path || !*path)
		return OMEMO_ERR_INVALID_ARG;

	ret = store_create_file(path);
	if (ret < 0)
		return ret;

	store = g_new0(store_t, 1);
	store->path = g_strdup(path);
	/* Keyed by the address of the SQL text: every statement is a string
	 * literal, and hashing a pointer costs nothing on the hot path. */
	store->stmts = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, store_stmt_finalize);
	store->sessions = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
	                                        store_session_entry_free);
	store->tx_touched = g_ptr_array_new_with_free_func(g_free);
	store->reads = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, store_read_free);
	/* No SQLITE_OPEN_CREATE: the file exists (we just made sure), and if
	 * it vanished meanwhile SQLite must not create one with its own mode. */
	/* One connection per account, used from the UI thread only: SQLite's
	 * own mutexes would be pure overhead. */
	rc = sqlite3_open_v2(path, &store->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		ret = store_map_sqlite(rc, true);
		goto out;
	}
	rc = sqlite3_extended_result_codes(store->db, 1);
	if (rc == SQLITE_OK)
		rc = sqlite3_busy_timeout(store->db, STORE_BUSY_TIMEOUT_MS);
	if (rc != SQLITE_OK) {
		ret = store_map_sqlite(rc, true);
		goto out;
	}
	ret = store_check_file(store->db, &version);
	/* In a read-only folder SQLite opens the file read-only, then cannot
	 * make the WAL index it needs: say read-only, not "cannot open". */
	if (ret == OMEMO_ERR_STORE_OPEN && sqlite3_db_readonly(store->db, "main") == 1)
		ret = OMEMO_ERR_STORE_READONLY;
	if (ret < 0)
		goto out;
	if (version > STORE_SCHEMA_VERSION) {
		ret = OMEMO_ERR_STORE_TOO_NEW;
		goto out;
	}
	/* We only ever write 0..STORE_SCHEMA_VERSION: not a file of ours. */
	if (version < 0) {
		ret = OMEMO_ERR_STORE_CORRUPT;
		goto out;
	}
	ret = store_configure(store->db);
	if (ret < 0)
		goto out;
	if (version < STORE_SCHEMA_VERSION) {
		ret = store_migrate(store->db);
		if (ret < 0)
			goto out;
	}
	*out = store;
	store = NULL;
out:
	store_close(store);
	return ret;
}

void store_close(store_t *store)
{
	if (!store)
		return;
	/* Work still open is abandoned, as after a crash. */
	if (store->db && !sqlite3_get_autocommit(store->db))
		(void)sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
	if (store->stmts)
		g_hash_table_destroy(store->stmts);
	if (store->sessions)
		g_hash_table_destroy(store->sessions);
	if (store->tx_touched)
		g_ptr_array_free(store->tx_touched, TRUE);
	if (store->reads)
		g_hash_table_destroy(store->reads);
	/* Every statement is finalised, so this closes (and checkpoints). */
	if (store->db && sqlite3_close(store->db) != SQLITE_OK)
		(void)sqlite3_close_v2(store->db);
	g_free(store->path);
	g_free(store);
}

const char *store_path(const store_t *store)
{
	return store ? store->path : NULL;
}

void store_get_stats(const store_t *store, store_stats *stats)
{
	if (!stats)
		return;
	if (!store) {
		memset(stats, 0, sizeof(*stats));
		return;
	}
	*stats = store->stats;
}

/* ------------------------------------------------------------------ */
/* Transactions                                                         */
/* ------------------------------------------------------------------ */

static int store_tx_statement(store_t *store, const char *sql)
{
	sqlite3_stmt *stmt = NULL;
	int ret;

	ret = store_stmt(store, sql, NULL, &stmt);
	if (ret < 0)
		return ret;
	store->keep_reads = true;
	ret = store_step(store, stmt);
	store->keep_reads = false;
	if (ret == 1) {
		store_stmt_done(stmt);
		ret = 0;
	}
	return ret;
}

/* Roll back what SQLite still has open (it may have done so itself). */
static void store_tx_abandon(store_t *store)
{
	if (!sqlite3_get_autocommit(store->db)) {
		int ret;

		g_hash_table_remove_all(store->reads);
		ret = store_tx_statement(store, "ROLLBACK");
		if (ret < 0)
			store_fail(store, ret);
	}
}

int store_begin(store_t *store)
{
	int ret;

	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (store->doomed)
		return store_fail(store, OMEMO_ERR_STORE);
	if (store->depth == 0) {
		/* Say so now rather than at the first write. */
		if (sqlite3_db_readonly(store->db, "main") == 1)
			return store_fail(store, OMEMO_ERR_STORE_READONLY);
		/* A ROLLBACK that failed earlier may have left one open. */
		store_tx_abandon(store);
		/* IMMEDIATE: take the write lock now, so a busy database is
		 * reported here rather than halfway through our writes. */
		ret = store_tx_statement(store, "BEGIN IMMEDIATE");
		if (ret < 0)
			return ret;
		store->tx_early = true;
	}
	store->depth++;
	return 0;
}

bool store_tx_may_send_early(const store_t *store)
{
	return store && store->depth == 1 && !store->doomed && store->tx_early;
}

int store_commit(store_t *store)
{
	int ret = 0;

	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (store->depth == 0)
		return store_fail(store, OMEMO_ERR_INVALID_ARG);
	store->depth--;
	if (store->doomed) {
		if (store->depth == 0)
			store->doomed = false;
		return store_fail(store, OMEMO_ERR_STORE);
	}
	if (store->depth > 0)
		return 0;
	ret = store_tx_statement(store, "COMMIT");
	if (ret < 0) {
		/* A COMMIT that failed on a busy lock leaves the transaction
		 * open; end it so the caller's work is all gone either way. */
		store_tx_abandon(store);
		store_session_cache_tx_end(store, false);
		store->stats.rollbacks++;
		store->doomed = false;
		return store_fail(store, ret);
	}
	store_session_cache_tx_end(store, true);
	store->stats.commits++;
	return 0;
}

void store_rollback(store_t *store)
{
	if (!store)
		return;
	store->last_error = 0;
	if (store->depth == 0)
		return;
	if (!store->doomed) {
		store_tx_abandon(store);
		store_session_cache_tx_end(store, false);
		store->stats.rollbacks++;
		store->doomed = true;
	}
	store->depth--;
	if (store->depth == 0)
		store->doomed = false;
}

/* ------------------------------------------------------------------ */
/* Meta                                                                 */
/* ------------------------------------------------------------------ */

int store_meta_get_int(store_t *store, const char *key, int64_t *value)
{
	sqlite3_stmt *stmt = NULL;
	int ret;

	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (!key || !value)
		return store_fail(store, OMEMO_ERR_INVALID_ARG);
	ret = store_stmt(store, "SELECT value FROM meta WHERE key = ?", VALS(V_TEXT(key)), &stmt);
	if (ret < 0)
		return ret;
	ret = store_step(store, stmt);
	if (ret == 0)
		return OMEMO_ERR_NOT_FOUND;
	if (ret < 0)
		return ret;
	*value = sqlite3_column_int64(stmt, 0);
	store_stmt_done(stmt);
	return 0;
}

int store_meta_set_int(store_t *store, const char *key, int64_t value)
{
	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (!key)
		return store_fail(store, OMEMO_ERR_INVALID_ARG);
	return store_exec(store,
	                  "INSERT INTO meta (key, value) VALUES (?, ?)"
	                  " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
	                  VALS(V_TEXT(key), V_INT(value)), NULL);
}

/* ------------------------------------------------------------------ */
/* Own identity                                                         */
/* ------------------------------------------------------------------ */

static int store_identity_read(store_t *store, uint32_t *device_id, uint32_t *registration_id,
                               signal_buffer **public_key, signal_buffer **private_key)
{
	sqlite3_stmt *stmt = NULL;
	signal_buffer *pub = NULL;
	signal_buffer *priv = NULL;
	int ret;

	ret = store_stmt(store,
	                 "SELECT device_id, registration_id, public_key, private_key"
	                 " FROM own_identity WHERE slot = 0",
	                 NULL, &stmt);
	if (ret < 0)
		return ret;
	ret = store_step(store, stmt);
	if (ret == 0)
		return OMEMO_ERR_NOT_FOUND;
	if (ret < 0)
		return ret;
	if (device_id)
		*device_id = (uint32_t)sqlite3_column_int64(stmt, 0);
	if (registration_id)
		*registration_id = (uint32_t)sqlite3_column_int64(stmt, 1);
	ret = 0;
	if (public_key)
		ret = store_column_buffer(stmt, 2, &pub);
	if (ret == 0 && private_key)
		ret = store_column_buffer(stmt, 3, &priv);
	store_stmt_done(stmt);
	if (ret < 0) {
		signal_buffer_free(pub);
		signal_buffer_bzero_free(priv);
		return store_fail(store, ret);
	}
	if (public_key)
		*public_key = pub;
	if (private_key)
		*private_key = priv;
	return 0;
}

int store_identity_get(store_t *store, uint32_t *device_id, uint32_t *registration_id,
                       signal_buffer **public_key, signal_buffer **private_key)
{
	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	return store_identity_read(store, device_id, registration_id, public_key, private_key);
}

int store_identity_set(store_t *store, uint32_t device_id, uint32_t registration_id,
                       const uint8_t *public_key, size_t public_len,
                       const uint8_t *private_key, size_t private_len)
{
	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (!public_key || !public_len || !private_key || !private_len)
		return store_fail(store, OMEMO_ERR_INVALID_ARG);
	return store_exec(store,
	                  "INSERT OR REPLACE INTO own_identity"
	                  " (slot, device_id, registration_id, public_key, private_key)"
	                  " VALUES (0, ?, ?, ?, ?)",
	                  VALS(V_INT(device_id), V_INT(registration_id),
	                       V_BLOB(public_key, public_len), V_BLOB(private_key, private_len)),
	                  NULL);
}

/* ------------------------------------------------------------------ */
/* Prekeys and signed prekeys                                           */
/* ------------------------------------------------------------------ */

int store_prekey_save(store_t *store, uint32_t id, const uint8_t *record, size_t len)
{
	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (!record || !len)
		return store_fail(store, OMEMO_ERR_INVALID_ARG);
	/* A key saved under an id is a new key: unused again. */
	return store_exec(store,
	                  "INSERT INTO prekeys (id, record, used_at) VALUES (?, ?, NULL)"
	                  " ON CONFLICT (id) DO UPDATE SET record = excluded.record, used_at = NULL",
	                  VALS(V_INT(id), V_BLOB(record, len)), NULL);
}

int store_prekey_load(store_t *store, uint32_t id, signal_buffer **record)
{
	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (!record)
		return store_fail(store, OMEMO_ERR_INVALID_ARG);
	return store_query_buffer(store, "SELECT record FROM prekeys WHERE id = ?",
	                          VALS(V_INT(id)), record);
}

static int store_prekey_mark_used(store_t *store, uint32_t id, int64_t now)
{
	/* The first use counts: a duplicate delivery must not keep the key
	 * alive longer. */
	return store_exec(store,
	                  "UPDATE prekeys SET used_at = ? WHERE id = ? AND used_at IS NULL",
	                  VALS(V_INT(now), V_INT(id)), NULL);
}

/* Collect the uint32 first column of every row. */
static int store_query_ids(store_t *store, const char *sql, const store_val *vals,
                           uint32_t **ids, size_t *n)
{
	sqlite3_stmt *stmt = NULL;
	GArray *arr = NULL;
	int ret;

	ret = store_stmt(store, sql, vals, &stmt);
	if (ret < 0)
		return ret;
	arr = g_array_new(FALSE, FALSE, sizeof(uint32_t));
	while ((ret = store_step(store, stmt)) == 1) {
		uint32_t id = (uint32_t)sqlite3_column_int64(stmt, 0);

		g_array_append_val(arr, id);
	}
	if (ret < 0) {
		g_array_free(arr, TRUE);
		return ret;
	}
	*n = arr->len;
	*ids = (uint32_t *)(void *)g_array_free(arr, arr->len == 0);
	return 0;
}

int store_prekey_list_unused(store_t *store, uint32_t **ids, size_t *n)
{
	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (!ids || !n)
		return store_fail(store, OMEMO_ERR_INVALID_ARG);
	*ids = NULL;
	*n = 0;
	return store_query_ids(store, "SELECT id FROM prekeys WHERE used_at IS NULL ORDER BY id",
	                       NULL, ids, n);
}

int store_prekey_purge_used(store_t *store, int64_t before)
{
	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	return store_exec(store, "DELETE FROM prekeys WHERE used_at IS NOT NULL AND used_at < ?",
	                  VALS(V_INT(before)), NULL);
}

int store_signed_prekey_save(store_t *store, uint32_t id, const uint8_t *record, size_t len,
                             int64_t created)
{
	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (!record || !len)
		return store_fail(store, OMEMO_ERR_INVALID_ARG);
	return store_exec(store,
	                  "INSERT OR REPLACE INTO signed_prekeys (id, record, created) VALUES (?, ?, ?)",
	                  VALS(V_INT(id), V_BLOB(record, len), V_INT(created)), NULL);
}

/* The stored record of signed prekey id, checked before anyone parses it. */
static int store_signed_prekey_fetch(store_t *store, uint32_t id, signal_buffer **record)
{
	int ret = store_query_buffer(store, "SELECT record FROM signed_prekeys WHERE id = ?",
	                             VALS(V_INT(id)), record);

	if (ret == 0 && !records_signed_prekey_ok(signal_buffer_data(*record),
	                                          signal_buffer_len(*record))) {
		signal_buffer_bzero_free(*record);
		*record = NULL;
		return store_fail(store, OMEMO_ERR_STORE_CORRUPT);
	}
	return ret;
}

int store_signed_prekey_load(store_t *store, uint32_t id, signal_buffer **record)
{
	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (!record)
		return store_fail(store, OMEMO_ERR_INVALID_ARG);
	return store_signed_prekey_fetch(store, id, record);
}

int store_signed_prekey_list(store_t *store, uint32_t **ids, int64_t **created, size_t *n)
{
	sqlite3_stmt *stmt = NULL;
	GArray *id_arr = NULL;
	GArray *created_arr = NULL;
	int ret;

	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (!ids || !created || !n)
		return store_fail(store, OMEMO_ERR_INVALID_ARG);
	*ids = NULL;
	*created = NULL;
	*n = 0;
	ret = store_stmt(store, "SELECT id, created FROM signed_prekeys ORDER BY created DESC, id DESC",
	                 NULL, &stmt);
	if (ret < 0)
		return ret;
	id_arr = g_array_new(FALSE, FALSE, sizeof(uint32_t));
	created_arr = g_array_new(FALSE, FALSE, sizeof(int64_t));
	while ((ret = store_step(store, stmt)) == 1) {
		uint32_t id = (uint32_t)sqlite3_column_int64(stmt, 0);
		int64_t when = sqlite3_column_int64(stmt, 1);

		g_array_append_val(id_arr, id);
		g_array_append_val(created_arr, when);
	}
	if (ret < 0) {
		g_array_free(id_arr, TRUE);
		g_array_free(created_arr, TRUE);
		return ret;
	}
	*n = id_arr->len;
	*ids = (uint32_t *)(void *)g_array_free(id_arr, id_arr->len == 0);
	*created = (int64_t *)(void *)g_array_free(created_arr, created_arr->len == 0);
	return 0;
}

int store_signed_prekey_remove(store_t *store, uint32_t id)
{
	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	return store_exec(store, "DELETE FROM signed_prekeys WHERE id = ?", VALS(V_INT(id)), NULL);
}

/* ------------------------------------------------------------------ */
/* Sessions and remote identities                                       */
/* ------------------------------------------------------------------ */

/* 1 exists, 0 not, negative on error. */
/* Look the address up, through the cache. 1 and *entry (owned by the
 * cache, may be NULL for an uncachable address) when a row exists, 0 when
 * not, negative on error. A row with a user_record is never cached. */
static bool session_record_readable(store_t *store, const void *data, size_t len)
{
	if (!store->gctx)
		return records_session_ok(data, len);
	return records_session_states_ok(data, len, store->gctx);
}

void store_set_signal_context(store_t *store, signal_context *ctx)
{
	if (store)
		store->gctx = ctx;
}

static int store_session_lookup(store_t *store, const char *ns, const char *jid, size_t jid_len,
                                int64_t device, store_session_entry **entry)
{
	char key[SESSION_KEY_MAX];
	bool cachable = store_session_key(key, ns, jid, jid_len, device);
	store_session_entry *e = cachable ? g_hash_table_lookup(store->sessions, key) : NULL;
	sqlite3_stmt *stmt = NULL;
	int ret;

	*entry = NULL;
	if (e) {
		*entry = e;
		return e->rowid ? 1 : 0;
	}
	ret = store_stmt(store,
	                 "SELECT rowid, record, user_record IS NULL FROM sessions"
	                 " WHERE ns = ? AND jid = ? AND device = ?",
	                 VALS(V_TEXT(ns), V_TEXTN(jid, jid_len), V_INT(device)), &stmt);
	if (ret < 0)
		return ret;
	ret = store_step(store, stmt);
	if (ret < 0)
		return ret;
	if (ret == 0) {
		if (cachable)
			store_session_cache_put(store, key, 0, NULL, 0, true);
		return 0;
	}
	if (cachable && sqlite3_column_int(stmt, 2)) {
		store_session_cache_put(store, key, sqlite3_column_int64(stmt, 0),
		                        sqlite3_column_blob(stmt, 1),
		                        (size_t)sqlite3_column_bytes(stmt, 1), false);
		*entry = g_hash_table_lookup(store->sessions, key);
	}
	store_stmt_done(stmt);
	return 1;
}

static int store_session_find(store_t *store, const char *ns, const char *jid, size_t jid_len,
                              int64_t device)
{
	store_session_entry *e;

	return store_session_lookup(store, ns, jid, jid_len, device, &e);
}

int store_session_devices(store_t *store, const char *ns, const char *jid, uint32_t **ids,
                          size_t *n)
{
	char *key;
	int ret;

	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (!ns || !jid || !ids || !n)
		return store_fail(store, OMEMO_ERR_INVALID_ARG);
	key = store_read_key('S', ns, jid);
	if (store_read_get(store, key, sizeof(uint32_t), (void **)ids, n)) {
		g_free(key);
		return 0;
	}
	ret = store_query_ids(store,
	                      "SELECT device FROM sessions WHERE ns = ? AND jid = ? ORDER BY device",
	                      VALS(V_TEXT(ns), V_TEXT(jid)), ids, n);
	if (ret == 0)
		store_read_put(store, key, *ids, *n, sizeof(uint32_t));
	else
		g_free(key);
	return ret;
}

bool store_session_exists(store_t *store, const char *ns, const char *jid, uint32_t device_id)
{
	if (!store)
		return false;
	store->last_error = 0;
	if (!ns || !jid) {
		store_fail(store, OMEMO_ERR_INVALID_ARG);
		return false;
	}
	return store_session_find(store, ns, jid, strlen(jid), device_id) == 1;
}

int store_session_delete(store_t *store, const char *ns, const char *jid, uint32_t device_id)
{
	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (!ns || !jid)
		return store_fail(store, OMEMO_ERR_INVALID_ARG);
	store_session_forget(store, ns, jid, strlen(jid), device_id);
	return store_exec(store, "DELETE FROM sessions WHERE ns = ? AND jid = ? AND device = ?",
	                  VALS(V_TEXT(ns), V_TEXT(jid), V_INT(device_id)), NULL);
}

int store_remote_identity_get(store_t *store, const char *ns, const char *jid,
                              uint32_t device_id, signal_buffer **key)
{
	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (!ns || !jid || !key)
		return store_fail(store, OMEMO_ERR_INVALID_ARG);
	return store_query_buffer(store,
	                          "SELECT key FROM remote_identities"
	                          " WHERE ns = ? AND jid = ? AND device = ?",
	                          VALS(V_TEXT(ns), V_TEXT(jid), V_INT(device_id)), key);
}

/* ------------------------------------------------------------------ */
/* Devices                                                              */
/* ------------------------------------------------------------------ */

int store_remote_identities(store_t *store, const char *ns, const char *jid,
                            store_identity_row **rows, size_t *n)
{
	sqlite3_stmt *stmt = NULL;
	GArray *arr;
	char *key;
	int ret;

	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (!ns || !jid || !rows || !n)
		return store_fail(store, OMEMO_ERR_INVALID_ARG);
	*rows = NULL;
	*n = 0;
	key = store_read_key('I', ns, jid);
	if (store_read_get(store, key, sizeof(store_identity_row), (void **)rows, n)) {
		g_free(key);
		return 0;
	}
	ret = store_stmt(store,
	                 "SELECT device, key FROM remote_identities WHERE ns = ? AND jid = ?"
	                 " ORDER BY device",
	                 VALS(V_TEXT(ns), V_TEXT(jid)), &stmt);
	if (ret < 0) {
		g_free(key);
		return ret;
	}
	arr = g_array_new(FALSE, TRUE, sizeof(store_identity_row));
	while ((ret = store_step(store, stmt)) == 1) {
		store_identity_row row = { 0 };

		/* A key of another length is corrupt: left out, as if unknown. */
		if (sqlite3_column_bytes(stmt, 1) != OMEMO_PUBKEY_LEN)
			continue;
		row.device = (uint32_t)sqlite3_column_int64(stmt, 0);
		memcpy(row.key, sqlite3_column_blob(stmt, 1), OMEMO_PUBKEY_LEN);
		g_array_append_val(arr, row);
	}
	if (ret < 0) {
		g_array_free(arr, TRUE);
		g_free(key);
		return ret;
	}
	*n = arr->len;
	*rows = (store_identity_row *)g_array_free(arr, *n == 0);
	store_read_put(store, key, *rows, *n, sizeof(store_identity_row));
	return 0;
}

int store_devices_update(store_t *store, const char *ns, const char *jid, const uint32_t *ids,
                         size_t n, int64_t now)
{
	int ret;

	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (!ns || !jid || (n && !ids))
		return store_fail(store, OMEMO_ERR_INVALID_ARG);
	ret = store_begin(store);
	if (ret < 0)
		return ret;
	/* Everyone drops out, then the listed ones come back: devices that
	 * left keep their rows (trust, first_seen) for a later return. */
	ret = store_exec(store, "UPDATE devices SET active = 0 WHERE ns = ? AND jid = ?",
	                 VALS(V_TEXT(ns), V_TEXT(jid)), NULL);
	for (size_t i = 0; ret == 0 && i < n; i++)
		ret = store_exec(store,
		                 "INSERT INTO devices (ns, jid, device, active, first_seen, last_seen)"
		                 " VALUES (?, ?, ?, 1, ?, ?)"
		                 " ON CONFLICT (ns, jid, device) DO UPDATE"
		                 " SET active = 1, last_seen = excluded.last_seen",
		                 VALS(V_TEXT(ns), V_TEXT(jid), V_INT(ids[i]), V_INT(now), V_INT(now)),
		                 NULL);
	if (ret < 0) {
		store_rollback(store);
		return store_fail(store, ret);
	}
	return store_commit(store);
}

int store_devices_get(store_t *store, const char *ns, const char *jid, bool active_only,
                      store_device **devices, size_t *n)
{
	sqlite3_stmt *stmt = NULL;
	GArray *arr = NULL;
	char *key;
	int ret;

	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (!ns || !jid || !devices || !n)
		return store_fail(store, OMEMO_ERR_INVALID_ARG);
	*devices = NULL;
	*n = 0;
	key = store_read_key(active_only ? 'A' : 'D', ns, jid);
	if (store_read_get(store, key, sizeof(store_device), (void **)devices, n)) {
		g_free(key);
		return 0;
	}
	ret = store_stmt(store,
	                 "SELECT device, active, first_seen, last_seen FROM devices"
	                 " WHERE ns = ? AND jid = ? AND (active OR NOT ?) ORDER BY device",
	                 VALS(V_TEXT(ns), V_TEXT(jid), V_INT(active_only)), &stmt);
	if (ret < 0) {
		g_free(key);
		return ret;
	}
	arr = g_array_new(FALSE, TRUE, sizeof(store_device));
	while ((ret = store_step(store, stmt)) == 1) {
		store_device d = {
			.id = (uint32_t)sqlite3_column_int64(stmt, 0),
			.active = sqlite3_column_int64(stmt, 1) != 0,
			.first_seen = sqlite3_column_int64(stmt, 2),
			.last_seen = sqlite3_column_int64(stmt, 3),
		};

		g_array_append_val(arr, d);
	}
	if (ret < 0) {
		g_array_free(arr, TRUE);
		g_free(key);
		return ret;
	}
	*n = arr->len;
	*devices = (store_device *)(void *)g_array_free(arr, arr->len == 0);
	store_read_put(store, key, *devices, *n, sizeof(store_device));
	return 0;
}

int store_device_remove(store_t *store, const char *ns, const char *jid, uint32_t id)
{
	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (!ns || !jid)
		return store_fail(store, OMEMO_ERR_INVALID_ARG);
	return store_exec(store, "DELETE FROM devices WHERE ns = ? AND jid = ? AND device = ?",
	                  VALS(V_TEXT(ns), V_TEXT(jid), V_INT(id)), NULL);
}

/* ------------------------------------------------------------------ */
/* Trust and settings                                                   */
/* ------------------------------------------------------------------ */

int store_trust_set(store_t *store, const char *jid, uint32_t device_id, const uint8_t *key,
                    size_t key_len, int state, int64_t now)
{
	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (!jid || !key || !key_len)
		return store_fail(store, OMEMO_ERR_INVALID_ARG);
	return store_exec(store,
	                  "INSERT INTO trust (jid, device, identity_key, state, updated)"
	                  " VALUES (?, ?, ?, ?, ?)"
	                  " ON CONFLICT (jid, device, identity_key) DO UPDATE"
	                  " SET state = excluded.state, updated = excluded.updated",
	                  VALS(V_TEXT(jid), V_INT(device_id), V_BLOB(key, key_len), V_INT(state),
	                       V_INT(now)),
	                  NULL);
}

int store_trust_get(store_t *store, const char *jid, uint32_t device_id, const uint8_t *key,
                    size_t key_len, int *state)
{
	sqlite3_stmt *stmt = NULL;
	int ret;

	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (!jid || !key || !key_len || !state)
		return store_fail(store, OMEMO_ERR_INVALID_ARG);
	ret = store_stmt(store,
	                 "SELECT state FROM trust WHERE jid = ? AND device = ? AND identity_key = ?",
	                 VALS(V_TEXT(jid), V_INT(device_id), V_BLOB(key, key_len)), &stmt);
	if (ret < 0)
		return ret;
	ret = store_step(store, stmt);
	if (ret == 0)
		return OMEMO_ERR_NOT_FOUND;
	if (ret < 0)
		return ret;
	*state = (int)sqlite3_column_int64(stmt, 0);
	store_stmt_done(stmt);
	return 0;
}

int store_trust_list(store_t *store, const char *jid, store_trust_row **rows, size_t *n)
{
	sqlite3_stmt *stmt = NULL;
	GArray *arr;
	char *key;
	int ret;

	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (!jid || !rows || !n)
		return store_fail(store, OMEMO_ERR_INVALID_ARG);
	*rows = NULL;
	*n = 0;
	key = store_read_key('T', NULL, jid);
	if (store_read_get(store, key, sizeof(store_trust_row), (void **)rows, n)) {
		g_free(key);
		return 0;
	}
	ret = store_stmt(store,
	                 "SELECT device, identity_key, state, updated FROM trust WHERE jid = ?"
	                 " ORDER BY device, updated",
	                 VALS(V_TEXT(jid)), &stmt);
	if (ret < 0) {
		g_free(key);
		return ret;
	}
	arr = g_array_new(FALSE, TRUE, sizeof(store_trust_row));
	while ((ret = store_step(store, stmt)) == 1) {
		store_trust_row row = { 0 };
		int len = sqlite3_column_bytes(stmt, 1);

		row.device = (uint32_t)sqlite3_column_int64(stmt, 0);
		/* Identity keys are 33 bytes; anything else cannot be ours. */
		if (len == OMEMO_PUBKEY_LEN)
			memcpy(row.key, sqlite3_column_blob(stmt, 1), OMEMO_PUBKEY_LEN);
		else
			continue;
		row.state = (int)sqlite3_column_int64(stmt, 2);
		row.updated = sqlite3_column_int64(stmt, 3);
		g_array_append_val(arr, row);
	}
	if (ret < 0) {
		g_array_free(arr, TRUE);
		g_free(key);
		return ret;
	}
	*n = arr->len;
	*rows = (store_trust_row *)g_array_free(arr, *n == 0);
	store_read_put(store, key, *rows, *n, sizeof(store_trust_row));
	return 0;
}

int store_setting_set(store_t *store, const char *conv, const char *key, const char *value)
{
	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (!conv || !key || !value)
		return store_fail(store, OMEMO_ERR_INVALID_ARG);
	return store_exec(store,
	                  "INSERT INTO settings (conv, key, value) VALUES (?, ?, ?)"
	                  " ON CONFLICT (conv, key) DO UPDATE SET value = excluded.value",
	                  VALS(V_TEXT(conv), V_TEXT(key), V_TEXT(value)), NULL);
}

int store_setting_get(store_t *store, const char *conv, const char *key, char **value)
{
	sqlite3_stmt *stmt = NULL;
	int ret;

	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (!conv || !key || !value)
		return store_fail(store, OMEMO_ERR_INVALID_ARG);
	ret = store_stmt(store, "SELECT value FROM settings WHERE conv = ? AND key = ?",
	                 VALS(V_TEXT(conv), V_TEXT(key)), &stmt);
	if (ret < 0)
		return ret;
	ret = store_step(store, stmt);
	if (ret == 0)
		return OMEMO_ERR_NOT_FOUND;
	if (ret < 0)
		return ret;
	*value = g_strndup((const char *)sqlite3_column_text(stmt, 0),
	                   (gsize)sqlite3_column_bytes(stmt, 0));
	store_stmt_done(stmt);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Signal library callbacks                                             */
/* ------------------------------------------------------------------ */

/* What each of the five store structs carries as user_data; each struct
 * owns its own copy, freed by its destroy_func. */
typedef struct {
	store_t *store;
	char *ns;
} store_signal_data;

static store_signal_data *store_signal_data_new(store_t *store, const char *ns)
{
	store_signal_data *d = g_new0(store_signal_data, 1);

	d->store = store;
	d->ns = g_strdup(ns);
	return d;
}

static void store_signal_destroy_cb(void *user_data)
{
	store_signal_data *d = user_data;

	if (!d)
		return;
	g_free(d->ns);
	g_free(d);
}

/* The library treats any negative value as failure; the precise cause
 * stays in last_error for store_last_error(). */
static int store_signal_err(int ret)
{
	if (ret >= 0)
		return ret;
	return ret == OMEMO_ERR_NOMEM ? SG_ERR_NOMEM : SG_ERR_UNKNOWN;
}

/* Start of every callback: a usable store and a clean error slot. */
static store_t *store_signal_enter(void *user_data)
{
	store_signal_data *d = user_data;

	if (!d || !d->store)
		return NULL;
	d->store->last_error = 0;
	return d->store;
}

static bool store_address_ok(const signal_protocol_address *address)
{
	return address && (address->name || address->name_len == 0);
}

static int store_load_session_cb(signal_buffer **record, signal_buffer **user_record,
                                 const signal_protocol_address *address, void *user_data)
{
	store_signal_data *d = user_data;
	store_t *store = store_signal_enter(user_data);
	store_session_entry *e = NULL;
	sqlite3_stmt *stmt = NULL;
	signal_buffer *rec = NULL;
	signal_buffer *user = NULL;
	int ret;

	if (!store || !record || !store_address_ok(address))
		return SG_ERR_INVAL;
	ret = store_session_lookup(store, d->ns, address->name, address->name_len,
	                           address->device_id, &e);
	if (ret <= 0)
		return store_signal_err(ret); /* 0: not found */
	if (e) {
		gsize len = 0;
		const void *data = g_bytes_get_data(e->record, &len);

		/* Read from disk: checked once, before the library parses it,
		 * and its sending chain stepped one key on (records.h). */
		if (!e->checked) {
			signal_buffer *stepped = NULL;

			if (!session_record_readable(store, data, len))
				return store_signal_err(store_fail(store, OMEMO_ERR_STORE_CORRUPT));
			if (store->gctx) {
				ret = records_session_step_sender(data, len, store->gctx, &stepped);
				if (ret < 0)
					return store_signal_err(store_fail(store, OMEMO_ERR_STORE_CORRUPT));
			}
			if (stepped) {
				g_bytes_unref(e->record);
				e->record = g_bytes_new(signal_buffer_data(stepped),
				                        signal_buffer_len(stepped));
				signal_buffer_free(stepped);
				data = g_bytes_get_data(e->record, &len);
			}
			e->checked = true;
		}
		rec = signal_buffer_create(data, len);
		if (!rec)
			return store_signal_err(store_fail(store, OMEMO_ERR_NOMEM));
		*record = rec;
		return 1;
	}
	/* Not cachable (a user record, or an absurdly long JID): read it all. */
	ret = store_stmt(store,
	                 "SELECT record, user_record FROM sessions"
	                 " WHERE ns = ? AND jid = ? AND device = ?",
	                 VALS(V_TEXT(d->ns), V_TEXTN(address->name, address->name_len),
	                      V_INT(address->device_id)),
	                 &stmt);
	if (ret < 0)
		return store_signal_err(ret);
	ret = store_step(store, stmt);
	if (ret <= 0)
		return store_signal_err(ret);
	ret = store_column_buffer(stmt, 0, &rec);
	if (ret == 0 && user_record && sqlite3_column_type(stmt, 1) != SQLITE_NULL)
		ret = store_column_buffer(stmt, 1, &user);
	store_stmt_done(stmt);
	if (ret < 0) {
		signal_buffer_free(rec);
		return store_signal_err(store_fail(store, ret));
	}
	if (!session_record_readable(store, signal_buffer_data(rec), signal_buffer_len(rec))) {
		signal_buffer_free(rec);
		signal_buffer_free(user);
		return store_signal_err(store_fail(store, OMEMO_ERR_STORE_CORRUPT));
	}
	*record = rec;
	if (user)
		*user_record = user;
	return 1;
}

static int store_get_sub_device_sessions_cb(signal_int_list **sessions, const char *name,
                                            size_t name_len, void *user_data)
{
	store_signal_data *d = user_data;
	store_t *store = store_signal_enter(user_data);
	sqlite3_stmt *stmt = NULL;
	signal_int_list *list = NULL;
	int count = 0;
	int ret;

	if (!store || !sessions || (!name && name_len))
		return SG_ERR_INVAL;
	ret = store_stmt(store, "SELECT device FROM sessions WHERE ns = ? AND jid = ? ORDER BY device",
	                 VALS(V_TEXT(d->ns), V_TEXTN(name, name_len)), &stmt);
	if (ret < 0)
		return store_signal_err(ret);
	list = signal_int_list_alloc();
	if (!list) {
		store_stmt_done(stmt);
		return store_signal_err(store_fail(store, OMEMO_ERR_NOMEM));
	}
	while ((ret = store_step(store, stmt)) == 1) {
		if (signal_int_list_push_back(list, (int)sqlite3_column_int64(stmt, 0)) < 0) {
			store_stmt_done(stmt);
			ret = store_fail(store, OMEMO_ERR_NOMEM);
			break;
		}
		count++;
	}
	if (ret < 0) {
		signal_int_list_free(list);
		return store_signal_err(ret);
	}
	*sessions = list;
	return count;
}

/* A known row is rewritten in place by rowid; a new one is upserted (never
 * INSERT OR REPLACE, which deletes and re-inserts row and index entry). */
static int store_store_session_cb(const signal_protocol_address *address, uint8_t *record,
                                  size_t record_len, uint8_t *user_record,
                                  size_t user_record_len, void *user_data)
{
	store_signal_data *d = user_data;
	store_t *store = store_signal_enter(user_data);
	char key[SESSION_KEY_MAX];
	bool cachable;
	store_session_entry *e;
	sqlite3_stmt *stmt = NULL;
	int64_t rowid = 0;
	int changes = 0;
	int ret;

	if (!store || !record || !store_address_ok(address))
		return SG_ERR_INVAL;
	cachable = store_session_key(key, d->ns, address->name, address->name_len,
	                             address->device_id);
	e = cachable ? g_hash_table_lookup(store->sessions, key) : NULL;
	if (cachable && !user_record && e && e->rowid) {
		bool prior_committed = e->committed;

		/* Which sessions exist does not change: the reads kept stay. */
		store->keep_reads = true;
		ret = store_exec(store, "UPDATE sessions SET record = ?, user_record = NULL WHERE rowid = ?",
		                 VALS(V_BLOB(record, record_len), V_INT(e->rowid)), &changes);
		store->keep_reads = false;
		if (ret < 0 || changes != 1) {
			store_session_cache_drop(store, key);
			return store_signal_err(ret < 0 ? ret : store_fail(store, OMEMO_ERR_STORE));
		}
		store_session_written(store, prior_committed,
		                      store_session_cache_put(store, key, e->rowid, record, record_len,
		                                              true));
		return 0;
	}
	if (cachable)
		store_session_cache_drop(store, key);
	ret = store_stmt(store,
	                 "INSERT INTO sessions (ns, jid, device, record, user_record)"
	                 " VALUES (?, ?, ?, ?, ?) ON CONFLICT (ns, jid, device) DO UPDATE"
	                 " SET record = excluded.record, user_record = excluded.user_record"
	                 " RETURNING rowid",
	                 VALS(V_TEXT(d->ns), V_TEXTN(address->name, address->name_len),
	                      V_INT(address->device_id), V_BLOB(record, record_len),
	                      user_record ? (store_val)V_BLOB(user_record, user_record_len)
	                                  : (store_val){ .type = SV_NULL }),
	                 &stmt);
	if (ret < 0)
		return store_signal_err(ret);
	ret = store_step(store, stmt);
	if (ret == 1) {
		rowid = sqlite3_column_int64(stmt, 0);
		/* Run the statement to its end, so the write is complete. */
		ret = store_step(store, stmt);
		if (ret == 1) {
			store_stmt_done(stmt);
			ret = store_fail(store, OMEMO_ERR_STORE);
		}
	} else if (ret == 0) {
		ret = store_fail(store, OMEMO_ERR_STORE); /* RETURNING gave no row */
	}
	if (ret < 0)
		return store_signal_err(ret);
	if (store->depth == 0)
		store->stats.commits++;
	store_session_written(store, false,
	                      cachable && !user_record
	                              ? store_session_cache_put(store, key, rowid, record,
	                                                        record_len, true)
	                              : NULL);
	return 0;
}

/* The header promises 1/0, but the library checks for negatives: a failing
 * database must not read as "no session" and start a new one. */
static int store_contains_session_cb(const signal_protocol_address *address, void *user_data)
{
	store_signal_data *d = user_data;
	store_t *store = store_signal_enter(user_data);

	if (!store || !store_address_ok(address))
		return SG_ERR_INVAL;
	return store_signal_err(
	    store_session_find(store, d->ns, address->name, address->name_len, address->device_id));
}

static int store_delete_session_cb(const signal_protocol_address *address, void *user_data)
{
	store_signal_data *d = user_data;
	store_t *store = store_signal_enter(user_data);
	int changes = 0;
	int ret;

	if (!store || !store_address_ok(address))
		return SG_ERR_INVAL;
	store_session_forget(store, d->ns, address->name, address->name_len, address->device_id);
	ret = store_exec(store, "DELETE FROM sessions WHERE ns = ? AND jid = ? AND device = ?",
	                 VALS(V_TEXT(d->ns), V_TEXTN(address->name, address->name_len),
	                      V_INT(address->device_id)),
	                 &changes);
	if (ret < 0)
		return store_signal_err(ret);
	return changes > 0 ? 1 : 0;
}

static int store_delete_all_sessions_cb(const char *name, size_t name_len, void *user_data)
{
	store_signal_data *d = user_data;
	store_t *store = store_signal_enter(user_data);
	int changes = 0;
	int ret;

	if (!store || (!name && name_len))
		return SG_ERR_INVAL;
	g_hash_table_remove_all(store->sessions);
	ret = store_exec(store, "DELETE FROM sessions WHERE ns = ? AND jid = ?",
	                 VALS(V_TEXT(d->ns), V_TEXTN(name, name_len)), &changes);
	if (ret < 0)
		return store_signal_err(ret);
	return changes;
}

static int store_load_pre_key_cb(signal_buffer **record, uint32_t pre_key_id, void *user_data)
{
	store_t *store = store_signal_enter(user_data);
	int ret;

	if (!store || !record)
		return SG_ERR_INVAL;
	/* Used keys too: the same prekey message may be delivered twice. */
	ret = store_query_buffer(store, "SELECT record FROM prekeys WHERE id = ?",
	                         VALS(V_INT(pre_key_id)), record);
	if (ret == OMEMO_ERR_NOT_FOUND)
		return SG_ERR_INVALID_KEY_ID;
	if (ret == 0 && !records_framing_ok(signal_buffer_data(*record),
	                                    signal_buffer_len(*record))) {
		signal_buffer_bzero_free(*record);
		*record = NULL;
		ret = store_fail(store, OMEMO_ERR_STORE_CORRUPT);
	}
	return ret < 0 ? store_signal_err(ret) : SG_SUCCESS;
}

static int store_store_pre_key_cb(uint32_t pre_key_id, uint8_t *record, size_t record_len,
                                  void *user_data)
{
	store_t *store = store_signal_enter(user_data);

	if (!store || !record)
		return SG_ERR_INVAL;
	return store_signal_err(store_prekey_save(store, pre_key_id, record, record_len));
}

static int store_contains_pre_key_cb(uint32_t pre_key_id, void *user_data)
{
	store_t *store = store_signal_enter(user_data);
	sqlite3_stmt *stmt = NULL;
	int ret;

	if (!store)
		return SG_ERR_INVAL;
	ret = store_stmt(store, "SELECT 1 FROM prekeys WHERE id = ?", VALS(V_INT(pre_key_id)),
	                 &stmt);
	if (ret < 0)
		return store_signal_err(ret);
	ret = store_step(store, stmt);
	if (ret == 1)
		store_stmt_done(stmt);
	return store_signal_err(ret);
}

/* Only marked: store_prekey_purge_used() deletes it later. */
static int store_remove_pre_key_cb(uint32_t pre_key_id, void *user_data)
{
	store_t *store = store_signal_enter(user_data);

	if (!store)
		return SG_ERR_INVAL;
	return store_signal_err(
	    store_prekey_mark_used(store, pre_key_id, g_get_real_time() / G_USEC_PER_SEC));
}

static int store_load_signed_pre_key_cb(signal_buffer **record, uint32_t signed_pre_key_id,
                                        void *user_data)
{
	store_t *store = store_signal_enter(user_data);
	int ret;

	if (!store || !record)
		return SG_ERR_INVAL;
	ret = store_signed_prekey_fetch(store, signed_pre_key_id, record);
	if (ret == OMEMO_ERR_NOT_FOUND)
		return SG_ERR_INVALID_KEY_ID;
	return ret < 0 ? store_signal_err(ret) : SG_SUCCESS;
}

static int store_store_signed_pre_key_cb(uint32_t signed_pre_key_id, uint8_t *record,
                                         size_t record_len, void *user_data)
{
	store_t *store = store_signal_enter(user_data);

	if (!store || !record)
		return SG_ERR_INVAL;
	return store_signal_err(store_signed_prekey_save(store, signed_pre_key_id, record,
	                                                 record_len,
	                                                 g_get_real_time() / G_USEC_PER_SEC));
}

static int store_contains_signed_pre_key_cb(uint32_t signed_pre_key_id, void *user_data)
{
	store_t *store = store_signal_enter(user_data);
	sqlite3_stmt *stmt = NULL;
	int ret;

	if (!store)
		return SG_ERR_INVAL;
	ret = store_stmt(store, "SELECT 1 FROM signed_prekeys WHERE id = ?",
	                 VALS(V_INT(signed_pre_key_id)), &stmt);
	if (ret < 0)
		return store_signal_err(ret);
	ret = store_step(store, stmt);
	if (ret == 1)
		store_stmt_done(stmt);
	return store_signal_err(ret);
}

static int store_remove_signed_pre_key_cb(uint32_t signed_pre_key_id, void *user_data)
{
	store_t *store = store_signal_enter(user_data);

	if (!store)
		return SG_ERR_INVAL;
	return store_signal_err(store_signed_prekey_remove(store, signed_pre_key_id));
}

static int store_get_identity_key_pair_cb(signal_buffer **public_data,
                                          signal_buffer **private_data, void *user_data)
{
	store_t *store = store_signal_enter(user_data);
	int ret;

	if (!store || !public_data || !private_data)
		return SG_ERR_INVAL;
	ret = store_identity_read(store, NULL, NULL, public_data, private_data);
	/* The library cannot go on without it: a failure, with its cause. */
	if (ret == OMEMO_ERR_NOT_FOUND)
		ret = store_fail(store, OMEMO_ERR_NO_IDENTITY);
	return store_signal_err(ret);
}

static int store_get_local_registration_id_cb(void *user_data, uint32_t *registration_id)
{
	store_t *store = store_signal_enter(user_data);
	int ret;

	if (!store || !registration_id)
		return SG_ERR_INVAL;
	ret = store_identity_read(store, NULL, registration_id, NULL, NULL);
	if (ret == OMEMO_ERR_NOT_FOUND)
		ret = store_fail(store, OMEMO_ERR_NO_IDENTITY);
	return store_signal_err(ret);
}

static int store_save_identity_cb(const signal_protocol_address *address, uint8_t *key_data,
                                  size_t key_len, void *user_data)
{
	store_signal_data *d = user_data;
	store_t *store = store_signal_enter(user_data);
	int ret;

	if (!store || !store_address_ok(address))
		return SG_ERR_INVAL;
	if (!key_data)
		ret = store_exec(store,
		                 "DELETE FROM remote_identities WHERE ns = ? AND jid = ? AND device = ?",
		                 VALS(V_TEXT(d->ns), V_TEXTN(address->name, address->name_len),
		                      V_INT(address->device_id)),
		                 NULL);
	else
		ret = store_exec(store,
		                 "INSERT OR REPLACE INTO remote_identities (ns, jid, device, key)"
		                 " VALUES (?, ?, ?, ?)",
		                 VALS(V_TEXT(d->ns), V_TEXTN(address->name, address->name_len),
		                      V_INT(address->device_id), V_BLOB(key_data, key_len)),
		                 NULL);
	return store_signal_err(ret);
}

/* Always trusted here. OMEMO decides trust per device above the library:
 * trust.c chooses which devices a message is encrypted to, and what the user
 * sees for a changed key. Refusing here would make the library fail whole
 * messages instead, with no way to ask the user. */
static int store_is_trusted_identity_cb(const signal_protocol_address *address,
                                        uint8_t *key_data, size_t key_len, void *user_data)
{
	store_t *store = store_signal_enter(user_data);

	if (!store || !store_address_ok(address) || !key_data || !key_len)
		return SG_ERR_INVAL;
	return 1;
}

/* Legacy OMEMO has no group sessions: sender keys are accepted and dropped. */
static int store_store_sender_key_cb(const signal_protocol_sender_key_name *sender_key_name,
                                     uint8_t *record, size_t record_len, uint8_t *user_record,
                                     size_t user_record_len, void *user_data)
{
	if (!store_signal_enter(user_data) || !sender_key_name)
		return SG_ERR_INVAL;
	return 0;
}

static int store_load_sender_key_cb(signal_buffer **record, signal_buffer **user_record,
                                    const signal_protocol_sender_key_name *sender_key_name,
                                    void *user_data)
{
	if (!store_signal_enter(user_data) || !record || !sender_key_name)
		return SG_ERR_INVAL;
	return 0;
}

int store_signal_register(store_t *store, signal_protocol_store_context *ctx, const char *ns)
{
	signal_protocol_session_store session = {
		.load_session_func = store_load_session_cb,
		.get_sub_device_sessions_func = store_get_sub_device_sessions_cb,
		.store_session_func = store_store_session_cb,
		.contains_session_func = store_contains_session_cb,
		.delete_session_func = store_delete_session_cb,
		.delete_all_sessions_func = store_delete_all_sessions_cb,
		.destroy_func = store_signal_destroy_cb,
	};
	signal_protocol_pre_key_store pre_key = {
		.load_pre_key = store_load_pre_key_cb,
		.store_pre_key = store_store_pre_key_cb,
		.contains_pre_key = store_contains_pre_key_cb,
		.remove_pre_key = store_remove_pre_key_cb,
		.destroy_func = store_signal_destroy_cb,
	};
	signal_protocol_signed_pre_key_store signed_pre_key = {
		.load_signed_pre_key = store_load_signed_pre_key_cb,
		.store_signed_pre_key = store_store_signed_pre_key_cb,
		.contains_signed_pre_key = store_contains_signed_pre_key_cb,
		.remove_signed_pre_key = store_remove_signed_pre_key_cb,
		.destroy_func = store_signal_destroy_cb,
	};
	signal_protocol_identity_key_store identity = {
		.get_identity_key_pair = store_get_identity_key_pair_cb,
		.get_local_registration_id = store_get_local_registration_id_cb,
		.save_identity = store_save_identity_cb,
		.is_trusted_identity = store_is_trusted_identity_cb,
		.destroy_func = store_signal_destroy_cb,
	};
	signal_protocol_sender_key_store sender_key = {
		.store_sender_key = store_store_sender_key_cb,
		.load_sender_key = store_load_sender_key_cb,
		.destroy_func = store_signal_destroy_cb,
	};
	int ret;

	if (!store)
		return OMEMO_ERR_INVALID_ARG;
	store->last_error = 0;
	if (!ctx || !ns || !*ns)
		return store_fail(store, OMEMO_ERR_INVALID_ARG);

	/* Once a set_* call succeeds the context owns that user_data and
	 * frees it through destroy_func; until then it is ours. */
	session.user_data = store_signal_data_new(store, ns);
	ret = signal_protocol_store_context_set_session_store(ctx, &session);
	if (ret < 0) {
		store_signal_destroy_cb(session.user_data);
		goto out;
	}
	pre_key.user_data = store_signal_data_new(store, ns);
	ret = signal_protocol_store_context_set_pre_key_store(ctx, &pre_key);
	if (ret < 0) {
		store_signal_destroy_cb(pre_key.user_data);
		goto out;
	}
	signed_pre_key.user_data = store_signal_data_new(store, ns);
	ret = signal_protocol_store_context_set_signed_pre_key_store(ctx, &signed_pre_key);
	if (ret < 0) {
		store_signal_destroy_cb(signed_pre_key.user_data);
		goto out;
	}
	identity.user_data = store_signal_data_new(store, ns);
	ret = signal_protocol_store_context_set_identity_key_store(ctx, &identity);
	if (ret < 0) {
		store_signal_destroy_cb(identity.user_data);
		goto out;
	}
	sender_key.user_data = store_signal_data_new(store, ns);
	ret = signal_protocol_store_context_set_sender_key_store(ctx, &sender_key);
	if (ret < 0) {
		store_signal_destroy_cb(sender_key.user_data);
		goto out;
	}
out:
	if (ret < 0)
		return store_fail(store, ret == SG_ERR_NOMEM ? OMEMO_ERR_NOMEM : OMEMO_ERR_INVALID_ARG);
	return 0;
}
