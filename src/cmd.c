/*
 * /omemo in XMPP conversations: on, off, status, help. Every subcommand
 * answers in the conversation; wrong usage gets the usage line.
 */
#include <string.h>

#include <glib.h>

#include <cmds.h>
#include <conversation.h>

#include "cmd.h"
#include "err.h"
#include "i18n.h"
#include "manager.h"
#include "xmpp.h"

static PurpleCmdId omemo_cmd;

static void say(PurpleConversation *conv, const char *text)
{
	purple_conversation_write(conv, NULL, text, PURPLE_MESSAGE_SYSTEM | PURPLE_MESSAGE_NO_LOG,
	                          time(NULL));
}

static const char *usage(void)
{
	return _("Usage: /omemo on | off | status | help");
}

static PurpleCmdRet omemo_cmd_cb(PurpleConversation *conv, const gchar *cmd, gchar **args,
                                 gchar **error, void *data)
{
	manager_t *m = manager_find(purple_conversation_get_account(conv));
	char *word = args && args[0] ? g_strstrip(g_strdup(args[0])) : g_strdup("");
	char *jid = xmpp_bare_jid(purple_conversation_get_name(conv));
	char *text = NULL;
	int ret;

	if (strcmp(word, "help") == 0 || *word == '\0') {
		say(conv, usage());
		say(conv, _("on: encrypt this conversation with OMEMO. off: send without "
		            "encryption. status: what the next message is encrypted for."));
		goto out;
	}
	if (!m || !jid) {
		say(conv, _("OMEMO is not available for this account (not connected, or its "
		            "OMEMO store could not be opened)."));
		goto out;
	}
	if (purple_conversation_get_type(conv) != PURPLE_CONV_TYPE_IM) {
		say(conv, _("OMEMO in group chats is not supported yet."));
		goto out;
	}
	if (strcmp(word, "on") == 0 || strcmp(word, "off") == 0) {
		bool on = strcmp(word, "on") == 0;

		ret = manager_set_mode(m, jid, on ? MANAGER_MODE_ON : MANAGER_MODE_OFF);
		if (ret < 0) {
			text = g_strdup_printf(_("Could not save the setting: %s"), omemo_strerror(ret));
			say(conv, text);
		} else {
			say(conv, on ? _("OMEMO encryption is now ON for this conversation.")
			             : _("OMEMO encryption is now OFF for this conversation: messages "
			                 "will be sent unencrypted."));
		}
	} else if (strcmp(word, "status") == 0) {
		manager_describe(m, jid, &text);
		say(conv, text);
	} else {
		say(conv, usage());
	}
out:
	g_free(text);
	g_free(jid);
	g_free(word);
	return PURPLE_CMD_RET_OK;
}

void cmd_register(PurplePlugin *plugin)
{
	omemo_cmd = purple_cmd_register("omemo", "s", PURPLE_CMD_P_PLUGIN,
	                                PURPLE_CMD_FLAG_IM | PURPLE_CMD_FLAG_CHAT |
	                                        PURPLE_CMD_FLAG_PRPL_ONLY |
	                                        PURPLE_CMD_FLAG_ALLOW_WRONG_ARGS,
	                                "prpl-jabber", omemo_cmd_cb,
	                                _("omemo &lt;on|off|status|help&gt;: OMEMO encryption"),
	                                NULL);
}

void cmd_unregister(void)
{
	if (omemo_cmd) {
		purple_cmd_unregister(omemo_cmd);
		omemo_cmd = 0;
	}
}
