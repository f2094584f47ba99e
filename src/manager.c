/*
 * The per-account OMEMO manager. At sign-on it opens the account's store,
 * makes sure the own device is in the published device list and publishes
 * the bundle (XEP-0384 v0.3 section 4). Messages the user types into a
 * conversation where OMEMO is on are queued per contact, in order, while
 * the contact's device list and the bundles of devices without a session
 * are fetched; then each is encrypted for every reachable device of the
 * contact and of our own account, or, when nothing can be reached, not sent
 * at all (fail closed) with a notice that quotes the text. Incoming
 * <encrypted> messages are decrypted in place, so the protocol plugin shows
 * them as ordinary messages.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include <glib.h>
#include <glib/gstdio.h>

#include <conversation.h>
#include <debug.h>
#include <eventloop.h>
#include <notify.h>
#include <prefs.h>
#include <server.h>
#include <util.h>

#include "err.h"
#include "i18n.h"
#include "manager.h"
#include "manager_int.h"
#include "group.h"
#include "muc.h"
#include "store.h"
#include "trust.h"
#include "ui.h"
#include "wire.h"
#include "xmpp.h"

static GHashTable *managers; /* PurpleAccount* -> manager_t */
/* Accounts whose store could not be opened -> the reason. Nothing they
 * send is known to be safe in plaintext, so their messages are held. */
static GHashTable *unavailable;

static void skip_entry_free(gpointer p)
{
	skip_entry *e = p;

	g_free(e->jid);
	g_free(e->reason);
	g_free(e);
}

void manager_contact_free(gpointer p)
{
	contact *c = p;

	g_free(c->jid);
	g_queue_clear_full(&c->outbox, g_free);
	g_hash_table_destroy(c->skipped);
	g_string_free(c->untrusted, TRUE);
	g_free(c);
}

contact *manager_contact_new(const char *jid)
{
	contact *c = g_new0(contact, 1);

	c->jid = g_strdup(jid);
	g_queue_init(&c->outbox);
	c->skipped = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, skip_entry_free);
	c->untrusted = g_string_new(NULL);
	return c;
}

contact *manager_contact_get(manager_t *m, const char *jid)
{
	contact *c = g_hash_table_lookup(m->contacts, jid);

	if (!c) {
		c = manager_contact_new(jid);
		g_hash_table_insert(m->contacts, c->jid, c);
	}
	return c;
}

manager_t *manager_find(PurpleAccount *account)
{
	return managers ? g_hash_table_lookup(managers, account) : NULL;
}

engine_t *manager_engine(manager_t *m)
{
	return m ? m->engine : NULL;
}

static manager_t *manager_for_gc(PurpleConnection *gc)
{
	return gc ? manager_find(purple_connection_get_account(gc)) : NULL;
}

/* ---- notices ---- */

void manager_notice(PurpleAccount *account, const char *jid, const char *text)
{
	PurpleConversation *conv;

	/* A room's notices go into the room. */
	conv = purple_find_conversation_with_account(PURPLE_CONV_TYPE_CHAT, jid, account);
	if (!conv)
		conv = purple_find_conversation_with_account(PURPLE_CONV_TYPE_IM, jid, account);
	if (!conv)
		conv = purple_conversation_new(PURPLE_CONV_TYPE_IM, account, jid);
	if (conv)
		purple_conversation_write(conv, NULL, text, PURPLE_MESSAGE_SYSTEM | PURPLE_MESSAGE_NO_LOG,
		                          time(NULL));
}

/* A notice that a message was not sent, quoting its text so nothing the
 * user wrote is lost. */
void manager_notice_not_sent(manager_t *m, const char *jid, const char *why, const char *text)
{
	char *plain = purple_markup_strip_html(text);
	char *esc = g_markup_escape_text(plain ? plain : "", -1);
	char *msg = g_strdup_printf(_("Message NOT sent: %s It was: \"%s\""), why, esc);

	manager_notice(m->account, jid, msg);
	g_free(msg);
	g_free(esc);
	g_free(plain);
}

/* ---- settings ---- */

/* Asked for every message: kept in memory once read (stored values are
 * only ever changed through manager_set_mode). */
manager_mode manager_get_mode(manager_t *m, const char *jid)
{
	gpointer cached;
	char *v = NULL;
	manager_mode mode = MANAGER_MODE_AUTO;

	if (g_hash_table_lookup_extended(m->modes, jid, NULL, &cached))
		return (manager_mode)GPOINTER_TO_INT(cached);
	if (store_setting_get(engine_store(m->engine), jid, "omemo", &v) == 0) {
		if (g_strcmp0(v, "on") == 0)
			mode = MANAGER_MODE_ON;
		else if (g_strcmp0(v, "off") == 0)
			mode = MANAGER_MODE_OFF;
	}
	g_free(v);
	g_hash_table_replace(m->modes, g_strdup(jid), GINT_TO_POINTER(mode));
	return mode;
}

int manager_set_mode(manager_t *m, const char *jid, manager_mode mode)
{
	const char *v = mode == MANAGER_MODE_ON ? "on" : mode == MANAGER_MODE_OFF ? "off" : "auto";
	int ret = store_setting_set(engine_store(m->engine), jid, "omemo", v);

	if (ret == 0)
		g_hash_table_replace(m->modes, g_strdup(jid), GINT_TO_POINTER(mode));
	else
		g_hash_table_remove(m->modes, jid);
	return ret;
}

/* ---- device lists ---- */

static bool ids_contain(const uint32_t *ids, size_t n, uint32_t id)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

static void own_list_publish(manager_t *m, const omemo_devicelist *current);

/* Record a device list that jid published (fetched or from a PEP event). */
/* Tell an open conversation with jid which devices came and went. */
static void devicelist_notice_changes(manager_t *m, const char *jid, const store_device *before,
                                      size_t n_before, const omemo_devicelist *list)
{
	GString *added = g_string_new(NULL), *removed = g_string_new(NULL);
	char *msg = NULL;

	for (size_t i = 0; i < list->n_ids; i++) {
		bool known = false;

		for (size_t j = 0; j < n_before && !known; j++)
			known = before[j].id == list->ids[i];
		if (!known)
			g_string_append_printf(added, " %u", list->ids[i]);
	}
	for (size_t j = 0; j < n_before; j++)
		if (!ids_contain(list->ids, list->n_ids, before[j].id))
			g_string_append_printf(removed, " %u", before[j].id);
	if (added->len && removed->len)
		msg = g_strdup_printf(_("%s changed OMEMO devices: new%s; gone%s."), jid, added->str,
		                      removed->str);
	else if (added->len)
		msg = g_strdup_printf(_("%s has new OMEMO devices:%s."), jid, added->str);
	else if (removed->len)
		msg = g_strdup_printf(_("%s no longer uses OMEMO devices%s."), jid, removed->str);
	if (msg)
		manager_notice(m->account, jid, msg);
	g_free(msg);
	g_string_free(added, TRUE);
	g_string_free(removed, TRUE);
}

static void devicelist_received(manager_t *m, const char *jid, const omemo_devicelist *list)
{
	store_t *st = engine_store(m->engine);
	store_device *before = NULL;
	size_t n_before = 0;
	bool had_list = store_devices_get(st, OMEMO_NS_LEGACY, jid, true, &before, &n_before) == 0 &&
	                n_before > 0;
	int ret = store_devices_update(st, OMEMO_NS_LEGACY, jid, list->ids, list->n_ids, time(NULL));

	/* Changes only, and only into a conversation already open: a first
	 * list, or a contact nobody is talking to, is no news. */
	if (ret == 0 && had_list && strcmp(jid, m->own_jid) != 0 &&
	    purple_find_conversation_with_account(PURPLE_CONV_TYPE_IM, jid, m->account))
		devicelist_notice_changes(m, jid, before, n_before, list);
	g_free(before);
	if (ret < 0)
		purple_debug_error(LOG, "storing the device list of %s: %s\n", jid,
		                   omemo_strerror(ret));
	if (strcmp(jid, m->own_jid) == 0) {
		/* The spec's MUST: a client finding itself missing adds itself
		 * again (another client may have republished without us). */
		if (!ids_contain(list->ids, list->n_ids, engine_device_id(m->engine)))
			own_list_publish(m, list);
	} else {
		contact *c = manager_contact_get(m, jid);

		c->state = list->n_ids ? DL_KNOWN : DL_NONE;
	}
}

