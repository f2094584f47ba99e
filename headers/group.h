/*
 * Who a message reaches: for a set of JIDs (a contact, the members of a
 * room, our own account), the devices to encrypt for, whether each has a
 * session, its identity key and its trust, read with a few queries per
 * JID. No libpurple here: the manager tells the user about new keys and
 * fetches what is missing.
 */
#ifndef PURPLE_OMEMO_GROUP_H
#define PURPLE_OMEMO_GROUP_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "engine.h"
#include "trust.h"

/* The device ids of jid to encrypt for: those active in its published
 * list, and those with a session that never appeared in any list (a client
 * whose server dropped its publish). skip_id (0: none) is left out, for
 * our own device. A GArray of uint32_t. */
GArray *group_active_devices(engine_t *engine, const char *jid, uint32_t skip_id);

/* Those of them without a session: bundles to fetch. */
GArray *group_devices_without_session(engine_t *engine, const char *jid, uint32_t skip_id);

typedef struct {
	const char *jid; /* as given to group_candidates, not copied */
	uint32_t device;
	bool has_session;
	/* With a session only: */
	uint8_t ik[OMEMO_PUBKEY_LEN];
	trust_result trust; /* a first-seen key is decided and recorded */
} group_device;

/* Every active device of jids[0..n) (our own device left out), with its
 * session, identity key and trust. *out is a GArray of group_device
 * (g_array_free). */
int group_candidates(engine_t *engine, trust_mode mode, const char *const *jids, size_t n,
                     int64_t now, GArray **out);

#endif
