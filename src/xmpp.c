/*
 * Our requests to the XMPP server, through the protocol plugin's public
 * signals: every IQ gets a fresh id, a 20-second timeout and a pending entry;
 * a reply counts only when its id and sender match what we sent. Also the
 * pubsub requests behind OMEMO's PEP nodes (XEP-0060, XEP-0163) and JID
 * normalisation.
 */
#include <string.h>

#include <glib.h>

#include <account.h>
#include <debug.h>
#include <eventloop.h>
#include <signals.h>

#include "payload.h"
#include "xmpp.h"

#define LOG "omemo"

typedef struct {
	char *id;
	PurpleConnection *gc;
	char *expect_from; /* bare or full JID; NULL: our own account */
	xmpp_iq_cb cb;
	void *data;
	guint timer;
} pending_iq;

static PurplePlugin *jabber;
static GHashTable *pending; /* id -> pending_iq */
static int sending_own;

static void pending_free(gpointer p)
{
	pending_iq *q = p;

	if (q->timer)
		purple_timeout_remove(q->timer);
	g_free(q->id);
	g_free(q->expect_from);
	g_free(q);
}

void xmpp_init(PurplePlugin *jabber_plugin)
{
	jabber = jabber_plugin;
	if (!pending)
		pending = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, pending_free);
}

PurplePlugin *xmpp_jabber_plugin(void)
{
	return jabber;
}

/* Take q out of the table and run its callback once. */
static void pending_finish(pending_iq *q, xmpp_iq_status status, xmlnode *iq)
{
	g_hash_table_steal(pending, q->id);
	if (q->timer) {
		purple_timeout_remove(q->timer);
		q->timer = 0;
	}
	q->cb(q->gc, status, iq, q->data);
	pending_free(q);
}

static void cancel_matching(PurpleConnection *gc)
{
	GList *list = g_hash_table_get_values(pending);

	for (GList *l = list; l; l = l->next) {
		pending_iq *q = l->data;

		if (!gc || q->gc == gc)
			pending_finish(q, XMPP_IQ_CANCELLED, NULL);
	}
	g_list_free(list);
}

void xmpp_shutdown(void)
{
	if (!pending)
		return;
	cancel_matching(NULL);
	g_hash_table_destroy(pending);
	pending = NULL;
	jabber = NULL;
}

void xmpp_cancel_connection(PurpleConnection *gc)
{
	if (pending)
		cancel_matching(gc);
}

void xmpp_send(PurpleConnection *gc, xmlnode *stanza)
{
	xmlnode *node = stanza;

	if (!jabber || !gc || !stanza)
		return;
	sending_own++;
	purple_signal_emit(jabber, "jabber-sending-xmlnode", gc, &node);
	sending_own--;
}

bool xmpp_sending_own(void)
{
	return sending_own > 0;
}

static gboolean iq_timeout_cb(gpointer data)
{
	pending_iq *q = data;

	q->timer = 0;
	purple_debug_warning(LOG, "request %s to %s timed out\n", q->id,
	                     q->expect_from ? q->expect_from : "own account");
	pending_finish(q, XMPP_IQ_TIMEOUT, NULL);
	return FALSE;
}

bool xmpp_send_iq(PurpleConnection *gc, xmlnode *iq, const char *to, xmpp_iq_cb cb, void *data)
{
	uint8_t rnd[8];
	pending_iq *q;
	char *hex;

	if (!jabber || !pending || !gc || purple_connection_get_state(gc) != PURPLE_CONNECTED) {
		xmlnode_free(iq);
		return false;
	}
	if (payload_random(rnd, sizeof(rnd)) < 0)
		memset(rnd, 0, sizeof(rnd));
	hex = g_strdup_printf("%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3],
	                      rnd[4], rnd[5], rnd[6], rnd[7]);
	q = g_new0(pending_iq, 1);
	q->id = g_strdup_printf("omemo-%s-%u", hex, g_hash_table_size(pending));
	g_free(hex);
	q->gc = gc;
	q->expect_from = to ? g_strdup(to) : NULL;
	q->cb = cb;
	q->data = data;
	xmlnode_set_attrib(iq, "id", q->id);
	if (to)
		xmlnode_set_attrib(iq, "to", to);
	q->timer = purple_timeout_add_seconds(XMPP_IQ_TIMEOUT_SECONDS, iq_timeout_cb, q);
	g_hash_table_insert(pending, q->id, q);
	xmpp_send(gc, iq);
	xmlnode_free(iq);
	return true;
}