/* The answers that mean "this account publishes no OMEMO device list":
 * no such node (Prosody says forbidden for another account's missing
 * node), or no PEP service at all. A timeout or any other error says
 * nothing either way. */
static bool devicelist_absent(const xmlnode *iq)
{
	return xmpp_iq_is_item_not_found(iq) ||
	       xmpp_iq_error_is(iq, "forbidden", XMPP_NS_STANZAS) ||
	       xmpp_iq_error_is(iq, "feature-not-implemented", XMPP_NS_STANZAS) ||
	       xmpp_iq_error_is(iq, "service-unavailable", XMPP_NS_STANZAS);
}

static void devicelist_fetched_cb(PurpleConnection *gc, xmpp_iq_status status, xmlnode *iq,
                                  void *data)
{
	char *jid = data;
	manager_t *m = manager_for_gc(gc);
	omemo_devicelist list = { 0 };
	bool own;
	contact *c = NULL;

	if (!m || status == XMPP_IQ_CANCELLED)
		goto out;
	own = strcmp(jid, m->own_jid) == 0;
	if (!own) {
		c = manager_contact_get(m, jid);
		c->fetching--;
	}
	if (status == XMPP_IQ_RESULT) {
		xmlnode *ps = xmlnode_get_child_with_namespace(iq, "pubsub", XMPP_NS_PUBSUB);
		xmlnode *items = ps ? xmlnode_get_child(ps, "items") : NULL;
		xmlnode *payload = items ? wire_find_item_payload(items, "list") : NULL;
		int ret = payload ? wire_parse_devicelist(payload, &list) : 0;

		if (ret < 0) {
			purple_debug_warning(LOG, "device list of %s refused: %s\n", jid,
			                     omemo_strerror(ret));
			if (c)
				c->state = DL_FAILED;
		} else {
			devicelist_received(m, jid, &list);
		}
	} else if (devicelist_absent(iq)) {
		devicelist_received(m, jid, &list); /* no node: no devices */
	} else if (c) {
		purple_debug_warning(LOG, "no device list from %s (%s)\n", jid,
		                     status == XMPP_IQ_TIMEOUT ? "timeout" : "error");
		c->state = DL_FAILED;
	}
	if (c)
		manager_pump(m, c);
	muc_pump_all(m);
out:
	omemo_devicelist_clear(&list);
	g_free(jid);
}

void manager_devicelist_fetch(manager_t *m, const char *jid)
{
	bool own = strcmp(jid, m->own_jid) == 0;
	xmlnode *iq = xmpp_pubsub_items_iq(OMEMO_NODE_DEVICELIST, 0);

	if (!own) {
		contact *c = manager_contact_get(m, jid);

		c->state = DL_FETCHING;
		c->fetching++;
	}
	if (!xmpp_send_iq(m->gc, iq, own ? NULL : jid, devicelist_fetched_cb, g_strdup(jid)) && !own) {
		contact *c = manager_contact_get(m, jid);

		c->fetching--;
		c->state = DL_FAILED;
	}
}

/* ---- publishing ---- */

typedef struct {
	char *node;
	char *item_id;
	xmlnode *payload;
	bool retried;
} publish_req;

static void publish_req_free(publish_req *p)
{
	g_free(p->node);
	g_free(p->item_id);
	xmlnode_free(p->payload);
	g_free(p);
}

static void publish_send(PurpleConnection *gc, publish_req *p);

static void configure_done_cb(PurpleConnection *gc, xmpp_iq_status status, xmlnode *iq,
                              void *data)
{
	publish_req *p = data;

	if (status == XMPP_IQ_RESULT) {
		publish_send(gc, p);
		return;
	}
	purple_debug_error(LOG, "could not open node %s to everyone\n", p->node);
	publish_req_free(p);
}

static void publish_done_cb(PurpleConnection *gc, xmpp_iq_status status, xmlnode *iq,
                            void *data)
{
	publish_req *p = data;

	if (status == XMPP_IQ_ERROR && xmpp_iq_is_precondition_not_met(iq) && !p->retried) {
		/* The node exists with another access model: open it, then
		 * publish again (XEP-0060 7.1.5). */
		p->retried = true;
		xmpp_send_iq(gc, xmpp_pubsub_configure_open_iq(p->node), NULL, configure_done_cb, p);
		return;
	}
	if (status == XMPP_IQ_RESULT)
		purple_debug_info(LOG, "published %s\n", p->node);
	else if (status != XMPP_IQ_CANCELLED)
		purple_debug_error(LOG, "publishing %s failed (%s)\n", p->node,
		                   status == XMPP_IQ_TIMEOUT ? "timeout" : "error");
	publish_req_free(p);
}

static void publish_send(PurpleConnection *gc, publish_req *p)
{
	xmlnode *iq = xmpp_pubsub_publish_iq(p->node, p->item_id, xmlnode_copy(p->payload), true);

	if (!xmpp_send_iq(gc, iq, NULL, publish_done_cb, p))
		publish_req_free(p);
}

static void publish(manager_t *m, const char *node, xmlnode *payload)
{
	publish_req *p = g_new0(publish_req, 1);

	p->node = g_strdup(node);
	p->item_id = g_strdup("current");
	p->payload = payload;
	publish_send(m->gc, p);
}

static void own_list_publish(manager_t *m, const omemo_devicelist *current)
{
	omemo_devicelist list = { 0 };
	xmlnode *node;

	list.ids = g_new(uint32_t, current->n_ids + 1);
	memcpy(list.ids, current->ids, current->n_ids * sizeof(uint32_t));
	list.n_ids = current->n_ids;
	if (!ids_contain(list.ids, list.n_ids, engine_device_id(m->engine)))
		list.ids[list.n_ids++] = engine_device_id(m->engine);
	store_devices_update(engine_store(m->engine), OMEMO_NS_LEGACY, m->own_jid, list.ids,
	                     list.n_ids, time(NULL));
	node = wire_build_devicelist(&list);
	if (node)
		publish(m, OMEMO_NODE_DEVICELIST, node);
	omemo_devicelist_clear(&list);
}

int manager_remove_own_device(manager_t *m, uint32_t id)
{
	store_device *devs = NULL;
	size_t n = 0;
	omemo_devicelist list = { 0 };
	bool found = false;
	xmlnode *node;
	int ret;

	ret = store_devices_get(engine_store(m->engine), OMEMO_NS_LEGACY, m->own_jid, true, &devs, &n);
	if (ret < 0)
		return ret;
	list.ids = g_new(uint32_t, n + 1);
	for (size_t i = 0; i < n; i++) {
		if (devs[i].id == id)
			found = true;
		else
			list.ids[list.n_ids++] = devs[i].id;
	}
	g_free(devs);
	if (!found) {
		omemo_devicelist_clear(&list);
		return OMEMO_ERR_NOT_FOUND;
	}
	if (!ids_contain(list.ids, list.n_ids, engine_device_id(m->engine)))
		list.ids[list.n_ids++] = engine_device_id(m->engine);
	ret = store_devices_update(engine_store(m->engine), OMEMO_NS_LEGACY, m->own_jid, list.ids,
	                           list.n_ids, time(NULL));
	node = wire_build_devicelist(&list);
	if (node)
		publish(m, OMEMO_NODE_DEVICELIST, node);
	omemo_devicelist_clear(&list);
	return ret;
}

