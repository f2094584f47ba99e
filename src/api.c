/*
 * The user-reachable features over the manager, the engine and the trust
 * store: fingerprints, device lists, trust decisions, own device removal.
 * Each returns a sentence for the user; no UI code here.
 */
#include <string.h>
#include <time.h>

#include <glib.h>

#include "api.h"
#include "err.h"
#include "i18n.h"
#include "store.h"

char *api_own_fingerprint(manager_t *m)
{
	engine_t *e = manager_engine(m);
	char *fp = engine_fingerprint_format(engine_identity_key(e), OMEMO_PUBKEY_LEN);
	char *hex = engine_fingerprint_hex(engine_identity_key(e), OMEMO_PUBKEY_LEN);
	char *text = g_strdup_printf(_("This device: %u. Fingerprint: %s. For a QR code: "
	                               "xmpp:%s?omemo-sid-%u=%s"),
	                             engine_device_id(e), fp, engine_own_jid(e), engine_device_id(e),
	                             hex);

	g_free(fp);
	g_free(hex);
	return text;
}

/* The current identity key of a device, and the trust decision for it. */
static bool device_key(manager_t *m, const char *jid, uint32_t id, uint8_t ik[OMEMO_PUBKEY_LEN],
                       trust_state *st)
{
	engine_t *e = manager_engine(m);
	int v;

	if (engine_remote_identity(e, jid, id, ik) < 0)
		return false;
	if (store_trust_get(engine_store(e), jid, id, ik, OMEMO_PUBKEY_LEN, &v) == 0)
		*st = (trust_state)v;
	else
		*st = TRUST_UNDECIDED;
	return true;
}

char *api_devices(manager_t *m, const char *jid)
{
	engine_t *e = manager_engine(m);
	store_device *devs = NULL;
	size_t n = 0;
	GString *s = g_string_new(NULL);
	bool own = strcmp(jid, engine_own_jid(e)) == 0;

	if (store_devices_get(engine_store(e), OMEMO_NS_LEGACY, jid, false, &devs, &n) < 0 || n == 0) {
		g_string_printf(s, _("No OMEMO devices known for %s."), jid);
		g_free(devs);
		return g_string_free(s, FALSE);
	}
	g_string_printf(s, _("OMEMO devices of %s:"), jid);
	for (size_t i = 0; i < n; i++) {
		uint8_t ik[OMEMO_PUBKEY_LEN];
		trust_state st;
		char *fp;

		g_string_append_printf(s, "\n%u", devs[i].id);
		if (own && devs[i].id == engine_device_id(e)) {
			fp = engine_fingerprint_format(engine_identity_key(e), OMEMO_PUBKEY_LEN);
			g_string_append_printf(s, _(" (this device): %s"), fp);
			g_free(fp);
			continue;
		}
		if (!devs[i].active)
			g_string_append(s, _(" (no longer in the device list)"));
		if (device_key(m, jid, devs[i].id, ik, &st)) {
			fp = engine_fingerprint_format(ik, OMEMO_PUBKEY_LEN);
			g_string_append_printf(s, ": %s, %s", fp, trust_state_name(st));
			g_free(fp);
		} else {
			g_string_append(s, _(": no session yet (its key is fetched with the next "
			                     "message)"));
		}
	}
	g_free(devs);
	return g_string_free(s, FALSE);
}

int api_set_trust(manager_t *m, const char *jid, uint32_t id, trust_state state, char **msg)
{
	engine_t *e = manager_engine(m);
	uint8_t ik[OMEMO_PUBKEY_LEN];
	trust_state old;
	int ret;

	if (!device_key(m, jid, id, ik, &old)) {
		*msg = g_strdup_printf(_("No device %u of %s with a known key. \"/omemo devices\" "
		                         "lists them."),
		                       id, jid);
		return OMEMO_ERR_NOT_FOUND;
	}
	ret = trust_set(engine_store(e), jid, id, ik, state, time(NULL));
	if (ret < 0)
		*msg = g_strdup_printf(_("Could not save the decision: %s"), omemo_strerror(ret));
	else
		*msg = g_strdup_printf(_("Device %u of %s is now %s."), id, jid,
		                       trust_state_name(state));
	return ret;
}

int api_verify(manager_t *m, const char *jid, const char *typed, char **msg)
{
	engine_t *e = manager_engine(m);
	store_device *devs = NULL;
	size_t n = 0;
	int ret = OMEMO_ERR_NOT_FOUND;

	if (store_devices_get(engine_store(e), OMEMO_NS_LEGACY, jid, false, &devs, &n) == 0) {
		for (size_t i = 0; i < n; i++) {
			uint8_t ik[OMEMO_PUBKEY_LEN];
			trust_state st;

			if (device_key(m, jid, devs[i].id, ik, &st) &&
			    trust_fingerprint_matches(typed, ik)) {
				ret = api_set_trust(m, jid, devs[i].id, TRUST_VERIFIED, msg);
				break;
			}
		}
	}
	g_free(devs);
	if (ret == OMEMO_ERR_NOT_FOUND)
		*msg = g_strdup_printf(_("That fingerprint belongs to no known device of %s: nothing "
		                         "was changed. Compare it again with \"/omemo devices\"."),
		                       jid);
	return ret;
}

int api_remove_own_device(manager_t *m, uint32_t id, char **msg)
{
	engine_t *e = manager_engine(m);
	int ret;

	if (id == engine_device_id(e)) {
		*msg = g_strdup(_("This device cannot remove itself."));
		return OMEMO_ERR_INVALID_ARG;
	}
	ret = manager_remove_own_device(m, id);
	if (ret == OMEMO_ERR_NOT_FOUND)
		*msg = g_strdup_printf(_("Device %u is not in your device list."), id);
	else if (ret < 0)
		*msg = g_strdup_printf(_("Could not remove device %u: %s"), id, omemo_strerror(ret));
	else
		*msg = g_strdup_printf(_("Device %u was removed from your published device list."),
		                       id);
	return ret;
}