/* Replies to requests without 'to' come from our bare JID or carry no
 * 'from' at all (RFC 6120 8.1.2.1); others must come from where we sent. */
static bool reply_from_ok(PurpleConnection *gc, const pending_iq *q, const char *from)
{
	char *want, *got, *own;
	bool ok;

	if (!q->expect_from) {
		if (!from)
			return true;
		own = xmpp_own_bare_jid(purple_connection_get_account(gc));
		got = xmpp_bare_jid(from);
		ok = own && got && strcmp(own, got) == 0 && !strchr(from, '/');
		g_free(own);
		g_free(got);
		return ok;
	}
	if (!from)
		return false;
	want = xmpp_bare_jid(q->expect_from);
	got = xmpp_bare_jid(from);
	ok = want && got && strcmp(want, got) == 0 &&
	     (strchr(q->expect_from, '/') == NULL) == (strchr(from, '/') == NULL);
	g_free(want);
	g_free(got);
	return ok;
}

bool xmpp_handle_reply(PurpleConnection *gc, xmlnode *stanza)
{
	const char *type, *id;
	pending_iq *q;

	if (!pending || !stanza || g_strcmp0(stanza->name, "iq") != 0)
		return false;
	type = xmlnode_get_attrib(stanza, "type");
	id = xmlnode_get_attrib(stanza, "id");
	if (!id || (g_strcmp0(type, "result") != 0 && g_strcmp0(type, "error") != 0))
		return false;
	q = g_hash_table_lookup(pending, id);
	if (!q || q->gc != gc)
		return false;
	if (!reply_from_ok(gc, q, xmlnode_get_attrib(stanza, "from"))) {
		purple_debug_warning(LOG, "ignoring a reply to %s from %s\n", id,
		                     xmlnode_get_attrib(stanza, "from"));
		return false;
	}
	pending_finish(q, g_strcmp0(type, "result") == 0 ? XMPP_IQ_RESULT : XMPP_IQ_ERROR, stanza);
	return true;
}

static void neutralized_reply_cb(PurpleConnection *gc, xmpp_iq_status status, xmlnode *iq,
                                 void *data)
{
}