static void bundle_publish(manager_t *m)
{
	omemo_bundle bundle;
	bool changed = false;
	char *node;
	int ret;

	ret = engine_maintain(m->engine, time(NULL), &changed);
	if (ret < 0)
		purple_debug_error(LOG, "key maintenance failed: %s\n", omemo_strerror(ret));
	ret = engine_get_bundle(m->engine, &bundle);
	if (ret < 0) {
		purple_debug_error(LOG, "no bundle to publish: %s\n", omemo_strerror(ret));
		return;
	}
	node = g_strdup_printf("%s%u", OMEMO_NODE_BUNDLES_PREFIX, engine_device_id(m->engine));
	publish(m, node, wire_build_bundle(&bundle));
	g_free(node);
	omemo_bundle_clear(&bundle);
}

static gboolean republish_cb(gpointer data)
{
	manager_t *m = data;

	m->republish_timer = 0;
	bundle_publish(m);
	return FALSE;
}

/* A burst of prekey messages republishes the bundle once. */
void manager_bundle_republish_soon(manager_t *m)
{
	if (!m->republish_timer)
		m->republish_timer =
			purple_timeout_add_seconds(REPUBLISH_DELAY_SECONDS, republish_cb, m);
}

/* ---- bundles ---- */

typedef struct {
	char *waiter; /* the contact (or room) whose queue waits for this bundle */
	bool room;
	char *jid; /* whose bundle */
	uint32_t device;
} bundle_req;

static char *skip_key(const char *jid, uint32_t device)
{
	return g_strdup_printf("%s/%u", jid, device);
}

void manager_skip_device(contact *c, const char *jid, uint32_t device, const char *reason)
{
	skip_entry *e = g_new0(skip_entry, 1);

	purple_debug_warning(LOG, "%s: device %u of %s skipped: %s\n", c->jid, device, jid, reason);
	e->jid = g_strdup(jid);
	e->device = device;
	e->reason = g_strdup(reason);
	g_hash_table_replace(c->skipped, skip_key(jid, device), e);
}

bool manager_is_skipped(contact *c, const char *jid, uint32_t device)
{
	char *key = skip_key(jid, device);
	bool found = g_hash_table_contains(c->skipped, key);

	g_free(key);
	return found;
}

static void bundle_fetched_cb(PurpleConnection *gc, xmpp_iq_status status, xmlnode *iq,
                              void *data)
{
	bundle_req *r = data;
	manager_t *m = manager_for_gc(gc);
	omemo_bundle bundle = { 0 };
	contact *c;
	int ret;

	if (!m || status == XMPP_IQ_CANCELLED)
		goto out;
	c = r->room ? muc_waiter(m, r->waiter) : manager_contact_get(m, r->waiter);
	if (!c) /* the room was left meanwhile */
		goto out;
	if (status == XMPP_IQ_TIMEOUT) {
		manager_skip_device(c, r->jid, r->device, _("its key bundle did not arrive in time."));
	} else if (status == XMPP_IQ_ERROR) {
		manager_skip_device(c, r->jid, r->device, _("it has published no key bundle."));
	} else {
		xmlnode *ps = xmlnode_get_child_with_namespace(iq, "pubsub", XMPP_NS_PUBSUB);
		xmlnode *items = ps ? xmlnode_get_child(ps, "items") : NULL;
		xmlnode *payload = items ? wire_find_item_payload(items, "bundle") : NULL;

		ret = payload ? wire_parse_bundle(payload, &bundle) : OMEMO_ERR_WIRE_ELEMENT;
		if (ret == 0)
			ret = engine_build_session(m->engine, r->jid, r->device, &bundle);
		if (ret < 0) {
			char *why = g_strdup_printf(_("its key bundle is unusable (%s)"),
			                            omemo_strerror(ret));

			manager_skip_device(c, r->jid, r->device, why);
			g_free(why);
		}
	}
	c->fetching--;
	manager_pump(m, c);
out:
	omemo_bundle_clear(&bundle);
	g_free(r->waiter);
	g_free(r->jid);
	g_free(r);
}

static bool bundle_fetch(manager_t *m, contact *waiter, const char *jid, uint32_t device)
{
	char *node = g_strdup_printf("%s%u", OMEMO_NODE_BUNDLES_PREFIX, device);
	bundle_req *r = g_new0(bundle_req, 1);
	bool own = strcmp(jid, m->own_jid) == 0;
	bool ok;

	r->waiter = g_strdup(waiter->jid);
	r->room = waiter->room != NULL;
	r->jid = g_strdup(jid);
	r->device = device;
	ok = xmpp_send_iq(m->gc, xmpp_pubsub_items_iq(node, 1), own ? NULL : jid, bundle_fetched_cb,
	                  r);
	if (!ok) {
		g_free(r->waiter);
		g_free(r->jid);
		g_free(r);
	}
	g_free(node);
	return ok;
}

/* ---- sending ---- */

static GArray *active_devices(manager_t *m, const char *jid)
{
	bool own = strcmp(jid, m->own_jid) == 0;

	return group_active_devices(m->engine, jid, own ? engine_device_id(m->engine) : 0);
}

int manager_fetch_missing_bundles(manager_t *m, contact *c, const char *const *jids, size_t n)
{
	int started = 0;

	for (size_t j = 0; j < n; j++) {
		bool own = strcmp(jids[j], m->own_jid) == 0;
		GArray *ids = group_devices_without_session(m->engine, jids[j],
		                                            own ? engine_device_id(m->engine) : 0);

		for (guint i = 0; i < ids->len; i++) {
			uint32_t id = g_array_index(ids, uint32_t, i);

			if (manager_is_skipped(c, jids[j], id))
				continue;
			if (bundle_fetch(m, c, jids[j], id)) {
				c->fetching++;
				started++;
			} else {
				manager_skip_device(c, jids[j], id, _("we are not connected."));
			}
		}
		g_array_free(ids, TRUE);
	}
	return started;
}

char *manager_skipped_summary(manager_t *m, contact *c)
{
	GString *s = g_string_new(NULL);
	GHashTableIter it;
	gpointer k, v;

	g_hash_table_iter_init(&it, c->skipped);
	while (g_hash_table_iter_next(&it, &k, &v)) {
		skip_entry *e = v;

		if (strcmp(e->jid, m->own_jid) == 0)
			g_string_append_printf(s, _(" Your device %u: %s"), e->device, e->reason);
		else if (c->room)
			g_string_append_printf(s, _(" Device %u of %s: %s"), e->device, e->jid,
			                       e->reason);
		else
			g_string_append_printf(s, _(" Device %u: %s"), e->device, e->reason);
	}
	return g_string_free(s, FALSE);
}

/* Add what the message needs on the wire around the <encrypted> element. */
void manager_message_make_omemo(xmlnode *msg, xmlnode *encrypted)
{
	xmlnode *child, *next;
	xmlnode *hint, *eme, *body;

	/* No child may carry the text: the body and XHTML-IM go. */
	for (child = msg->child; child; child = next) {
		next = child->next;
		if (child->type == XMLNODE_TYPE_TAG &&
		    (g_strcmp0(child->name, "body") == 0 || g_strcmp0(child->name, "html") == 0 ||
		     g_strcmp0(child->name, "subject") == 0))
			xmlnode_free(child);
	}
	xmlnode_insert_child(msg, encrypted);
	hint = xmlnode_new_child(msg, "store");
	xmlnode_set_namespace(hint, XMPP_NS_HINTS);
	eme = xmlnode_new_child(msg, "encryption");
	xmlnode_set_namespace(eme, XMPP_NS_EME);
	xmlnode_set_attrib(eme, "name", "OMEMO");
	xmlnode_set_attrib(eme, "namespace", OMEMO_NS_LEGACY);
	body = xmlnode_new_child(msg, "body");
	xmlnode_insert_data(body, FALLBACK_BODY, -1);
}

