/*
 * A headless libpurple client for the end-to-end tests: one process, one
 * XMPP account, driven by line commands on stdin and reporting everything a
 * test may want to assert (stanzas in and out, conversation writes, requests
 * and notices, connection state) as one JSON object per line on stdout.
 * libpurple and its plugins may print to stdout themselves, so the event
 * stream keeps the original stdout and fd 1 is pointed at stderr.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>
#include <glib-unix.h>
#include <glib/gstdio.h>

#include <purple.h>

#define CLIENT_UI_ID "e2e"
#define CLIENT_PRPL_ID "prpl-jabber"
#define CLIENT_GROUP "Buddies"

struct client_options {
	char *user_dir;
	char *jid;
	char *password;
	char *plugin_dir;
	char **plugins;
	int port;
};

/* A request libpurple handed us and has not closed yet. Only "action"
 * requests can be answered (command `answer`); the rest stay pending. */
struct client_request {
	guint id;
	PurpleRequestType type;
	void *user_data;
	size_t action_count;
	GCallback *action_cbs;
	int default_action;
	/* Fields requests (commands fields-set, fields-ok, fields-cancel):
	 * the UI owns the fields and destroys them when the request closes. */
	PurpleRequestFields *fields;
	GCallback ok_cb;
	GCallback cancel_cb;
};

/* A subscription request we accept from an idle callback: answering inside
 * the UI op would run libpurple's callback before it has finished setting
 * up its own bookkeeping for the request. */
struct client_authorization {
	PurpleAccountRequestAuthorizationCb authorize_cb;
	void *user_data;
	char *who;
	gboolean on_list;
	gboolean closed;
};

struct client_io {
	PurpleInputFunction func;
	gpointer data;
	PurpleInputCondition wanted;
};

static GMainLoop *client_loop;
static FILE *client_events;
static FILE *client_debug_log;
static gboolean client_debug_stderr; /* E2E_DEBUG=1: the log on stderr too */
static PurpleAccount *client_account;
static GList *client_requests;
static guint client_request_next_id = 1;
static guint client_stdin_watch;
static gboolean client_quitting;
static int client_signal_handle;
static GHashTable *client_ui_info;

static void client_request_quit(void);

/* `make bench-e2e` (test/e2e/bench_e2e.py): see "benchmark" below. */
static void bench_stanza_out(const char *text);
static void bench_stanza_in(xmlnode *packet);
static void bench_displayed(PurpleConversation *conv, const char *message,
			    PurpleMessageFlags flags);

/* ---- JSON events ---------------------------------------------------- */

static void json_append_string(GString *out, const char *s)
{
	char *valid = NULL;
	const unsigned char *p;

	if (s == NULL) {
		g_string_append(out, "null");
		return;
	}
	/* Stanzas and debug text can hold any bytes; JSON must be UTF-8. */
	if (!g_utf8_validate(s, -1, NULL)) {
		valid = g_utf8_make_valid(s, -1);
		s = valid;
	}
	g_string_append_c(out, '"');
	for (p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':
			g_string_append(out, "\\\"");
			break;
		case '\\':
			g_string_append(out, "\\\\");
			break;
		case '\n':
			g_string_append(out, "\\n");
			break;
		case '\r':
			g_string_append(out, "\\r");
			break;
		case '\t':
			g_string_append(out, "\\t");
			break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				g_string_append_printf(out, "\\u%04x", *p);
			else
				g_string_append_c(out, (char)*p);
		}
	}
	g_string_append_c(out, '"');
	g_free(valid);
}

static GString *event_begin(const char *name)
{
	GString *ev = g_string_new("{\"event\":");

	json_append_string(ev, name);
	return ev;
}

static void event_add_key(GString *ev, const char *key)
{
	g_string_append_c(ev, ',');
	json_append_string(ev, key);
	g_string_append_c(ev, ':');
}

static void event_add_str(GString *ev, const char *key, const char *value)
{
	event_add_key(ev, key);
	json_append_string(ev, value);
}

static void event_add_int(GString *ev, const char *key, long long value)
{
	event_add_key(ev, key);
	g_string_append_printf(ev, "%lld", value);
}

static void event_add_bool(GString *ev, const char *key, gboolean value)
{
	event_add_key(ev, key);
	g_string_append(ev, value ? "true" : "false");
}

static void event_add_strv(GString *ev, const char *key, GPtrArray *values)
{
	guint i;

	event_add_key(ev, key);
	g_string_append_c(ev, '[');
	for (i = 0; values != NULL && i < values->len; i++) {
		if (i > 0)
			g_string_append_c(ev, ',');
		json_append_string(ev, g_ptr_array_index(values, i));
	}
	g_string_append_c(ev, ']');
}

static void event_emit(GString *ev)
{
	g_string_append(ev, "}\n");
	if (client_events != NULL &&
	    (fwrite(ev->str, 1, ev->len, client_events) != ev->len ||
	     fflush(client_events) != 0)) {
		/* Nobody reads us any more: stop instead of running headless. */
		fclose(client_events);
		client_events = NULL;
		client_request_quit();
	}
	g_string_free(ev, TRUE);
}

static void event_emit_error(const char *text)
{
	GString *ev = event_begin("error");

	event_add_str(ev, "text", text);
	event_emit(ev);
}

/* ---- debug log ---------------------------------------------------------- */

static void client_debug_write(const char *level, const char *category, const char *text)
{
	GDateTime *now;
	char *stamp;

	if (client_debug_log == NULL)
		return;
	now = g_date_time_new_now_local();
	stamp = g_date_time_format(now, "%H:%M:%S.%f");
	/* %f gives microseconds; milliseconds are enough to read a log. */
	if (strlen(stamp) > 12)
		stamp[12] = '\0';
	fprintf(client_debug_log, "%s %s %s: %s\n", stamp, level, category ? category : "-", text);
	fflush(client_debug_log);
	if (client_debug_stderr)
		fprintf(stderr, "%s %s %s: %s\n", stamp, level, category ? category : "-", text);
	g_free(stamp);
	g_date_time_unref(now);
}

static const char *client_debug_level_name(PurpleDebugLevel level)
{
	switch (level) {
	case PURPLE_DEBUG_MISC:
		return "misc";
	case PURPLE_DEBUG_INFO:
		return "info";
	case PURPLE_DEBUG_WARNING:
		return "warning";
	case PURPLE_DEBUG_ERROR:
		return "error";
	case PURPLE_DEBUG_FATAL:
		return "fatal";
	default:
		return "all";
	}
}

static void client_debug_print_cb(PurpleDebugLevel level, const char *category, const char *text)
{
	char *line = g_strdup(text);

	/* Most messages end in a newline of their own. */
	client_debug_write(client_debug_level_name(level), category, g_strchomp(line));
	g_free(line);
}

/* Command `debug-log off`: libpurple and the plugins then skip formatting
 * their debug messages, as they do in Pidgin and Finch while no debug
 * window is open. The benchmark measures with the log off. */
static gboolean client_debug_enabled = TRUE;

static gboolean client_debug_is_enabled_cb(PurpleDebugLevel level, const char *category)
{
	return client_debug_enabled;
}

/* purple_debug_set_enabled() would print to stdout as well, so the log goes
 * through these UI ops only. */
static PurpleDebugUiOps client_debug_ops = {
	.print = client_debug_print_cb,
	.is_enabled = client_debug_is_enabled_cb,
};

static void client_glib_log_cb(const char *domain, GLogLevelFlags level, const char *message,
			       gpointer data)
{
	const char *name = "message";
	GString *ev;

	if (level & G_LOG_LEVEL_ERROR)
		name = "error";
	else if (level & G_LOG_LEVEL_CRITICAL)
		name = "critical";
	else if (level & G_LOG_LEVEL_WARNING)
		name = "warning";
	else if (level & (G_LOG_LEVEL_INFO | G_LOG_LEVEL_DEBUG))
		return;
	fprintf(stderr, "%s-%s: %s\n", domain ? domain : "glib", name, message);
	client_debug_write(name, domain ? domain : "glib", message);
	/* Criticals are failed assertions in libpurple or a plugin: a test
	 * wants to see them. */
	if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING)) {
		ev = event_begin("glib-log");
		event_add_str(ev, "level", name);
		event_add_str(ev, "domain", domain);
		event_add_str(ev, "text", message);
		event_emit(ev);
	}
}

/* ---- event loop --------------------------------------------------------- */

static gboolean client_io_cb(GIOChannel *channel, GIOCondition cond, gpointer data)
{
	struct client_io *io = data;
	PurpleInputCondition fired = 0;

	if (cond & (G_IO_IN | G_IO_HUP | G_IO_ERR))
		fired |= PURPLE_INPUT_READ;
	if (cond & (G_IO_OUT | G_IO_HUP | G_IO_ERR | G_IO_NVAL))
		fired |= PURPLE_INPUT_WRITE;
	fired &= io->wanted;
	if (fired != 0)
		io->func(io->data, g_io_channel_unix_get_fd(channel), fired);
	return TRUE;
}

static guint client_input_add_cb(int fd, PurpleInputCondition cond, PurpleInputFunction func,
				 gpointer data)
{
	struct client_io *io = g_new0(struct client_io, 1);
	GIOCondition watch = 0;
	GIOChannel *channel;
	guint id;

	io->func = func;
	io->data = data;
	io->wanted = cond;
	if (cond & PURPLE_INPUT_READ)
		watch |= G_IO_IN | G_IO_HUP | G_IO_ERR;
	if (cond & PURPLE_INPUT_WRITE)
		watch |= G_IO_OUT | G_IO_HUP | G_IO_ERR | G_IO_NVAL;
	channel = g_io_channel_unix_new(fd);
	id = g_io_add_watch_full(channel, G_PRIORITY_DEFAULT, watch, client_io_cb, io, g_free);
	g_io_channel_unref(channel);
	return id;
}

static PurpleEventLoopUiOps client_eventloop_ops = {
	.timeout_add = g_timeout_add,
	.timeout_remove = g_source_remove,
	.input_add = client_input_add_cb,
	.input_remove = g_source_remove,
	.input_get_error = NULL,
	.timeout_add_seconds = g_timeout_add_seconds,
};

