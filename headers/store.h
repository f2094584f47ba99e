/*
 * The per-account SQLite database: the Signal library's state (own identity,
 * prekeys, signed prekeys, sessions, remote identities), the device lists of
 * every JID, trust decisions and per-conversation settings.
 *
 * One connection per account, kept open; WAL with synchronous=FULL, so each
 * commit is durable; prepared statements cached for the connection's life.
 * store_begin()/store_commit() nest: only the outermost pair touches SQLite,
 * so everything one message causes commits once.
 */
#ifndef PURPLE_OMEMO_STORE_H
#define PURPLE_OMEMO_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <signal_protocol.h>

typedef struct store store_t;

/* user_version of the schema this code writes. 1: first schema; 2: prekeys
 * gain used_at (marked used, purged later, instead of deleted). */
#define STORE_SCHEMA_VERSION 2

/* Open or create the database at path (the parent directory must exist).
 * A new file is created with mode 0600. Sets WAL, synchronous=FULL,
 * busy_timeout, foreign keys; creates or migrates the schema.
 * Errors: OMEMO_ERR_STORE_OPEN, _CORRUPT (not a database, or damaged: the file
 * is left as it is), _TOO_NEW (user_version above ours), _READONLY, _BUSY. */
int store_open(const char *path, store_t **out);
/* Uncommitted work is rolled back. NULL is fine. */
void store_close(store_t *store);
const char *store_path(const store_t *store);

/* Transactions (nesting). A rollback at any depth rolls back the whole
 * outermost transaction, and the commits of the enclosing levels then fail
 * with OMEMO_ERR_STORE until the outermost level ends; so do store_begin()
 * and every write in between (none of them may autocommit half the work).
 * store_commit() ends its level whether it succeeds or fails: a failed
 * outermost COMMIT is rolled back before it returns, so do not call
 * store_rollback() for the same level after it (at the outermost level that
 * is a harmless no-op; nested, it would end the enclosing level).
 * store_commit() without a store_begin() is OMEMO_ERR_INVALID_ARG;
 * store_rollback() without one does nothing. */
int store_begin(store_t *store);
int store_commit(store_t *store);
void store_rollback(store_t *store);
/* Inside an outermost transaction (one level open): whether a message
 * encrypted in it may leave before its commit. True when every session
 * record written so far in it replaced a record that the library itself
 * had written and that was committed. The store steps the sending chain
 * of every session record it reads from disk one key on
 * (records_session_step_sender), so if this transaction is never
 * committed (a crash, a full disk), the record read back next time skips
 * the keys this message used: none is used twice. A record first read in
 * this transaction (already stepped in memory, not on disk), a new
 * session, or a row the cache does not hold make it false: such a message
 * must wait for the commit. */
bool store_tx_may_send_early(const store_t *store);

/* Install every Signal store callback (identity, prekey, signed prekey,
 * session, sender key) on ctx, for the given namespace (sessions and remote
 * identities are keyed by namespace as well as address). The store must
 * outlive ctx. Callbacks follow libsignal's documented return contract;
 * contains_* return a negative code when the database fails (the library
 * checks for it). Register once per ctx: the library does not release
 * stores it replaces. A store failure inside a callback reaches the library
 * as SG_ERR_UNKNOWN (SG_ERR_NOMEM for memory); store_last_error() names it.
 * is_trusted_identity always answers 1: trust is decided above (trust.c). */
int store_signal_register(store_t *store, signal_protocol_store_context *ctx, const char *ns);

/* --- small typed key/value table for the engine's bookkeeping --- */
int store_meta_get_int(store_t *store, const char *key, int64_t *value); /* NOT_FOUND */
int store_meta_set_int(store_t *store, const char *key, int64_t value);

/* --- own identity --- */
/* OMEMO_ERR_NOT_FOUND when the account has none yet. Buffers: signal_buffer_free. */
int store_identity_get(store_t *store, uint32_t *device_id, uint32_t *registration_id,
                       signal_buffer **public_key, signal_buffer **private_key);
int store_identity_set(store_t *store, uint32_t device_id, uint32_t registration_id,
                       const uint8_t *public_key, size_t public_len,
                       const uint8_t *private_key, size_t private_len);

/* --- prekeys (the Signal callbacks also reach them) --- */
int store_prekey_save(store_t *store, uint32_t id, const uint8_t *record, size_t len);
/* 0 and *record, or OMEMO_ERR_NOT_FOUND. Used keys are still returned. */
int store_prekey_load(store_t *store, uint32_t id, signal_buffer **record);
/* The Signal library's remove_pre_key only marks a key used (at `now`, seconds):
 * a message delivered twice (offline storage and a copy) must still find it.
 * Ids of keys not yet used, ascending; *ids is g_malloc'd. */