/* The account's own choice when it has one, else the plugin's preference. */
trust_mode manager_trust_mode(manager_t *m)
{
	bool manual = purple_prefs_get_bool(MANAGER_PREF_TRUST_MANUAL);

	manual = purple_account_get_bool(m->account, MANAGER_ACCOUNT_TRUST_MANUAL, manual);
	return manual ? TRUST_MODE_MANUAL : TRUST_MODE_BTBV;
}

/* The trust state of a device with this identity key, deciding a new key
 * by the account's rule; a new key that needs the user's decision is
 * announced in the conversation with notice_jid. */
static trust_state device_trust(manager_t *m, const char *jid, uint32_t id,
                                const uint8_t ik[OMEMO_PUBKEY_LEN], const char *notice_jid)
{
	trust_result r;
	int ret = trust_evaluate(engine_store(m->engine), manager_trust_mode(m), jid, id, ik,
	                         time(NULL), &r);

	if (ret < 0) {
		purple_debug_error(LOG, "trust of %s/%u: %s\n", jid, id, omemo_strerror(ret));
		return TRUST_UNDECIDED;
	}
	if (r.is_new && r.state == TRUST_UNDECIDED)
		manager_trust_announce(m, jid, id, ik, r.key_changed, notice_jid);
	return r.state;
}

void manager_trust_announce(manager_t *m, const char *jid, uint32_t id,
                            const uint8_t ik[OMEMO_PUBKEY_LEN], bool key_changed,
                            const char *where)
{
	{
		char *fp = engine_fingerprint_format(ik, OMEMO_PUBKEY_LEN);
		char *msg = g_strdup_printf(
			key_changed
				? _("Device %u of %s now uses a DIFFERENT key (fingerprint %s). Nothing "
				    "is encrypted for it until you decide: \"/omemo verify FINGERPRINT\" "
				    "after comparing it, \"/omemo trust %u\" or \"/omemo distrust %u\".")
				: _("New device %u of %s (fingerprint %s) awaits your decision: "
				    "\"/omemo verify FINGERPRINT\" after comparing it, \"/omemo trust %u\" "
				    "or \"/omemo distrust %u\"."),
			id, jid, fp ? fp : "?", id, id);

		manager_notice(m->account, where, msg);
		g_free(msg);
		g_free(fp);
		ui_ask_new_device(m->account, jid, id, ik, key_changed);
	}
}

int manager_recipients_collect(manager_t *m, const char *const *jids, size_t n_jids,
                               const char *where, manager_recipients *out)
{
	int ret;

	memset(out, 0, sizeof(*out));
	ret = group_candidates(m->engine, manager_trust_mode(m), jids, n_jids, time(NULL),
	                       &out->cands);
	if (ret < 0)
		return ret;
	out->rcpts = g_new0(omemo_address, out->cands->len + 1);
	for (guint i = 0; i < out->cands->len; i++) {
		group_device *d = &g_array_index(out->cands, group_device, i);

		if (!d->has_session)
			continue;
		if (d->trust.is_new && d->trust.state == TRUST_UNDECIDED)
			manager_trust_announce(m, d->jid, d->device, d->ik, d->trust.key_changed, where);
		if (!trust_is_trusted(d->trust.state))
			continue;
		out->rcpts[out->n].jid = d->jid;
		out->rcpts[out->n].device_id = d->device;
		out->n++;
	}
	return 0;
}

void manager_recipients_clear(manager_recipients *r)
{
	if (r->cands)
		g_array_free(r->cands, TRUE);
	g_free(r->rcpts);
	memset(r, 0, sizeof(*r));
}

int manager_commit_or_defer(manager_t *m, bool ok)
{
	store_t *st = engine_store(m->engine);

	if (ok && (m->sending_to || m->sending_room) && !m->commit_after_send &&
	    store_tx_may_send_early(st)) {
		m->commit_after_send = true;
		return 0;
	}
	return store_commit(st);
}

void manager_end_send(manager_t *m, const char *conv)
{
	int ret;

	if (!m->commit_after_send)
		return;
	m->commit_after_send = false;
	ret = store_commit(engine_store(m->engine));
	if (ret < 0) {
		char *msg = g_strdup_printf(_("The message above was sent, but OMEMO could not save "
		                              "its state after it. %s The next message is sent only "
		                              "once it can."),
		                            omemo_strerror(ret));

		purple_debug_error(LOG, "commit after sending to %s: %s\n", conv,
		                   omemo_strerror(ret));
		manager_notice(m->account, conv, msg);
		g_free(msg);
	}
}

/* Encrypt plaintext for the contact's and our own other trusted devices, in
 * one transaction with the reads and trust decisions that pick them. 0 and
 * *out, or an error (OMEMO_ERR_NO_RECIPIENTS when no device of the contact
 * could be reached). For a message typed here (sent by send_one), the
 * transaction may be left open for after the stanza leaves
 * (manager_commit_or_defer). */
static int encrypt_for(manager_t *m, contact *c, const char *plaintext, bool typed,
                       xmlnode **out)
{
	const char *jids[2] = { c->jid, m->own_jid };
	store_t *st = engine_store(m->engine);
	manager_recipients r = { 0 };
	omemo_message msg = { 0 };
	size_t n_theirs = 0;
	int ret, ret2;

	g_string_truncate(c->untrusted, 0);
	/* A message sent while the one before is still on its way out (by
	 * another plugin, from a signal of that send) must not share its
	 * transaction: that one commits first. */
	manager_end_send(m, c->jid);
	ret = store_begin(st);
	if (ret < 0)
		return ret;
	ret = manager_recipients_collect(m, jids, 2, c->jid, &r);
	if (ret < 0)
		goto out;
	for (guint i = 0; i < r.cands->len; i++) {
		group_device *d = &g_array_index(r.cands, group_device, i);

		if (d->has_session && !trust_is_trusted(d->trust.state))
			g_string_append_printf(c->untrusted, _(" Device %u of %s is %s."), d->device,
			                       d->jid, trust_state_name(d->trust.state));
	}
	for (size_t i = 0; i < r.n; i++)
		n_theirs += r.rcpts[i].jid == c->jid;
	if (n_theirs == 0) {
		ret = OMEMO_ERR_NO_RECIPIENTS;
		goto out;
	}
	ret = engine_encrypt(m->engine, (const uint8_t *)plaintext, strlen(plaintext), r.rcpts, r.n,
	                     &msg, NULL);
	LOG_DETAIL("message for %s: %zu of its devices, %zu of ours\n", c->jid, n_theirs,
	           r.n - n_theirs);
out:
	/* Kept even when nothing is sent: trust decided about new keys. */
	if ((ret2 = manager_commit_or_defer(m, ret == 0 && typed)) < 0 && ret == 0)
		ret = ret2;
	if (ret == 0) {
		*out = wire_build_encrypted(&msg);
		if (!*out)
			ret = OMEMO_ERR_INVALID_ARG;
	}
	omemo_message_clear(&msg);
	manager_recipients_clear(&r);
	return ret;
}

static bool should_encrypt(manager_t *m, contact *c)
{
	manager_mode mode = manager_get_mode(m, c->jid);

	if (mode == MANAGER_MODE_ON)
		return true;
	if (mode == MANAGER_MODE_OFF || !purple_prefs_get_bool(MANAGER_PREF_DEFAULT_ON))
		return false;
	/* Automatic, as Conversations: on once the contact has published
	 * devices (now or in an earlier session). */
	if (c->state == DL_KNOWN)
		return true;
	{
		GArray *ids = active_devices(m, c->jid);
		bool any = ids->len > 0;

		g_array_free(ids, TRUE);
		return any;
	}
}

/* Send one queued text through the protocol plugin; manager_sending()
 * encrypts the stanza it builds (or stops it). */