/* ---- conversations ------------------------------------------------------ */

static void client_conv_write_cb(PurpleConversation *conv, const char *name, const char *alias,
				 const char *message, PurpleMessageFlags flags, time_t mtime)
{
	static const struct {
		PurpleMessageFlags flag;
		const char *name;
	} flag_names[] = {
		{ PURPLE_MESSAGE_SEND, "send" },
		{ PURPLE_MESSAGE_RECV, "recv" },
		{ PURPLE_MESSAGE_SYSTEM, "system" },
		{ PURPLE_MESSAGE_AUTO_RESP, "auto-resp" },
		{ PURPLE_MESSAGE_ACTIVE_ONLY, "active-only" },
		{ PURPLE_MESSAGE_NICK, "nick" },
		{ PURPLE_MESSAGE_NO_LOG, "no-log" },
		{ PURPLE_MESSAGE_WHISPER, "whisper" },
		{ PURPLE_MESSAGE_ERROR, "error" },
		{ PURPLE_MESSAGE_DELAYED, "delayed" },
		{ PURPLE_MESSAGE_RAW, "raw" },
		{ PURPLE_MESSAGE_IMAGES, "images" },
		{ PURPLE_MESSAGE_NOTIFY, "notify" },
		{ PURPLE_MESSAGE_NO_LINKIFY, "no-linkify" },
		{ PURPLE_MESSAGE_INVISIBLE, "invisible" },
		{ PURPLE_MESSAGE_REMOTE_SEND, "remote-send" },
	};
	GPtrArray *names;
	char *plain;
	GString *ev;
	size_t i;

	/* First, so the benchmark's clock stops when the message shows. */
	bench_displayed(conv, message, flags);
	names = g_ptr_array_new();
	plain = message ? purple_markup_strip_html(message) : NULL;
	for (i = 0; i < G_N_ELEMENTS(flag_names); i++)
		if (flags & flag_names[i].flag)
			g_ptr_array_add(names, (gpointer)flag_names[i].name);

	ev = event_begin("conv");
	event_add_str(ev, "conv", purple_conversation_get_name(conv));
	event_add_str(ev, "type",
		      purple_conversation_get_type(conv) == PURPLE_CONV_TYPE_CHAT ? "chat" : "im");
	event_add_str(ev, "who", name);
	event_add_str(ev, "text", message);
	event_add_str(ev, "plain", plain);
	event_add_strv(ev, "flags", names);
	event_emit(ev);

	g_free(plain);
	g_ptr_array_free(names, TRUE);
}

static PurpleConversationUiOps client_conv_ops = {
	.write_conv = client_conv_write_cb,
};

/* NULL while signed off: libpurple opens conversations on a connection. */
static PurpleConversation *client_get_im(const char *jid)
{
	PurpleConversation *conv;

	if (!purple_account_is_connected(client_account))
		return NULL;
	conv = purple_find_conversation_with_account(PURPLE_CONV_TYPE_IM, jid, client_account);
	if (conv == NULL)
		conv = purple_conversation_new(PURPLE_CONV_TYPE_IM, client_account, jid);
	return conv;
}

/* ---- requests and notices ----------------------------------------------- */

static const char *client_request_kind(PurpleRequestType type)
{
	switch (type) {
	case PURPLE_REQUEST_INPUT:
		return "input";
	case PURPLE_REQUEST_CHOICE:
		return "choice";
	case PURPLE_REQUEST_ACTION:
		return "action";
	case PURPLE_REQUEST_FIELDS:
		return "fields";
	case PURPLE_REQUEST_FILE:
		return "file";
	case PURPLE_REQUEST_FOLDER:
		return "folder";
	default:
		return "other";
	}
}

static struct client_request *client_request_new(PurpleRequestType type, void *user_data)
{
	struct client_request *req = g_new0(struct client_request, 1);

	req->id = client_request_next_id++;
	req->type = type;
	req->user_data = user_data;
	req->default_action = -1;
	client_requests = g_list_append(client_requests, req);
	return req;
}

static GString *client_request_event(struct client_request *req, const char *title,
				     const char *primary, const char *secondary, const char *who)
{
	GString *ev = event_begin("request");

	event_add_str(ev, "kind", client_request_kind(req->type));
	event_add_int(ev, "id", req->id);
	event_add_str(ev, "title", title);
	event_add_str(ev, "primary", primary);
	event_add_str(ev, "secondary", secondary);
	event_add_str(ev, "who", who);
	return ev;
}

static void *client_request_input_cb(const char *title, const char *primary, const char *secondary,
				     const char *default_value, gboolean multiline, gboolean masked,
				     gchar *hint, const char *ok_text, GCallback ok_cb,
				     const char *cancel_text, GCallback cancel_cb,
				     PurpleAccount *account, const char *who,
				     PurpleConversation *conv, void *user_data)
{
	struct client_request *req = client_request_new(PURPLE_REQUEST_INPUT, user_data);
	GString *ev = client_request_event(req, title, primary, secondary, who);

	event_add_str(ev, "default_value", default_value);
	event_emit(ev);
	return req;
}

static void *client_request_choice_cb(const char *title, const char *primary,
				      const char *secondary, int default_value,
				      const char *ok_text, GCallback ok_cb,
				      const char *cancel_text, GCallback cancel_cb,
				      PurpleAccount *account, const char *who,
				      PurpleConversation *conv, void *user_data, va_list choices)
{
	struct client_request *req = client_request_new(PURPLE_REQUEST_CHOICE, user_data);
	GString *ev = client_request_event(req, title, primary, secondary, who);
	GPtrArray *labels = g_ptr_array_new();
	const char *label;

	/* Pairs of label and value, ended by a NULL label. */
	while ((label = va_arg(choices, const char *)) != NULL) {
		(void)va_arg(choices, int);
		g_ptr_array_add(labels, (gpointer)label);
	}
	event_add_strv(ev, "choices", labels);
	event_add_int(ev, "default", default_value);
	event_emit(ev);
	g_ptr_array_free(labels, TRUE);
	return req;
}

static void *client_request_action_cb(const char *title, const char *primary,
				      const char *secondary, int default_action,
				      PurpleAccount *account, const char *who,
				      PurpleConversation *conv, void *user_data,
				      size_t action_count, va_list actions)
{
	struct client_request *req = client_request_new(PURPLE_REQUEST_ACTION, user_data);
	GString *ev = client_request_event(req, title, primary, secondary, who);
	GPtrArray *labels = g_ptr_array_new();
	size_t i;

	req->action_count = action_count;
	req->action_cbs = g_new0(GCallback, action_count ? action_count : 1);
	req->default_action = default_action;
	for (i = 0; i < action_count; i++) {
		g_ptr_array_add(labels, (gpointer)va_arg(actions, const char *));
		req->action_cbs[i] = va_arg(actions, GCallback);
	}
	event_add_strv(ev, "actions", labels);
	event_add_int(ev, "default", default_action);
	event_emit(ev);
	g_ptr_array_free(labels, TRUE);
	return req;
}

static const char *client_field_type_name(PurpleRequestFieldType type)
{
	switch (type) {
	case PURPLE_REQUEST_FIELD_STRING:
		return "string";
	case PURPLE_REQUEST_FIELD_INTEGER:
		return "integer";
	case PURPLE_REQUEST_FIELD_BOOLEAN:
		return "boolean";
	case PURPLE_REQUEST_FIELD_CHOICE:
		return "choice";
	case PURPLE_REQUEST_FIELD_LIST:
		return "list";
	case PURPLE_REQUEST_FIELD_LABEL:
		return "label";
	case PURPLE_REQUEST_FIELD_IMAGE:
		return "image";
	case PURPLE_REQUEST_FIELD_ACCOUNT:
		return "account";
	default:
		return "other";
	}
}

/* Adds "field_info": one object per field, in dialog order, with its
 * group title, id, label, type, current value and (choices) labels, so a
 * test can read the dialog as a user would before filling it in. */
static void client_fields_describe(GString *ev, PurpleRequestFields *fields)
{
	gboolean first = TRUE;
	GList *group, *l, *c;

	event_add_key(ev, "field_info");
	g_string_append_c(ev, '[');
	for (group = purple_request_fields_get_groups(fields); group; group = group->next) {
		for (l = purple_request_field_group_get_fields(group->data); l; l = l->next) {
			PurpleRequestField *field = l->data;
			PurpleRequestFieldType type = purple_request_field_get_type(field);
			GPtrArray *labels;

			if (!first)
				g_string_append_c(ev, ',');
			first = FALSE;
			g_string_append(ev, "{\"group\":");
			json_append_string(ev, purple_request_field_group_get_title(group->data));
			event_add_str(ev, "id", purple_request_field_get_id(field));
			event_add_str(ev, "label", purple_request_field_get_label(field));
			event_add_str(ev, "type", client_field_type_name(type));
			switch (type) {
			case PURPLE_REQUEST_FIELD_STRING:
				event_add_str(ev, "value", purple_request_field_string_get_value(field));
				break;
			case PURPLE_REQUEST_FIELD_INTEGER:
				event_add_int(ev, "value", purple_request_field_int_get_value(field));
				break;
			case PURPLE_REQUEST_FIELD_BOOLEAN:
				event_add_bool(ev, "value", purple_request_field_bool_get_value(field));
				break;
			case PURPLE_REQUEST_FIELD_CHOICE:
				event_add_int(ev, "value", purple_request_field_choice_get_value(field));
				labels = g_ptr_array_new();
				for (c = purple_request_field_choice_get_labels(field); c; c = c->next)
					g_ptr_array_add(labels, c->data);
				event_add_strv(ev, "choices", labels);
				g_ptr_array_free(labels, TRUE);
				break;
			default:
				break;
			}
			g_string_append_c(ev, '}');
		}
	}
	g_string_append_c(ev, ']');
}

