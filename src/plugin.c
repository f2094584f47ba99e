/*
 * The libpurple plugin: its identity (id, name, version, dependency on the
 * XMPP protocol plugin), its translation domain, and load/unload, which
 * connect libpurple's signals to the per-account managers, take over
 * accounts already online, and on unload leave nothing behind.
 */
#define PURPLE_PLUGINS

#include <glib.h>

#include <blist.h>
#include <connection.h>
#include <conversation.h>
#include <debug.h>
#include <notify.h>
#include <plugin.h>
#include <signals.h>
#include <version.h>

#include "cmd.h"
#include "err.h"
#include "i18n.h"
#include "manager.h"
#include "muc.h"
#include "payload.h"
#include "ui.h"
#include "xmpp.h"

#define PLUGIN_ID "core-purple-omemo"
#define PLUGIN_LOG "omemo"

/* The summary shows in the plugin list before the plugin is ever loaded, so
 * the domain must be bound at probe time as well as at load. Binding twice
 * is harmless. */
static void plugin_bind_textdomain(void)
{
	bindtextdomain(OMEMO_TEXT_DOMAIN, LOCALEDIR);
	bind_textdomain_codeset(OMEMO_TEXT_DOMAIN, "UTF-8");
}

static void receiving_xmlnode_cb(PurpleConnection *gc, xmlnode **packet, gpointer data)
{
	if (packet && *packet && manager_receiving(gc, packet)) {
		xmlnode_free(*packet);
		*packet = NULL;
	}
}

static void sending_xmlnode_cb(PurpleConnection *gc, xmlnode **packet, gpointer data)
{
	manager_sending(gc, packet);
}

static void sending_im_cb(PurpleAccount *account, const char *receiver, char **message,
			  gpointer data)
{
	manager_sending_im(account, receiver, message);
}

static void blist_menu_cb(PurpleBlistNode *node, GList **menu, gpointer data)
{
	ui_blist_menu(node, menu);
}

static void conversation_menu_cb(PurpleConversation *conv, GList **menu, gpointer data)
{
	ui_conversation_menu(conv, menu);
}

static void signed_on_cb(PurpleConnection *gc, gpointer data)
{
	manager_account_connected(gc);
}

static void signing_off_cb(PurpleConnection *gc, gpointer data)
{
	manager_account_disconnecting(gc);
}

static gboolean plugin_load_cb(PurplePlugin *plugin)
{
	PurplePlugin *jabber = purple_plugins_find_with_id("prpl-jabber");
	int ret = 0;

	plugin_bind_textdomain();

	ret = payload_crypto_init();
	if (ret < 0) {
		purple_debug_error(PLUGIN_LOG, "crypto initialisation failed: %s\n",
				   omemo_strerror(ret));
		purple_notify_error(plugin, _("OMEMO"), _("OMEMO could not start."),
				    omemo_strerror(ret));
		return FALSE;
	}
	if (!jabber) {
		purple_debug_error(PLUGIN_LOG, "the XMPP protocol plugin is missing\n");
		payload_crypto_shutdown();
		return FALSE;
	}
	manager_prefs_init();
	xmpp_init(jabber);
	/* Contacts' device list updates arrive as PEP notifications only if
	 * our entity caps advertise +notify (XEP-0163 section 4). */
	purple_plugin_ipc_call(jabber, "add_feature", NULL, OMEMO_NODE_DEVICELIST "+notify");

	/* Our handlers run before the protocol plugin's own sender, which is
	 * connected at the highest priority and so runs last. */
	/* Very early (lower runs first), so carbons are ours before another
	 * carbons plugin unwraps them (it connects at LOWEST + 100) and a
	 * message shows twice or not at all. */
	purple_signal_connect_priority(jabber, "jabber-receiving-xmlnode", plugin,
				       PURPLE_CALLBACK(receiving_xmlnode_cb), NULL,
				       PURPLE_SIGNAL_PRIORITY_LOWEST + 50);
	purple_signal_connect(jabber, "jabber-sending-xmlnode", plugin,
			      PURPLE_CALLBACK(sending_xmlnode_cb), NULL);
	purple_signal_connect(purple_conversations_get_handle(), "sending-im-msg", plugin,
			      PURPLE_CALLBACK(sending_im_cb), NULL);
	purple_signal_connect(purple_conversations_get_handle(), "sending-chat-msg", plugin,
			      PURPLE_CALLBACK(muc_sending_chat), NULL);
	purple_signal_connect(purple_connections_get_handle(), "signed-on", plugin,
			      PURPLE_CALLBACK(signed_on_cb), NULL);
	purple_signal_connect(purple_connections_get_handle(), "signing-off", plugin,
			      PURPLE_CALLBACK(signing_off_cb), NULL);
	/* Buddy menus in Pidgin and Finch alike (conversation-extended-menu
	 * would be Pidgin only). */
	purple_signal_connect(purple_blist_get_handle(), "blist-node-extended-menu", plugin,
			      PURPLE_CALLBACK(blist_menu_cb), NULL);
	/* Pidgin's Conversation > More for open rooms. */
	purple_signal_connect(purple_conversations_get_handle(), "conversation-extended-menu",
			      plugin, PURPLE_CALLBACK(conversation_menu_cb), NULL);
	ui_init(plugin);
	cmd_register(plugin);

	/* Accounts online before we were loaded. */
	for (GList *l = purple_connections_get_all(); l; l = l->next) {
		PurpleConnection *gc = l->data;

		if (purple_connection_get_state(gc) == PURPLE_CONNECTED)
			manager_account_connected(gc);
	}
	purple_debug_info(PLUGIN_LOG, "loaded version %s\n", PURPLE_OMEMO_VERSION);
	return TRUE;
}

