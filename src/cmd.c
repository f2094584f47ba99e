/*
 * /omemo in XMPP conversations, over api.c: on, off, status, fp, devices,
 * trust, verify, distrust, remove, server, help. Every subcommand answers in
 * the conversation; wrong usage gets the usage line. In Bonjour
 * (link-local) conversations /omemo exists too, to explain why OMEMO needs
 * a server.
 */
#include <string.h>

#include <glib.h>

#include <cmds.h>
#include <conversation.h>

#include "api.h"
#include "cmd.h"
#include "err.h"
#include "i18n.h"
#include "manager.h"
#include "muc.h"
#include "xmpp.h"

static PurpleCmdId omemo_cmd;
static PurpleCmdId serverless_cmd;

static void say(PurpleConversation *conv, const char *text)
{
	purple_conversation_write(conv, NULL, text, PURPLE_MESSAGE_SYSTEM | PURPLE_MESSAGE_NO_LOG,
	                          time(NULL));
}

static const char *usage(void)
{
	return _("Usage: /omemo on | off | status | fp | devices | trust ID | verify FINGERPRINT | "
	         "distrust ID | remove ID | server | help");
}

/* A device id as typed: decimal, 1..2^31-1. */
static bool parse_id(const char *s, uint32_t *id)
{
	guint64 v;
	char *end = NULL;

	if (!s || !g_ascii_isdigit(*s))
		return false;
	v = g_ascii_strtoull(s, &end, 10);
	if (*end != '\0' || v < 1 || v > 0x7fffffffu)
		return false;
	*id = (uint32_t)v;
	return true;
}

/* Where the answer of "/omemo server" goes when it arrives: the
 * conversation is looked up again then, it may have been closed. */
typedef struct {
	char *conv_name;
	PurpleConversationType type;
} server_reply;

static void server_report_cb(PurpleAccount *account, const char *report, void *data)
{
	server_reply *r = data;
	PurpleConversation *conv;

	/* NULL: cancelled (offline, unloading); nobody is waiting for it. */
	if (report) {
		char *esc = g_markup_escape_text(report, -1);

		conv = purple_find_conversation_with_account(r->type, r->conv_name, account);
		if (conv)
			say(conv, esc);
		else if (r->type == PURPLE_CONV_TYPE_IM)
			manager_notice(account, r->conv_name, esc);
		g_free(esc);
	}
	g_free(r->conv_name);
	g_free(r);
}

static void server_check_start(PurpleConversation *conv, manager_t *m)
{
	server_reply *r = g_new0(server_reply, 1);
	int ret;

	r->conv_name = g_strdup(purple_conversation_get_name(conv));
	r->type = purple_conversation_get_type(conv);
	ret = api_server_check(m, server_report_cb, r);
	if (ret < 0) {
		char *text = g_strdup_printf(_("Could not ask the server: %s"), omemo_strerror(ret));

		say(conv, text);
		g_free(text);
		g_free(r->conv_name);
		g_free(r);
		return;
	}
	say(conv, _("Asking the server what it offers OMEMO..."));
}

static const char *room_usage(void)
{
	return _("Usage in a room: /omemo on | off | status | incomplete send|hold | fp | devices | "
	         "trust ID | verify FINGERPRINT | distrust ID | remove ID | server | help");
}

/* The member of the room with device id (NULL when none or several). */
static char *room_member_with_device(manager_t *m, GPtrArray *jids, uint32_t id)
{
	char *found = NULL;
	int hits = 0;

	for (guint i = 0; i < jids->len; i++) {
		api_device *devs = NULL;
		size_t n = 0;

		if (api_device_list(m, jids->pdata[i], &devs, &n) < 0)
			continue;
		for (size_t j = 0; j < n; j++)
			if (devs[j].id == id) {
				hits++;
				if (!found)
					found = g_strdup(jids->pdata[i]);
				break;
			}
		g_free(devs);
	}
	if (hits > 1) {
		g_free(found);
		found = NULL;
	}
	return found;
}