void xmpp_neutralize(PurpleConnection *gc, xmlnode *stanza)
{
	xmlnode *child, *next, *ping;
	uint8_t rnd[4] = { 0 };
	pending_iq *q;

	if (!stanza)
		return;
	for (child = stanza->child; child; child = next) {
		next = child->next;
		xmlnode_free(child); /* elements, text and attributes alike */
	}
	g_free(stanza->name);
	stanza->name = g_strdup("iq");
	ping = xmlnode_new_child(stanza, "ping");
	xmlnode_set_namespace(ping, "urn:xmpp:ping");
	xmlnode_set_attrib(stanza, "type", "get");
	if (payload_random(rnd, sizeof(rnd)) < 0)
		memset(rnd, 0, sizeof(rnd));
	q = g_new0(pending_iq, 1);
	q->id = g_strdup_printf("omemo-stopped-%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
	xmlnode_set_attrib(stanza, "id", q->id);
	if (!pending || !gc) {
		pending_free(q);
		return;
	}
	q->gc = gc;
	q->cb = neutralized_reply_cb;
	q->timer = purple_timeout_add_seconds(XMPP_IQ_TIMEOUT_SECONDS, iq_timeout_cb, q);
	g_hash_table_insert(pending, q->id, q);
}

/* ---- pubsub ---- */

static xmlnode *iq_new(const char *type)
{
	xmlnode *iq = xmlnode_new("iq");

	xmlnode_set_attrib(iq, "type", type);
	return iq;
}

xmlnode *xmpp_pubsub_items_iq(const char *node, int max_items)
{
	xmlnode *iq = iq_new("get");
	xmlnode *ps = xmlnode_new_child(iq, "pubsub");
	xmlnode *items = xmlnode_new_child(ps, "items");

	xmlnode_set_namespace(ps, XMPP_NS_PUBSUB);
	xmlnode_set_attrib(items, "node", node);
	if (max_items > 0) {
		char n[16];

		g_snprintf(n, sizeof(n), "%d", max_items);
		xmlnode_set_attrib(items, "max_items", n);
	}
	return iq;
}

/* A data form of type `type` with FORM_TYPE and one field. */
static xmlnode *form_new(const char *type, const char *form_type, const char *var,
                         const char *value)
{
	xmlnode *x = xmlnode_new("x");
	xmlnode *f;

	xmlnode_set_namespace(x, XMPP_NS_DATA);
	xmlnode_set_attrib(x, "type", type);
	f = xmlnode_new_child(x, "field");
	xmlnode_set_attrib(f, "var", "FORM_TYPE");
	xmlnode_set_attrib(f, "type", "hidden");
	xmlnode_insert_data(xmlnode_new_child(f, "value"), form_type, -1);
	f = xmlnode_new_child(x, "field");
	xmlnode_set_attrib(f, "var", var);
	xmlnode_insert_data(xmlnode_new_child(f, "value"), value, -1);
	return x;
}

xmlnode *xmpp_pubsub_publish_iq(const char *node, const char *item_id, xmlnode *payload,
                                bool open_access)
{
	xmlnode *iq = iq_new("set");
	xmlnode *ps = xmlnode_new_child(iq, "pubsub");
	xmlnode *publish = xmlnode_new_child(ps, "publish");
	xmlnode *item = xmlnode_new_child(publish, "item");

	xmlnode_set_namespace(ps, XMPP_NS_PUBSUB);
	xmlnode_set_attrib(publish, "node", node);
	xmlnode_set_attrib(item, "id", item_id);
	xmlnode_insert_child(item, payload);
	/* Open access so non-contacts and room members can read the node, as
	 * Conversations publishes it (XEP-0060 7.1.5 publish-options). */
	if (open_access) {
		xmlnode *opts = xmlnode_new_child(ps, "publish-options");

		xmlnode_insert_child(opts, form_new("submit",
		                                    "http://jabber.org/protocol/pubsub#publish-options",
		                                    "pubsub#access_model", "open"));
	}
	return iq;
}

xmlnode *xmpp_pubsub_configure_open_iq(const char *node)
{
	xmlnode *iq = iq_new("set");
	xmlnode *ps = xmlnode_new_child(iq, "pubsub");
	xmlnode *conf = xmlnode_new_child(ps, "configure");

	xmlnode_set_namespace(ps, XMPP_NS_PUBSUB_OWNER);
	xmlnode_set_attrib(conf, "node", node);
	xmlnode_insert_child(conf, form_new("submit", "http://jabber.org/protocol/pubsub#node_config",
	                                    "pubsub#access_model", "open"));
	return iq;
}

bool xmpp_iq_error_is(const xmlnode *iq, const char *condition, const char *ns)
{
	xmlnode *err;

	if (!iq || g_strcmp0(xmlnode_get_attrib(iq, "type"), "error") != 0)
		return false;
	err = xmlnode_get_child((xmlnode *)iq, "error");
	return err && xmlnode_get_child_with_namespace(err, condition, ns) != NULL;
}

/* ---- JIDs ---- */

char *xmpp_bare_jid(const char *jid)
{
	const char *slash, *at;
	char *bare, *lower;
	size_t len;

	if (!jid || !*jid)
		return NULL;
	slash = strchr(jid, '/');
	len = slash ? (size_t)(slash - jid) : strlen(jid);
	if (len == 0)
		return NULL;
	bare = g_strndup(jid, len);
	at = strchr(bare, '@');
	if (at && (at == bare || at[1] == '\0')) {
		g_free(bare);
		return NULL;
	}
	/* Local part and domain compare case-insensitively (nodeprep and
	 * nameprep fold case); this is what our store keys on. */
	lower = g_utf8_strdown(bare, -1);
	g_free(bare);
	return lower;
}

char *xmpp_own_bare_jid(PurpleAccount *account)
{
	return account ? xmpp_bare_jid(purple_account_get_username(account)) : NULL;
}
