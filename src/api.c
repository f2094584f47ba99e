/*
 * The user-reachable features over the manager, the engine and the trust
 * store: fingerprints, device lists, trust decisions, own device removal,
 * and the check of what the account's server offers OMEMO. Each returns a
 * sentence for the user or plain data; no UI code here.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <glib.h>

#include <connection.h>
#include <prefs.h>

#include "api.h"
#include "err.h"
#include "i18n.h"
#include "store.h"
#include "xmpp.h"

char *api_own_uri(manager_t *m)
{
	engine_t *e = manager_engine(m);
	char *hex = engine_fingerprint_hex(engine_identity_key(e), OMEMO_PUBKEY_LEN);
	/* The form Conversations and Dino put into their QR codes. */
	char *uri = g_strdup_printf("xmpp:%s?omemo-sid-%u=%s", engine_own_jid(e),
	                            engine_device_id(e), hex ? hex : "");

	g_free(hex);
	return uri;
}

char *api_own_fingerprint(manager_t *m)
{
	engine_t *e = manager_engine(m);
	char *fp = engine_fingerprint_format(engine_identity_key(e), OMEMO_PUBKEY_LEN);
	char *hex = engine_fingerprint_hex(engine_identity_key(e), OMEMO_PUBKEY_LEN);
	char *text = g_strdup_printf(_("This device: %u. Fingerprint: %s. For a QR code: "
	                               "xmpp:%s?omemo-sid-%u=%s"),
	                             engine_device_id(e), fp, engine_own_jid(e), engine_device_id(e),
	                             hex);

	g_free(fp);
	g_free(hex);
	return text;
}

/* The current identity key of a device, and the trust decision for it. */
static bool device_key(manager_t *m, const char *jid, uint32_t id, uint8_t ik[OMEMO_PUBKEY_LEN],
                       trust_state *st)
{
	engine_t *e = manager_engine(m);
	int v;

	if (engine_remote_identity(e, jid, id, ik) < 0)
		return false;
	if (store_trust_get(engine_store(e), jid, id, ik, OMEMO_PUBKEY_LEN, &v) == 0)
		*st = (trust_state)v;
	else
		*st = TRUST_UNDECIDED;
	return true;
}

char *api_devices(manager_t *m, const char *jid)
{
	engine_t *e = manager_engine(m);
	store_device *devs = NULL;
	size_t n = 0;
	GString *s = g_string_new(NULL);
	bool own = strcmp(jid, engine_own_jid(e)) == 0;

	if (store_devices_get(engine_store(e), OMEMO_NS_LEGACY, jid, false, &devs, &n) < 0 || n == 0) {
		g_string_printf(s, _("No OMEMO devices known for %s."), jid);
		g_free(devs);
		return g_string_free(s, FALSE);
	}
	g_string_printf(s, _("OMEMO devices of %s:"), jid);
	for (size_t i = 0; i < n; i++) {
		uint8_t ik[OMEMO_PUBKEY_LEN];
		trust_state st;
		char *fp;

		g_string_append_printf(s, "\n%u", devs[i].id);
		if (own && devs[i].id == engine_device_id(e)) {
			fp = engine_fingerprint_format(engine_identity_key(e), OMEMO_PUBKEY_LEN);
			g_string_append_printf(s, _(" (this device): %s"), fp);
			g_free(fp);
			continue;
		}
		if (!devs[i].active)
			g_string_append(s, _(" (no longer in the device list)"));
		if (device_key(m, jid, devs[i].id, ik, &st)) {
			fp = engine_fingerprint_format(ik, OMEMO_PUBKEY_LEN);
			g_string_append_printf(s, ": %s, %s", fp, trust_state_name(st));
			g_free(fp);
		} else {
			g_string_append(s, _(": no session yet (its key is fetched with the next "
			                     "message)"));
		}
	}
	g_free(devs);
	return g_string_free(s, FALSE);
}

