/*
 * Every OMEMO feature a user can reach, as plain functions returning text:
 * the /omemo command (and, later, menus and dialogs) are thin clients.
 */
#ifndef PURPLE_OMEMO_API_H
#define PURPLE_OMEMO_API_H

#include <stdint.h>

#include "manager.h"
#include "trust.h"

/* This device's id, fingerprint and the xmpp: URI that QR codes carry. */
char *api_own_fingerprint(manager_t *m);
/* jid's devices with fingerprints and trust, one per line. */
char *api_devices(manager_t *m, const char *jid);
/* Set the trust of device id of jid (its current identity key). 0 or an
 * error; *msg says what happened either way (g_free). */
int api_set_trust(manager_t *m, const char *jid, uint32_t id, trust_state state, char **msg);
/* Mark as verified the device of jid whose fingerprint is `typed`. */
int api_verify(manager_t *m, const char *jid, const char *typed, char **msg);
/* Remove a stale device of our own account from the published list. */
int api_remove_own_device(manager_t *m, uint32_t id, char **msg);

#endif