static void *client_request_fields_cb(const char *title, const char *primary,
				      const char *secondary, PurpleRequestFields *fields,
				      const char *ok_text, GCallback ok_cb,
				      const char *cancel_text, GCallback cancel_cb,
				      PurpleAccount *account, const char *who,
				      PurpleConversation *conv, void *user_data)
{
	struct client_request *req = client_request_new(PURPLE_REQUEST_FIELDS, user_data);
	GString *ev = client_request_event(req, title, primary, secondary, who);
	GPtrArray *ids = g_ptr_array_new();
	GList *group, *field;

	for (group = purple_request_fields_get_groups(fields); group; group = group->next)
		for (field = purple_request_field_group_get_fields(group->data); field;
		     field = field->next)
			g_ptr_array_add(ids, (gpointer)purple_request_field_get_id(field->data));
	event_add_strv(ev, "fields", ids);
	req->fields = fields;
	req->ok_cb = ok_cb;
	req->cancel_cb = cancel_cb;
	client_fields_describe(ev, fields);
	event_emit(ev);
	g_ptr_array_free(ids, TRUE);
	return req;
}

static void *client_request_file_cb(const char *title, const char *filename, gboolean savedialog,
				    GCallback ok_cb, GCallback cancel_cb, PurpleAccount *account,
				    const char *who, PurpleConversation *conv, void *user_data)
{
	struct client_request *req = client_request_new(PURPLE_REQUEST_FILE, user_data);

	event_emit(client_request_event(req, title, filename, NULL, who));
	return req;
}

static void *client_request_folder_cb(const char *title, const char *dirname, GCallback ok_cb,
				      GCallback cancel_cb, PurpleAccount *account,
				      const char *who, PurpleConversation *conv, void *user_data)
{
	struct client_request *req = client_request_new(PURPLE_REQUEST_FOLDER, user_data);

	event_emit(client_request_event(req, title, dirname, NULL, who));
	return req;
}

static void client_request_close_cb(PurpleRequestType type, void *ui_handle)
{
	struct client_request *req = ui_handle;
	GString *ev;

	if (g_list_find(client_requests, req) == NULL)
		return;
	client_requests = g_list_remove(client_requests, req);
	ev = event_begin("request-closed");
	event_add_int(ev, "id", req->id);
	event_emit(ev);
	/* As Pidgin and Finch do: the UI destroys the fields it was given. */
	if (req->fields != NULL)
		purple_request_fields_destroy(req->fields);
	g_free(req->action_cbs);
	g_free(req);
}

static PurpleRequestUiOps client_request_ops = {
	.request_input = client_request_input_cb,
	.request_choice = client_request_choice_cb,
	.request_action = client_request_action_cb,
	.request_fields = client_request_fields_cb,
	.request_file = client_request_file_cb,
	.close_request = client_request_close_cb,
	.request_folder = client_request_folder_cb,
};

/* Picks action `index` (or the default when index < 0) of the newest
 * pending action request, as a user clicking a button would. */
static void client_answer_request(int index)
{
	struct client_request *req = NULL;
	PurpleRequestActionCb cb;
	GString *ev;
	GList *l;

	for (l = g_list_last(client_requests); l; l = l->prev) {
		if (((struct client_request *)l->data)->type == PURPLE_REQUEST_ACTION) {
			req = l->data;
			break;
		}
	}
	if (req == NULL) {
		event_emit_error("answer: no pending action request");
		return;
	}
	if (index < 0)
		index = req->default_action;
	if (index < 0 || (size_t)index >= req->action_count) {
		event_emit_error("answer: no such action");
		return;
	}
	ev = event_begin("answered");
	event_add_int(ev, "id", req->id);
	event_add_int(ev, "action", index);
	event_emit(ev);
	cb = (PurpleRequestActionCb)req->action_cbs[index];
	if (cb != NULL)
		cb(req->user_data, index);
	/* The callback may have closed the request itself. */
	if (g_list_find(client_requests, req) != NULL)
		purple_request_close(PURPLE_REQUEST_ACTION, req);
}

static GString *client_notify_event(const char *kind, const char *title, const char *primary,
				    const char *secondary)
{
	GString *ev = event_begin("request");

	event_add_str(ev, "kind", kind);
	event_add_str(ev, "title", title);
	event_add_str(ev, "primary", primary);
	event_add_str(ev, "secondary", secondary);
	return ev;
}

/* Notices return NULL: libpurple then treats them as dismissed at once. */
static void *client_notify_message_cb(PurpleNotifyMsgType type, const char *title,
				      const char *primary, const char *secondary)
{
	const char *level = type == PURPLE_NOTIFY_MSG_ERROR	 ? "error"
			    : type == PURPLE_NOTIFY_MSG_WARNING ? "warning"
								 : "info";
	GString *ev = client_notify_event("notify", title, primary, secondary);

	event_add_str(ev, "level", level);
	event_emit(ev);
	return NULL;
}

static void *client_notify_formatted_cb(const char *title, const char *primary,
					const char *secondary, const char *text)
{
	GString *ev = client_notify_event("formatted", title, primary, secondary);

	event_add_str(ev, "text", text);
	event_emit(ev);
	return NULL;
}

static void *client_notify_email_cb(PurpleConnection *gc, const char *subject, const char *from,
				    const char *to, const char *url)
{
	event_emit(client_notify_event("email", subject, from, to));
	return NULL;
}

static void *client_notify_emails_cb(PurpleConnection *gc, size_t count, gboolean detailed,
				     const char **subjects, const char **froms, const char **tos,
				     const char **urls)
{
	event_emit(client_notify_event("emails", NULL, NULL, NULL));
	return NULL;
}

static void *client_notify_searchresults_cb(PurpleConnection *gc, const char *title,
					    const char *primary, const char *secondary,
					    PurpleNotifySearchResults *results, gpointer data)
{
	event_emit(client_notify_event("searchresults", title, primary, secondary));
	return NULL;
}

static void *client_notify_userinfo_cb(PurpleConnection *gc, const char *who,
				       PurpleNotifyUserInfo *info)
{
	char *text = purple_notify_user_info_get_text_with_newline(info, "\n");
	GString *ev = client_notify_event("userinfo", NULL, who, NULL);

	event_add_str(ev, "text", text);
	event_emit(ev);
	g_free(text);
	return NULL;
}

static void *client_notify_uri_cb(const char *uri)
{
	event_emit(client_notify_event("uri", NULL, uri, NULL));
	return NULL;
}

static PurpleNotifyUiOps client_notify_ops = {
	.notify_message = client_notify_message_cb,
	.notify_email = client_notify_email_cb,
	.notify_emails = client_notify_emails_cb,
	.notify_formatted = client_notify_formatted_cb,
	.notify_searchresults = client_notify_searchresults_cb,
	.notify_userinfo = client_notify_userinfo_cb,
	.notify_uri = client_notify_uri_cb,
};

/* ---- buddies and subscriptions ------------------------------------------ */

static void client_add_buddy(const char *jid)
{
	PurpleBuddy *buddy = purple_find_buddy(client_account, jid);
	PurpleGroup *group;

	if (buddy == NULL) {
		group = purple_find_group(CLIENT_GROUP);
		if (group == NULL) {
			group = purple_group_new(CLIENT_GROUP);
			purple_blist_add_group(group, NULL);
		}
		buddy = purple_buddy_new(client_account, jid, NULL);
		purple_blist_add_buddy(buddy, NULL, group, NULL);
	}
	/* Sends the roster push and, unless already subscribed, a subscribe. */
	purple_account_add_buddy(client_account, buddy);
}

static gboolean client_authorize_idle_cb(gpointer data)
{
	struct client_authorization *auth = data;
	GString *ev;

	if (!auth->closed && !client_quitting) {
		ev = event_begin("authorized");
		event_add_str(ev, "who", auth->who);
		event_emit(ev);
		auth->authorize_cb(auth->user_data);
		/* Subscribe back, so that two test accounts end up mutual. */
		if (!auth->on_list && purple_account_is_connected(client_account))
			client_add_buddy(auth->who);
	}
	g_free(auth->who);
	g_free(auth);
	return FALSE;
}

static void *client_request_authorize_cb(PurpleAccount *account, const char *remote_user,
					 const char *id, const char *alias, const char *message,
					 gboolean on_list,
					 PurpleAccountRequestAuthorizationCb authorize_cb,
					 PurpleAccountRequestAuthorizationCb deny_cb, void *user_data)
{
	struct client_authorization *auth = g_new0(struct client_authorization, 1);
	GString *ev = event_begin("authorize-request");

	event_add_str(ev, "who", remote_user);
	event_add_bool(ev, "on_list", on_list);
	event_emit(ev);
	auth->authorize_cb = authorize_cb;
	auth->user_data = user_data;
	auth->who = g_strdup(remote_user);
	auth->on_list = on_list;
	g_idle_add(client_authorize_idle_cb, auth);
	return auth;
}

/* The idle callback owns and frees the record; closing only marks it. */
static void client_close_account_request_cb(void *ui_handle)
{
	struct client_authorization *auth = ui_handle;

	auth->closed = TRUE;
}

static void client_request_add_cb(PurpleAccount *account, const char *remote_user, const char *id,
				  const char *alias, const char *message)
{
	GString *ev = event_begin("add-request");

	event_add_str(ev, "who", remote_user);
	event_emit(ev);
	if (purple_find_buddy(account, remote_user) == NULL &&
	    purple_account_is_connected(account))
		client_add_buddy(remote_user);
}

static PurpleAccountUiOps client_account_ops = {
	.request_add = client_request_add_cb,
	.request_authorize = client_request_authorize_cb,
	.close_account_request = client_close_account_request_cb,
};

/* ---- core --------------------------------------------------------------- */

static void client_debug_ui_init_cb(void)
{
	purple_debug_set_ui_ops(&client_debug_ops);
}

static void client_ui_init_cb(void)
{
	purple_conversations_set_ui_ops(&client_conv_ops);
	purple_request_set_ui_ops(&client_request_ops);
	purple_notify_set_ui_ops(&client_notify_ops);
	purple_accounts_set_ui_ops(&client_account_ops);
}

static GHashTable *client_get_ui_info_cb(void)
{
	if (client_ui_info == NULL) {
		client_ui_info = g_hash_table_new(g_str_hash, g_str_equal);
		g_hash_table_insert(client_ui_info, "name", "purple-omemo e2e client");
		g_hash_table_insert(client_ui_info, "version", "1");
		g_hash_table_insert(client_ui_info, "client_type", "bot");
	}
	return client_ui_info;
}

