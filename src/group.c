/*
 * The recipients of a message: which devices of which JIDs, with session,
 * identity key and trust, gathered per JID with one query for its device
 * list, one for its sessions and one for its trust decisions, so a room of
 * hundreds of devices costs a few hundred microseconds.
 */
#include <string.h>

#include "err.h"
#include "group.h"
#include "store.h"

static bool ids_have(const uint32_t *ids, size_t n, uint32_t id)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

static bool identity_of(const store_identity_row *iks, size_t n, uint32_t device,
                        uint8_t ik[OMEMO_PUBKEY_LEN])
{
	for (size_t i = 0; i < n; i++)
		if (iks[i].device == device) {
			memcpy(ik, iks[i].key, OMEMO_PUBKEY_LEN);
			return true;
		}
	return false;
}

/* Active listed devices, then session-only ones; sess (n_sess) are the
 * ids with a session. */
static GArray *active_from(store_t *st, const char *jid, uint32_t skip_id, const uint32_t *sess,
                           size_t n_sess)
{
	store_device *devs = NULL;
	size_t n = 0;
	GArray *ids = g_array_new(FALSE, FALSE, sizeof(uint32_t));

	if (store_devices_get(st, OMEMO_NS_LEGACY, jid, false, &devs, &n) < 0)
		n = 0;
	for (size_t i = 0; i < n; i++)
		if (devs[i].active && devs[i].id != skip_id)
			g_array_append_val(ids, devs[i].id);
	/* A device the list dropped stays out, though its session remains. */
	for (size_t i = 0; i < n_sess; i++) {
		bool listed = false;

		for (size_t j = 0; j < n && !listed; j++)
			listed = devs[j].id == sess[i];
		if (!listed && sess[i] != skip_id)
			g_array_append_val(ids, sess[i]);
	}
	g_free(devs);
	return ids;
}

GArray *group_devices_without_session(engine_t *engine, const char *jid, uint32_t skip_id)
{
	store_t *st = engine_store(engine);
	uint32_t *sess = NULL;
	size_t n_sess = 0;
	GArray *ids, *out = g_array_new(FALSE, FALSE, sizeof(uint32_t));

	if (store_session_devices(st, OMEMO_NS_LEGACY, jid, &sess, &n_sess) < 0)
		n_sess = 0;
	ids = active_from(st, jid, skip_id, sess, n_sess);
	for (guint i = 0; i < ids->len; i++)
		if (!ids_have(sess, n_sess, g_array_index(ids, uint32_t, i)))
			g_array_append_val(out, g_array_index(ids, uint32_t, i));
	g_array_free(ids, TRUE);
	g_free(sess);
	return out;
}

GArray *group_active_devices(engine_t *engine, const char *jid, uint32_t skip_id)
{
	store_t *st = engine_store(engine);
	uint32_t *sess = NULL;
	size_t n_sess = 0;
	GArray *ids;

	if (store_session_devices(st, OMEMO_NS_LEGACY, jid, &sess, &n_sess) < 0)
		n_sess = 0;
	ids = active_from(st, jid, skip_id, sess, n_sess);
	g_free(sess);
	return ids;
}

int group_candidates(engine_t *engine, trust_mode mode, const char *const *jids, size_t n,
                     int64_t now, GArray **out)
{
	store_t *st;
	GArray *all;
	int ret = 0;

	if (!engine || !out || (n && !jids))
		return OMEMO_ERR_INVALID_ARG;
	st = engine_store(engine);
	all = g_array_new(FALSE, TRUE, sizeof(group_device));
	for (size_t j = 0; j < n; j++) {
		uint32_t *sess = NULL;
		size_t n_sess = 0;
		store_trust_row *rows = NULL;
		size_t n_rows = 0;
		store_identity_row *iks = NULL;
		size_t n_iks = 0;
		bool own = strcmp(jids[j], engine_own_jid(engine)) == 0;
		GArray *ids;

		ret = store_session_devices(st, OMEMO_NS_LEGACY, jids[j], &sess, &n_sess);
		if (ret < 0)
			goto out;
		ids = active_from(st, jids[j], own ? engine_device_id(engine) : 0, sess, n_sess);
		if (ids->len)
			ret = store_trust_list(st, jids[j], &rows, &n_rows);
		if (ret == 0 && n_sess)
			ret = store_remote_identities(st, OMEMO_NS_LEGACY, jids[j], &iks, &n_iks);
		for (guint i = 0; ret == 0 && i < ids->len; i++) {
			group_device d = { 0 };

			d.jid = jids[j];
			d.device = g_array_index(ids, uint32_t, i);
			d.has_session = ids_have(sess, n_sess, d.device) &&
			                identity_of(iks, n_iks, d.device, d.ik);
			if (d.has_session)
				ret = trust_evaluate_rows(st, mode, d.jid, d.device, d.ik, rows, n_rows,
				                          now, &d.trust);
			if (ret == 0)
				g_array_append_val(all, d);
		}
		g_array_free(ids, TRUE);
		g_free(rows);
		g_free(iks);
		g_free(sess);
		if (ret < 0)
			goto out;
	}
out:
	if (ret < 0) {
		g_array_free(all, TRUE);
		return ret;
	}
	*out = all;
	return 0;
}