/* Why nothing could be encrypted for the contact, in words (g_free). */
static char *no_recipients_reason(manager_t *m, contact *c)
{
	char *summary, *why;
	GArray *ids;

	if (c->untrusted->len)
		return g_strdup_printf(_("no device of %s is trusted.%s Decide with \"/omemo "
		                         "devices\", then \"/omemo trust ID\" or \"/omemo verify "
		                         "FINGERPRINT\"."),
		                       c->jid, c->untrusted->str);
	summary = manager_skipped_summary(m, c);
	if (*summary) {
		why = g_strdup_printf(_("none of the devices of %s could be reached.%s"), c->jid,
		                      summary);
		g_free(summary);
		return why;
	}
	g_free(summary);
	ids = active_devices(m, c->jid);
	why = ids->len == 0 ? g_strdup_printf(_("%s has no OMEMO device, and OMEMO is on for this "
	                                        "conversation (\"/omemo off\" sends without "
	                                        "encryption)."),
	                                      c->jid)
	                    : g_strdup_printf(_("no session could be set up with any device of %s."),
	                                      c->jid);
	g_array_free(ids, TRUE);
	return why;
}

/* Send one queued text through the protocol plugin; manager_sending()
 * encrypts the stanza it builds (or stops it). True when it went out. */
static bool send_one(manager_t *m, contact *c, const char *text, bool plain)
{
	PurpleConversation *conv;
	int sent;

	m->sending_to = c;
	m->send_plain_ok = plain;
	m->send_result = 0;
	sent = serv_send_im(m->gc, c->jid, text, 0);
	m->sending_to = NULL;
	m->send_plain_ok = false;
	manager_end_send(m, c->jid);
	if (sent <= 0 || m->send_result < 0) {
		char *why;

		if (m->send_result == OMEMO_ERR_NO_RECIPIENTS)
			why = no_recipients_reason(m, c);
		else if (m->send_result < 0)
			why = g_strdup_printf(_("encryption failed: %s"), omemo_strerror(m->send_result));
		else
			why = g_strdup(_("the connection refused it."));
		manager_notice_not_sent(m, c->jid, why, text);
		g_free(why);
		return false;
	}
	conv = purple_find_conversation_with_account(PURPLE_CONV_TYPE_IM, c->jid, m->account);
	if (!conv)
		conv = purple_conversation_new(PURPLE_CONV_TYPE_IM, m->account, c->jid);
	if (conv)
		purple_conv_im_write(PURPLE_CONV_IM(conv), NULL, text, PURPLE_MESSAGE_SEND, time(NULL));
	return true;
}

void manager_fail_outbox(manager_t *m, contact *c, const char *why)
{
	char *text;

	while ((text = g_queue_pop_head(&c->outbox))) {
		manager_notice_not_sent(m, c->jid, why, text);
		g_free(text);
	}
}

/* Move the contact's queue forward as far as what we know allows. */
void manager_pump(manager_t *m, contact *c)
{
	bool any_sent = false;
	char *text;

	if (c->room) {
		muc_pump(m, c->room);
		return;
	}
	if (!m->gc || c->fetching > 0 || g_queue_is_empty(&c->outbox))
		return;
	if (c->state == DL_UNKNOWN) {
		manager_devicelist_fetch(m, c->jid);
		if (c->fetching > 0)
			return;
	}
	if (!should_encrypt(m, c)) {
		if (c->state == DL_FAILED && manager_get_mode(m, c->jid) != MANAGER_MODE_OFF) {
			/* Whether the contact uses OMEMO is unknown: do not guess. */
			manager_fail_outbox(m, c, _("could not find out whether the contact uses OMEMO (the "
			                    "server did not answer). Try again, or turn OMEMO off with "
			                    "\"/omemo off\" to send without encryption."));
			c->state = DL_UNKNOWN;
			return;
		}
		if (!c->told_plain) {
			manager_notice(m->account, c->jid,
			               _("Messages in this conversation are NOT encrypted: the "
			                 "contact has no OMEMO device, or OMEMO is off here."));
			c->told_plain = true;
			c->told_encrypted = false;
		}
		while ((text = g_queue_pop_head(&c->outbox))) {
			send_one(m, c, text, true);
			g_free(text);
		}
		return;
	}
	{
		const char *jids[2] = { c->jid, m->own_jid };

		if (manager_fetch_missing_bundles(m, c, jids, 2) > 0)
			return;
	}
	if (!c->told_encrypted) {
		manager_notice(m->account, c->jid,
		               _("Messages in this conversation are encrypted with OMEMO."));
		c->told_encrypted = true;
		c->told_plain = false;
	}
	/* Everything that could be fetched is in: send in the order typed. */
	while ((text = g_queue_pop_head(&c->outbox))) {
		any_sent |= send_one(m, c, text, false);
		g_free(text);
	}
	/* Say which devices were left out of what did go; next message, try
	 * them again. */
	if (any_sent) {
		char *summary = manager_skipped_summary(m, c);

		if (*summary) {
			char *msg = g_strdup_printf(_("Some devices of %s did not get the message "
			                              "above:%s"),
			                            c->jid, summary);

			manager_notice(m->account, c->jid, msg);
			g_free(msg);
		}
		g_free(summary);
	}
	g_hash_table_remove_all(c->skipped);
	c->state = c->state == DL_FAILED ? DL_UNKNOWN : c->state;
}

/* A message on an account whose OMEMO store is unavailable: whether its
 * conversation must be encrypted cannot be known, so it is not sent. */
bool manager_refuse_if_unavailable(PurpleAccount *account, const char *receiver, const char *text)
{
	char *jid, *plain, *esc, *msg;

	if (!unavailable || !g_hash_table_contains(unavailable, account))
		return false;
	jid = xmpp_bare_jid(receiver);
	plain = purple_markup_strip_html(text);
	esc = g_markup_escape_text(plain ? plain : "", -1);
	msg = g_strdup_printf(_("Message NOT sent: OMEMO is unavailable for this account "
	                        "(%s), so it cannot tell whether this conversation must be "
	                        "encrypted. Fix or move the OMEMO database, or turn the OMEMO "
	                        "plugin off to chat without it. It was: \"%s\""),
	                      (const char *)g_hash_table_lookup(unavailable, account), esc);
	if (jid)
		manager_notice(account, jid, msg);
	g_free(msg);
	g_free(esc);
	g_free(plain);
	g_free(jid);
	return true;
}

void manager_sending_im(PurpleAccount *account, const char *receiver, char **message)
{
	manager_t *m = manager_find(account);
	manager_mode mode;
	char *jid;
	contact *c;

	if (!m && message && *message && manager_refuse_if_unavailable(account, receiver, *message)) {
		g_free(*message);
		*message = NULL;
		return;
	}
	if (!m || !m->gc || !message || !*message || !**message)
		return;
	jid = xmpp_bare_jid(receiver);
	if (!jid)
		return;
	c = manager_contact_get(m, jid);
	g_free(jid);
	mode = manager_get_mode(m, c->jid);
	/* Plain by choice, or a contact known to have no OMEMO, with nothing
	 * queued before it: libpurple sends it as usual. */
	if (g_queue_is_empty(&c->outbox) &&
	    (mode == MANAGER_MODE_OFF || (mode == MANAGER_MODE_AUTO && c->state == DL_NONE &&
	                                  !should_encrypt(m, c)))) {
		if (!c->told_plain) {
			manager_notice(m->account, c->jid,
			               mode == MANAGER_MODE_OFF
			                       ? _("Messages in this conversation are NOT encrypted: "
			                           "OMEMO is off here (\"/omemo on\" turns it on).")
			                       : _("Messages in this conversation are NOT encrypted: "
			                           "the contact has no OMEMO device."));
			c->told_plain = true;
		}
		return;
	}
	g_queue_push_tail(&c->outbox, *message);
	*message = NULL;
	manager_pump(m, c);
}