static PurpleCoreUiOps client_core_ops = {
	.debug_ui_init = client_debug_ui_init_cb,
	.ui_init = client_ui_init_cb,
	.get_ui_info = client_get_ui_info_cb,
};

/* ---- signals ------------------------------------------------------------ */

static void client_signed_on_cb(PurpleConnection *gc, gpointer data)
{
	GString *ev = event_begin("signed-on");

	event_add_str(ev, "jid", purple_account_get_username(purple_connection_get_account(gc)));
	event_emit(ev);
}

static void client_signed_off_cb(PurpleConnection *gc, gpointer data)
{
	event_emit(event_begin("signed-off"));
}

static void client_connection_error_cb(PurpleConnection *gc, PurpleConnectionError reason,
				       const char *text, gpointer data)
{
	GString *ev = event_begin("connection-error");

	event_add_int(ev, "reason", reason);
	event_add_str(ev, "text", text);
	event_emit(ev);
}

static void client_buddy_presence_cb(PurpleBuddy *buddy, gpointer data)
{
	GString *ev = event_begin("presence");

	event_add_str(ev, "who", purple_buddy_get_name(buddy));
	event_add_bool(ev, "online", GPOINTER_TO_INT(data));
	event_emit(ev);
}

static void client_sending_text_cb(PurpleConnection *gc, char **text, gpointer data)
{
	GString *ev;
	const char *p;

	if (text == NULL || *text == NULL)
		return;
	bench_stanza_out(*text);
	/* Skip the whitespace keepalives. */
	for (p = *text; *p && g_ascii_isspace(*p); p++)
		;
	if (*p == '\0')
		return;
	ev = event_begin("xml-out");
	event_add_str(ev, "xml", *text);
	event_emit(ev);
}

static void client_receiving_xmlnode_cb(PurpleConnection *gc, xmlnode **packet, gpointer data)
{
	GString *ev;
	char *xml;

	if (packet == NULL || *packet == NULL)
		return;
	bench_stanza_in(*packet);
	xml = xmlnode_to_str(*packet, NULL);
	ev = event_begin("xml-in");
	event_add_str(ev, "xml", xml);
	event_emit(ev);
	g_free(xml);
}

/* Substrings set with `drop-in`: an incoming stanza whose text contains one
 * is consumed here, before any plugin sees it, as if the server had never
 * sent it (a test's way to make a request time out). */
static GPtrArray *client_drop_patterns;

static void client_dropping_xmlnode_cb(PurpleConnection *gc, xmlnode **packet, gpointer data)
{
	const char *hit = NULL;
	GString *ev;
	char *xml;
	guint i;

	if (packet == NULL || *packet == NULL || client_drop_patterns == NULL ||
	    client_drop_patterns->len == 0)
		return;
	xml = xmlnode_to_str(*packet, NULL);
	for (i = 0; xml != NULL && i < client_drop_patterns->len && hit == NULL; i++)
		if (strstr(xml, g_ptr_array_index(client_drop_patterns, i)) != NULL)
			hit = g_ptr_array_index(client_drop_patterns, i);
	if (hit != NULL) {
		ev = event_begin("dropped");
		event_add_str(ev, "pattern", hit);
		event_add_str(ev, "xml", xml);
		event_emit(ev);
		xmlnode_free(*packet);
		*packet = NULL;
	}
	g_free(xml);
}

static void client_emit_drop_patterns(void)
{
	GString *ev = event_begin("drop-in");

	event_add_strv(ev, "patterns", client_drop_patterns);
	event_emit(ev);
}

static void client_chat_joined_cb(PurpleConversation *conv, gpointer data)
{
	GString *ev = event_begin(data != NULL ? "chat-left" : "chat-joined");

	event_add_str(ev, "room", purple_conversation_get_name(conv));
	if (data == NULL)
		event_add_str(ev, "nick", purple_conv_chat_get_nick(PURPLE_CONV_CHAT(conv)));
	event_emit(ev);
}

static int client_connect_signals(void)
{
	PurplePlugin *jabber = purple_find_prpl(CLIENT_PRPL_ID);
	void *conns = purple_connections_get_handle();
	void *blist = purple_blist_get_handle();

	if (jabber == NULL)
		return -1;
	purple_signal_connect(conns, "signed-on", &client_signal_handle,
			      PURPLE_CALLBACK(client_signed_on_cb), NULL);
	purple_signal_connect(conns, "signed-off", &client_signal_handle,
			      PURPLE_CALLBACK(client_signed_off_cb), NULL);
	purple_signal_connect(conns, "connection-error", &client_signal_handle,
			      PURPLE_CALLBACK(client_connection_error_cb), NULL);
	purple_signal_connect(blist, "buddy-signed-on", &client_signal_handle,
			      PURPLE_CALLBACK(client_buddy_presence_cb), GINT_TO_POINTER(TRUE));
	purple_signal_connect(blist, "buddy-signed-off", &client_signal_handle,
			      PURPLE_CALLBACK(client_buddy_presence_cb), GINT_TO_POINTER(FALSE));
	purple_signal_connect(purple_conversations_get_handle(), "chat-joined",
			      &client_signal_handle, PURPLE_CALLBACK(client_chat_joined_cb), NULL);
	purple_signal_connect(purple_conversations_get_handle(), "chat-left",
			      &client_signal_handle, PURPLE_CALLBACK(client_chat_joined_cb),
			      GINT_TO_POINTER(TRUE));
	/* Last, so the text reported is what goes on the wire after every
	 * other handler had its say. */
	purple_signal_connect_priority(jabber, "jabber-sending-text", &client_signal_handle,
				       PURPLE_CALLBACK(client_sending_text_cb), NULL,
				       PURPLE_SIGNAL_PRIORITY_HIGHEST);
	/* First, before any plugin can consume the stanza. */
	purple_signal_connect_priority(jabber, "jabber-receiving-xmlnode", &client_signal_handle,
				       PURPLE_CALLBACK(client_receiving_xmlnode_cb), NULL,
				       PURPLE_SIGNAL_PRIORITY_LOWEST);
	/* Right after the logger (so a dropped stanza still shows as xml-in)
	 * and before every plugin. */
	purple_signal_connect_priority(jabber, "jabber-receiving-xmlnode", &client_signal_handle,
				       PURPLE_CALLBACK(client_dropping_xmlnode_cb), NULL,
				       PURPLE_SIGNAL_PRIORITY_LOWEST + 1);
	return 0;
}

/* ---- plugins ------------------------------------------------------------ */

static void client_set_plugin(const char *id, gboolean load)
{
	PurplePlugin *plugin = purple_plugins_find_with_id(id);
	GString *ev = event_begin("plugin");

	event_add_str(ev, "id", id);
	if (plugin == NULL) {
		event_add_bool(ev, "loaded", FALSE);
		event_add_str(ev, "error", "no plugin with this id");
		event_emit(ev);
		return;
	}
	if (load && !purple_plugin_is_loaded(plugin))
		purple_plugin_load(plugin);
	else if (!load && purple_plugin_is_loaded(plugin))
		purple_plugin_unload(plugin);
	event_add_bool(ev, "loaded", purple_plugin_is_loaded(plugin));
	event_add_str(ev, "path", plugin->path);
	event_add_str(ev, "error", plugin->error);
	event_emit(ev);
}

/* ---- commands ----------------------------------------------------------- */

/* The rest of a command line: "\n" is a newline, "\\" a backslash, so a
 * multi-line message or stanza fits on one line. */
static char *client_decode_text(const char *in)
{
	GString *out = g_string_new(NULL);

	for (; *in; in++) {
		if (in[0] == '\\' && in[1] == 'n') {
			g_string_append_c(out, '\n');
			in++;
		} else if (in[0] == '\\' && in[1] == '\\') {
			g_string_append_c(out, '\\');
			in++;
		} else {
			g_string_append_c(out, *in);
		}
	}
	return g_string_free(out, FALSE);
}

/* Splits "WORD REST" at the first space; REST may be empty, never NULL. */
static char *client_split_word(char *line, char **rest)
{
	char *space = strchr(line, ' ');

	if (space == NULL) {
		*rest = line + strlen(line);
	} else {
		*space = '\0';
		*rest = space + 1;
	}
	return line;
}

static void client_cmd_send(char *args)
{
	char *text, *jid = client_split_word(args, &text);
	PurpleConversation *conv;
	char *decoded;

	if (*jid == '\0' || *text == '\0') {
		event_emit_error("usage: send JID TEXT");
		return;
	}
	conv = client_get_im(jid);
	if (conv == NULL) {
		event_emit_error("send: not connected");
		return;
	}
	decoded = client_decode_text(text);
	purple_conv_im_send(PURPLE_CONV_IM(conv), decoded);
	g_free(decoded);
}

/* Runs COMMANDLINE (with or without its "/") in conv, as typed there. */
static void client_run_slash(PurpleConversation *conv, const char *line)
{
	char *decoded, *markup, *error = NULL;
	PurpleCmdStatus status;
	GString *ev;

	decoded = client_decode_text(line[0] == '/' ? line + 1 : line);
	markup = g_markup_escape_text(decoded, -1);
	status = purple_cmd_do_command(conv, decoded, markup, &error);
	ev = event_begin("cmd-result");
	event_add_int(ev, "status", status);
	event_add_str(ev, "command", decoded);
	event_add_str(ev, "error", error);
	event_emit(ev);
	g_free(error);
	g_free(markup);
	g_free(decoded);
}

static void client_cmd_cmd(char *args)
{
	char *line, *jid = client_split_word(args, &line);
	PurpleConversation *conv;

	if (*jid == '\0' || *line == '\0') {
		event_emit_error("usage: cmd JID COMMANDLINE");
		return;
	}
	conv = client_get_im(jid);
	if (conv == NULL) {
		event_emit_error("cmd: not connected");
		return;
	}
	client_run_slash(conv, line);
}