int api_set_trust(manager_t *m, const char *jid, uint32_t id, trust_state state, char **msg)
{
	engine_t *e = manager_engine(m);
	uint8_t ik[OMEMO_PUBKEY_LEN];
	trust_state old;
	int ret;

	if (!device_key(m, jid, id, ik, &old)) {
		*msg = g_strdup_printf(_("No device %u of %s with a known key. \"/omemo devices\" "
		                         "lists them."),
		                       id, jid);
		return OMEMO_ERR_NOT_FOUND;
	}
	ret = trust_set(engine_store(e), jid, id, ik, state, time(NULL));
	if (ret < 0)
		*msg = g_strdup_printf(_("Could not save the decision: %s"), omemo_strerror(ret));
	else
		*msg = g_strdup_printf(_("Device %u of %s is now %s."), id, jid,
		                       trust_state_name(state));
	return ret;
}

int api_verify(manager_t *m, const char *jid, const char *typed, char **msg)
{
	engine_t *e = manager_engine(m);
	store_device *devs = NULL;
	size_t n = 0;
	int ret = OMEMO_ERR_NOT_FOUND;

	if (store_devices_get(engine_store(e), OMEMO_NS_LEGACY, jid, false, &devs, &n) == 0) {
		for (size_t i = 0; i < n; i++) {
			uint8_t ik[OMEMO_PUBKEY_LEN];
			trust_state st;

			if (device_key(m, jid, devs[i].id, ik, &st) &&
			    trust_fingerprint_matches(typed, ik)) {
				ret = api_set_trust(m, jid, devs[i].id, TRUST_VERIFIED, msg);
				break;
			}
		}
	}
	g_free(devs);
	if (ret == OMEMO_ERR_NOT_FOUND)
		*msg = g_strdup_printf(_("That fingerprint belongs to no known device of %s: nothing "
		                         "was changed. Compare it again with \"/omemo devices\"."),
		                       jid);
	return ret;
}

int api_remove_own_device(manager_t *m, uint32_t id, char **msg)
{
	engine_t *e = manager_engine(m);
	int ret;

	if (id == engine_device_id(e)) {
		*msg = g_strdup(_("This device cannot remove itself."));
		return OMEMO_ERR_INVALID_ARG;
	}
	ret = manager_remove_own_device(m, id);
	if (ret == OMEMO_ERR_NOT_FOUND)
		*msg = g_strdup_printf(_("Device %u is not in your device list."), id);
	else if (ret < 0)
		*msg = g_strdup_printf(_("Could not remove device %u: %s"), id, omemo_strerror(ret));
	else
		*msg = g_strdup_printf(_("Device %u was removed from your published device list."),
		                       id);
	return ret;
}

int api_set_trust_for_key(manager_t *m, const char *jid, uint32_t id,
                          const uint8_t ik[OMEMO_PUBKEY_LEN], trust_state state, char **msg)
{
	uint8_t now_ik[OMEMO_PUBKEY_LEN];
	trust_state old;

	if (device_key(m, jid, id, now_ik, &old) && memcmp(now_ik, ik, OMEMO_PUBKEY_LEN) != 0) {
		*msg = g_strdup_printf(_("Device %u of %s has a new key since the list was shown: "
		                         "nothing was changed for it. Compare the new fingerprint "
		                         "first."),
		                       id, jid);
		return OMEMO_ERR_INVALID_ARG;
	}
	return api_set_trust(m, jid, id, state, msg);
}

/* ---- device lists for the dialogs ---- */