static bool is_chat_message_with_body(xmlnode *msg)
{
	const char *type = xmlnode_get_attrib(msg, "type");

	return g_strcmp0(msg->name, "message") == 0 && g_strcmp0(type, "groupchat") != 0 &&
	       g_strcmp0(type, "error") != 0 && xmlnode_get_child(msg, "body") != NULL;
}

void manager_sending(PurpleConnection *gc, xmlnode **packet)
{
	manager_t *m = manager_for_gc(gc);
	xmlnode *msg = packet ? *packet : NULL;
	xmlnode *enc = NULL;
	char *jid, *text;
	contact *c;
	int ret;

	/* Group messages too: nothing is known to be safe in plaintext. */
	if (!m && msg && !xmpp_sending_own() && g_strcmp0(msg->name, "message") == 0 &&
	    g_strcmp0(xmlnode_get_attrib(msg, "type"), "error") != 0 &&
	    xmlnode_get_child(msg, "body")) {
		char *plain = xmlnode_get_data(xmlnode_get_child(msg, "body"));

		if (manager_refuse_if_unavailable(purple_connection_get_account(gc),
		                                  xmlnode_get_attrib(msg, "to"), plain ? plain : ""))
			xmpp_neutralize(gc, msg);
		g_free(plain);
		return;
	}
	if (m && msg && g_strcmp0(msg->name, "iq") == 0) {
		muc_outgoing_iq(m, msg);
		return;
	}
	if (m && msg && !xmpp_sending_own() && g_strcmp0(msg->name, "message") == 0 &&
	    g_strcmp0(xmlnode_get_attrib(msg, "type"), "groupchat") == 0) {
		muc_sending(m, msg);
		return;
	}
	if (!m || !msg || xmpp_sending_own() || !is_chat_message_with_body(msg))
		return;
	jid = xmpp_bare_jid(xmlnode_get_attrib(msg, "to"));
	if (!jid)
		return;
	c = manager_contact_get(m, jid);
	g_free(jid);
	if (m->sending_to == c) {
		if (m->send_plain_ok)
			return;
		text = xmlnode_get_data(xmlnode_get_child(msg, "body"));
		ret = encrypt_for(m, c, text ? text : "", true, &enc);
		g_free(text);
		if (ret == 0) {
			manager_message_make_omemo(msg, enc);
		} else {
			m->send_result = ret;
			xmpp_neutralize(gc, msg);
		}
		return;
	}
	/* A message that did not come through a conversation we manage
	 * (another plugin, an auto-reply): it may leave in plaintext only
	 * where OMEMO is off for the contact. */
	if (should_encrypt(m, c) || !g_queue_is_empty(&c->outbox)) {
		char *plain = xmlnode_get_data(xmlnode_get_child(msg, "body"));

		ret = should_encrypt(m, c) && g_queue_is_empty(&c->outbox)
		              ? encrypt_for(m, c, plain ? plain : "", false, &enc)
		              : OMEMO_ERR_NO_RECIPIENTS;
		if (ret == 0) {
			manager_message_make_omemo(msg, enc);
		} else {
			manager_notice_not_sent(m, c->jid,
			                _("a message not typed here would have left unencrypted."),
			                plain ? plain : "");
			xmpp_neutralize(gc, msg);
		}
		g_free(plain);
	}
}

/* ---- receiving ---- */

static void send_key_transport(manager_t *m, const char *jid, uint32_t device)
{
	omemo_address rcpt = { jid, device };
	omemo_message msg = { 0 };
	xmlnode *stanza, *enc, *hint;
	int ret = engine_encrypt(m->engine, NULL, 0, &rcpt, 1, &msg, NULL);

	if (ret < 0) {
		purple_debug_warning(LOG, "no key transport to %s/%u: %s\n", jid, device,
		                     omemo_strerror(ret));
		return;
	}
	enc = wire_build_encrypted(&msg);
	omemo_message_clear(&msg);
	if (!enc)
		return;
	stanza = xmlnode_new("message");
	xmlnode_set_attrib(stanza, "to", jid);
	xmlnode_set_attrib(stanza, "type", "chat");
	xmlnode_insert_child(stanza, enc);
	hint = xmlnode_new_child(stanza, "store");
	xmlnode_set_namespace(hint, XMPP_NS_HINTS);
	xmpp_send(m->gc, stanza);
	xmlnode_free(stanza);
}

void manager_replace_body(xmlnode *msg, const char *text)
{
	xmlnode *child, *next, *body;

	for (child = msg->child; child; child = next) {
		next = child->next;
		if (child->type == XMLNODE_TYPE_TAG &&
		    (g_strcmp0(child->name, "body") == 0 || g_strcmp0(child->name, "html") == 0 ||
		     (g_strcmp0(child->name, "encrypted") == 0 &&
		      g_strcmp0(xmlnode_get_namespace(child), OMEMO_NS_LEGACY) == 0)))
			xmlnode_free(child);
	}
	body = xmlnode_new_child(msg, "body");
	/* The protocol plugin skips children without a namespace. */
	xmlnode_set_namespace(body, xmlnode_get_namespace(msg) ? xmlnode_get_namespace(msg)
	                                                       : "jabber:client");
	xmlnode_insert_data(body, text, -1);
}

/* Decrypt an <encrypted> message from jid in place. Returns true when the
 * stanza should be consumed (key transport, or a failure already told). */
bool manager_receive_encrypted(manager_t *m, const char *jid, xmlnode *msg, xmlnode *enc,
                               const char *where)
{
	omemo_message parsed = { 0 };
	engine_decrypted d = { 0 };
	uint32_t parsed_sid;
	int ret;
	char *notice;

	ret = wire_parse_encrypted(enc, &parsed);
	if (ret == 0)
		ret = engine_decrypt(m->engine, jid, &parsed, &d);
	if (ret == OMEMO_ERR_NOT_FOR_US && !parsed.payload) {
		/* A key-transport message for another of our devices (sent to
		 * the bare JID, so every resource gets it): nothing to show. */
		omemo_message_clear(&parsed);
		return true;
	}
	if (ret == OMEMO_ERR_DUPLICATE) {
		/* Offline storage and a copy: already shown once. */
		purple_debug_info(LOG, "duplicate message from %s dropped\n", jid);
		omemo_message_clear(&parsed);
		return true;
	}
	if (ret < 0) {
		if (ret == OMEMO_ERR_NOT_FOR_US)
			notice = g_strdup_printf(_("An encrypted message from %s was not encrypted for "
			                           "this device, so it cannot be shown."),
			                         jid);
		else if (ret == OMEMO_ERR_UNDECRYPTABLE)
			notice = g_strdup_printf(_("An encrypted message from %s could not be "
			                           "decrypted: it is damaged, or does not belong to "
			                           "the session with its device."),
			                         jid);
		else
			notice = g_strdup_printf(_("An encrypted message from %s could not be "
			                           "decrypted: %s"),
			                         jid, omemo_strerror(ret));
		manager_notice(m->account, where, notice);
		g_free(notice);
		omemo_message_clear(&parsed);
		return true;
	}
	parsed_sid = parsed.sid;
	LOG_DETAIL("message from %s device %u%s%s\n", jid, parsed.sid, d.prekey ? ", prekey" : "",
	           d.key_transport ? ", key transport" : "");
	if (d.prekey) {
		/* Answer at once so the sender stops sending prekey messages,
		 * and offer a fresh prekey in place of the used one. */
		send_key_transport(m, jid, parsed.sid);
		manager_bundle_republish_soon(m);
	}
	omemo_message_clear(&parsed);
	if (d.key_transport) {
		engine_decrypted_clear(&d);
		return true;
	}
	/* The protocol plugin reads <body> as plain text and escapes it
	 * itself, as for any message. A device we do not trust gets its
	 * messages marked, so the user knows whom they may be from. */
	{
		trust_state st = device_trust(m, jid, parsed_sid, d.sender_ik, where);

		if (trust_is_trusted(st)) {
			manager_replace_body(msg, (const char *)d.plaintext);
		} else if (st == TRUST_DISTRUSTED &&
		           purple_prefs_get_bool(MANAGER_PREF_HIDE_DISTRUSTED)) {
			char *notice = g_strdup_printf(
				_("A message from device %u of %s, which you distrusted, was not "
				  "shown (see the OMEMO preferences)."),
				parsed_sid, jid);

			manager_notice(m->account, where, notice);
			g_free(notice);
			engine_decrypted_clear(&d);
			return true;
		} else {
			char *marked = g_strdup_printf(_("[from device %u, %s] %s"), parsed_sid,
			                               trust_state_name(st), (const char *)d.plaintext);

			manager_replace_body(msg, marked);
			g_free(marked);
		}
	}
	engine_decrypted_clear(&d);
	return false;
}