/* The chat conversation of a joined room, by its bare JID. */
static PurpleConversation *client_get_chat(const char *room)
{
	return purple_find_conversation_with_account(PURPLE_CONV_TYPE_CHAT, room, client_account);
}

static void client_cmd_join(char *args)
{
	PurpleConnection *gc = purple_account_get_connection(client_account);
	char *nick, *room = client_split_word(args, &nick);
	char *at = strchr(room, '@');
	GHashTable *components;

	if (*room == '\0' || *nick == '\0' || at == NULL) {
		event_emit_error("usage: join ROOM@SERVICE NICK");
		return;
	}
	if (gc == NULL || !PURPLE_CONNECTION_IS_CONNECTED(gc)) {
		event_emit_error("join: not connected");
		return;
	}
	components = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	g_hash_table_insert(components, g_strdup("room"), g_strndup(room, (gsize)(at - room)));
	g_hash_table_insert(components, g_strdup("server"), g_strdup(at + 1));
	g_hash_table_insert(components, g_strdup("handle"), g_strdup(nick));
	serv_join_chat(gc, components);
	g_hash_table_destroy(components);
}

static void client_cmd_leave(char *args)
{
	PurpleConversation *conv = client_get_chat(args);

	if (conv == NULL) {
		event_emit_error("leave: not in that room");
		return;
	}
	purple_conversation_destroy(conv);
}

static void client_cmd_chat_send(char *args)
{
	char *text, *room = client_split_word(args, &text);
	PurpleConversation *conv = client_get_chat(room);
	char *decoded;

	if (conv == NULL || *text == '\0') {
		event_emit_error("chat-send: not in that room, or no text");
		return;
	}
	decoded = client_decode_text(text);
	purple_conv_chat_send(PURPLE_CONV_CHAT(conv), decoded);
	g_free(decoded);
}

static void client_cmd_chat_cmd(char *args)
{
	char *line, *room = client_split_word(args, &line);
	PurpleConversation *conv = client_get_chat(room);

	if (conv == NULL || *line == '\0') {
		event_emit_error("chat-cmd: not in that room, or no command");
		return;
	}
	client_run_slash(conv, line);
}

static void client_menu_collect(GList *menu, const char *prefix, GPtrArray *labels,
				const char *want, PurpleMenuAction **found);
static void client_menu_free(GList *menu);

/* The "conversation-extended-menu" of an open room: the labels, and the
 * item with LABEL run as Pidgin runs it (with the conversation). */
static void client_cmd_chat_menu(char *args)
{
	char *label, *room = client_split_word(args, &label);
	PurpleConversation *conv = client_get_chat(room);
	PurpleMenuAction *found = NULL;
	GPtrArray *labels;
	GList *menu;
	GString *ev;

	if (conv == NULL || *label == '\0') {
		event_emit_error("chat-menu: not in that room, or no label");
		return;
	}
	menu = purple_conversation_get_extended_menu(conv);
	labels = g_ptr_array_new_with_free_func(g_free);
	client_menu_collect(menu, NULL, labels, label, &found);
	ev = event_begin("menu");
	event_add_str(ev, "who", room);
	event_add_strv(ev, "labels", labels);
	event_add_str(ev, "ran", found ? label : NULL);
	event_emit(ev);
	if (found == NULL)
		event_emit_error("chat-menu: no item with this label");
	else
		((void (*)(PurpleConversation *, gpointer))found->callback)(conv, found->data);
	g_ptr_array_free(labels, TRUE);
	client_menu_free(menu);
}

/* A stanza sent the way the protocol plugin's own features send theirs,
 * so every plugin sees it on its way out (raw text bypasses them). */
static void client_cmd_send_xml(const char *args)
{
	PurpleConnection *gc = purple_account_get_connection(client_account);
	PurplePlugin *jabber = purple_find_prpl(CLIENT_PRPL_ID);
	char *xml = client_decode_text(args);
	xmlnode *node = xmlnode_from_str(xml, -1);
	GString *ev;

	if (gc == NULL || !PURPLE_CONNECTION_IS_CONNECTED(gc) || node == NULL) {
		event_emit_error("send-xml: not connected, or not one XML element");
	} else {
		purple_signal_emit(jabber, "jabber-sending-xmlnode", gc, &node);
		ev = event_begin("xml-sent");
		event_emit(ev);
	}
	if (node != NULL)
		xmlnode_free(node);
	g_free(xml);
}

static void client_cmd_raw(const char *args)
{
	PurpleConnection *gc = purple_account_get_connection(client_account);
	PurplePluginProtocolInfo *info;
	char *xml;
	GString *ev;
	int sent;

	if (gc == NULL || !PURPLE_CONNECTION_IS_CONNECTED(gc)) {
		event_emit_error("raw: not connected");
		return;
	}
	info = PURPLE_PLUGIN_PROTOCOL_INFO(purple_connection_get_prpl(gc));
	if (info->send_raw == NULL) {
		event_emit_error("raw: the protocol cannot send raw text");
		return;
	}
	xml = client_decode_text(args);
	sent = info->send_raw(gc, xml, strlen(xml));
	ev = event_begin("raw-sent");
	event_add_int(ev, "bytes", sent);
	event_emit(ev);
	g_free(xml);
}

static void client_cmd_answer(const char *args)
{
	char *end = NULL;
	long index = -1;

	if (*args != '\0') {
		index = strtol(args, &end, 10);
		if (end == args || *end != '\0' || index < 0) {
			event_emit_error("usage: answer [N]");
			return;
		}
	}
	client_answer_request((int)index);
}

/* ---- plugin actions, buddy menus, fields dialogs, plugin prefs ---------- */

/* Runs the plugin action (Tools menu in Pidgin, Finch's Plugins actions)
 * whose label is `label`; reports every label offered. */
static void client_cmd_action(char *args)
{
	char *label, *id = client_split_word(args, &label);
	PurplePlugin *plugin = purple_plugins_find_with_id(id);
	PurplePluginAction *found = NULL;
	GPtrArray *labels;
	GList *actions, *l;
	GString *ev;

	if (*id == '\0' || *label == '\0') {
		event_emit_error("usage: action PLUGIN_ID LABEL");
		return;
	}
	if (plugin == NULL || !purple_plugin_is_loaded(plugin) ||
	    !PURPLE_PLUGIN_HAS_ACTIONS(plugin)) {
		event_emit_error("action: no loaded plugin with actions has this id");
		return;
	}
	actions = PURPLE_PLUGIN_ACTIONS(plugin, NULL);
	labels = g_ptr_array_new();
	for (l = actions; l; l = l->next) {
		PurplePluginAction *a = l->data;

		/* NULL entries are separators. */
		if (a == NULL)
			continue;
		a->plugin = plugin;
		a->context = NULL;
		g_ptr_array_add(labels, a->label);
		if (found == NULL && strcmp(a->label, label) == 0)
			found = a;
	}
	ev = event_begin("actions");
	event_add_str(ev, "plugin", id);
	event_add_strv(ev, "labels", labels);
	event_add_str(ev, "ran", found ? found->label : NULL);
	event_emit(ev);
	if (found == NULL)
		event_emit_error("action: no action with this label");
	else if (found->callback != NULL)
		found->callback(found);
	g_ptr_array_free(labels, TRUE);
	for (l = actions; l; l = l->next)
		if (l->data != NULL)
			purple_plugin_action_free(l->data);
	g_list_free(actions);
}

static void client_menu_collect(GList *menu, const char *prefix, GPtrArray *labels,
				const char *want, PurpleMenuAction **found)
{
	GList *l;

	for (l = menu; l; l = l->next) {
		PurpleMenuAction *act = l->data;
		char *full;

		if (act == NULL)
			continue;
		full = prefix ? g_strdup_printf("%s/%s", prefix, act->label) : g_strdup(act->label);
		g_ptr_array_add(labels, full);
		if (*found == NULL && act->callback != NULL &&
		    (strcmp(act->label, want) == 0 || strcmp(full, want) == 0))
			*found = act;
		client_menu_collect(act->children, full, labels, want, found);
	}
}

static void client_menu_free(GList *menu)
{
	GList *l;

	for (l = menu; l; l = l->next) {
		PurpleMenuAction *act = l->data;

		if (act == NULL)
			continue;
		client_menu_free(act->children);
		act->children = NULL;
		purple_menu_action_free(act);
	}
	g_list_free(menu);
}

/* Builds the buddy's extended menu as Pidgin and Finch do (the
 * "blist-node-extended-menu" signal) and runs the item labelled `label`
 * ("Sub/Item" reaches into a submenu); reports every label offered. */
static void client_cmd_menu(char *args)
{
	char *label, *jid = client_split_word(args, &label);
	PurpleMenuAction *found = NULL;
	PurpleBlistNode *node;
	PurpleBuddy *buddy;
	GPtrArray *labels;
	GList *menu;
	GString *ev;

	if (*jid == '\0' || *label == '\0') {
		event_emit_error("usage: menu JID LABEL");
		return;
	}
	buddy = purple_find_buddy(client_account, jid);
	if (buddy == NULL) {
		event_emit_error("menu: no such buddy in the buddy list");
		return;
	}
	node = (PurpleBlistNode *)buddy;
	menu = purple_blist_node_get_extended_menu(node);
	labels = g_ptr_array_new_with_free_func(g_free);
	client_menu_collect(menu, NULL, labels, label, &found);
	ev = event_begin("menu");
	event_add_str(ev, "who", jid);
	event_add_strv(ev, "labels", labels);
	event_add_str(ev, "ran", found ? label : NULL);
	event_emit(ev);
	if (found == NULL)
		event_emit_error("menu: no item with this label");
	else
		((void (*)(PurpleBlistNode *, gpointer))found->callback)(node, found->data);
	g_ptr_array_free(labels, TRUE);
	client_menu_free(menu);
}

static struct client_request *client_newest_fields_request(void)
{
	GList *l;

	for (l = g_list_last(client_requests); l; l = l->prev)
		if (((struct client_request *)l->data)->type == PURPLE_REQUEST_FIELDS)
			return l->data;
	return NULL;
}

/* Sets field ID of the newest fields request: booleans take true/false
 * (or 1/0), choices an index or a choice's label, integers a number,
 * strings the rest of the line. */