static int device_cmp(const void *a, const void *b)
{
	const api_device *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

static bool devices_have(const GArray *all, uint32_t id)
{
	for (guint i = 0; i < all->len; i++)
		if (g_array_index(all, api_device, i).id == id)
			return true;
	return false;
}

int api_device_list(manager_t *m, const char *jid, api_device **out, size_t *n)
{
	engine_t *e = manager_engine(m);
	store_t *st = engine_store(e);
	store_device *devs = NULL;
	uint32_t *sess = NULL;
	size_t n_devs = 0, n_sess = 0;
	GArray *all = g_array_new(FALSE, TRUE, sizeof(api_device));
	bool own = strcmp(jid, engine_own_jid(e)) == 0;
	int ret;

	*out = NULL;
	*n = 0;
	ret = store_devices_get(st, OMEMO_NS_LEGACY, jid, false, &devs, &n_devs);
	if (ret < 0)
		goto out;
	ret = store_session_devices(st, OMEMO_NS_LEGACY, jid, &sess, &n_sess);
	if (ret < 0)
		goto out;
	for (size_t i = 0; i < n_devs; i++) {
		api_device d = { .id = devs[i].id,
			         .listed = devs[i].active,
			         .in_list = devs[i].active,
			         .first_seen = devs[i].first_seen,
			         .last_seen = devs[i].last_seen };

		g_array_append_val(all, d);
	}
	/* A device that writes to us although no list names it (its server
	 * dropped the publish) is encrypted to like a listed one. */
	for (size_t i = 0; i < n_sess; i++) {
		api_device d = { .id = sess[i], .listed = true };

		if (!devices_have(all, sess[i]))
			g_array_append_val(all, d);
	}
	if (own && !devices_have(all, engine_device_id(e))) {
		api_device d = { .id = engine_device_id(e) };

		g_array_append_val(all, d);
	}
	qsort(all->data, all->len, sizeof(api_device), device_cmp);
	for (guint i = 0; i < all->len; i++) {
		api_device *d = &g_array_index(all, api_device, i);

		if (own && d->id == engine_device_id(e)) {
			d->this_device = true;
			d->has_key = true;
			memcpy(d->ik, engine_identity_key(e), OMEMO_PUBKEY_LEN);
		} else {
			d->has_key = device_key(m, jid, d->id, d->ik, &d->trust);
		}
	}
	*n = all->len;
out:
	g_free(devs);
	g_free(sess);
	if (ret < 0 || all->len == 0) {
		g_array_free(all, TRUE);
		*n = 0;
	} else {
		*out = (api_device *)(void *)g_array_free(all, FALSE);
	}
	return ret;
}

/* ---- what the server offers ---- */

#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_PUBLISH_OPTIONS "http://jabber.org/protocol/pubsub#publish-options"
#define NS_MAM "urn:xmpp:mam:2"

typedef struct {
	bool asked;
	bool answered; /* a disco#info result arrived */
	xmpp_iq_status status;
	bool pep, publish_options, carbons, mam;
} disco_answer;

typedef struct {
	PurpleAccount *account;
	char *own;
	char *domain;
	api_server_cb cb;
	void *data;
	int outstanding;
	bool cancelled;
	disco_answer at_account; /* PEP and MAM live on the account (XEP-0163 1, XEP-0313 6.1) */
	disco_answer at_server;  /* carbons on the server (XEP-0280 3); some put PEP there too */
} server_check;

static void disco_read(xmlnode *iq, disco_answer *a)
{
	xmlnode *q = iq ? xmlnode_get_child_with_namespace(iq, "query", NS_DISCO_INFO) : NULL;

	if (!q)
		return;
	a->answered = true;
	for (xmlnode *c = q->child; c; c = c->next) {
		if (c->type != XMLNODE_TYPE_TAG)
			continue;
		if (strcmp(c->name, "identity") == 0) {
			if (g_strcmp0(xmlnode_get_attrib(c, "category"), "pubsub") == 0 &&
			    g_strcmp0(xmlnode_get_attrib(c, "type"), "pep") == 0)
				a->pep = true;
		} else if (strcmp(c->name, "feature") == 0) {
			const char *var = xmlnode_get_attrib(c, "var");

			if (g_strcmp0(var, NS_PUBLISH_OPTIONS) == 0)
				a->publish_options = true;
			else if (g_strcmp0(var, XMPP_NS_CARBONS) == 0)
				a->carbons = true;
			else if (g_strcmp0(var, NS_MAM) == 0)
				a->mam = true;
		}
	}
}

static const char *disco_failure(const disco_answer *a)
{
	if (!a->asked)
		return _("it could not be asked");
	if (a->status == XMPP_IQ_TIMEOUT)
		return _("no answer in time");
	if (a->status == XMPP_IQ_ERROR)
		return _("the request was refused");
	return _("the answer could not be read");
}

/* One point of the report: present, missing, or not known when an answer
 * that could have named it is missing. */
static void report_point(GString *s, bool present, bool complete, const char *name,
                         const char *if_present, const char *if_missing)
{
	/* TRANSLATORS: one point of the server report; the first %s names a
	 * protocol feature, the second says what it means. Keep the leading
	 * line break and dash. */
	if (present)
		g_string_append_printf(s, _("\n- %s: present. %s"), name, if_present);
	else if (complete)
		g_string_append_printf(s, _("\n- %s: MISSING: %s"), name, if_missing);
	else
		g_string_append_printf(s, _("\n- %s: not known (the server did not answer "
		                            "completely). Without it: %s"),
		                       name, if_missing);
}

static char *server_report(const server_check *sc)
{
	const disco_answer *a = &sc->at_account, *srv = &sc->at_server;
	bool complete = a->answered && srv->answered;
	bool pep = a->pep || srv->pep;
	bool missing_extra;
	GString *s = g_string_new(NULL);

	g_string_printf(s, _("What the server of %s offers OMEMO:"), sc->own);
	if (!a->answered && !srv->answered) {
		g_string_append_printf(s, _("\nNeither your account nor the server %s answered "
		                            "(%s; %s): nothing can be said. Try again later."),
		                       sc->domain, disco_failure(a), disco_failure(srv));
		return g_string_free(s, FALSE);
	}
	if (!a->answered)
		g_string_append_printf(s, _("\nYour account did not answer (%s)."), disco_failure(a));
	if (!srv->answered)
		g_string_append_printf(s, _("\nThe server %s did not answer (%s)."), sc->domain,
		                       disco_failure(srv));
	report_point(s, pep, complete, _("PEP (personal eventing, XEP-0163)"),
	             _("Your device list and keys can be published for your contacts."),
	             _("OMEMO cannot work with this account at all: your contacts cannot find "
	               "your devices and keys, and nothing can be encrypted. Ask the server's "
	               "administrator to enable PEP, or use another server."));
	report_point(s, a->publish_options || srv->publish_options, complete,
	             _("Publish options (XEP-0060)"),
	             _("Your device list and keys are published readable by everyone in one "
	               "step."),
	             _("the plugin falls back to configuring its nodes as readable by everyone "
	               "after publishing. That works, with one more request."));
	report_point(s, a->carbons || srv->carbons, complete, _("Message Carbons (XEP-0280)"),
	             purple_prefs_get_bool(MANAGER_PREF_CARBONS)
	                     ? _("Your other devices see the messages of this device, and this "
	                         "device sees theirs.")
	                     : _("But asking for copies is turned off in the OMEMO preferences, "
	                         "so your other devices do not see this device's messages."),
	             _("your other devices do not see the messages this device sends and "
	               "receives, and this device does not see theirs."));
	report_point(s, a->mam || srv->mam, complete, _("Message archive (MAM, XEP-0313)"),
	             _("The server keeps a history of your messages for your devices."),
	             _("there is no history on the server: messages that arrived while a device "
	               "was offline may be missing from its history."));
	missing_extra = !(a->publish_options || srv->publish_options) ||
	                !(a->carbons || srv->carbons) || !(a->mam || srv->mam);
	if (pep && !missing_extra)
		g_string_append(s, _("\nIn short: this server has everything OMEMO needs."));
	else if (pep)
		g_string_append(s, _("\nIn short: OMEMO works with this server; some conveniences "
		                     "are missing, as said above."));
	else if (complete)
		g_string_append(s, _("\nIn short: OMEMO cannot work with this server."));
	return g_string_free(s, FALSE);
}

static void server_check_free(server_check *sc)
{
	g_free(sc->own);
	g_free(sc->domain);
	g_free(sc);
}

static void disco_done(server_check *sc, disco_answer *a, xmpp_iq_status status, xmlnode *iq)
{
	char *report = NULL;

	a->status = status;
	if (status == XMPP_IQ_CANCELLED)
		sc->cancelled = true;
	else if (status == XMPP_IQ_RESULT)
		disco_read(iq, a);
	if (--sc->outstanding > 0)
		return;
	if (!sc->cancelled)
		report = server_report(sc);
	sc->cb(sc->account, report, sc->data);
	g_free(report);
	server_check_free(sc);
}

static void account_disco_cb(PurpleConnection *gc, xmpp_iq_status status, xmlnode *iq,
                             void *data)
{
	server_check *sc = data;

	disco_done(sc, &sc->at_account, status, iq);
}

static void server_disco_cb(PurpleConnection *gc, xmpp_iq_status status, xmlnode *iq,
                            void *data)
{
	server_check *sc = data;

	disco_done(sc, &sc->at_server, status, iq);
}

static xmlnode *disco_info_iq(void)
{
	xmlnode *iq = xmlnode_new("iq");
	xmlnode *q = xmlnode_new_child(iq, "query");

	xmlnode_set_attrib(iq, "type", "get");
	xmlnode_set_namespace(q, NS_DISCO_INFO);
	return iq;
}

/* The manager is opaque: find its account among the live connections. */
static PurpleConnection *manager_connection(manager_t *m)
{
	for (GList *l = purple_connections_get_all(); l; l = l->next) {
		PurpleConnection *gc = l->data;

		if (manager_find(purple_connection_get_account(gc)) == m)
			return gc;
	}
	return NULL;
}

int api_server_check(manager_t *m, api_server_cb cb, void *data)
{
	PurpleConnection *gc = m ? manager_connection(m) : NULL;
	const char *at;
	server_check *sc;

	if (!gc || purple_connection_get_state(gc) != PURPLE_CONNECTED)
		return OMEMO_ERR_NOT_FOUND;
	sc = g_new0(server_check, 1);
	sc->account = purple_connection_get_account(gc);
	sc->own = g_strdup(engine_own_jid(manager_engine(m)));
	at = strchr(sc->own, '@');
	sc->domain = g_strdup(at ? at + 1 : sc->own);
	sc->cb = cb;
	sc->data = data;
	/* Both asked before either can answer: replies come from the main
	 * loop, never from inside xmpp_send_iq. */
	sc->outstanding = 2;
	sc->at_account.asked = xmpp_send_iq(gc, disco_info_iq(), sc->own, account_disco_cb, sc);
	if (!sc->at_account.asked)
		sc->outstanding--;
	sc->at_server.asked = xmpp_send_iq(gc, disco_info_iq(), sc->domain, server_disco_cb, sc);
	if (!sc->at_server.asked)
		sc->outstanding--;
	if (sc->outstanding == 0) {
		server_check_free(sc);
		return OMEMO_ERR_NOT_FOUND;
	}
	return 0;
}

/* ---- accounts without a server ---- */

bool api_account_is_serverless(PurpleAccount *account)
{
	/* XEP-0174 link-local messaging, libpurple's Bonjour protocol. */
	return account && g_strcmp0(purple_account_get_protocol_id(account), "prpl-bonjour") == 0;
}

const char *api_serverless_explanation(void)
{
	return _("OMEMO needs an XMPP server: each account's device list and keys (its "
	         "bundles) are stored there, so that contacts can find them and start an "
	         "encrypted conversation even while you are offline. Bonjour (link-local) chats "
	         "have no server, so OMEMO cannot work in them. For encrypted chats without a "
	         "server, use Off-the-Record messaging (the OTR plugin, pidgin-otr).");
}