static gboolean plugin_unload_cb(PurplePlugin *plugin)
{
	/* Signals and requests tied to the plugin handle go with it; the
	 * command, the managers and their requests and timers are ours. */
	cmd_unregister();
	ui_shutdown();
	manager_shutdown();
	xmpp_shutdown();
	payload_crypto_shutdown();
	purple_debug_info(PLUGIN_LOG, "unloaded\n");
	return TRUE;
}

/* One frame for every UI: Pidgin and Finch both build their preference
 * pages from it. */
static PurplePluginUiInfo plugin_prefs_info = {
	.get_plugin_pref_frame = ui_pref_frame,
	.page_num = 0,
	.frame = NULL,
};

static PurplePluginInfo plugin_info = {
	.magic = PURPLE_PLUGIN_MAGIC,
	.major_version = PURPLE_MAJOR_VERSION,
	.minor_version = PURPLE_MINOR_VERSION,
	.type = PURPLE_PLUGIN_STANDARD,
	/* NULL: the same plugin must load in Pidgin and in Finch. */
	.ui_requirement = NULL,
	.flags = 0,
	.dependencies = NULL, /* filled in by plugin_init(): a GList is not constant */
	.priority = PURPLE_PRIORITY_DEFAULT,
	.id = PLUGIN_ID,
	.name = "OMEMO",
	.version = PURPLE_OMEMO_VERSION,
	.summary = NULL,     /* translated in plugin_init() */
	.description = NULL, /* translated in plugin_init() */
	.author = "purple-omemo contributors",
	.homepage = NULL,
	.load = plugin_load_cb,
	.unload = plugin_unload_cb,
	.destroy = NULL,
	.ui_info = NULL,
	.extra_info = NULL,
	.prefs_info = &plugin_prefs_info,
	.actions = ui_plugin_actions,
};

static void plugin_init(PurplePlugin *plugin)
{
	plugin_bind_textdomain();

	plugin_info.summary = (char *)_("End-to-end encryption for XMPP (OMEMO)");
	plugin_info.description =
		(char *)_("Encrypts XMPP chats with OMEMO, compatible with Conversations, Dino, "
			  "Gajim and other clients that speak the eu.siacs.conversations.axolotl "
			  "protocol.");

	/* libpurple frees this list when it destroys the plugin, and calls us
	 * again for every fresh probe: always start a new one, never reuse. */
	plugin_info.dependencies = g_list_append(NULL, "prpl-jabber");
}

PURPLE_INIT_PLUGIN(purple_omemo, plugin_init, plugin_info)