static void client_cmd_fields_set(char *args)
{
	char *value, *id = client_split_word(args, &value);
	struct client_request *req = client_newest_fields_request();
	PurpleRequestField *field;
	gboolean ok = TRUE;
	char *decoded, *end = NULL;
	GString *ev;
	GList *c;
	long n;
	int i;

	if (*id == '\0') {
		event_emit_error("usage: fields-set ID VALUE");
		return;
	}
	if (req == NULL) {
		event_emit_error("fields-set: no pending fields request");
		return;
	}
	field = purple_request_fields_get_field(req->fields, id);
	if (field == NULL) {
		event_emit_error("fields-set: no field with this id");
		return;
	}
	decoded = client_decode_text(value);
	switch (purple_request_field_get_type(field)) {
	case PURPLE_REQUEST_FIELD_BOOLEAN:
		if (strcmp(decoded, "true") == 0 || strcmp(decoded, "1") == 0)
			purple_request_field_bool_set_value(field, TRUE);
		else if (strcmp(decoded, "false") == 0 || strcmp(decoded, "0") == 0)
			purple_request_field_bool_set_value(field, FALSE);
		else
			ok = FALSE;
		break;
	case PURPLE_REQUEST_FIELD_CHOICE:
		n = -1;
		for (c = purple_request_field_choice_get_labels(field), i = 0; c; c = c->next, i++)
			if (strcmp(c->data, decoded) == 0)
				n = i;
		if (n < 0 && *decoded != '\0') {
			n = strtol(decoded, &end, 10);
			if (*end != '\0' || n >= (long)g_list_length(
						     purple_request_field_choice_get_labels(field)))
				n = -1;
		}
		if (n < 0)
			ok = FALSE;
		else
			purple_request_field_choice_set_value(field, (int)n);
		break;
	case PURPLE_REQUEST_FIELD_INTEGER:
		n = strtol(decoded, &end, 10);
		if (*decoded == '\0' || *end != '\0')
			ok = FALSE;
		else
			purple_request_field_int_set_value(field, (int)n);
		break;
	case PURPLE_REQUEST_FIELD_STRING:
		purple_request_field_string_set_value(field, decoded);
		break;
	default:
		ok = FALSE;
	}
	if (ok) {
		ev = event_begin("field-set");
		event_add_int(ev, "request", req->id);
		event_add_str(ev, "id", id);
		event_add_str(ev, "value", decoded);
		event_emit(ev);
	} else {
		event_emit_error("fields-set: this field cannot take that value");
	}
	g_free(decoded);
}

/* OK or Cancel on the newest fields request, as a user clicking it would;
 * then the request closes (unless the callback closed it already). */
static void client_cmd_fields_answer(gboolean ok)
{
	struct client_request *req = client_newest_fields_request();
	PurpleRequestFieldsCb cb;
	GString *ev;

	if (req == NULL) {
		event_emit_error("fields: no pending fields request");
		return;
	}
	ev = event_begin("answered");
	event_add_int(ev, "id", req->id);
	event_add_str(ev, "button", ok ? "ok" : "cancel");
	event_emit(ev);
	cb = (PurpleRequestFieldsCb)(ok ? req->ok_cb : req->cancel_cb);
	if (cb != NULL)
		cb(req->user_data, req->fields);
	if (g_list_find(client_requests, req) != NULL)
		purple_request_close(PURPLE_REQUEST_FIELDS, req);
}

/* The plugin's preference page as a UI builds it: name, label and (for
 * booleans, integers, strings) the current value of each entry. */
static void client_cmd_prefs(const char *id)
{
	PurplePlugin *plugin = purple_plugins_find_with_id(id);
	PurplePluginUiInfo *info;
	PurplePluginPrefFrame *frame;
	gboolean first = TRUE;
	GString *ev;
	GList *l;

	if (plugin == NULL || !purple_plugin_is_loaded(plugin) || plugin->info == NULL ||
	    plugin->info->prefs_info == NULL || plugin->info->prefs_info->get_plugin_pref_frame == NULL) {
		event_emit_error("prefs: no loaded plugin with a preference page has this id");
		return;
	}
	info = plugin->info->prefs_info;
	frame = info->get_plugin_pref_frame(plugin);
	ev = event_begin("prefs");
	event_add_str(ev, "plugin", id);
	event_add_key(ev, "entries");
	g_string_append_c(ev, '[');
	for (l = frame ? purple_plugin_pref_frame_get_prefs(frame) : NULL; l; l = l->next) {
		PurplePluginPref *pref = l->data;
		const char *name = purple_plugin_pref_get_name(pref);

		if (!first)
			g_string_append_c(ev, ',');
		first = FALSE;
		g_string_append(ev, "{\"name\":");
		json_append_string(ev, name);
		event_add_str(ev, "label", purple_plugin_pref_get_label(pref));
		if (name != NULL && purple_prefs_exists(name)) {
			switch (purple_prefs_get_type(name)) {
			case PURPLE_PREF_BOOLEAN:
				event_add_bool(ev, "value", purple_prefs_get_bool(name));
				break;
			case PURPLE_PREF_INT:
				event_add_int(ev, "value", purple_prefs_get_int(name));
				break;
			case PURPLE_PREF_STRING:
				event_add_str(ev, "value", purple_prefs_get_string(name));
				break;
			default:
				break;
			}
		}
		g_string_append_c(ev, '}');
	}
	g_string_append_c(ev, ']');
	event_emit(ev);
	if (frame != NULL)
		purple_plugin_pref_frame_destroy(frame);
}

/* ---- benchmark ------------------------------------------------------------ */

/* `make bench-e2e` times messages inside this process:
 *
 *   bench-send JID TEXT   sends TEXT with purple_conv_im_send and reports
 *                         "bench-sent" once the <message> to JID carrying it
 *                         (an <encrypted> payload, or a plain body) leaves:
 *                         wall time from the call to the stanza, and CPU
 *                         time, file opens and fsyncs from the call to the
 *                         later of the stanza and the call's return. A
 *                         message a plugin holds back (waiting for a key
 *                         fetch) is timed until it really leaves.
 *   bench-begin / bench-end
 *                         a window: "bench-window" with its wall and CPU
 *                         time, file opens and fsyncs (fsync + fdatasync).
 *   bench-recv JID PREFIX each encrypted <message> from JID is stamped on
 *                         arrival (before any plugin sees it); each received
 *                         message shown whose text starts with PREFIX is
 *                         reported as "bench-recv" with the figures from
 *                         that arrival to its display.
 *   bench-recv-end        "bench-recv-window": from the first arrival to
 *                         the last display; stops stamping.
 *
 * Opens and fsyncs come from test/e2e/iocount.c when it is preloaded
 * (LD_PRELOAD); without it they are null. Each window's start and end also
 * call access() on a path under /bench-e2e-mark/, which exists nowhere: a
 * mark that bench_e2e.py --trace finds in the client's strace output. */

extern void e2e_iocount_read(unsigned long long *opens, unsigned long long *syncs)
	__attribute__((weak));

struct bench_snap {
	gint64 wall_us;
	gint64 cpu_ns;
	gint64 sys_us; /* the kernel's share of cpu_ns (getrusage) */
	unsigned long long opens;
	unsigned long long syncs;
};

struct bench_send {
	guint64 seq;
	char *jid;
	struct bench_snap start;
	struct bench_snap left;
	struct bench_snap returned_at;
	gboolean left_done;
	gboolean returned;
};

static GQueue bench_sends = G_QUEUE_INIT; /* struct bench_send, oldest first */
static guint64 bench_send_seq;
static struct bench_snap bench_window_start;
static gboolean bench_window_open;

static char *bench_recv_jid;
static char *bench_recv_prefix;
static GQueue bench_arrivals = G_QUEUE_INIT; /* struct bench_snap */
static struct bench_snap bench_recv_first, bench_recv_last;
static guint64 bench_recv_seq;

static void bench_snap_take(struct bench_snap *snap)
{
	struct timespec ts;
	struct rusage ru;

	snap->wall_us = g_get_monotonic_time();
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	snap->cpu_ns = (gint64)ts.tv_sec * 1000000000 + ts.tv_nsec;
	snap->sys_us = 0;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		snap->sys_us = (gint64)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec;
	snap->opens = snap->syncs = 0;
	if (e2e_iocount_read != NULL)
		e2e_iocount_read(&snap->opens, &snap->syncs);
}

/* wall_us as given; cpu_us (of which sys_us in the kernel), opens and
 * fsyncs from a to b. */
static void bench_add_span(GString *ev, gint64 wall_us, const struct bench_snap *a,
			   const struct bench_snap *b)
{
	event_add_int(ev, "wall_us", wall_us);
	event_add_key(ev, "cpu_us");
	g_string_append_printf(ev, "%.1f", (double)(b->cpu_ns - a->cpu_ns) / 1000.0);
	event_add_int(ev, "sys_us", b->sys_us - a->sys_us);
	if (e2e_iocount_read != NULL) {
		event_add_int(ev, "opens", (long long)(b->opens - a->opens));
		event_add_int(ev, "fsyncs", (long long)(b->syncs - a->syncs));
	} else {
		event_add_key(ev, "opens");
		g_string_append(ev, "null");
		event_add_key(ev, "fsyncs");
		g_string_append(ev, "null");
	}
}

/* The bare JID of a full or bare one, compared without case. */
static gboolean bench_same_bare(const char *jid, const char *bare)
{
	size_t n = strlen(bare);

	return jid != NULL && g_ascii_strncasecmp(jid, bare, n) == 0 &&
	       (jid[n] == '\0' || jid[n] == '/');
}

/* Does the serialised stanza start a <message> addressed to bare? */
static gboolean bench_message_to(const char *text, const char *bare)
{
	const char *p = text, *end;

	while (g_ascii_isspace(*p))
		p++;
	if (strncmp(p, "<message", 8) != 0 || (p[8] != ' ' && p[8] != '>'))
		return FALSE;
	end = strchr(p, '>');
	for (p = strstr(p, " to="); p != NULL && (end == NULL || p < end);
	     p = strstr(p + 1, " to=")) {
		char quote = p[4];
		const char *v = p + 5;
		size_t n = strlen(bare);

		if ((quote == '\'' || quote == '"') && g_ascii_strncasecmp(v, bare, n) == 0 &&
		    (v[n] == quote || v[n] == '/'))
			return TRUE;
	}
	return FALSE;
}

