/*
 * Talking to the XMPP protocol plugin through its public signals only: our
 * own stanzas go out through "jabber-sending-xmlnode", IQ replies are matched
 * by id (and sender) on "jabber-receiving-xmlnode" and consumed, and every
 * request has a timeout. Also the pubsub (PEP) requests OMEMO needs and the
 * JID helpers.
 */
#ifndef PURPLE_OMEMO_XMPP_H
#define PURPLE_OMEMO_XMPP_H

#include <stdbool.h>

#include <connection.h>
#include <plugin.h>
#include <xmlnode.h>

#define XMPP_IQ_TIMEOUT_SECONDS 20

#define XMPP_NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define XMPP_NS_PUBSUB_OWNER "http://jabber.org/protocol/pubsub#owner"
#define XMPP_NS_PUBSUB_EVENT "http://jabber.org/protocol/pubsub#event"
#define XMPP_NS_PUBSUB_ERRORS "http://jabber.org/protocol/pubsub#errors"
#define XMPP_NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define XMPP_NS_DATA "jabber:x:data"
#define XMPP_NS_HINTS "urn:xmpp:hints"
#define XMPP_NS_EME "urn:xmpp:eme:0"
#define XMPP_NS_CARBONS "urn:xmpp:carbons:2"
#define XMPP_NS_FORWARD "urn:xmpp:forward:0"
#define XMPP_NS_XHTML_IM "http://jabber.org/protocol/xhtml-im"

typedef enum {
	XMPP_IQ_RESULT = 0,
	XMPP_IQ_ERROR = -1,     /* iq is the error reply */
	XMPP_IQ_TIMEOUT = -2,   /* no reply within XMPP_IQ_TIMEOUT_SECONDS; iq NULL */
	XMPP_IQ_CANCELLED = -3, /* connection gone or plugin unloading; iq NULL */
} xmpp_iq_status;

/* Called exactly once per request. Must not free iq. */
typedef void (*xmpp_iq_cb)(PurpleConnection *gc, xmpp_iq_status status, xmlnode *iq,
                           void *data);

void xmpp_init(PurplePlugin *jabber);
/* Cancels every pending request (their callbacks run with CANCELLED). */
void xmpp_shutdown(void);
void xmpp_cancel_connection(PurpleConnection *gc);
PurplePlugin *xmpp_jabber_plugin(void);

/* Hand a stanza to the protocol plugin; the caller keeps ownership of it.
 * While it is being sent, xmpp_sending_own() is true, so our own
 * "jabber-sending-xmlnode" handler leaves it alone. */
void xmpp_send(PurpleConnection *gc, xmlnode *stanza);
bool xmpp_sending_own(void);

/* Stop a stanza that is being sent ("jabber-sending-xmlnode"): libpurple's
 * sender cannot be told to drop one (a NULL stanza reaches its serialiser),
 * so the node is emptied in place and turned into a ping to our own server,
 * whose answer is swallowed. Nothing of the original leaves. */
void xmpp_neutralize(PurpleConnection *gc, xmlnode *stanza);

/* Send an IQ (consumed) to `to` (NULL: our own account, as for PEP) and call
 * cb with the reply. A reply is accepted only from the JID it was sent to.
 * Returns false (cb not called, iq freed) when gc is not connected. */
bool xmpp_send_iq(PurpleConnection *gc, xmlnode *iq, const char *to, xmpp_iq_cb cb, void *data);

/* Offer an incoming top-level stanza: true when it was a reply to one of
 * our requests (the callback has run; the caller should consume it). */
bool xmpp_handle_reply(PurpleConnection *gc, xmlnode *stanza);

/* <iq type='get'><pubsub><items node=... [max_items=...]/></pubsub></iq> */
xmlnode *xmpp_pubsub_items_iq(const char *node, int max_items);
/* <iq type='set'> publishing payload (consumed) as item_id, with
 * publish-options pubsub#access_model=open when open_access. */
xmlnode *xmpp_pubsub_publish_iq(const char *node, const char *item_id, xmlnode *payload,
                                bool open_access);
/* <iq type='set'> configuring node's access model to open. */
xmlnode *xmpp_pubsub_configure_open_iq(const char *node);

/* Error reply tests. */
bool xmpp_iq_error_is(const xmlnode *iq, const char *condition, const char *ns);
#define xmpp_iq_is_item_not_found(iq) xmpp_iq_error_is((iq), "item-not-found", XMPP_NS_STANZAS)
#define xmpp_iq_is_precondition_not_met(iq) \
	xmpp_iq_error_is((iq), "precondition-not-met", XMPP_NS_PUBSUB_ERRORS)

/* The bare JID of jid, lower-cased (g_free); NULL for something that is no
 * JID (empty, or empty localpart/domain). */
char *xmpp_bare_jid(const char *jid);
/* The account's own bare JID (g_free). */
char *xmpp_own_bare_jid(PurpleAccount *account);

#endif
