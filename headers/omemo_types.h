/*
 * Plain C forms of the legacy OMEMO (eu.siacs.conversations.axolotl) wire
 * objects. wire.c fills them from xmlnode trees and builds trees from them;
 * engine.c consumes and produces them. No XML and no libpurple here.
 */
#ifndef PURPLE_OMEMO_TYPES_H
#define PURPLE_OMEMO_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OMEMO_NS_LEGACY "eu.siacs.conversations.axolotl"
#define OMEMO_NODE_DEVICELIST OMEMO_NS_LEGACY ".devicelist"
#define OMEMO_NODE_BUNDLES_PREFIX OMEMO_NS_LEGACY ".bundles:"

#define OMEMO_DEVICE_ID_MIN 1u
#define OMEMO_DEVICE_ID_MAX 0x7fffffffu

#define OMEMO_PUBKEY_LEN 33 /* 0x05 || X25519 public key */
#define OMEMO_SIGNATURE_LEN 64
#define OMEMO_BUNDLE_MIN_PREKEYS 20
#define OMEMO_BUNDLE_MAX_PREKEYS 1000
#define OMEMO_PAYLOAD_MAX (1024 * 1024) /* decoded bytes */
#define OMEMO_KEY_MAX 4096              /* decoded bytes of one <key> */
#define OMEMO_MESSAGE_MAX_KEYS 10000    /* <key> elements in one header */
#define OMEMO_DEVICELIST_MAX 1000       /* ids in one device list */

/* A device list: unique ids, in the order first seen. */
typedef struct {
	uint32_t *ids;
	size_t n_ids;
} omemo_devicelist;

typedef struct {
	uint32_t id;
	uint8_t key[OMEMO_PUBKEY_LEN];
} omemo_prekey_pub;

/* A device's published bundle. */
typedef struct {
	uint32_t spk_id;
	uint8_t spk[OMEMO_PUBKEY_LEN];
	uint8_t spk_sig[OMEMO_SIGNATURE_LEN];
	uint8_t ik[OMEMO_PUBKEY_LEN];
	omemo_prekey_pub *prekeys;
	size_t n_prekeys;
} omemo_bundle;

/* One <key rid=...> of a header: a serialized (PreKey)WhisperMessage. */
typedef struct {
	uint32_t rid;
	bool prekey; /* prekey='true'/'1'; false may still be one (lurch) */
	uint8_t *data;
	size_t len;
} omemo_key;

/* The <encrypted> element. payload == NULL means a key-transport message. */
typedef struct {
	uint32_t sid;
	omemo_key *keys;
	size_t n_keys;
	uint8_t *iv;
	size_t iv_len;
	uint8_t *payload;
	size_t payload_len;
} omemo_message;

/* Free the contents (not the struct itself); safe on a zeroed struct. */
void omemo_devicelist_clear(omemo_devicelist *list);
void omemo_bundle_clear(omemo_bundle *bundle);
void omemo_message_clear(omemo_message *msg);

#endif