/* /omemo in a room: the same words, acting on the room's members. */
static void room_cmd(PurpleConversation *conv, manager_t *m, const char *room, const char *word,
                     const char *rest)
{
	GPtrArray *jids = muc_recipients(m, room);
	char *text = NULL, *jid;
	uint32_t id;
	int ret = OMEMO_ERR_NOT_FOUND;

	if ((strcmp(word, "on") == 0 || strcmp(word, "off") == 0) && !*rest) {
		muc_set_mode(m, room, strcmp(word, "on") == 0, &text);
		say(conv, text);
	} else if (strcmp(word, "status") == 0 && !*rest) {
		text = muc_describe(m, room);
		say(conv, text);
	} else if (strcmp(word, "incomplete") == 0 &&
	           (strcmp(rest, "send") == 0 || strcmp(rest, "hold") == 0)) {
		bool send = strcmp(rest, "send") == 0;

		ret = muc_set_incomplete(m, room, send);
		if (ret < 0)
			text = g_strdup_printf(_("Could not save the setting: %s"), omemo_strerror(ret));
		say(conv, ret < 0 ? text
		                  : send ? _("When some members cannot be reached, messages now go "
		                             "to the others, with a notice naming who was left out.")
		                         : _("When some members cannot be reached, messages are now "
		                             "held and not sent."));
	} else if (strcmp(word, "devices") == 0 && !*rest) {
		if (!jids->len)
			say(conv, _("No member of this room is known yet."));
		for (guint i = 0; i < jids->len; i++) {
			text = api_devices(m, jids->pdata[i]);
			say(conv, text);
			g_free(text);
			text = NULL;
		}
	} else if ((strcmp(word, "trust") == 0 || strcmp(word, "distrust") == 0) &&
	           parse_id(rest, &id)) {
		jid = room_member_with_device(m, jids, id);
		if (jid) {
			api_set_trust(m, jid, id,
			              strcmp(word, "trust") == 0 ? TRUST_BLIND : TRUST_DISTRUSTED, &text);
			say(conv, text);
		} else {
			say(conv, _("No single member of this room has a device with that id. \"/omemo "
			            "devices\" lists them."));
		}
		g_free(jid);
	} else if (strcmp(word, "verify") == 0 && *rest) {
		for (guint i = 0; i < jids->len && ret == OMEMO_ERR_NOT_FOUND; i++) {
			g_free(text);
			text = NULL;
			ret = api_verify(m, jids->pdata[i], rest, &text);
		}
		if (ret == OMEMO_ERR_NOT_FOUND)
			say(conv, _("That fingerprint belongs to no known device of this room's members: "
			            "nothing was changed."));
		else
			say(conv, text);
	} else if (strcmp(word, "remove") == 0 && parse_id(rest, &id)) {
		api_remove_own_device(m, id, &text);
		say(conv, text);
	} else {
		say(conv, room_usage());
	}
	g_free(text);
	g_ptr_array_unref(jids);
}