static void bench_send_finish(struct bench_send *rec)
{
	const struct bench_snap *end =
		rec->returned_at.wall_us > rec->left.wall_us ? &rec->returned_at : &rec->left;
	GString *ev = event_begin("bench-sent");

	event_add_int(ev, "seq", (long long)rec->seq);
	event_add_str(ev, "to", rec->jid);
	/* The wall time stops at the stanza; the rest counts the call too. */
	bench_add_span(ev, rec->left.wall_us - rec->start.wall_us, &rec->start, end);
	/* The whole purple_conv_im_send call, what follows the stanza too. */
	event_add_int(ev, "call_us", (long long)(rec->returned_at.wall_us - rec->start.wall_us));
	event_add_bool(ev, "queued", rec->left.wall_us > rec->returned_at.wall_us);
	event_emit(ev);
	g_queue_remove(&bench_sends, rec);
	g_free(rec->jid);
	g_free(rec);
}

static void bench_stanza_out(const char *text)
{
	struct bench_snap now;
	GList *l;

	if (g_queue_is_empty(&bench_sends))
		return;
	bench_snap_take(&now);
	for (l = bench_sends.head; l; l = l->next) {
		struct bench_send *rec = l->data;

		if (rec->left_done || !bench_message_to(text, rec->jid))
			continue;
		/* The message itself, not a key transport or a chat state. */
		if (strstr(text, "<payload") == NULL &&
		    (strstr(text, "<body") == NULL || strstr(text, "<encrypted") != NULL))
			return;
		rec->left = now;
		rec->left_done = TRUE;
		if (rec->returned)
			bench_send_finish(rec);
		return;
	}
}

static void bench_cmd_send(char *args)
{
	char *text, *jid = client_split_word(args, &text);
	PurpleConversation *conv;
	struct bench_send *rec;
	char *decoded;

	if (*jid == '\0' || *text == '\0') {
		event_emit_error("usage: bench-send JID TEXT");
		return;
	}
	conv = client_get_im(jid);
	if (conv == NULL) {
		event_emit_error("bench-send: not connected");
		return;
	}
	decoded = client_decode_text(text);
	rec = g_new0(struct bench_send, 1);
	rec->seq = ++bench_send_seq;
	rec->jid = g_strdup(jid);
	g_queue_push_tail(&bench_sends, rec);
	bench_snap_take(&rec->start);
	purple_conv_im_send(PURPLE_CONV_IM(conv), decoded);
	bench_snap_take(&rec->returned_at);
	rec->returned = TRUE;
	if (rec->left_done)
		bench_send_finish(rec);
	g_free(decoded);
}

static void bench_stanza_in(xmlnode *packet)
{
	struct bench_snap now, *copy;
	xmlnode *enc;

	if (bench_recv_jid == NULL)
		return;
	bench_snap_take(&now);
	if (g_strcmp0(packet->name, "message") != 0 ||
	    !bench_same_bare(xmlnode_get_attrib(packet, "from"), bench_recv_jid))
		return;
	enc = xmlnode_get_child(packet, "encrypted");
	if (enc == NULL || xmlnode_get_child(enc, "payload") == NULL)
		return;
	if (bench_recv_first.wall_us == 0)
		bench_recv_first = now;
	copy = g_new(struct bench_snap, 1);
	*copy = now;
	g_queue_push_tail(&bench_arrivals, copy);
}

static void bench_displayed(PurpleConversation *conv, const char *message, PurpleMessageFlags flags)
{
	struct bench_snap now, *arrived;
	char *plain;
	GString *ev;

	if (bench_recv_jid == NULL || !(flags & PURPLE_MESSAGE_RECV) || message == NULL)
		return;
	bench_snap_take(&now);
	if (!bench_same_bare(purple_conversation_get_name(conv), bench_recv_jid))
		return;
	plain = purple_markup_strip_html(message);
	if (g_str_has_prefix(plain, bench_recv_prefix)) {
		arrived = g_queue_pop_head(&bench_arrivals);
		if (arrived == NULL) {
			event_emit_error("bench-recv: shown without an encrypted arrival");
		} else {
			ev = event_begin("bench-recv");
			event_add_int(ev, "seq", (long long)++bench_recv_seq);
			event_add_str(ev, "text", plain);
			bench_add_span(ev, now.wall_us - arrived->wall_us, arrived, &now);
			event_emit(ev);
			bench_recv_last = now;
			g_free(arrived);
		}
	}
	g_free(plain);
}

static void bench_recv_stop(void)
{
	g_queue_clear_full(&bench_arrivals, g_free);
	g_clear_pointer(&bench_recv_jid, g_free);
	g_clear_pointer(&bench_recv_prefix, g_free);
	memset(&bench_recv_first, 0, sizeof(bench_recv_first));
	memset(&bench_recv_last, 0, sizeof(bench_recv_last));
	bench_recv_seq = 0;
}

static void bench_cmd_recv(char *args)
{
	char *prefix, *jid = client_split_word(args, &prefix);

	if (*jid == '\0' || *prefix == '\0') {
		event_emit_error("usage: bench-recv JID PREFIX");
		return;
	}
	bench_recv_stop();
	(void)g_access("/bench-e2e-mark/recv-begin", F_OK);
	bench_recv_jid = g_strdup(jid);
	bench_recv_prefix = client_decode_text(prefix);
	event_emit(event_begin("bench-recv-armed"));
}

static void bench_cmd_recv_end(void)
{
	GString *ev = event_begin("bench-recv-window");

	(void)g_access("/bench-e2e-mark/recv-end", F_OK);

	event_add_int(ev, "messages", (long long)bench_recv_seq);
	event_add_int(ev, "unmatched_arrivals", g_queue_get_length(&bench_arrivals));
	if (bench_recv_seq > 0)
		bench_add_span(ev, bench_recv_last.wall_us - bench_recv_first.wall_us,
			       &bench_recv_first, &bench_recv_last);
	event_emit(ev);
	bench_recv_stop();
}

static void bench_cmd_window(gboolean begin)
{
	struct bench_snap now;
	GString *ev;

	bench_snap_take(&now);
	/* A mark for a system call trace (bench_e2e.py --trace); no such file. */
	(void)g_access(begin ? "/bench-e2e-mark/send-begin" : "/bench-e2e-mark/send-end", F_OK);
	if (begin) {
		bench_window_start = now;
		bench_window_open = TRUE;
		ev = event_begin("bench-begin");
		event_add_bool(ev, "iocount", e2e_iocount_read != NULL);
		event_emit(ev);
		return;
	}
	if (!bench_window_open) {
		event_emit_error("bench-end: no bench-begin before it");
		return;
	}
	bench_window_open = FALSE;
	ev = event_begin("bench-window");
	bench_add_span(ev, now.wall_us - bench_window_start.wall_us, &bench_window_start, &now);
	event_add_int(ev, "pending", g_queue_get_length(&bench_sends));
	event_emit(ev);
}

static void client_cmd_debug_log(const char *args)
{
	GString *ev;

	if (strcmp(args, "on") == 0 || strcmp(args, "off") == 0) {
		client_debug_enabled = strcmp(args, "on") == 0;
		ev = event_begin("debug-log");
		event_add_bool(ev, "enabled", client_debug_enabled);
		event_emit(ev);
	} else {
		event_emit_error("usage: debug-log on|off");
	}
}

static void client_run_command(char *line)
{
	char *args, *name = client_split_word(line, &args);
	GString *ev;

	if (client_quitting)
		return;
	if (strcmp(name, "send") == 0) {
		client_cmd_send(args);
	} else if (strcmp(name, "cmd") == 0) {
		client_cmd_cmd(args);
	} else if (strcmp(name, "add") == 0 && *args != '\0') {
		if (purple_account_is_connected(client_account))
			client_add_buddy(args);
		else
			event_emit_error("add: not connected");
	} else if (strcmp(name, "join") == 0) {
		client_cmd_join(args);
	} else if (strcmp(name, "leave") == 0 && *args != '\0') {
		client_cmd_leave(args);
	} else if (strcmp(name, "chat-send") == 0) {
		client_cmd_chat_send(args);
	} else if (strcmp(name, "chat-cmd") == 0) {
		client_cmd_chat_cmd(args);
	} else if (strcmp(name, "chat-menu") == 0) {
		client_cmd_chat_menu(args);
	} else if (strcmp(name, "send-xml") == 0 && *args != '\0') {
		client_cmd_send_xml(args);
	} else if (strcmp(name, "raw") == 0 && *args != '\0') {
		client_cmd_raw(args);
	} else if (strcmp(name, "load") == 0 && *args != '\0') {
		client_set_plugin(args, TRUE);
	} else if (strcmp(name, "unload") == 0 && *args != '\0') {
		client_set_plugin(args, FALSE);
	} else if (strcmp(name, "drop-in") == 0 && *args != '\0') {
		if (client_drop_patterns == NULL)
			client_drop_patterns = g_ptr_array_new_with_free_func(g_free);
		g_ptr_array_add(client_drop_patterns, client_decode_text(args));
		client_emit_drop_patterns();
	} else if (strcmp(name, "drop-in-clear") == 0) {
		if (client_drop_patterns != NULL)
			g_ptr_array_set_size(client_drop_patterns, 0);
		client_emit_drop_patterns();
	} else if (strcmp(name, "answer") == 0) {
		client_cmd_answer(args);
	} else if (strcmp(name, "action") == 0) {
		client_cmd_action(args);
	} else if (strcmp(name, "menu") == 0) {
		if (purple_account_is_connected(client_account))
			client_cmd_menu(args);
		else
			event_emit_error("menu: not connected");
	} else if (strcmp(name, "fields-set") == 0) {
		client_cmd_fields_set(args);
	} else if (strcmp(name, "fields-ok") == 0) {
		client_cmd_fields_answer(TRUE);
	} else if (strcmp(name, "fields-cancel") == 0) {
		client_cmd_fields_answer(FALSE);
	} else if (strcmp(name, "prefs") == 0 && *args != '\0') {
		client_cmd_prefs(args);
	} else if (strcmp(name, "bench-send") == 0) {
		bench_cmd_send(args);
	} else if (strcmp(name, "bench-begin") == 0) {
		bench_cmd_window(TRUE);
	} else if (strcmp(name, "bench-end") == 0) {
		bench_cmd_window(FALSE);
	} else if (strcmp(name, "bench-recv") == 0) {
		bench_cmd_recv(args);
	} else if (strcmp(name, "bench-recv-end") == 0) {
		bench_cmd_recv_end();
	} else if (strcmp(name, "debug-log") == 0) {
		client_cmd_debug_log(args);
	} else if (strcmp(name, "echo") == 0) {
		/* Lets a test know every earlier command has been handled. */
		ev = event_begin("echo");
		event_add_str(ev, "text", args);
		event_emit(ev);
	} else if (strcmp(name, "quit") == 0) {
		client_request_quit();
	} else if (*name != '\0') {
		ev = event_begin("error");
		event_add_str(ev, "text", "unknown command or missing argument");
		event_add_str(ev, "command", name);
		event_emit(ev);
	}
}

