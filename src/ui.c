/*
 * What the user sees besides the /omemo command: the new-device prompt, the
 * plugin actions (own fingerprint, own devices, server check), the buddy
 * menu (OMEMO on/off, fingerprints and trust) and the preferences page.
 * Only libpurple's request, notify, plugin action and blist menu APIs, so
 * Pidgin and Finch look native alike; every decision goes through api.c.
 */
#include <string.h>
#include <time.h>

#include <glib.h>

#include <connection.h>
#include <core.h>
#include <notify.h>
#include <request.h>

#include "api.h"
#include "err.h"
#include "i18n.h"
#include "muc.h"
#include "ui.h"
#include "xmpp.h"

static PurplePlugin *ui_plugin;
/* Context of every request still shown -> the function that frees it.
 * libpurple runs no callback for a request it closes itself (unload), so
 * whatever is still here then is freed by ui_shutdown(). */
static GHashTable *open_requests;

/* The order of the choices in the trust dialog. */
static const trust_state trust_choices[] = {
	TRUST_UNDECIDED,
	TRUST_BLIND,
	TRUST_VERIFIED,
	TRUST_DISTRUSTED,
};

void ui_init(PurplePlugin *plugin)
{
	ui_plugin = plugin;
	if (!open_requests)
		open_requests = g_hash_table_new(g_direct_hash, g_direct_equal);
}

static void request_track(void *ctx, GDestroyNotify free_fn)
{
	g_hash_table_insert(open_requests, ctx, free_fn);
}

/* The request of ctx is over (answered or cancelled): free ctx. */
static void request_done(void *ctx)
{
	GDestroyNotify free_fn;

	if (!open_requests)
		return;
	free_fn = g_hash_table_lookup(open_requests, ctx);
	if (!free_fn)
		return;
	g_hash_table_remove(open_requests, ctx);
	free_fn(ctx);
}

void ui_shutdown(void)
{
	GHashTableIter it;
	gpointer ctx, free_fn;

	if (ui_plugin)
		purple_request_close_with_handle(ui_plugin);
	if (open_requests) {
		g_hash_table_iter_init(&it, open_requests);
		while (g_hash_table_iter_next(&it, &ctx, &free_fn)) {
			g_hash_table_iter_steal(&it);
			((GDestroyNotify)free_fn)(ctx);
		}
		g_hash_table_destroy(open_requests);
		open_requests = NULL;
	}
	ui_plugin = NULL;
}

char *ui_text_to_html(const char *text)
{
	char *esc = g_markup_escape_text(text ? text : "", -1);
	char **lines = g_strsplit(esc, "\n", -1);
	char *html = g_strjoinv("<br>", lines);

	g_strfreev(lines);
	g_free(esc);
	return html;
}

/* ---- new device prompt ---- */

typedef struct {
	PurpleAccount *account;
	char *jid;
	uint32_t id;
} new_device_ctx;