static void handle_pep_event(manager_t *m, const char *from, xmlnode *event)
{
	xmlnode *items = xmlnode_get_child(event, "items");
	xmlnode *payload;
	omemo_devicelist list = { 0 };
	char *jid;
	int ret;

	if (!items || g_strcmp0(xmlnode_get_attrib(items, "node"), OMEMO_NODE_DEVICELIST) != 0)
		return;
	/* PEP events come from the publisher's bare JID (none: our own
	 * account); a full JID is some client speaking for the account. */
	if (from && strchr(from, '/')) {
		purple_debug_warning(LOG, "device list event from a full JID (%s) refused: PEP "
		                          "events come from the account itself\n",
		                     from);
		return;
	}
	jid = xmpp_bare_jid(from ? from : m->own_jid);
	if (!jid)
		return;
	payload = wire_find_item_payload(items, "list");
	ret = payload ? wire_parse_devicelist(payload, &list) : OMEMO_ERR_WIRE_ELEMENT;
	if (ret == 0)
		devicelist_received(m, jid, &list);
	else
		purple_debug_warning(LOG, "device list event from %s refused: %s\n", jid,
		                     omemo_strerror(ret));
	omemo_devicelist_clear(&list);
	g_free(jid);
}

/* ---- message carbons (XEP-0280) ---- */

static void carbons_enabled_cb(PurpleConnection *gc, xmpp_iq_status status, xmlnode *iq,
                               void *data)
{
	if (status == XMPP_IQ_RESULT)
		purple_debug_info(LOG, "message carbons enabled\n");
	else if (status != XMPP_IQ_CANCELLED)
		purple_debug_info(LOG, "the server did not enable message carbons\n");
}

static void carbons_enable(manager_t *m)
{
	xmlnode *iq = xmlnode_new("iq");
	xmlnode *enable = xmlnode_new_child(iq, "enable");

	xmlnode_set_attrib(iq, "type", "set");
	xmlnode_set_namespace(enable, XMPP_NS_CARBONS);
	xmpp_send_iq(m->gc, iq, NULL, carbons_enabled_cb, NULL);
}

/* Turn the outer stanza into a copy of the forwarded message: its
 * attributes and children. Edited in place, so the protocol plugin handles
 * it as if it had come directly, and its owner frees it as usual. */
static void unwrap_carbon(xmlnode *outer, xmlnode *inner)
{
	const char *attrs[] = { "from", "to", "type", "id" };
	xmlnode *copy = xmlnode_copy(inner);
	xmlnode *child, *next;

	for (child = outer->child; child; child = next) {
		next = child->next;
		if (child->type == XMLNODE_TYPE_TAG)
			xmlnode_free(child);
	}
	for (child = copy->child; child; child = child->next)
		if (child->type == XMLNODE_TYPE_TAG)
			xmlnode_insert_child(outer, xmlnode_copy(child));
	for (size_t i = 0; i < G_N_ELEMENTS(attrs); i++) {
		const char *v = xmlnode_get_attrib(copy, attrs[i]);

		xmlnode_remove_attrib(outer, attrs[i]);
		if (v)
			xmlnode_set_attrib(outer, attrs[i], v);
	}
	xmlnode_free(copy);
}

/* A carbon: true when consumed. Only our own account may send them. */
static bool receive_carbon(manager_t *m, xmlnode *stanza, xmlnode *wrapper, bool sent)
{
	const char *outer_from = xmlnode_get_attrib(stanza, "from");
	char *from_bare = outer_from ? xmpp_bare_jid(outer_from) : NULL;
	xmlnode *fwd = xmlnode_get_child_with_namespace(wrapper, "forwarded", XMPP_NS_FORWARD);
	xmlnode *inner = fwd ? xmlnode_get_child(fwd, "message") : NULL;
	xmlnode *enc;
	char *peer = NULL;
	bool ok;

	/* XEP-0280 section 11: a carbon is genuine only when it comes from
	 * our own bare JID; anything else is a forgery. */
	ok = from_bare && strcmp(from_bare, m->own_jid) == 0 && !strchr(outer_from, '/');
	g_free(from_bare);
	if (!ok || !inner) {
		purple_debug_warning(LOG, "dropped a carbon from %s\n",
		                     outer_from ? outer_from : "(nobody)");
		return true;
	}
	enc = xmlnode_get_child_with_namespace(inner, "encrypted", OMEMO_NS_LEGACY);
	peer = xmpp_bare_jid(xmlnode_get_attrib(inner, sent ? "to" : "from"));
	if (!peer)
		return true;
	if (!sent) {
		/* Received by another of our devices: handle it as if it had
		 * come to us. */
		unwrap_carbon(stanza, inner);
		enc = xmlnode_get_child_with_namespace(stanza, "encrypted", OMEMO_NS_LEGACY);
		ok = enc ? manager_receive_encrypted(m, peer, stanza, enc, peer) : false;
		g_free(peer);
		return ok;
	}
	/* Sent by another of our devices: show it on our side of the
	 * conversation with the contact. */
	if (enc) {
		omemo_message parsed = { 0 };
		engine_decrypted d = { 0 };
		int ret = wire_parse_encrypted(enc, &parsed);

		if (ret == 0)
			ret = engine_decrypt(m->engine, m->own_jid, &parsed, &d);
		if (ret == 0 && d.plaintext) {
			PurpleConversation *conv = purple_find_conversation_with_account(
				PURPLE_CONV_TYPE_IM, peer, m->account);

			if (!conv)
				conv = purple_conversation_new(PURPLE_CONV_TYPE_IM, m->account, peer);
			if (conv) {
				char *esc = g_markup_escape_text((const char *)d.plaintext, -1);

				purple_conv_im_write(PURPLE_CONV_IM(conv), m->own_jid, esc,
				                     PURPLE_MESSAGE_SEND | PURPLE_MESSAGE_REMOTE_SEND,
				                     time(NULL));
				g_free(esc);
			}
		} else if (ret < 0 && ret != OMEMO_ERR_DUPLICATE &&
		           !(ret == OMEMO_ERR_NOT_FOR_US && !parsed.payload)) {
			/* (A key-transport copy for the contact alone is no
			 * message of ours to show.) */
			char *notice = g_strdup_printf(_("A message sent from another of your devices "
			                                 "could not be decrypted: %s"),
			                               omemo_strerror(ret));

			manager_notice(m->account, peer, notice);
			g_free(notice);
		}
		if (ret == 0 && d.prekey)
			manager_bundle_republish_soon(m);
		engine_decrypted_clear(&d);
		omemo_message_clear(&parsed);
	} else {
		xmlnode *body = xmlnode_get_child(inner, "body");
		char *text = body ? xmlnode_get_data(body) : NULL;

		if (text) {
			PurpleConversation *conv = purple_find_conversation_with_account(
				PURPLE_CONV_TYPE_IM, peer, m->account);
			char *esc = g_markup_escape_text(text, -1);

			if (!conv)
				conv = purple_conversation_new(PURPLE_CONV_TYPE_IM, m->account, peer);
			if (conv)
				purple_conv_im_write(PURPLE_CONV_IM(conv), m->own_jid, esc,
				                     PURPLE_MESSAGE_SEND | PURPLE_MESSAGE_REMOTE_SEND,
				                     time(NULL));
			g_free(esc);
			g_free(text);
		}
	}
	g_free(peer);
	return true;
}