static gboolean client_stdin_cb(GIOChannel *channel, GIOCondition cond, gpointer data)
{
	GError *error = NULL;
	GIOStatus status;
	gsize length, terminator;
	char *line;

	for (;;) {
		line = NULL;
		status = g_io_channel_read_line(channel, &line, &length, &terminator, &error);
		if (status != G_IO_STATUS_NORMAL)
			break;
		line[terminator] = '\0';
		client_run_command(line);
		g_free(line);
	}
	g_free(line);
	if (status == G_IO_STATUS_AGAIN)
		return TRUE;
	if (error != NULL) {
		client_debug_write("error", "e2e", error->message);
		g_error_free(error);
	}
	/* EOF: whoever drove us is gone. */
	client_stdin_watch = 0;
	client_request_quit();
	return FALSE;
}

static gboolean client_quit_idle_cb(gpointer data)
{
	if (client_stdin_watch != 0) {
		g_source_remove(client_stdin_watch);
		client_stdin_watch = 0;
	}
	/* Signs the account off, unloads plugins, writes accounts.xml. */
	purple_core_quit();
	g_main_loop_quit(client_loop);
	return FALSE;
}

/* Never tear down from inside a signal handler or a command that runs in
 * one: the stack above us still uses the connection. */
static void client_request_quit(void)
{
	if (client_quitting)
		return;
	client_quitting = TRUE;
	g_idle_add(client_quit_idle_cb, NULL);
}

static gboolean client_unix_signal_cb(gpointer data)
{
	client_request_quit();
	return TRUE;
}

/* ---- start-up ----------------------------------------------------------- */

static int client_parse_options(int argc, char **argv, struct client_options *opts)
{
	GOptionEntry entries[] = {
		{ "user-dir", 0, 0, G_OPTION_ARG_FILENAME, &opts->user_dir,
		  "libpurple user directory (created if missing)", "DIR" },
		{ "jid", 0, 0, G_OPTION_ARG_STRING, &opts->jid, "account, user@host/resource",
		  "JID" },
		{ "password", 0, 0, G_OPTION_ARG_STRING, &opts->password, "account password", "PW" },
		{ "port", 0, 0, G_OPTION_ARG_INT, &opts->port, "c2s port on 127.0.0.1", "N" },
		{ "plugin-dir", 0, 0, G_OPTION_ARG_FILENAME, &opts->plugin_dir,
		  "extra plugin search directory", "DIR" },
		{ "plugin", 0, 0, G_OPTION_ARG_STRING_ARRAY, &opts->plugins,
		  "load the plugin with this id (repeatable)", "ID" },
		{ NULL },
	};
	GOptionContext *ctx = g_option_context_new("- headless libpurple client for e2e tests");
	GError *error = NULL;
	int ret = 0;

	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
		fprintf(stderr, "e2e-client: %s\n", error->message);
		g_error_free(error);
		ret = -1;
		goto out;
	}
	if (argc > 1) {
		fprintf(stderr, "e2e-client: unexpected argument '%s'\n", argv[1]);
		ret = -1;
		goto out;
	}
	if (opts->user_dir == NULL || opts->jid == NULL || opts->password == NULL) {
		fprintf(stderr, "e2e-client: --user-dir, --jid and --password are required\n");
		ret = -1;
		goto out;
	}
	if (opts->port <= 0 || opts->port > 65535) {
		fprintf(stderr, "e2e-client: --port must be 1..65535\n");
		ret = -1;
		goto out;
	}
	if (strchr(opts->jid, '@') == NULL) {
		fprintf(stderr, "e2e-client: --jid must look like user@host/resource\n");
		ret = -1;
		goto out;
	}

out:
	g_option_context_free(ctx);
	return ret;
}

/* Keeps stdout for events only: a stray printf from libpurple or a plugin
 * would otherwise break a JSON line. */
static int client_open_event_stream(void)
{
	int fd = dup(STDOUT_FILENO);

	if (fd < 0)
		return -1;
	client_events = fdopen(fd, "w");
	if (client_events == NULL) {
		close(fd);
		return -1;
	}
	if (dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
		return -1;
	return 0;
}

static void client_setup_account(const struct client_options *opts)
{
	client_account = purple_accounts_find(opts->jid, CLIENT_PRPL_ID);
	if (client_account == NULL) {
		client_account = purple_account_new(opts->jid, CLIENT_PRPL_ID);
		purple_accounts_add(client_account);
	}
	purple_account_set_password(client_account, opts->password);
	purple_account_set_remember_password(client_account, TRUE);
	purple_account_set_string(client_account, "connect_server", "127.0.0.1");
	purple_account_set_int(client_account, "port", opts->port);
	purple_account_set_string(client_account, "connection_security", "opportunistic_tls");
	purple_account_set_bool(client_account, "auth_plain_in_clear", TRUE);
}

int main(int argc, char **argv)
{
	struct client_options opts = { 0 };
	PurpleSavedStatus *status;
	GIOChannel *in;
	char *log_path;
	int ret = 0;
	int i;

	if (client_parse_options(argc, argv, &opts) < 0) {
		ret = 2;
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);
	if (client_open_event_stream() < 0) {
		fprintf(stderr, "e2e-client: cannot set up the event stream: %s\n",
			g_strerror(errno));
		ret = 1;
		goto out;
	}
	if (g_mkdir_with_parents(opts.user_dir, 0700) < 0) {
		fprintf(stderr, "e2e-client: cannot create %s: %s\n", opts.user_dir,
			g_strerror(errno));
		ret = 1;
		goto out;
	}
	log_path = g_build_filename(opts.user_dir, "debug.log", NULL);
	client_debug_log = g_fopen(log_path, "a");
	client_debug_stderr = g_strcmp0(g_getenv("E2E_DEBUG"), "1") == 0;
	g_free(log_path);
	g_log_set_default_handler(client_glib_log_cb, NULL);
	client_debug_write("info", "e2e", "---- e2e-client starting ----");

	client_loop = g_main_loop_new(NULL, FALSE);
	purple_util_set_user_dir(opts.user_dir);
	if (opts.plugin_dir != NULL)
		purple_plugins_add_search_path(opts.plugin_dir);
	purple_core_set_ui_ops(&client_core_ops);
	purple_eventloop_set_ui_ops(&client_eventloop_ops);
	if (!purple_core_init(CLIENT_UI_ID)) {
		fprintf(stderr, "e2e-client: libpurple failed to initialise\n");
		ret = 1;
		goto out;
	}
	purple_set_blist(purple_blist_new());
	purple_blist_load();
	purple_prefs_load();
	purple_prefs_set_bool("/purple/logging/log_ims", FALSE);
	purple_prefs_set_bool("/purple/logging/log_chats", FALSE);
	purple_prefs_set_bool("/purple/logging/log_system", FALSE);
	purple_plugins_probe(G_MODULE_SUFFIX);

	if (client_connect_signals() < 0) {
		fprintf(stderr, "e2e-client: the XMPP protocol plugin is missing\n");
		ret = 1;
		goto out;
	}
	client_setup_account(&opts);
	/* Before connecting, so plugins see the whole sign-on. */
	for (i = 0; opts.plugins != NULL && opts.plugins[i] != NULL; i++)
		client_set_plugin(opts.plugins[i], TRUE);

	in = g_io_channel_unix_new(STDIN_FILENO);
	g_io_channel_set_encoding(in, NULL, NULL);
	g_io_channel_set_flags(in, G_IO_FLAG_NONBLOCK, NULL);
	client_stdin_watch = g_io_add_watch(in, G_IO_IN | G_IO_HUP | G_IO_ERR, client_stdin_cb, NULL);
	g_io_channel_unref(in);
	g_unix_signal_add(SIGTERM, client_unix_signal_cb, NULL);
	g_unix_signal_add(SIGINT, client_unix_signal_cb, NULL);

	event_emit(event_begin("ready"));

	purple_account_set_enabled(client_account, CLIENT_UI_ID, TRUE);
	status = purple_savedstatus_new(NULL, PURPLE_STATUS_AVAILABLE);
	purple_savedstatus_activate(status);

	g_main_loop_run(client_loop);
	client_debug_write("info", "e2e", "---- e2e-client exiting ----");

out:
	if (client_events != NULL)
		event_emit(event_begin("exit"));
	if (client_events != NULL)
		fclose(client_events);
	if (client_debug_log != NULL)
		fclose(client_debug_log);
	if (client_loop != NULL)
		g_main_loop_unref(client_loop);
	if (client_ui_info != NULL)
		g_hash_table_destroy(client_ui_info);
	if (client_drop_patterns != NULL)
		g_ptr_array_free(client_drop_patterns, TRUE);
	g_free(opts.user_dir);
	g_free(opts.jid);
	g_free(opts.password);
	g_free(opts.plugin_dir);
	g_strfreev(opts.plugins);
	return ret;
}
