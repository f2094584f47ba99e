/*
 * One OMEMO manager per XMPP account: it owns the account's engine, keeps
 * the own device list and bundle published, learns contacts' device lists
 * and bundles, and turns the messages the user sends and receives into
 * OMEMO and back. plugin.c feeds it libpurple's signals.
 */
#ifndef PURPLE_OMEMO_MANAGER_H
#define PURPLE_OMEMO_MANAGER_H

#include <stdbool.h>

#include <account.h>
#include <connection.h>
#include <xmlnode.h>

#include "engine.h"

typedef struct manager manager_t;

#define MANAGER_PREF_ROOT "/plugins/core/purple-omemo"
#define MANAGER_PREF_CARBONS MANAGER_PREF_ROOT "/carbons"
/* Ask about every new device (manual) instead of BTBV, for accounts that
 * did not choose themselves. */
#define MANAGER_PREF_TRUST_MANUAL MANAGER_PREF_ROOT "/trust_manual"
/* OMEMO on by itself for contacts who publish devices. */
#define MANAGER_PREF_DEFAULT_ON MANAGER_PREF_ROOT "/default_on"
/* Verbose OMEMO lines in the debug log. */
#define MANAGER_PREF_DEBUG MANAGER_PREF_ROOT "/debug"
/* Messages from distrusted devices: a notice instead of the marked text. */
#define MANAGER_PREF_HIDE_DISTRUSTED MANAGER_PREF_ROOT "/hide_distrusted"
/* Account setting: ask about every new device instead of BTBV. */
#define MANAGER_ACCOUNT_TRUST_MANUAL "omemo-trust-manual"

/* Register the plugin's preferences with their defaults. */
void manager_prefs_init(void);

/* Per-conversation choice, persisted in the store. */
typedef enum {
	MANAGER_MODE_AUTO = 0, /* on when the contact publishes OMEMO devices */
	MANAGER_MODE_ON,
	MANAGER_MODE_OFF,
} manager_mode;

/* Start managing a connected account (opens its store, publishes the own
 * device). Idempotent. */
void manager_account_connected(PurpleConnection *gc);
/* The account signs off: pending requests are cancelled, queued messages
 * reported as not sent, the store closed. */
void manager_account_disconnecting(PurpleConnection *gc);
/* Unload: every account, as above. */
void manager_shutdown(void);

manager_t *manager_find(PurpleAccount *account);
engine_t *manager_engine(manager_t *m);

/* "jabber-receiving-xmlnode": true when the stanza was ours to consume. */
bool manager_receiving(PurpleConnection *gc, xmlnode **packet);
/* "jabber-sending-xmlnode": encrypts what must be encrypted, stops what
 * must not leave in plaintext. */
void manager_sending(PurpleConnection *gc, xmlnode **packet);
/* "sending-im-msg": takes over a message typed into a conversation where
 * OMEMO is (or may be) on; sets *message to NULL when it did. */
void manager_sending_im(PurpleAccount *account, const char *receiver, char **message);

manager_mode manager_get_mode(manager_t *m, const char *jid);
int manager_set_mode(manager_t *m, const char *jid, manager_mode mode);
/* Whether the next message to jid would be encrypted, and a sentence
 * saying why (g_free). */
bool manager_describe(manager_t *m, const char *jid, char **why);

/* Publish our device list without device id (a stale device of ours).
 * OMEMO_ERR_NOT_FOUND when it is not in the list. */
int manager_remove_own_device(manager_t *m, uint32_t id);

/* Write a notice into the IM conversation with jid (created if needed). */
void manager_notice(PurpleAccount *account, const char *jid, const char *text);

#endif