bool manager_receiving(PurpleConnection *gc, xmlnode **packet)
{
	manager_t *m = manager_for_gc(gc);
	xmlnode *stanza = packet ? *packet : NULL;
	xmlnode *enc, *event;
	const char *from, *type;
	char *jid;
	bool consume = false;

	if (!stanza)
		return false;
	if (xmpp_handle_reply(gc, stanza))
		return true;
	if (m && g_strcmp0(stanza->name, "presence") == 0) {
		muc_presence(m, stanza);
		return false;
	}
	if (!m || g_strcmp0(stanza->name, "message") != 0)
		return false;
	from = xmlnode_get_attrib(stanza, "from");
	type = xmlnode_get_attrib(stanza, "type");
	{
		xmlnode *carbon = xmlnode_get_child_with_namespace(stanza, "received", XMPP_NS_CARBONS);
		bool sent = false;

		if (!carbon) {
			carbon = xmlnode_get_child_with_namespace(stanza, "sent", XMPP_NS_CARBONS);
			sent = carbon != NULL;
		}
		if (carbon)
			return receive_carbon(m, stanza, carbon, sent);
	}
	event = xmlnode_get_child_with_namespace(stanza, "event", XMPP_NS_PUBSUB_EVENT);
	if (event) {
		handle_pep_event(m, from, event);
		return false;
	}
	if (g_strcmp0(type, "groupchat") == 0)
		return muc_receiving(m, stanza);
	if (g_strcmp0(type, "error") == 0)
		return false;
	enc = xmlnode_get_child_with_namespace(stanza, "encrypted", OMEMO_NS_LEGACY);
	jid = xmpp_bare_jid(from);
	if (!jid)
		return false;
	if (enc) {
		consume = manager_receive_encrypted(m, jid, stanza, enc, jid);
	} else if (xmlnode_get_child(stanza, "body") && should_encrypt(m, manager_contact_get(m, jid))) {
		manager_notice(m->account, jid,
		               _("The next message was sent WITHOUT encryption, although OMEMO is on "
		                 "in this conversation."));
	}
	g_free(jid);
	return consume;
}

/* ---- accounts ---- */

void manager_prefs_init(void)
{
	purple_prefs_add_none(MANAGER_PREF_ROOT);
	purple_prefs_add_bool(MANAGER_PREF_CARBONS, TRUE);
	purple_prefs_add_bool(MANAGER_PREF_TRUST_MANUAL, FALSE);
	purple_prefs_add_bool(MANAGER_PREF_DEFAULT_ON, TRUE);
	purple_prefs_add_bool(MANAGER_PREF_DEBUG, FALSE);
	purple_prefs_add_bool(MANAGER_PREF_HIDE_DISTRUSTED, FALSE);
}

static char *store_path_for(PurpleAccount *account, const char *own)
{
	char *dir = g_build_filename(purple_user_dir(), "omemo", NULL);
	char *file, *path;

	g_mkdir_with_parents(dir, 0700);
	file = g_strdup_printf("%s.db", own);
	path = g_build_filename(dir, file, NULL);
	g_free(file);
	g_free(dir);
	return path;
}

void manager_account_connected(PurpleConnection *gc)
{
	PurpleAccount *account = purple_connection_get_account(gc);
	manager_t *m;
	char *own, *path;
	int ret;

	if (g_strcmp0(purple_account_get_protocol_id(account), "prpl-jabber") != 0)
		return;
	if (!managers)
		managers = g_hash_table_new(g_direct_hash, g_direct_equal);
	m = manager_find(account);
	if (m) {
		m->gc = gc;
		return;
	}
	own = xmpp_own_bare_jid(account);
	if (!own)
		return;
	path = store_path_for(account, own);
	m = g_new0(manager_t, 1);
	m->account = account;
	m->gc = gc;
	m->own_jid = own;
	m->contacts = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, manager_contact_free);
	m->rooms = muc_rooms_new();
	m->modes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	ret = engine_open(path, own, &m->engine);
	g_free(path);
	if (ret < 0) {
		char *msg = g_strdup_printf(_("OMEMO is unavailable for %s: %s"), own,
		                            omemo_strerror(ret));

		purple_debug_error(LOG, "%s\n", msg);
		purple_notify_error(NULL, _("OMEMO"), msg, NULL);
		g_free(msg);
		if (!unavailable)
			unavailable = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
		g_hash_table_replace(unavailable, account, g_strdup(omemo_strerror(ret)));
		g_hash_table_destroy(m->contacts);
		g_hash_table_destroy(m->rooms);
		g_hash_table_destroy(m->modes);
		g_free(m->own_jid);
		g_free(m);
		return;
	}
	g_hash_table_insert(managers, account, m);
	purple_debug_info(LOG, "%s: device %u\n", own, engine_device_id(m->engine));
	manager_devicelist_fetch(m, own);
	bundle_publish(m);
	if (purple_prefs_get_bool(MANAGER_PREF_CARBONS))
		carbons_enable(m);
}

static void manager_free(manager_t *m)
{
	GList *all = g_hash_table_get_values(m->contacts);

	if (m->gc)
		xmpp_cancel_connection(m->gc);
	for (GList *l = all; l; l = l->next) {
		contact *c = l->data;

		manager_fail_outbox(m, c, _("the account went offline."));
	}
	g_list_free(all);
	muc_fail_all(m, _("the account went offline."));
	if (m->republish_timer)
		purple_timeout_remove(m->republish_timer);
	g_hash_table_destroy(m->contacts);
	g_hash_table_destroy(m->rooms);
	g_hash_table_destroy(m->modes);
	engine_close(m->engine);
	g_free(m->own_jid);
	g_free(m);
}

void manager_account_disconnecting(PurpleConnection *gc)
{
	PurpleAccount *account = purple_connection_get_account(gc);
	manager_t *m = manager_find(account);

	if (unavailable)
		g_hash_table_remove(unavailable, account);
	if (!m)
		return;
	g_hash_table_remove(managers, account);
	manager_free(m);
}

void manager_shutdown(void)
{
	GList *all;

	if (unavailable) {
		g_hash_table_destroy(unavailable);
		unavailable = NULL;
	}

	if (!managers)
		return;
	all = g_hash_table_get_values(managers);
	g_hash_table_remove_all(managers);
	for (GList *l = all; l; l = l->next)
		manager_free(l->data);
	g_list_free(all);
	g_hash_table_destroy(managers);
	managers = NULL;
}

bool manager_describe(manager_t *m, const char *jid, char **why)
{
	contact *c = manager_contact_get(m, jid);
	GArray *theirs = active_devices(m, jid);
	bool on = should_encrypt(m, c);
	GString *s = g_string_new(NULL);
	manager_mode mode = manager_get_mode(m, jid);

	g_string_append_printf(s, on ? _("OMEMO is on for %s") : _("OMEMO is off for %s"), jid);
	g_string_append(s, mode == MANAGER_MODE_AUTO ? _(" (automatic).") : _(" (your choice)."));
	g_string_append_printf(s, _(" Known devices: %u."), theirs->len);
	for (guint i = 0; i < theirs->len; i++) {
		uint32_t id = g_array_index(theirs, uint32_t, i);

		g_string_append_printf(s, _(" Device %u: %s."), id,
		                       engine_has_session(m->engine, jid, id) ? _("session ready")
		                                                              : _("no session yet"));
	}
	g_string_append_printf(s, _(" This device: %u."), engine_device_id(m->engine));
	g_array_free(theirs, TRUE);
	*why = g_string_free(s, FALSE);
	return on;
}
