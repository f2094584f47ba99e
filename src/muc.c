/*
 * OMEMO in XEP-0045 rooms. A room is followed from our own presence in it:
 * occupants' real JIDs come from their muc#user presence items, members,
 * admins and owners from the affiliation lists (when the room shows them),
 * and whether OMEMO can work from the room's disco#info (it must be
 * non-anonymous). Messages typed into a room where OMEMO is on are queued
 * while device lists and bundles are fetched, then encrypted for every
 * trusted device of every member and of our own account; members who
 * cannot be reached are named, and the message goes to the others only if
 * the room's setting says so. Our own message reflected by the room cannot
 * be decrypted by us (it is not encrypted for the sending device), so its
 * text is remembered by stanza id and shown in its place.
 */
#include <string.h>
#include <time.h>

#include <glib.h>

#include <conversation.h>
#include <debug.h>
#include <server.h>
#include <util.h>

#include "err.h"
#include "group.h"
#include "i18n.h"
#include "manager.h"
#include "manager_int.h"
#include "muc.h"
#include "store.h"
#include "trust.h"
#include "wire.h"
#include "xmpp.h"

#define NS_MUC_USER "http://jabber.org/protocol/muc#user"
#define NS_MUC_ADMIN "http://jabber.org/protocol/muc#admin"
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
/* Own messages remembered for their reflection. */
#define SENT_KEEP 200
/* Bounds against a hostile room. */
#define MAX_OCCUPANTS 10000
#define MAX_AFFILIATED 10000

/* Members added while we are in the room are not announced to us unless
 * they join: the lists are asked again before a message when older. */
#define LISTS_MAX_AGE_SECONDS 120

#define SETTING_INCOMPLETE "omemo-incomplete"
/* Set once OMEMO was on in a room by the automatic rule: the room going
 * anonymous later must stop messages, not send them in plaintext. */
#define SETTING_SEEN "omemo-seen"

typedef enum {
	INFO_UNKNOWN = 0,
	INFO_FETCHING,
	INFO_KNOWN,
	INFO_FAILED,
} info_state;

typedef struct {
	char *id;
	char *text;
} sent_msg;

struct muc_room {
	char *jid;
	char *own_nick;
	contact *w; /* the queue, its fetches and its skipped devices */
	info_state info;
	bool nonanonymous;
	bool membersonly;
	bool joined;
	bool told_anonymous;
	int lists_pending;
	time_t lists_at; /* when the affiliation lists were last asked */
	GHashTable *occupants;  /* nick -> real bare JID, or "" when not shown */
	GHashTable *affiliated; /* real bare JID -> affiliation */
	GQueue sent;            /* sent_msg, oldest first */
	GString *why;           /* why the message being sent failed */
	GString *left_out;      /* members the message being sent did not reach */
};

static void sent_msg_free(gpointer p)
{
	sent_msg *s = p;

	g_free(s->id);
	g_free(s->text);
	g_free(s);
}

static void room_free(gpointer p)
{
	muc_room *r = p;

	g_free(r->jid);
	g_free(r->own_nick);
	manager_contact_free(r->w);
	g_hash_table_destroy(r->occupants);
	g_hash_table_destroy(r->affiliated);
	g_queue_clear_full(&r->sent, sent_msg_free);
	g_string_free(r->why, TRUE);
	g_string_free(r->left_out, TRUE);
	g_free(r);
}

GHashTable *muc_rooms_new(void)
{
	return g_hash_table_new_full(g_str_hash, g_str_equal, NULL, room_free);
}

static muc_room *room_find(manager_t *m, const char *jid)
{
	return jid ? g_hash_table_lookup(m->rooms, jid) : NULL;
}

static muc_room *room_get(manager_t *m, const char *jid)
{
	muc_room *r = room_find(m, jid);

	if (!r) {
		r = g_new0(muc_room, 1);
		r->jid = g_strdup(jid);
		r->w = manager_contact_new(jid);
		r->w->room = r;
		r->occupants = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
		r->affiliated = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
		g_queue_init(&r->sent);
		r->why = g_string_new(NULL);
		r->left_out = g_string_new(NULL);
		g_hash_table_insert(m->rooms, r->jid, r);
	}
	return r;
}

contact *muc_waiter(manager_t *m, const char *room)
{
	muc_room *r = room_find(m, room);

	return r ? r->w : NULL;
}

bool muc_is_room(manager_t *m, const char *jid)
{
	return m && room_find(m, jid) != NULL;
}

static bool setting_is(manager_t *m, const char *room, const char *key, const char *want)
{
	char *v = NULL;
	bool is = store_setting_get(engine_store(m->engine), room, key, &v) == 0 &&
	          g_strcmp0(v, want) == 0;

	g_free(v);
	return is;
}

static bool incomplete_sends(manager_t *m, const char *room)
{
	return !setting_is(m, room, SETTING_INCOMPLETE, "hold");
}

/* Whether messages in the room must be encrypted: the user's choice, or by
 * default when the room is private (non-anonymous and members-only, as
 * Conversations decides), and from then on. */
static bool room_wants_omemo(manager_t *m, muc_room *r)
{
	manager_mode mode = manager_get_mode(m, r->jid);

	if (mode != MANAGER_MODE_AUTO)
		return mode == MANAGER_MODE_ON;
	if (setting_is(m, r->jid, SETTING_SEEN, "1"))
		return true;
	return purple_prefs_get_bool(MANAGER_PREF_DEFAULT_ON) && r->info == INFO_KNOWN &&
	       r->nonanonymous && r->membersonly;
}

