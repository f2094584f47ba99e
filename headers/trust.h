/*
 * Trust decisions per (contact, device, identity key): undecided, trusted
 * blindly, verified, distrusted. Blind trust before verification (BTBV,
 * as Conversations and Dino do) is the default: a contact's new devices
 * are trusted blindly until the user verifies one of that contact's
 * devices; after that a new device is undecided until the user decides.
 * In manual mode every new device is undecided. A known device id that
 * shows up with another identity key is a new, undecided key: never
 * accepted silently. No libpurple here: the caller tells the user.
 */
#ifndef PURPLE_OMEMO_TRUST_H
#define PURPLE_OMEMO_TRUST_H

#include <stdbool.h>
#include <stdint.h>

#include "omemo_types.h"
#include "store.h"

typedef enum {
	TRUST_UNDECIDED = 0,
	TRUST_BLIND = 1,
	TRUST_VERIFIED = 2,
	TRUST_DISTRUSTED = 3,
} trust_state;

typedef enum {
	TRUST_MODE_BTBV = 0,
	TRUST_MODE_MANUAL = 1,
} trust_mode;

typedef struct {
	trust_state state;
	bool is_new;      /* first time this key was seen for this device */
	bool key_changed; /* the device was known with another key */
} trust_result;

/* The state of device `device` of jid with identity key ik, deciding (and
 * recording) a first-seen key by the mode's rule. */
int trust_evaluate(store_t *store, trust_mode mode, const char *jid, uint32_t device,
                   const uint8_t ik[OMEMO_PUBKEY_LEN], int64_t now, trust_result *out);

/* The same with jid's decisions already read (store_trust_list), for
 * callers deciding about several devices of one JID at once. */
int trust_evaluate_rows(store_t *store, trust_mode mode, const char *jid, uint32_t device,
                        const uint8_t ik[OMEMO_PUBKEY_LEN], const store_trust_row *rows, size_t n,
                        int64_t now, trust_result *out);
/* Record the user's decision for this key. */
int trust_set(store_t *store, const char *jid, uint32_t device,
              const uint8_t ik[OMEMO_PUBKEY_LEN], trust_state state, int64_t now);

/* Whether messages may be encrypted to (and are unmarked from) a device in
 * this state. */
bool trust_is_trusted(trust_state state);

/* Whether the user has verified any device of jid. */
bool trust_has_verified(store_t *store, const char *jid);

/* Compare a fingerprint typed by the user (spaces, colons and case ignored)
 * with the 33-byte identity key ik. */
bool trust_fingerprint_matches(const char *typed, const uint8_t ik[OMEMO_PUBKEY_LEN]);

/* A readable name for a state (translated). */
const char *trust_state_name(trust_state state);

#endif
