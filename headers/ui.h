/*
 * Dialogs, menus, plugin actions and the preferences page, through
 * libpurple's UI-neutral APIs only, so Pidgin and Finch show the same
 * things.
 */
#ifndef PURPLE_OMEMO_UI_H
#define PURPLE_OMEMO_UI_H

#include <stdbool.h>
#include <stdint.h>

#include <account.h>
#include <blist.h>
#include <plugin.h>
#include <pluginpref.h>

#include "omemo_types.h"

/* Requests are opened with the plugin as their handle, so unloading it
 * closes them; ui_shutdown() frees what their callbacks would have. */
void ui_init(PurplePlugin *plugin);
void ui_shutdown(void);

/* Ask, without blocking, what to do about a new undecided device (or a
 * changed key) of jid: verified, trusted, distrusted, or later. */
void ui_ask_new_device(PurpleAccount *account, const char *jid, uint32_t id,
                       const uint8_t ik[OMEMO_PUBKEY_LEN], bool key_changed);

/* PurplePluginInfo.actions: "Show my fingerprint", "Manage my devices",
 * "Check the server". */
GList *ui_plugin_actions(PurplePlugin *plugin, gpointer context);

/* PurplePluginUiInfo.get_plugin_pref_frame. */
PurplePluginPrefFrame *ui_pref_frame(PurplePlugin *plugin);

/* "blist-node-extended-menu": for an XMPP buddy of an account with OMEMO,
 * "Enable OMEMO" or "Disable OMEMO", and "Fingerprints and trust"; for a
 * room, "Enable OMEMO in this room" or "Disable OMEMO in this room". */
void ui_blist_menu(PurpleBlistNode *node, GList **menu);
/* "conversation-extended-menu": the room entry for an open room. */
void ui_conversation_menu(PurpleConversation *conv, GList **menu);

/* Plain text (a report, a sentence) as markup for a notice: escaped, line
 * breaks kept (g_free). */
char *ui_text_to_html(const char *text);

#endif