static bool room_can_omemo(muc_room *r)
{
	return r->info == INFO_KNOWN && r->nonanonymous;
}

static const char *anonymous_reason(void)
{
	return _("this room does not show its members' real addresses to everyone (it is "
	         "anonymous or semi-anonymous), so their devices cannot be known. OMEMO needs a "
	         "non-anonymous room; ask an owner to make it one (members-only is recommended "
	         "too), or turn OMEMO off here with \"/omemo off\" to send without encryption.");
}

/* ---- who is in the room ---- */

static int cmp_str(gconstpointer a, gconstpointer b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Real bare JIDs of occupants and affiliated members, sorted, without
 * duplicates and without our own. */
static GPtrArray *room_recipients(manager_t *m, muc_room *r)
{
	GHashTable *set = g_hash_table_new(g_str_hash, g_str_equal);
	GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
	GHashTableIter it;
	gpointer k, v;

	g_hash_table_iter_init(&it, r->occupants);
	while (g_hash_table_iter_next(&it, &k, &v))
		if (*(char *)v && strcmp(v, m->own_jid) != 0)
			g_hash_table_add(set, v);
	g_hash_table_iter_init(&it, r->affiliated);
	while (g_hash_table_iter_next(&it, &k, &v))
		if (strcmp(k, m->own_jid) != 0)
			g_hash_table_add(set, k);
	g_hash_table_iter_init(&it, set);
	while (g_hash_table_iter_next(&it, &k, &v))
		g_ptr_array_add(out, g_strdup(k));
	g_hash_table_destroy(set);
	g_ptr_array_sort(out, cmp_str);
	return out;
}

GPtrArray *muc_recipients(manager_t *m, const char *room)
{
	muc_room *r = m ? room_find(m, room) : NULL;

	return r ? room_recipients(m, r) : g_ptr_array_new_with_free_func(g_free);
}

static bool is_member_affiliation(const char *aff)
{
	return g_strcmp0(aff, "member") == 0 || g_strcmp0(aff, "admin") == 0 ||
	       g_strcmp0(aff, "owner") == 0;
}

static void note_affiliation(muc_room *r, const char *real, const char *aff)
{
	if (!real || !aff)
		return;
	if (is_member_affiliation(aff)) {
		if (g_hash_table_size(r->affiliated) < MAX_AFFILIATED ||
		    g_hash_table_contains(r->affiliated, real))
			g_hash_table_replace(r->affiliated, g_strdup(real), g_strdup(aff));
	} else {
		g_hash_table_remove(r->affiliated, real);
	}
}

/* Devices of new members are asked for as they come, so the first message
 * does not wait for them. */
static void prefetch(manager_t *m, const char *jid)
{
	contact *c = manager_contact_get(m, jid);

	if (c->state == DL_UNKNOWN)
		manager_devicelist_fetch(m, jid);
}

static void room_prefetch_all(manager_t *m, muc_room *r)
{
	GPtrArray *jids;

	if (!room_wants_omemo(m, r) || !room_can_omemo(r))
		return;
	jids = room_recipients(m, r);
	for (guint i = 0; i < jids->len; i++)
		prefetch(m, jids->pdata[i]);
	g_ptr_array_unref(jids);
}

/* ---- what the room is ---- */

static void info_cb(PurpleConnection *gc, xmpp_iq_status status, xmlnode *iq, void *data)
{
	char *jid = data;
	manager_t *m = gc ? manager_find(purple_connection_get_account(gc)) : NULL;
	muc_room *r = m ? room_find(m, jid) : NULL;
	bool was_secure;

	if (!r || status == XMPP_IQ_CANCELLED)
		goto out;
	was_secure = room_can_omemo(r) && room_wants_omemo(m, r);
	if (status != XMPP_IQ_RESULT) {
		purple_debug_warning(LOG, "no disco#info from room %s\n", r->jid);
		r->info = INFO_FAILED;
	} else {
		xmlnode *q = xmlnode_get_child_with_namespace(iq, "query", NS_DISCO_INFO);

		r->nonanonymous = false;
		r->membersonly = false;
		for (xmlnode *f = q ? xmlnode_get_child(q, "feature") : NULL; f;
		     f = xmlnode_get_next_twin(f)) {
			const char *var = xmlnode_get_attrib(f, "var");

			if (g_strcmp0(var, "muc_nonanonymous") == 0)
				r->nonanonymous = true;
			else if (g_strcmp0(var, "muc_membersonly") == 0)
				r->membersonly = true;
		}
		r->info = INFO_KNOWN;
		LOG_DETAIL("room %s: %s, %s\n", r->jid,
		           r->nonanonymous ? "non-anonymous" : "anonymous",
		           r->membersonly ? "members-only" : "open");
	}
	if (r->info == INFO_KNOWN && !r->nonanonymous && room_wants_omemo(m, r) &&
	    (was_secure || !r->told_anonymous)) {
		char *msg = g_strdup_printf(_("OMEMO cannot be used in this room: %s Messages you "
		                              "type here are not sent while OMEMO is on."),
		                            anonymous_reason());

		manager_notice(m->account, r->jid, msg);
		g_free(msg);
		r->told_anonymous = true;
	} else if (r->info == INFO_KNOWN && r->nonanonymous) {
		r->told_anonymous = false;
	}
	room_prefetch_all(m, r);
	muc_pump(m, r);
out:
	g_free(jid);
}

static void room_info_fetch(manager_t *m, muc_room *r)
{
	xmlnode *iq = xmlnode_new("iq");
	xmlnode *q = xmlnode_new_child(iq, "query");

	xmlnode_set_attrib(iq, "type", "get");
	xmlnode_set_namespace(q, NS_DISCO_INFO);
	r->info = INFO_FETCHING;
	if (!xmpp_send_iq(m->gc, iq, r->jid, info_cb, g_strdup(r->jid)))
		r->info = INFO_FAILED;
}

typedef struct {
	char *room;
	char *affiliation;
} list_req;

static void list_cb(PurpleConnection *gc, xmpp_iq_status status, xmlnode *iq, void *data)
{
	list_req *q = data;
	manager_t *m = gc ? manager_find(purple_connection_get_account(gc)) : NULL;
	muc_room *r = m ? room_find(m, q->room) : NULL;

	if (!r || status == XMPP_IQ_CANCELLED)
		goto out;
	r->lists_pending--;
	if (status == XMPP_IQ_RESULT) {
		xmlnode *query = xmlnode_get_child_with_namespace(iq, "query", NS_MUC_ADMIN);

		for (xmlnode *it = query ? xmlnode_get_child(query, "item") : NULL; it;
		     it = xmlnode_get_next_twin(it)) {
			char *real = xmpp_bare_jid(xmlnode_get_attrib(it, "jid"));
			const char *aff = xmlnode_get_attrib(it, "affiliation");

			note_affiliation(r, real, aff ? aff : q->affiliation);
			g_free(real);
		}
	} else {
		/* Rooms show these lists to whom they choose; occupants are
		 * known from their presence anyway. */
		LOG_DETAIL("room %s does not show its %s list\n", r->jid, q->affiliation);
	}
	room_prefetch_all(m, r);
	muc_pump(m, r);
out:
	g_free(q->room);
	g_free(q->affiliation);
	g_free(q);
}

static void room_lists_fetch(manager_t *m, muc_room *r)
{
	static const char *const affs[] = { "owner", "admin", "member" };

	r->lists_at = time(NULL);
	for (size_t i = 0; i < G_N_ELEMENTS(affs); i++) {
		xmlnode *iq = xmlnode_new("iq");
		xmlnode *q = xmlnode_new_child(iq, "query");
		xmlnode *item = xmlnode_new_child(q, "item");
		list_req *req = g_new0(list_req, 1);

		xmlnode_set_attrib(iq, "type", "get");
		xmlnode_set_namespace(q, NS_MUC_ADMIN);
		xmlnode_set_attrib(item, "affiliation", affs[i]);
		req->room = g_strdup(r->jid);
		req->affiliation = g_strdup(affs[i]);
		if (xmpp_send_iq(m->gc, iq, r->jid, list_cb, req)) {
			r->lists_pending++;
		} else {
			g_free(req->room);
			g_free(req->affiliation);
			g_free(req);
		}
	}
}

/* ---- presence ---- */

static bool has_status(xmlnode *x, const char *code)
{
	for (xmlnode *s = x ? xmlnode_get_child(x, "status") : NULL; s; s = xmlnode_get_next_twin(s))
		if (g_strcmp0(xmlnode_get_attrib(s, "code"), code) == 0)
			return true;
	return false;
}

static void room_leave(manager_t *m, muc_room *r, const char *why)
{
	manager_fail_outbox(m, r->w, why);
	g_hash_table_remove(m->rooms, r->jid);
}

void muc_presence(manager_t *m, xmlnode *presence)
{
	const char *from = xmlnode_get_attrib(presence, "from");
	const char *type = xmlnode_get_attrib(presence, "type");
	const char *slash = from ? strchr(from, '/') : NULL;
	xmlnode *x = xmlnode_get_child_with_namespace(presence, "x", NS_MUC_USER);
	xmlnode *item = x ? xmlnode_get_child(x, "item") : NULL;
	char *room, *real;
	const char *nick;
	bool self;
	muc_room *r;

	if (!x || !slash || !slash[1] || g_strcmp0(type, "error") == 0)
		return;
	room = xmpp_bare_jid(from);
	if (!room)
		return;
	nick = slash + 1;
	self = has_status(x, "110");
	r = room_find(m, room);
	/* Occupants are listed before our own presence, so a room is
	 * followed from its first presence; bounded against a flood. */
	if (!r && g_hash_table_size(m->rooms) >= 1000)
		goto out_room;
	if (!r)
		r = room_get(m, room);
	real = item ? xmpp_bare_jid(xmlnode_get_attrib(item, "jid")) : NULL;
	if (g_strcmp0(type, "unavailable") == 0) {
		g_hash_table_remove(r->occupants, nick);
		if (self && !has_status(x, "303")) {
			/* We left, or were removed. */
			room_leave(m, r, _("you are no longer in the room."));
			g_free(real);
			goto out_room;
		}
	} else {
		if (g_hash_table_size(r->occupants) < MAX_OCCUPANTS ||
		    g_hash_table_contains(r->occupants, nick))
			g_hash_table_replace(r->occupants, g_strdup(nick), g_strdup(real ? real : ""));
		if (self) {
			g_free(r->own_nick);
			r->own_nick = g_strdup(nick);
			if (!r->joined) {
				r->joined = true;
				room_info_fetch(m, r);
				room_lists_fetch(m, r);
			}
		} else if (real && room_wants_omemo(m, r) && room_can_omemo(r) &&
		           strcmp(real, m->own_jid) != 0) {
			prefetch(m, real);
		}
	}
	if (item)
		note_affiliation(r, real, xmlnode_get_attrib(item, "affiliation"));
	g_free(real);
out_room:
	g_free(room);
}

/* ---- sending ---- */

/* Why a member got nothing (g_free), or NULL when some device of theirs
 * is among the recipients. */
static char *member_gap(manager_t *m, contact *w, const char *jid, GHashTable *reached,
                        GHashTable *untrusted)
{
	contact *c;
	GString *s;
	GHashTableIter it;
	gpointer k, v;

	if (g_hash_table_contains(reached, jid))
		return NULL;
	c = manager_contact_get(m, jid);
	if (c->state == DL_NONE)
		return g_strdup(_("has no OMEMO device"));
	if (c->state == DL_FAILED)
		return g_strdup(_("their device list did not arrive"));
	if (g_hash_table_contains(untrusted, jid))
		return g_strdup(_("none of their devices is trusted (see \"/omemo devices\")"));
	s = g_string_new(NULL);
	g_hash_table_iter_init(&it, w->skipped);
	while (g_hash_table_iter_next(&it, &k, &v)) {
		skip_entry *e = v;

		if (strcmp(e->jid, jid) == 0)
			g_string_append_printf(s, _("%sdevice %u: %s"), s->len ? "; " : "", e->device,
			                       e->reason);
	}
	if (!s->len)
		g_string_append(s, _("no session could be set up with their devices"));
	return g_string_free(s, FALSE);
}

/* Encrypt text for the room: 0 and *out, or OMEMO_ERR_NO_RECIPIENTS with
 * the reason in r->why. Members left out are listed in r->left_out. */
static int room_encrypt(manager_t *m, muc_room *r, const char *text, xmlnode **out)
{
	GPtrArray *jids = room_recipients(m, r);
	GHashTable *reached = g_hash_table_new(g_str_hash, g_str_equal);
	GHashTable *untrusted = g_hash_table_new(g_str_hash, g_str_equal);
	manager_recipients rc = { 0 };
	omemo_message msg = { 0 };
	size_t n_others = 0;
	guint n_gaps = 0;
	bool in_tx = false;
	int ret, ret2;

	g_string_truncate(r->why, 0);
	g_string_truncate(r->left_out, 0);
	g_ptr_array_add(jids, g_strdup(m->own_jid));
	/* One transaction for the reads, the trust decisions about new keys
	 * and the ratchet state of every recipient: one commit a message. */
	manager_end_send(m, r->jid); /* see encrypt_for() */
	ret = store_begin(engine_store(m->engine));
	if (ret < 0)
		goto out;
	in_tx = true;
	ret = manager_recipients_collect(m, (const char *const *)jids->pdata, jids->len, r->jid,
	                                 &rc);
	if (ret < 0)
		goto out;
	for (guint i = 0; i < rc.cands->len; i++) {
		group_device *d = &g_array_index(rc.cands, group_device, i);

		if (d->has_session && !trust_is_trusted(d->trust.state))
			g_hash_table_add(untrusted, (gpointer)d->jid);
	}
	for (size_t i = 0; i < rc.n; i++) {
		const char *jid = rc.rcpts[i].jid;

		if (strcmp(jid, m->own_jid) != 0 && !g_hash_table_contains(reached, jid)) {
			g_hash_table_add(reached, (gpointer)jid);
			n_others++;
		}
	}
	for (guint i = 0; i + 1 < jids->len; i++) {
		char *gap = member_gap(m, r->w, jids->pdata[i], reached, untrusted);

		if (gap) {
			g_string_append_printf(r->left_out, " %s: %s.", (char *)jids->pdata[i], gap);
			n_gaps++;
			g_free(gap);
		}
	}
	if (jids->len == 1) {
		g_string_assign(r->why, _("nobody else belongs to this room yet, so nobody could "
		                          "read it."));
		ret = OMEMO_ERR_NO_RECIPIENTS;
		goto out;
	}
	if (n_others == 0) {
		g_string_printf(r->why, _("no member of this room could be reached:%s"),
		                r->left_out->str);
		ret = OMEMO_ERR_NO_RECIPIENTS;
		goto out;
	}
	if (n_gaps && !incomplete_sends(m, r->jid)) {
		g_string_printf(r->why, _("some members could not be reached, and this room is set "
		                          "to hold messages then (\"/omemo incomplete send\" sends "
		                          "to the others):%s"),
		                r->left_out->str);
		ret = OMEMO_ERR_NO_RECIPIENTS;
		goto out;
	}
	ret = engine_encrypt(m->engine, (const uint8_t *)text, strlen(text), rc.rcpts, rc.n, &msg,
	                     NULL);
	if (ret < 0)
		goto out;
	LOG_DETAIL("message for room %s: %zu devices, %zu members reached, %u not\n", r->jid, rc.n,
	           n_others, n_gaps);
out:
	/* Kept even when nothing is sent: trust decided about new keys. */
	if (in_tx && (ret2 = manager_commit_or_defer(m, ret == 0)) < 0 && ret == 0)
		ret = ret2;
	if (ret == 0) {
		*out = wire_build_encrypted(&msg);
		if (!*out)
			ret = OMEMO_ERR_INVALID_ARG;
	}
	omemo_message_clear(&msg);
	manager_recipients_clear(&rc);
	g_hash_table_destroy(reached);
	g_hash_table_destroy(untrusted);
	g_ptr_array_unref(jids);
	return ret;
}

static void remember_sent(muc_room *r, const char *id, const char *text)
{
	sent_msg *s = g_new0(sent_msg, 1);

	s->id = g_strdup(id);
	s->text = g_strdup(text);
	g_queue_push_tail(&r->sent, s);
	while (g_queue_get_length(&r->sent) > SENT_KEEP)
		sent_msg_free(g_queue_pop_head(&r->sent));
}

static const char *sent_text(muc_room *r, const char *id)
{
	if (!id)
		return NULL;
	for (GList *l = r->sent.tail; l; l = l->prev) {
		sent_msg *s = l->data;

		if (strcmp(s->id, id) == 0)
			return s->text;
	}
	return NULL;
}

void muc_sending(manager_t *m, xmlnode *msg)
{
	char *room = xmpp_bare_jid(xmlnode_get_attrib(msg, "to"));
	muc_room *r = room_find(m, room);
	xmlnode *enc = NULL;
	char *text;
	int ret;

	if (!xmlnode_get_child(msg, "body"))
		goto out; /* a subject, a chat state: no text of the user's */
	text = xmlnode_get_data(xmlnode_get_child(msg, "body"));
	if (r && m->sending_room == r) {
		if (!m->send_plain_ok) {
			ret = room_encrypt(m, r, text ? text : "", &enc);
			if (ret == 0) {
				const char *id = xmlnode_get_attrib(msg, "id");
				char *own_id = NULL;

				if (!id) {
					own_id = g_strdup_printf("omemo-%08x%08x", g_random_int(),
					                         g_random_int());
					xmlnode_set_attrib(msg, "id", own_id);
					id = own_id;
				}
				manager_message_make_omemo(msg, enc);
				remember_sent(r, id, text ? text : "");
				g_free(own_id);
			} else {
				m->send_result = ret;
				xmpp_neutralize(m->gc, msg);
			}
		}
	} else if (r ? room_wants_omemo(m, r) || !g_queue_is_empty(&r->w->outbox)
	             : manager_get_mode(m, room) == MANAGER_MODE_ON) {
		/* Not typed into the room (another plugin, an automatic
		 * message): it must not leave in plaintext. */
		manager_notice_not_sent(m, room,
		                        _("a message not typed here would have left unencrypted."),
		                        text ? text : "");
		xmpp_neutralize(m->gc, msg);
	}
	g_free(text);
out:
	g_free(room);
}

void muc_outgoing_iq(manager_t *m, xmlnode *iq)
{
	char *room = xmpp_bare_jid(xmlnode_get_attrib(iq, "to"));
	muc_room *r = room_find(m, room);
	xmlnode *q;

	g_free(room);
	if (!r || g_strcmp0(xmlnode_get_attrib(iq, "type"), "set") != 0)
		return;
	q = xmlnode_get_child_with_namespace(iq, "query", NS_MUC_ADMIN);
	/* The room tells occupants of affiliation changes, not us of those
	 * of people outside it: the user's own changes are taken as sent,
	 * and the lists asked again before the next message. */
	for (xmlnode *it = q ? xmlnode_get_child(q, "item") : NULL; it;
	     it = xmlnode_get_next_twin(it)) {
		char *real = xmpp_bare_jid(xmlnode_get_attrib(it, "jid"));

		note_affiliation(r, real, xmlnode_get_attrib(it, "affiliation"));
		g_free(real);
	}
	if (q || xmlnode_get_child_with_namespace(iq, "query", "http://jabber.org/protocol/muc#owner"))
		r->lists_at = 0;
}

static bool send_one(manager_t *m, muc_room *r, const char *text, bool plain)
{
	PurpleConversation *conv =
		purple_find_conversation_with_account(PURPLE_CONV_TYPE_CHAT, r->jid, m->account);
	int sent;

	if (!conv) {
		manager_notice_not_sent(m, r->jid, _("the room is closed."), text);
		return false;
	}
	m->sending_room = r;
	m->send_plain_ok = plain;
	m->send_result = 0;
	sent = serv_chat_send(m->gc, purple_conv_chat_get_id(PURPLE_CONV_CHAT(conv)), text, 0);
	m->sending_room = NULL;
	m->send_plain_ok = false;
	manager_end_send(m, r->jid);
	if (sent <= 0 || m->send_result < 0) {
		char *why;

		if (m->send_result == OMEMO_ERR_NO_RECIPIENTS)
			why = g_strdup(r->why->str);
		else if (m->send_result < 0)
			why = g_strdup_printf(_("encryption failed: %s"), omemo_strerror(m->send_result));
		else
			why = g_strdup(_("the connection refused it."));
		manager_notice_not_sent(m, r->jid, why, text);
		g_free(why);
		return false;
	}
	return true;
}

void muc_pump(manager_t *m, muc_room *r)
{
	contact *w = r->w;
	GPtrArray *jids;
	bool waiting = false;
	char *text;

	if (!m->gc || w->fetching > 0 || g_queue_is_empty(&w->outbox))
		return;
	if (r->info == INFO_UNKNOWN) {
		room_info_fetch(m, r);
		return;
	}
	if (r->info == INFO_FETCHING || r->lists_pending > 0)
		return;
	if (room_wants_omemo(m, r) && room_can_omemo(r) &&
	    time(NULL) - r->lists_at > LISTS_MAX_AGE_SECONDS) {
		room_lists_fetch(m, r);
		if (r->lists_pending > 0)
			return;
	}
	if (!room_wants_omemo(m, r)) {
		if (r->info == INFO_FAILED && manager_get_mode(m, r->jid) != MANAGER_MODE_OFF) {
			manager_fail_outbox(m, r->w, _("could not find out whether this room allows OMEMO (it "
			                         "did not answer). Try again, or turn OMEMO off with "
			                         "\"/omemo off\" to send without encryption."));
			r->info = INFO_UNKNOWN;
			return;
		}
		if (!w->told_plain) {
			manager_notice(m->account, r->jid,
			               _("Messages in this room are NOT encrypted (\"/omemo status\" "
			                 "says why)."));
			w->told_plain = true;
			w->told_encrypted = false;
		}
		while ((text = g_queue_pop_head(&w->outbox))) {
			send_one(m, r, text, true);
			g_free(text);
		}
		return;
	}
	if (!room_can_omemo(r)) {
		manager_fail_outbox(m, r->w, r->info == INFO_KNOWN
		                               ? anonymous_reason()
		                               : _("could not find out whether this room allows "
		                                   "OMEMO (it did not answer). Try again."));
		if (r->info != INFO_KNOWN)
			r->info = INFO_UNKNOWN;
		return;
	}
	jids = room_recipients(m, r);
	for (guint i = 0; i < jids->len; i++) {
		contact *c = manager_contact_get(m, jids->pdata[i]);

		if (c->state == DL_UNKNOWN)
			manager_devicelist_fetch(m, c->jid);
		if (c->state == DL_FETCHING)
			waiting = true;
	}
	if (!waiting) {
		g_ptr_array_add(jids, g_strdup(m->own_jid));
		waiting = manager_fetch_missing_bundles(m, w, (const char *const *)jids->pdata,
		                                        jids->len) > 0;
	}
	g_ptr_array_unref(jids);
	if (waiting)
		return;
	if (!w->told_encrypted) {
		manager_notice(m->account, r->jid,
		               _("Messages in this room are encrypted with OMEMO."));
		w->told_encrypted = true;
		w->told_plain = false;
	}
	while ((text = g_queue_pop_head(&w->outbox))) {
		if (send_one(m, r, text, false)) {
			if (manager_get_mode(m, r->jid) == MANAGER_MODE_AUTO)
				store_setting_set(engine_store(m->engine), r->jid, SETTING_SEEN, "1");
			if (r->left_out->len) {
				char *msg = g_strdup_printf(_("The message above did NOT reach:%s"),
				                            r->left_out->str);

				manager_notice(m->account, r->jid, msg);
				g_free(msg);
			}
		}
		g_free(text);
	}
	/* Next message: try the unreachable again. */
	g_hash_table_remove_all(w->skipped);
	jids = room_recipients(m, r);
	for (guint i = 0; i < jids->len; i++) {
		contact *c = manager_contact_get(m, jids->pdata[i]);

		if (c->state == DL_FAILED)
			c->state = DL_UNKNOWN;
	}
	g_ptr_array_unref(jids);
}

void muc_pump_all(manager_t *m)
{
	GList *rooms = g_hash_table_get_values(m->rooms);

	/* A pump may leave a room (sending fails when the room is gone), so
	 * each is looked up again. */
	for (GList *l = rooms; l; l = l->next) {
		muc_room *r = l->data;

		if (!g_queue_is_empty(&r->w->outbox))
			muc_pump(m, r);
	}
	g_list_free(rooms);
}

void muc_fail_all(manager_t *m, const char *why)
{
	GHashTableIter it;
	gpointer k, v;

	g_hash_table_iter_init(&it, m->rooms);
	while (g_hash_table_iter_next(&it, &k, &v))
		manager_fail_outbox(m, ((muc_room *)v)->w, why);
}

void muc_sending_chat(PurpleAccount *account, char **message, int id)
{
	manager_t *m = manager_find(account);
	PurpleConnection *gc = purple_account_get_connection(account);
	PurpleConversation *conv;
	manager_mode mode;
	char *room;
	muc_room *r;

	if (!message || !*message || !**message || !gc)
		return;
	conv = purple_find_chat(gc, id);
	if (!conv)
		return;
	if (!m) {
		if (manager_refuse_if_unavailable(account, purple_conversation_get_name(conv),
		                                  *message)) {
			g_free(*message);
			*message = NULL;
		}
		return;
	}
	room = xmpp_bare_jid(purple_conversation_get_name(conv));
	if (!room)
		return;
	r = room_get(m, room);
	g_free(room);
	mode = manager_get_mode(m, r->jid);
	/* Plain by choice, or a room known not to want OMEMO, with nothing
	 * queued before it: libpurple sends it as usual. */
	if (g_queue_is_empty(&r->w->outbox) &&
	    (mode == MANAGER_MODE_OFF || (r->info == INFO_KNOWN && !room_wants_omemo(m, r)))) {
		if (!r->w->told_plain) {
			manager_notice(m->account, r->jid,
			               mode == MANAGER_MODE_OFF
			                       ? _("Messages in this room are NOT encrypted: OMEMO is "
			                           "off here (\"/omemo on\" turns it on).")
			                       : _("Messages in this room are NOT encrypted (\"/omemo "
			                           "status\" says why)."));
			r->w->told_plain = true;
			r->w->told_encrypted = false;
		}
		return;
	}
	g_queue_push_tail(&r->w->outbox, *message);
	*message = NULL;
	muc_pump(m, r);
}

/* ---- receiving ---- */

static bool is_config_change(xmlnode *x)
{
	static const char *const codes[] = { "104", "170", "171", "172", "173", "174" };

	for (size_t i = 0; i < G_N_ELEMENTS(codes); i++)
		if (has_status(x, codes[i]))
			return true;
	return false;
}

/* The real JID behind a nick: from its presence, or else the member whose
 * device sent it (history from someone who has left). */
static char *sender_jid(manager_t *m, muc_room *r, const char *nick, uint32_t sid)
{
	const char *real = g_hash_table_lookup(r->occupants, nick);
	GPtrArray *jids;
	char *found = NULL;

	if (real && *real)
		return g_strdup(real);
	jids = room_recipients(m, r);
	for (guint i = 0; i < jids->len && !found; i++) {
		GArray *ids = group_active_devices(m->engine, jids->pdata[i], 0);

		for (guint j = 0; j < ids->len && !found; j++)
			if (g_array_index(ids, uint32_t, j) == sid)
				found = g_strdup(jids->pdata[i]);
		g_array_free(ids, TRUE);
	}
	g_ptr_array_unref(jids);
	return found;
}

bool muc_receiving(manager_t *m, xmlnode *msg)
{
	const char *from = xmlnode_get_attrib(msg, "from");
	const char *slash = from ? strchr(from, '/') : NULL;
	xmlnode *x = xmlnode_get_child_with_namespace(msg, "x", NS_MUC_USER);
	xmlnode *enc = xmlnode_get_child_with_namespace(msg, "encrypted", OMEMO_NS_LEGACY);
	xmlnode *header, *item;
	char *room = xmpp_bare_jid(from), *jid;
	const char *nick;
	uint32_t sid = 0;
	muc_room *r = room_find(m, room);
	bool consume = false;

	if (!r)
		goto out;
	if (x && is_config_change(x)) {
		if (has_status(x, "173") || has_status(x, "174")) {
			/* Stop at once; disco#info confirms. */
			r->nonanonymous = false;
		}
		room_info_fetch(m, r);
		if (r->lists_pending == 0)
			room_lists_fetch(m, r);
	}
	item = x ? xmlnode_get_child(x, "item") : NULL;
	if (item) {
		/* An affiliation change for someone not in the room. */
		char *real = xmpp_bare_jid(xmlnode_get_attrib(item, "jid"));

		note_affiliation(r, real, xmlnode_get_attrib(item, "affiliation"));
		g_free(real);
	}
	if (!slash || !slash[1])
		goto out;
	nick = slash + 1;
	if (!enc) {
		if (xmlnode_get_child(msg, "body") && g_strcmp0(nick, r->own_nick) != 0 &&
		    !xmlnode_get_child_with_namespace(msg, "delay", "urn:xmpp:delay") &&
		    room_wants_omemo(m, r) && room_can_omemo(r)) {
			char *notice = g_strdup_printf(_("The next message from %s was sent WITHOUT "
			                                 "encryption, although OMEMO is on in this "
			                                 "room."),
			                               nick);

			manager_notice(m->account, r->jid, notice);
			g_free(notice);
		}
		goto out;
	}
	header = xmlnode_get_child(enc, "header");
	if (header) {
		guint64 v = g_ascii_strtoull(xmlnode_get_attrib(header, "sid") ?
		                                     xmlnode_get_attrib(header, "sid") : "0",
		                             NULL, 10);

		sid = v <= G_MAXUINT32 ? (uint32_t)v : 0;
	}
	if (sid && sid == engine_device_id(m->engine) && g_strcmp0(nick, r->own_nick) == 0) {
		/* Our own message, reflected by the room (or from its history):
		 * it was not encrypted for the device that sent it. Another
		 * occupant claiming our device id goes on to decryption, and
		 * fails there. */
		const char *text = sent_text(r, xmlnode_get_attrib(msg, "id"));

		manager_replace_body(msg, text ? text
		                               : _("[a message you sent from this device; OMEMO "
		                                   "does not let the sending device read it again]"));
		goto out;
	}
	jid = sender_jid(m, r, nick, sid);
	if (!jid) {
		char *notice = g_strdup_printf(_("An encrypted message from %s could not be "
		                                 "decrypted: the room does not say who they are."),
		                               nick);

		manager_notice(m->account, r->jid, notice);
		g_free(notice);
		consume = true;
		goto out;
	}
	consume = manager_receive_encrypted(m, jid, msg, enc, r->jid);
	g_free(jid);
out:
	g_free(room);
	return consume;
}

/* ---- user settings and status ---- */

int muc_set_mode(manager_t *m, const char *room, bool on, char **answer)
{
	muc_room *r = room_find(m, room);
	int ret;

	if (on && r && r->info == INFO_KNOWN && !r->nonanonymous) {
		*answer = g_strdup_printf(_("OMEMO cannot be turned on here: %s"), anonymous_reason());
		return OMEMO_ERR_INVALID_ARG;
	}
	ret = manager_set_mode(m, room, on ? MANAGER_MODE_ON : MANAGER_MODE_OFF);
	if (ret < 0) {
		*answer = g_strdup_printf(_("Could not save the setting: %s"), omemo_strerror(ret));
		return ret;
	}
	if (!on)
		store_setting_set(engine_store(m->engine), room, SETTING_SEEN, "0");
	if (on && r && !r->membersonly && r->info == INFO_KNOWN)
		*answer = g_strdup(_("OMEMO encryption is now ON for this room. It is not "
		                     "members-only: anyone who joins later gets the messages sent "
		                     "after they joined; members-only is recommended."));
	else
		*answer = g_strdup(on ? _("OMEMO encryption is now ON for this room.")
		                      : _("OMEMO encryption is now OFF for this room: messages will "
		                          "be sent unencrypted."));
	if (r) {
		r->w->told_plain = false;
		r->w->told_encrypted = false;
		room_prefetch_all(m, r);
	}
	return 0;
}

bool muc_is_on(manager_t *m, const char *room)
{
	muc_room *r = room_find(m, room);

	return r ? room_wants_omemo(m, r) : manager_get_mode(m, room) == MANAGER_MODE_ON;
}

int muc_set_incomplete(manager_t *m, const char *room, bool send)
{
	return store_setting_set(engine_store(m->engine), room, SETTING_INCOMPLETE,
	                         send ? "send" : "hold");
}

/* How many of jid's devices the next message would reach, and a reason
 * when none (g_free), without deciding about new keys. */
static unsigned reach_of(manager_t *m, const char *jid, char **why)
{
	GArray *ids = group_active_devices(m->engine, jid,
	                                   strcmp(jid, m->own_jid) == 0 ? engine_device_id(m->engine)
	                                                                : 0);
	store_trust_row *rows = NULL;
	size_t n_rows = 0;
	unsigned ok = 0, no_session = 0, undecided = 0, distrusted = 0;
	contact *c = manager_contact_get(m, jid);

	store_trust_list(engine_store(m->engine), jid, &rows, &n_rows);
	for (guint i = 0; i < ids->len; i++) {
		uint32_t id = g_array_index(ids, uint32_t, i);
		uint8_t ik[OMEMO_PUBKEY_LEN];
		int state = -1;

		if (!engine_has_session(m->engine, jid, id) ||
		    engine_remote_identity(m->engine, jid, id, ik) < 0) {
			no_session++;
			continue;
		}
		for (size_t j = 0; j < n_rows; j++)
			if (rows[j].device == id && memcmp(rows[j].key, ik, OMEMO_PUBKEY_LEN) == 0)
				state = rows[j].state;
		if (state == TRUST_BLIND || state == TRUST_VERIFIED)
			ok++;
		else if (state == TRUST_DISTRUSTED)
			distrusted++;
		else if (state == TRUST_UNDECIDED)
			undecided++;
		else
			no_session++; /* a new key: decided when sending */
	}
	g_free(rows);
	*why = NULL;
	if (!ok) {
		if (c->state == DL_NONE || (c->state == DL_KNOWN && !ids->len))
			*why = g_strdup(_("no OMEMO device"));
		else if (c->state == DL_FAILED)
			*why = g_strdup(_("device list did not arrive"));
		else if (undecided || distrusted)
			*why = g_strdup_printf(_("no trusted device (%u undecided, %u distrusted)"),
			                       undecided, distrusted);
		else if (no_session)
			*why = g_strdup(_("sessions are set up when you send"));
		else
			*why = g_strdup(_("devices not known yet: asked when you send"));
	}
	g_array_free(ids, TRUE);
	return ok;
}

char *muc_describe(manager_t *m, const char *room)
{
	muc_room *r = room_find(m, room);
	GString *s = g_string_new(NULL);
	GString *yes = g_string_new(NULL), *no = g_string_new(NULL);
	manager_mode mode = manager_get_mode(m, room);
	GPtrArray *jids;
	char *why;
	unsigned own;

	if (!r) {
		g_string_append(s, _("This room is not known yet (the OMEMO plugin sees a room from "
		                     "when you join it): leave and join it again."));
		return g_string_free(s, FALSE);
	}
	g_string_append_printf(s, room_wants_omemo(m, r) ? _("OMEMO is on for this room")
	                                                 : _("OMEMO is off for this room"));
	g_string_append(s, mode == MANAGER_MODE_AUTO ? _(" (automatic).") : _(" (your choice)."));
	if (r->info == INFO_KNOWN)
		g_string_append_printf(
			s, " %s %s",
			r->nonanonymous ? _("The room is non-anonymous.")
			                : _("The room is NOT non-anonymous, so OMEMO cannot work "
			                    "here."),
			r->membersonly ? _("It is members-only.")
			               : _("It is not members-only (recommended for OMEMO)."));
	else
		g_string_append(s, _(" What kind of room this is is not known yet."));
	if (room_wants_omemo(m, r) && room_can_omemo(r)) {
		jids = room_recipients(m, r);
		for (guint i = 0; i < jids->len; i++) {
			unsigned n = reach_of(m, jids->pdata[i], &why);

			if (n)
				g_string_append_printf(yes, " %s (%u %s)", (char *)jids->pdata[i], n,
				                       n == 1 ? _("device") : _("devices"));
			else
				g_string_append_printf(no, " %s: %s.", (char *)jids->pdata[i], why);
			g_free(why);
		}
		own = reach_of(m, m->own_jid, &why);
		g_free(why);
		g_string_append_printf(s, _(" The next message reaches:%s; and %u of your other "
		                            "devices."),
		                       yes->len ? yes->str : _(" nobody"), own);
		if (no->len)
			g_string_append_printf(s, _(" It does NOT reach:%s"), no->str);
		g_string_append(s, incomplete_sends(m, r->jid)
		                           ? _(" When some members cannot be reached, messages go to "
		                               "the others (\"/omemo incomplete hold\" holds them).")
		                           : _(" When some members cannot be reached, messages are "
		                               "held (\"/omemo incomplete send\" sends them to the "
		                               "others)."));
		g_ptr_array_unref(jids);
	}
	g_string_free(yes, TRUE);
	g_string_free(no, TRUE);
	return g_string_free(s, FALSE);
}
