/*
 * The libpurple plugin shell: the plugin's identity (id, name, version,
 * dependency on the XMPP protocol plugin), its translation domain, and the
 * load/unload hooks that bring the crypto backend up and down. Everything
 * else hangs off these hooks in later stages.
 */
#define PURPLE_PLUGINS

#include <glib.h>

#include <debug.h>
#include <notify.h>
#include <plugin.h>
#include <version.h>

#include "err.h"
#include "i18n.h"
#include "payload.h"

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

static gboolean plugin_load_cb(PurplePlugin *plugin)
{
	int ret = 0;

	plugin_bind_textdomain();

	ret = payload_crypto_init();
	if (ret < 0) {
		purple_debug_error(PLUGIN_LOG, "crypto initialisation failed: %s\n",
				   omemo_strerror(ret));
		purple_notify_error(plugin, _("OMEMO"), _("OMEMO could not start."),
				    omemo_strerror(ret));
		goto out;
	}
	purple_debug_info(PLUGIN_LOG, "loaded version %s\n", PURPLE_OMEMO_VERSION);

out:
	return ret == 0;
}

static gboolean plugin_unload_cb(PurplePlugin *plugin)
{
	payload_crypto_shutdown();
	purple_debug_info(PLUGIN_LOG, "unloaded\n");
	return TRUE;
}

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