int store_prekey_list_unused(store_t *store, uint32_t **ids, size_t *n);
/* Delete keys marked used before `before` (seconds). */
int store_prekey_purge_used(store_t *store, int64_t before);

/* --- signed prekeys --- */
int store_signed_prekey_save(store_t *store, uint32_t id, const uint8_t *record, size_t len,
                             int64_t created);
int store_signed_prekey_load(store_t *store, uint32_t id, signal_buffer **record);
/* All signed prekeys, newest first; arrays g_malloc'd. */
int store_signed_prekey_list(store_t *store, uint32_t **ids, int64_t **created, size_t *n);
int store_signed_prekey_remove(store_t *store, uint32_t id);

/* --- sessions (direct access besides the callbacks) --- */
/* false on errors too: store_last_error() tells them apart. */
bool store_session_exists(store_t *store, const char *ns, const char *jid, uint32_t device_id);
int store_session_delete(store_t *store, const char *ns, const char *jid, uint32_t device_id);
/* Devices of jid we hold a session with, ascending; *ids g_malloc'd. */
int store_session_devices(store_t *store, const char *ns, const char *jid, uint32_t **ids,
                          size_t *n);

/* --- remote identity keys as the Signal library saw them --- */
int store_remote_identity_get(store_t *store, const char *ns, const char *jid,
                              uint32_t device_id, signal_buffer **key); /* NOT_FOUND */

/* --- device lists of every JID (own included) --- */
typedef struct {
	uint32_t id;
	bool active;
	int64_t first_seen;
	int64_t last_seen;
} store_device;

/* The library context used to check session records read from disk (each
 * session state must parse on its own, see records.h); without one, only
 * their framing is checked. */
void store_set_signal_context(store_t *store, signal_context *ctx);

typedef struct {
	uint32_t device;
	uint8_t key[33]; /* OMEMO_PUBKEY_LEN */
} store_identity_row;

/* The identity keys of jid's devices that we hold sessions with, by
 * device; *rows g_free'd (NULL when n == 0). */
int store_remote_identities(store_t *store, const char *ns, const char *jid,
                            store_identity_row **rows, size_t *n);

/* Record the list just published by jid: listed ids become active (new ones
 * get first_seen = now), last_seen = now for them; ids not listed become
 * inactive (kept, so their trust and sessions survive a re-add). */
int store_devices_update(store_t *store, const char *ns, const char *jid, const uint32_t *ids,
                         size_t n, int64_t now);
/* Devices of jid ordered by id; *devices g_malloc'd (may be NULL when n == 0). */
int store_devices_get(store_t *store, const char *ns, const char *jid, bool active_only,
                      store_device **devices, size_t *n);
int store_device_remove(store_t *store, const char *ns, const char *jid, uint32_t id);

/* --- trust decisions per (jid, device, identity key) --- */
int store_trust_set(store_t *store, const char *jid, uint32_t device_id, const uint8_t *key,
                    size_t key_len, int state, int64_t now);
/* OMEMO_ERR_NOT_FOUND when no decision exists for exactly this key. */
int store_trust_get(store_t *store, const char *jid, uint32_t device_id, const uint8_t *key,
                    size_t key_len, int *state);

typedef struct {
	uint32_t device;
	uint8_t key[33]; /* OMEMO_PUBKEY_LEN */
	int state;
	int64_t updated;
} store_trust_row;

/* Every decision recorded for jid, by device then age; *rows g_free'd
 * (NULL when n == 0). */
int store_trust_list(store_t *store, const char *jid, store_trust_row **rows, size_t *n);

/* --- per-conversation settings (conv is a bare JID or room JID) --- */
int store_setting_set(store_t *store, const char *conv, const char *key, const char *value);
int store_setting_get(store_t *store, const char *conv, const char *key, char **value); /* g_free; NOT_FOUND */

/* The OMEMO_ERR_STORE_* code of the most recent failed store operation, or 0
 * when the most recent operation succeeded. The engine asks after the Signal
 * library reports a failure, to tell a full disk from a broken message.
 * Operations are the public functions and the Signal callbacks; each resets
 * it. Besides OMEMO_ERR_STORE_* it can be OMEMO_ERR_NOMEM,
 * OMEMO_ERR_INVALID_ARG, or OMEMO_ERR_NO_IDENTITY (the library asked for the
 * own identity or registration id before there was one). "Not found"
 * answers are not failures. NULL store: OMEMO_ERR_INVALID_ARG. */
int store_last_error(const store_t *store);

/* --- statistics, for the benchmark and tests --- */
typedef struct {
	uint64_t commits;      /* outermost transactions committed, autocommit writes included */
	uint64_t rollbacks;    /* outermost transactions rolled back (failed commits included) */
} store_stats;
/* Counted since store_open() (schema migrations are not). */
void store_get_stats(const store_t *store, store_stats *stats);

#endif
