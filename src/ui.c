/*
 * The prompts and dialogs of the plugin, on purple_request_*: they look
 * native in Pidgin and in Finch alike. Decisions go through api.c.
 */
#include <string.h>

#include <glib.h>

#include <request.h>

#include "api.h"
#include "i18n.h"
#include "ui.h"
#include "xmpp.h"

static PurplePlugin *ui_plugin;
static GList *open_prompts; /* new_device_ctx of prompts still shown */

typedef struct {
	PurpleAccount *account;
	char *jid;
	uint32_t id;
} new_device_ctx;

void ui_init(PurplePlugin *plugin)
{
	ui_plugin = plugin;
}

static void new_device_apply(new_device_ctx *c, trust_state state)
{
	manager_t *m = manager_find(c->account);
	char *msg = NULL;

	if (m) {
		api_set_trust(m, c->jid, c->id, state, &msg);
		manager_notice(c->account, c->jid, msg);
	}
	g_free(msg);
}

static void new_device_free(new_device_ctx *c)
{
	open_prompts = g_list_remove(open_prompts, c);
	g_free(c->jid);
	g_free(c);
}

void ui_shutdown(void)
{
	/* Closing a request runs none of its callbacks: free what they
	 * would have freed. */
	if (ui_plugin)
		purple_request_close_with_handle(ui_plugin);
	while (open_prompts)
		new_device_free(open_prompts->data);
	ui_plugin = NULL;
}

static void verified_cb(void *data, int action)
{
	new_device_apply(data, TRUST_VERIFIED);
	new_device_free(data);
}

static void trusted_cb(void *data, int action)
{
	new_device_apply(data, TRUST_BLIND);
	new_device_free(data);
}

static void distrusted_cb(void *data, int action)
{
	new_device_apply(data, TRUST_DISTRUSTED);
	new_device_free(data);
}

static void later_cb(void *data, int action)
{
	new_device_free(data);
}

void ui_ask_new_device(PurpleAccount *account, const char *jid, uint32_t id,
                       const uint8_t ik[OMEMO_PUBKEY_LEN], bool key_changed)
{
	new_device_ctx *c;
	char *fp, *primary, *secondary;

	if (!ui_plugin)
		return;
	c = g_new0(new_device_ctx, 1);
	c->account = account;
	c->jid = g_strdup(jid);
	c->id = id;
	open_prompts = g_list_prepend(open_prompts, c);
	fp = engine_fingerprint_format(ik, OMEMO_PUBKEY_LEN);
	primary = key_changed ? g_strdup_printf(_("Device %u of %s has a new key"), id, jid)
	                      : g_strdup_printf(_("%s has a new device (%u)"), jid, id);
	secondary = g_strdup_printf(
		_("Fingerprint: %s\n\nCompare it with the one the contact's device shows (in person "
		  "or by a call). Until you decide, nothing is encrypted for this device."),
		fp ? fp : "?");
	purple_request_action(ui_plugin, _("OMEMO: new device"), primary, secondary, 3, account,
	                      jid, NULL, c, 4, _("_Verified: the fingerprints match"), verified_cb,
	                      _("_Trust without verifying"), trusted_cb, _("_Distrust"),
	                      distrusted_cb, _("Decide _later"), later_cb);
	g_free(fp);
	g_free(primary);
	g_free(secondary);
}