static PurpleCmdRet omemo_cmd_cb(PurpleConversation *conv, const gchar *cmd, gchar **args,
                                 gchar **error, void *data)
{
	manager_t *m = manager_find(purple_conversation_get_account(conv));
	char *line = args && args[0] ? g_strstrip(g_strdup(args[0])) : g_strdup("");
	char **words = g_strsplit_set(line, " \t", 2);
	const char *word = words[0] ? words[0] : "";
	const char *rest = words[0] && words[1] ? g_strstrip(words[1]) : "";
	char *jid = xmpp_bare_jid(purple_conversation_get_name(conv));
	char *text = NULL;
	uint32_t id;
	int ret;

	if (strcmp(word, "help") == 0 || *word == '\0') {
		say(conv, usage());
		say(conv, _("on/off: encrypt this conversation or not. status: what the next message "
		            "is encrypted for. fp: this device's fingerprint. devices: the contact's "
		            "devices and their trust. trust/distrust ID: decide about a device. verify "
		            "FINGERPRINT: mark the device with that fingerprint as verified (compare it "
		            "with the contact first). remove ID: remove a stale device of your own. "
		            "server: what your server offers OMEMO (PEP, carbons, archive)."));
		goto out;
	}
	if (!m || !jid) {
		say(conv, _("OMEMO is not available for this account (not connected, or its "
		            "OMEMO store could not be opened)."));
		goto out;
	}
	if (strcmp(word, "fp") == 0 && !*rest) {
		text = api_own_fingerprint(m);
		say(conv, text);
		goto out;
	}
	if (strcmp(word, "server") == 0 && !*rest) {
		server_check_start(conv, m);
		goto out;
	}
	if (purple_conversation_get_type(conv) == PURPLE_CONV_TYPE_CHAT) {
		room_cmd(conv, m, jid, word, rest);
		goto out;
	}
	if ((strcmp(word, "on") == 0 || strcmp(word, "off") == 0) && !*rest) {
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
	} else if (strcmp(word, "status") == 0 && !*rest) {
		manager_describe(m, jid, &text);
		say(conv, text);
	} else if (strcmp(word, "devices") == 0 && !*rest) {
		text = api_devices(m, jid);
		say(conv, text);
	} else if ((strcmp(word, "trust") == 0 || strcmp(word, "distrust") == 0) &&
	           parse_id(rest, &id)) {
		api_set_trust(m, jid, id, strcmp(word, "trust") == 0 ? TRUST_BLIND : TRUST_DISTRUSTED,
		              &text);
		say(conv, text);
	} else if (strcmp(word, "verify") == 0 && *rest) {
		api_verify(m, jid, rest, &text);
		say(conv, text);
	} else if (strcmp(word, "remove") == 0 && parse_id(rest, &id)) {
		api_remove_own_device(m, id, &text);
		say(conv, text);
	} else {
		say(conv, usage());
	}
out:
	g_free(text);
	g_free(jid);
	g_strfreev(words);
	g_free(line);
	return PURPLE_CMD_RET_OK;
}

/* Bonjour: whatever was asked, the answer is why OMEMO needs a server. */
static PurpleCmdRet serverless_cmd_cb(PurpleConversation *conv, const gchar *cmd, gchar **args,
                                      gchar **error, void *data)
{
	say(conv, api_serverless_explanation());
	return PURPLE_CMD_RET_OK;
}

void cmd_register(PurplePlugin *plugin)
{
	omemo_cmd = purple_cmd_register("omemo", "s", PURPLE_CMD_P_PLUGIN,
	                                PURPLE_CMD_FLAG_IM | PURPLE_CMD_FLAG_CHAT |
	                                        PURPLE_CMD_FLAG_PRPL_ONLY |
	                                        PURPLE_CMD_FLAG_ALLOW_WRONG_ARGS,
	                                "prpl-jabber", omemo_cmd_cb,
	                                _("omemo &lt;on|off|status|fp|devices|trust|verify|distrust|"
	                                  "remove|server|help&gt;: OMEMO encryption"),
	                                NULL);
	serverless_cmd = purple_cmd_register("omemo", "s", PURPLE_CMD_P_PLUGIN,
	                                     PURPLE_CMD_FLAG_IM | PURPLE_CMD_FLAG_CHAT |
	                                             PURPLE_CMD_FLAG_PRPL_ONLY |
	                                             PURPLE_CMD_FLAG_ALLOW_WRONG_ARGS,
	                                     "prpl-bonjour", serverless_cmd_cb,
	                                     _("omemo: why OMEMO does not work without a server"),
	                                     NULL);
}

void cmd_unregister(void)
{
	if (omemo_cmd) {
		purple_cmd_unregister(omemo_cmd);
		omemo_cmd = 0;
	}
	if (serverless_cmd) {
		purple_cmd_unregister(serverless_cmd);
		serverless_cmd = 0;
	}
}
