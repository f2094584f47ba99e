/*
 * Every OMEMO feature a user can reach, as plain functions returning text
 * or plain data: the /omemo command, the menus and the dialogs are thin
 * clients.
 */
#ifndef PURPLE_OMEMO_API_H
#define PURPLE_OMEMO_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <account.h>

#include "manager.h"
#include "omemo_types.h"
#include "trust.h"

/* This device's id, fingerprint and the xmpp: URI that QR codes carry. */
char *api_own_fingerprint(manager_t *m);
/* Only the URI: xmpp:JID?omemo-sid-ID=HEX (g_free). */
char *api_own_uri(manager_t *m);
/* jid's devices with fingerprints and trust, one per line. */
char *api_devices(manager_t *m, const char *jid);
/* Set the trust of device id of jid (its current identity key). 0 or an
 * error; *msg says what happened either way (g_free). */
int api_set_trust(manager_t *m, const char *jid, uint32_t id, trust_state state, char **msg);
/* The same, but only while the device's key is still ik, the key the user
 * was shown: a key that changed meanwhile is left undecided. */
int api_set_trust_for_key(manager_t *m, const char *jid, uint32_t id,
                          const uint8_t ik[OMEMO_PUBKEY_LEN], trust_state state, char **msg);
/* Mark as verified the device of jid whose fingerprint is `typed`. */
int api_verify(manager_t *m, const char *jid, const char *typed, char **msg);
/* Remove a stale device of our own account from the published list. */
int api_remove_own_device(manager_t *m, uint32_t id, char **msg);

/* One device of a JID, as the dialogs show it. */
typedef struct {
	uint32_t id;
	bool listed;      /* gets our messages: in the JID's device list, or
	                   * writing to us over a session although no list
	                   * names it */
	bool in_list;     /* in the device list the JID last published */
	bool this_device; /* our own device (own JID only) */
	bool has_key;     /* identity key known: a session exists (or this_device) */
	uint8_t ik[OMEMO_PUBKEY_LEN];
	trust_state trust; /* decision for ik; TRUST_UNDECIDED without a key */
	int64_t first_seen; /* seconds; 0 when not recorded */
	int64_t last_seen;  /* last device list that named it; 0 when never */
} api_device;

/* Every device known for jid, ascending by id (for the own JID, this
 * device is always among them). *out g_free'd; NULL when n == 0. */
int api_device_list(manager_t *m, const char *jid, api_device **out, size_t *n);

/* The outcome of api_server_check: a report in plain words, one point per
 * line, or NULL when the check was cancelled (the account went offline or
 * the plugin is unloading). */
typedef void (*api_server_cb)(PurpleAccount *account, const char *report, void *data);
/* Ask the account's server (service discovery on the account's bare JID
 * and on the server domain) what OMEMO relies on: PEP, publish-options,
 * message carbons, the message archive. cb runs once, later, unless this
 * returns an error (OMEMO_ERR_NOT_FOUND: the account is not connected). */
int api_server_check(manager_t *m, api_server_cb cb, void *data);

/* Why OMEMO does not work for an account without a server (Bonjour,
 * XEP-0174 link-local messaging), and what to use instead. */
const char *api_serverless_explanation(void);
/* Whether account is of such a protocol. */
bool api_account_is_serverless(PurpleAccount *account);

#endif