static void new_device_free(void *p)
{
	new_device_ctx *c = p;

	g_free(c->jid);
	g_free(c);
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

static void verified_cb(void *data, int action)
{
	new_device_apply(data, TRUST_VERIFIED);
	request_done(data);
}

static void trusted_cb(void *data, int action)
{
	new_device_apply(data, TRUST_BLIND);
	request_done(data);
}

static void distrusted_cb(void *data, int action)
{
	new_device_apply(data, TRUST_DISTRUSTED);
	request_done(data);
}

static void later_cb(void *data, int action)
{
	request_done(data);
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
	request_track(c, new_device_free);
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

/* ---- helpers ---- */

/* Managers of the connected accounts, in connection order. */
static GList *online_managers(void)
{
	GList *out = NULL;

	for (GList *l = purple_connections_get_all(); l; l = l->next) {
		PurpleConnection *gc = l->data;
		manager_t *m;

		if (purple_connection_get_state(gc) != PURPLE_CONNECTED)
			continue;
		m = manager_find(purple_connection_get_account(gc));
		if (m)
			out = g_list_append(out, m);
	}
	return out;
}

static PurpleAccount *manager_account(manager_t *m)
{
	for (GList *l = purple_connections_get_all(); l; l = l->next) {
		PurpleAccount *account = purple_connection_get_account(l->data);

		if (manager_find(account) == m)
			return account;
	}
	return NULL;
}

static char *date_text(int64_t when)
{
	time_t t = (time_t)when;
	struct tm tm;

	if (when <= 0 || !localtime_r(&t, &tm))
		return g_strdup(_("unknown"));
	return g_strdup(purple_date_format_long(&tm));
}

static void notify_lines(const char *title, const char *primary, const char *text)
{
	char *html = ui_text_to_html(text);

	purple_notify_formatted(ui_plugin, title, primary, NULL, html, NULL, NULL);
	g_free(html);
}

/* ---- plugin action: Show my fingerprint ---- */

static void show_fingerprint_cb(PurplePluginAction *action)
{
	GList *ms = online_managers();
	GString *html = g_string_new(NULL);

	for (GList *l = ms; l; l = l->next) {
		engine_t *e = manager_engine(l->data);
		char *fp = engine_fingerprint_format(engine_identity_key(e), OMEMO_PUBKEY_LEN);
		char *uri = api_own_uri(l->data);
		/* TRANSLATORS: markup; keep the tags. %s: account, %u: device
		 * id, %s: fingerprint, %s: xmpp: link. */
		char *line = g_markup_printf_escaped(_("<b>%s</b><br>This device: %u<br>Fingerprint: "
		                                       "%s<br>For a QR code: %s"),
		                                     engine_own_jid(e), engine_device_id(e),
		                                     fp ? fp : "?", uri);

		if (html->len)
			g_string_append(html, "<br><br>");
		g_string_append(html, line);
		g_free(line);
		g_free(uri);
		g_free(fp);
	}
	if (!ms)
		purple_notify_info(ui_plugin, _("My OMEMO fingerprint"),
		                   _("No XMPP account with OMEMO is online."), NULL);
	else
		purple_notify_formatted(ui_plugin, _("My OMEMO fingerprint"),
		                        _("Your OMEMO fingerprints"),
		                        _("Your contacts compare these with what their devices show "
		                          "for you, or scan the xmpp: link as a QR code."),
		                        html->str, NULL, NULL);
	g_string_free(html, TRUE);
	g_list_free(ms);
}

/* ---- plugin action: Manage my devices ---- */

typedef struct {
	PurpleAccount *account;
	uint32_t *ids; /* other devices offered for removal */
	size_t n;
} own_devices_ctx;

static void own_devices_free(void *p)
{
	own_devices_ctx *c = p;

	g_free(c->ids);
	g_free(c);
}

static void own_devices_ok_cb(void *data, PurpleRequestFields *fields)
{
	own_devices_ctx *c = data;
	manager_t *m = manager_find(c->account);
	GString *out = g_string_new(NULL);

	for (size_t i = 0; m && i < c->n; i++) {
		char id[32], *msg = NULL;

		g_snprintf(id, sizeof(id), "remove-%u", c->ids[i]);
		if (!purple_request_fields_get_bool(fields, id))
			continue;
		api_remove_own_device(m, c->ids[i], &msg);
		g_string_append_printf(out, "%s%s", out->len ? "\n" : "", msg);
		g_free(msg);
	}
	if (!m)
		notify_lines(_("My OMEMO devices"), NULL,
		             _("The account went offline: nothing was changed."));
	else if (out->len)
		notify_lines(_("My OMEMO devices"), purple_account_get_username(c->account),
		             out->str);
	g_string_free(out, TRUE);
	request_done(c);
}

static void own_devices_cancel_cb(void *data, PurpleRequestFields *fields)
{
	request_done(data);
}

static void own_devices_open(manager_t *m, PurpleAccount *account)
{
	const char *own = engine_own_jid(manager_engine(m));
	PurpleRequestFields *fields;
	PurpleRequestFieldGroup *g;
	own_devices_ctx *c;
	api_device *devs = NULL;
	size_t n = 0;
	GString *text;
	char *primary;
	int ret;

	ret = api_device_list(m, own, &devs, &n);
	if (ret < 0) {
		char *msg = g_strdup_printf(_("Your devices could not be read: %s"),
		                            omemo_strerror(ret));

		purple_notify_error(ui_plugin, _("My OMEMO devices"), own, msg);
		g_free(msg);
		return;
	}
	/* What each device is goes into the explanation (Finch shows no label
	 * fields); the fields are only the tick boxes. */
	text = g_string_new(NULL);
	fields = purple_request_fields_new();
	g = purple_request_field_group_new(NULL);
	purple_request_fields_add_group(fields, g);
	c = g_new0(own_devices_ctx, 1);
	c->account = account;
	c->ids = g_new0(uint32_t, n ? n : 1);
	for (size_t i = 0; i < n; i++) {
		api_device *d = &devs[i];
		char id[32], *title, *line, *fp, *when;

		/* Only what the published list names can be removed from it. */
		if (!d->in_list && !d->this_device)
			continue;
		title = d->this_device ? g_strdup_printf(_("Device %u (this device)"), d->id)
		                       : g_strdup_printf(_("Device %u"), d->id);
		fp = d->has_key ? engine_fingerprint_format(d->ik, OMEMO_PUBKEY_LEN) : NULL;
		line = fp ? g_strdup_printf(_("Fingerprint: %s"), fp)
		          : g_strdup(_("Fingerprint: not known yet (it is learnt when a message "
		                       "goes between this device and that one)"));
		g_string_append_printf(text, "%s%s\n%s", text->len ? "\n\n" : "", title, line);
		g_free(line);
		g_free(fp);
		g_free(title);
		if (d->this_device)
			continue;

		when = date_text(d->last_seen);
		line = g_strdup_printf(_("Last seen in your device list: %s"), when);
		g_string_append_printf(text, "\n%s", line);
		g_free(line);
		g_free(when);

		line = g_strdup_printf(_("Remove device %u from the published list"), d->id);
		g_snprintf(id, sizeof(id), "remove-%u", d->id);
		purple_request_field_group_add_field(g, purple_request_field_bool_new(id, line, FALSE));
		g_free(line);
		c->ids[c->n++] = d->id;
	}
	g_free(devs);
	g_string_prepend(text, "\n\n");
	g_string_prepend(text, c->n ? _("Remove the devices you no longer use: your contacts then "
	                                 "stop encrypting for them. A device that is still in use "
	                                 "adds itself again when it comes online.")
	                            : _("This is your only OMEMO device."));

	primary = g_strdup_printf(_("OMEMO devices of %s"), own);
	request_track(c, own_devices_free);
	purple_request_fields(ui_plugin, _("My OMEMO devices"), primary, text->str, fields,
	                      _("_Apply"), G_CALLBACK(own_devices_ok_cb), _("_Cancel"),
	                      G_CALLBACK(own_devices_cancel_cb), account, NULL, NULL, c);
	g_string_free(text, TRUE);
	g_free(primary);
}

static void manage_devices_cb(PurplePluginAction *action)
{
	GList *ms = online_managers();

	if (!ms)
		purple_notify_info(ui_plugin, _("My OMEMO devices"),
		                   _("No XMPP account with OMEMO is online."), NULL);
	for (GList *l = ms; l; l = l->next) {
		PurpleAccount *account = manager_account(l->data);

		if (account)
			own_devices_open(l->data, account);
	}
	g_list_free(ms);
}

/* ---- plugin action: Check the server ---- */

static void server_report_cb(PurpleAccount *account, const char *report, void *data)
{
	/* NULL: cancelled, the account or the plugin is going away. */
	if (!report || !ui_plugin)
		return;
	notify_lines(_("OMEMO server check"), purple_account_get_username(account), report);
}

static void check_server_cb(PurplePluginAction *action)
{
	bool any = false;

	for (GList *l = purple_connections_get_all(); l; l = l->next) {
		PurpleConnection *gc = l->data;
		PurpleAccount *account = purple_connection_get_account(gc);
		manager_t *m = manager_find(account);

		if (purple_connection_get_state(gc) != PURPLE_CONNECTED)
			continue;
		if (api_account_is_serverless(account)) {
			notify_lines(_("OMEMO server check"), purple_account_get_username(account),
			             api_serverless_explanation());
			any = true;
		} else if (m && api_server_check(m, server_report_cb, NULL) == 0) {
			any = true;
		}
	}
	if (!any)
		purple_notify_info(ui_plugin, _("OMEMO server check"),
		                   _("No XMPP account with OMEMO is online."), NULL);
}

GList *ui_plugin_actions(PurplePlugin *plugin, gpointer context)
{
	GList *l = NULL;

	l = g_list_append(l, purple_plugin_action_new(_("Show my fingerprint"), show_fingerprint_cb));
	l = g_list_append(l, purple_plugin_action_new(_("Manage my devices"), manage_devices_cb));
	l = g_list_append(l, purple_plugin_action_new(_("Check the server"), check_server_cb));
	return l;
}

/* Finch 2.14 numbers the entries of a choice field from 1 while Pidgin
 * and the API count from 0: shift both ways there. */
static int choice_offset(void)
{
	return g_strcmp0(purple_core_get_ui(), "gnt-purple") == 0 ? 1 : 0;
}

/* ---- buddy menu ---- */

/* The manager and bare JID behind a buddy menu entry; NULL when OMEMO is
 * not available for it. */
static manager_t *buddy_target(PurpleBlistNode *node, PurpleAccount **account, char **jid)
{
	PurpleBuddy *buddy;
	manager_t *m;

	*jid = NULL;
	/* Finch hands the menu a contact, Pidgin the buddy itself. */
	if (node && PURPLE_BLIST_NODE_IS_CONTACT(node))
		node = (PurpleBlistNode *)purple_contact_get_priority_buddy((PurpleContact *)node);
	if (!node || !PURPLE_BLIST_NODE_IS_BUDDY(node))
		return NULL;
	buddy = (PurpleBuddy *)node;
	*account = purple_buddy_get_account(buddy);
	if (g_strcmp0(purple_account_get_protocol_id(*account), "prpl-jabber") != 0)
		return NULL;
	m = manager_find(*account);
	if (!m)
		return NULL;
	*jid = xmpp_bare_jid(purple_buddy_get_name(buddy));
	return *jid ? m : NULL;
}

static void set_mode_from_menu(PurpleBlistNode *node, bool on)
{
	PurpleAccount *account = NULL;
	char *jid = NULL, *msg;
	manager_t *m = buddy_target(node, &account, &jid);
	int ret;

	if (!m)
		goto out;
	ret = manager_set_mode(m, jid, on ? MANAGER_MODE_ON : MANAGER_MODE_OFF);
	if (ret < 0) {
		msg = g_strdup_printf(_("Could not save the setting: %s"), omemo_strerror(ret));
		manager_notice(account, jid, msg);
		g_free(msg);
	} else {
		manager_notice(account, jid,
		               on ? _("OMEMO encryption is now ON for this conversation.")
		                  : _("OMEMO encryption is now OFF for this conversation: messages "
		                      "will be sent unencrypted."));
	}
out:
	g_free(jid);
}

static void enable_cb(PurpleBlistNode *node, gpointer data)
{
	set_mode_from_menu(node, true);
}

static void disable_cb(PurpleBlistNode *node, gpointer data)
{
	set_mode_from_menu(node, false);
}

typedef struct {
	PurpleAccount *account;
	char *jid;
	api_device *devs; /* the devices offered a choice, as shown */
	size_t n;
} trust_dialog_ctx;

static void trust_dialog_free(void *p)
{
	trust_dialog_ctx *c = p;

	g_free(c->jid);
	g_free(c->devs);
	g_free(c);
}

static void trust_dialog_ok_cb(void *data, PurpleRequestFields *fields)
{
	trust_dialog_ctx *c = data;
	manager_t *m = manager_find(c->account);

	for (size_t i = 0; m && i < c->n; i++) {
		api_device *d = &c->devs[i];
		char id[32], *msg = NULL;
		int v;

		g_snprintf(id, sizeof(id), "device-%u", d->id);
		v = purple_request_fields_get_choice(fields, id) - choice_offset();
		if (v < 0 || (size_t)v >= G_N_ELEMENTS(trust_choices) || trust_choices[v] == d->trust)
			continue;
		api_set_trust_for_key(m, c->jid, d->id, d->ik, trust_choices[v], &msg);
		manager_notice(c->account, c->jid, msg);
		g_free(msg);
	}
	if (!m)
		notify_lines(_("Fingerprints and trust"), c->jid,
		             _("The account went offline: nothing was changed."));
	request_done(c);
}

static void trust_dialog_cancel_cb(void *data, PurpleRequestFields *fields)
{
	request_done(data);
}

static int trust_choice_index(trust_state s)
{
	for (size_t i = 0; i < G_N_ELEMENTS(trust_choices); i++)
		if (trust_choices[i] == s)
			return (int)i;
	return 0;
}

static void trust_dialog_open(manager_t *m, PurpleAccount *account, const char *jid)
{
	PurpleRequestFieldGroup *current, *former = NULL;
	PurpleRequestFields *fields;
	trust_dialog_ctx *c;
	api_device *devs = NULL;
	size_t n = 0;
	GString *text;
	char *primary;
	int ret;

	ret = api_device_list(m, jid, &devs, &n);
	if (ret < 0) {
		char *msg = g_strdup_printf(_("The devices of %s could not be read: %s"), jid,
		                            omemo_strerror(ret));

		purple_notify_error(ui_plugin, _("Fingerprints and trust"), jid, msg);
		g_free(msg);
		return;
	}
	/* The fingerprints go into the explanation, one line each, and each
	 * choice is labelled with the device id alone: a field label would be
	 * cut short in a terminal (Finch), and Finch shows no label fields. */
	text = g_string_new(_("Compare each fingerprint with the one the contact's device shows "
	                      "(in person or by a call) before you mark it verified. Devices "
	                      "that are undecided or distrusted get no messages from you."));
	g_string_append(text, "\n");
	fields = purple_request_fields_new();
	current = purple_request_field_group_new(NULL);
	purple_request_fields_add_group(fields, current);
	c = g_new0(trust_dialog_ctx, 1);
	c->account = account;
	c->jid = g_strdup(jid);
	c->devs = g_new0(api_device, n ? n : 1);
	for (size_t i = 0; i < n; i++) {
		api_device *d = &devs[i];
		PurpleRequestFieldGroup *g = current;
		PurpleRequestField *f;
		char id[32], *line, *fp, *label;

		if (d->this_device || (!d->listed && !d->has_key))
			continue;
		if (!d->has_key) {
			line = g_strdup_printf(_("Device %u: no session yet"), d->id);
			g_string_append_printf(text, "\n%s", line);
			g_free(line);
			continue;
		}
		if (!d->listed) {
			/* Still worth a decision: its messages are marked by it. */
			if (!former) {
				former = purple_request_field_group_new(
					_("No longer in the device list"));
				purple_request_fields_add_group(fields, former);
			}
			g = former;
		}
		fp = engine_fingerprint_format(d->ik, OMEMO_PUBKEY_LEN);
		/* TRANSLATORS: %u: device id, %s: its fingerprint. */
		line = g_strdup_printf(_("Device %u: %s"), d->id, fp ? fp : "?");
		g_string_append_printf(text, "\n%s", line);
		g_snprintf(id, sizeof(id), "device-%u", d->id);
		label = g_strdup_printf(_("Device %u"), d->id);
		f = purple_request_field_choice_new(id, label,
		                                    trust_choice_index(d->trust) + choice_offset());
		for (size_t k = 0; k < G_N_ELEMENTS(trust_choices); k++)
			purple_request_field_choice_add(f, trust_state_name(trust_choices[k]));
		purple_request_field_group_add_field(g, f);
		g_free(label);
		g_free(line);
		g_free(fp);
		c->devs[c->n++] = *d;
	}
	g_free(devs);
	if (c->n == 0) {
		char *none = g_strdup_printf(_("No OMEMO devices known for %s."), jid);

		g_string_append_printf(text, "\n%s", none);
		g_free(none);
	}
	primary = g_strdup_printf(_("OMEMO devices of %s"), jid);
	request_track(c, trust_dialog_free);
	purple_request_fields(ui_plugin, _("Fingerprints and trust"), primary, text->str, fields,
	                      _("_Save"), G_CALLBACK(trust_dialog_ok_cb), _("_Cancel"),
	                      G_CALLBACK(trust_dialog_cancel_cb), account, jid, NULL, c);
	g_string_free(text, TRUE);
	g_free(primary);
}

static void trust_menu_cb(PurpleBlistNode *node, gpointer data)
{
	PurpleAccount *account = NULL;
	char *jid = NULL;
	manager_t *m = buddy_target(node, &account, &jid);

	if (m)
		trust_dialog_open(m, account, jid);
	g_free(jid);
}

/* ---- rooms ---- */

/* The manager and room JID of a room in the buddy list. */
static manager_t *room_target(PurpleBlistNode *node, PurpleAccount **account, char **room)
{
	PurpleChat *chat;
	GHashTable *comp;
	const char *name, *server;
	char *full;

	*room = NULL;
	if (!node || !PURPLE_BLIST_NODE_IS_CHAT(node))
		return NULL;
	chat = (PurpleChat *)node;
	*account = purple_chat_get_account(chat);
	if (g_strcmp0(purple_account_get_protocol_id(*account), "prpl-jabber") != 0 ||
	    !manager_find(*account))
		return NULL;
	comp = purple_chat_get_components(chat);
	name = comp ? g_hash_table_lookup(comp, "room") : NULL;
	server = comp ? g_hash_table_lookup(comp, "server") : NULL;
	if (!name || !server)
		return NULL;
	full = g_strdup_printf("%s@%s", name, server);
	*room = xmpp_bare_jid(full);
	g_free(full);
	return *room ? manager_find(*account) : NULL;
}

/* Turn OMEMO on or off for a room from a menu; the answer (or why it
 * cannot be on) goes into the room, or a dialog when it is not open. */
static void room_set_mode(PurpleAccount *account, const char *room, bool on)
{
	manager_t *m = manager_find(account);
	PurpleConversation *conv;
	char *answer = NULL;

	if (!m)
		return;
	muc_set_mode(m, room, on, &answer);
	conv = purple_find_conversation_with_account(PURPLE_CONV_TYPE_CHAT, room, account);
	if (conv)
		purple_conversation_write(conv, NULL, answer,
		                          PURPLE_MESSAGE_SYSTEM | PURPLE_MESSAGE_NO_LOG, time(NULL));
	else
		purple_notify_info(ui_plugin, _("OMEMO"), room, answer);
	g_free(answer);
}

static void room_node_cb(PurpleBlistNode *node, gpointer data)
{
	PurpleAccount *account = NULL;
	char *room = NULL;

	if (room_target(node, &account, &room))
		room_set_mode(account, room, GPOINTER_TO_INT(data));
	g_free(room);
}

static void room_conv_cb(PurpleConversation *conv, gpointer data)
{
	char *room = xmpp_bare_jid(purple_conversation_get_name(conv));

	if (room)
		room_set_mode(purple_conversation_get_account(conv), room, GPOINTER_TO_INT(data));
	g_free(room);
}

static PurpleMenuAction *room_menu_item(manager_t *m, const char *room, PurpleCallback cb)
{
	bool on = muc_is_on(m, room);

	return purple_menu_action_new(on ? _("Disable OMEMO in this room")
	                                 : _("Enable OMEMO in this room"),
	                              cb, GINT_TO_POINTER(!on), NULL);
}

void ui_conversation_menu(PurpleConversation *conv, GList **menu)
{
	PurpleAccount *account = purple_conversation_get_account(conv);
	manager_t *m = manager_find(account);
	char *room;

	if (!m || !ui_plugin || purple_conversation_get_type(conv) != PURPLE_CONV_TYPE_CHAT)
		return;
	room = xmpp_bare_jid(purple_conversation_get_name(conv));
	if (room)
		*menu = g_list_append(*menu, room_menu_item(m, room, PURPLE_CALLBACK(room_conv_cb)));
	g_free(room);
}

void ui_blist_menu(PurpleBlistNode *node, GList **menu)
{
	PurpleAccount *account = NULL;
	char *jid = NULL, *why = NULL;
	manager_t *m;
	bool on;

	if (ui_plugin && (m = room_target(node, &account, &jid))) {
		*menu = g_list_append(*menu, room_menu_item(m, jid, PURPLE_CALLBACK(room_node_cb)));
		goto out;
	}
	m = buddy_target(node, &account, &jid);
	if (!m || !ui_plugin)
		goto out;
	/* Offer the opposite of what the next message would get. */
	on = manager_describe(m, jid, &why);
	*menu = g_list_append(*menu, purple_menu_action_new(on ? _("Disable OMEMO")
	                                                       : _("Enable OMEMO"),
	                                                    on ? PURPLE_CALLBACK(disable_cb)
	                                                       : PURPLE_CALLBACK(enable_cb),
	                                                    NULL, NULL));
	*menu = g_list_append(*menu, purple_menu_action_new(_("Fingerprints and trust"),
	                                                    PURPLE_CALLBACK(trust_menu_cb), NULL,
	                                                    NULL));
out:
	g_free(why);
	g_free(jid);
}

/* ---- preferences ---- */

PurplePluginPrefFrame *ui_pref_frame(PurplePlugin *plugin)
{
	PurplePluginPrefFrame *frame = purple_plugin_pref_frame_new();

	purple_plugin_pref_frame_add(
		frame, purple_plugin_pref_new_with_name_and_label(
			       MANAGER_PREF_TRUST_MANUAL,
			       _("Ask about every new device (no blind trust before verification)")));
	purple_plugin_pref_frame_add(
		frame, purple_plugin_pref_new_with_name_and_label(
			       MANAGER_PREF_DEFAULT_ON,
			       _("Turn OMEMO on by itself for contacts who use it")));
	purple_plugin_pref_frame_add(
		frame, purple_plugin_pref_new_with_name_and_label(
			       MANAGER_PREF_CARBONS,
			       _("Ask the server for copies of messages from my other devices "
			         "(carbons)")));
	purple_plugin_pref_frame_add(
		frame, purple_plugin_pref_new_with_name_and_label(
			       MANAGER_PREF_HIDE_DISTRUSTED,
			       _("Do not show messages from distrusted devices, only a notice")));
	purple_plugin_pref_frame_add(
		frame, purple_plugin_pref_new_with_name_and_label(
			       MANAGER_PREF_DEBUG, _("Log OMEMO details to the debug window")));
	return frame;
}
