/*
 * What manager.c shares with muc.c: the per-account state, the per-JID
 * state of device lists and queued messages, and the steps both one-to-one
 * and group conversations are made of (fetching lists and bundles,
 * deciding trust, building and reading <encrypted> messages). Not for the
 * rest of the plugin, which goes through manager.h and muc.h.
 */
#ifndef PURPLE_OMEMO_MANAGER_INT_H
#define PURPLE_OMEMO_MANAGER_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include <debug.h>
#include <prefs.h>

#include "engine.h"
#include "manager.h"
#include "trust.h"

#define LOG "omemo"
/* Details only when the user asked for them (preference "debug"). */
#define LOG_DETAIL(...)                                            \
	do {                                                       \
		if (purple_prefs_get_bool(MANAGER_PREF_DEBUG))     \
			purple_debug_misc(LOG, __VA_ARGS__);       \
	} while (0)
#define REPUBLISH_DELAY_SECONDS 5
#define FALLBACK_BODY                                                                     \
	"[This message is OMEMO encrypted, and your client cannot decrypt it. "           \
	"See https://conversations.im/omemo]"

typedef enum {
	DL_UNKNOWN = 0, /* not asked in this session */
	DL_FETCHING,
	DL_KNOWN,  /* at least one device */
	DL_NONE,   /* no OMEMO: no node, or an empty list */
	DL_FAILED, /* the server did not say (timeout, error) */
} dl_state;

typedef struct muc_room muc_room;

/* A device left out of the current round, and why. */
typedef struct {
	char *jid;
	uint32_t device;
	char *reason;
} skip_entry;

/* A contact, or the sending side of a room (then `room` is set and the
 * contact is not in the manager's table). */
typedef struct {
	char *jid;
	dl_state state;
	int fetching;        /* requests in flight for this contact */
	GQueue outbox;       /* char* texts typed, in order */
	GHashTable *skipped; /* "jid/device" -> skip_entry, for this round */
	GString *untrusted;  /* devices left out for trust, for the notice */
	bool told_plain;     /* "not encrypted" said once */
	bool told_encrypted; /* "encrypted" said once */
	muc_room *room;
} contact;

struct manager {
	PurpleAccount *account;
	PurpleConnection *gc;
	char *own_jid;
	engine_t *engine;
	GHashTable *contacts; /* bare jid -> contact */
	GHashTable *rooms;    /* room bare jid -> muc_room */
	GHashTable *modes;    /* bare jid -> manager_mode, as stored */
	guint republish_timer;
	/* The message stanza being sent for `sending_to` (or `sending_room`)
	 * right now; see manager_sending(). */
	contact *sending_to;
	muc_room *sending_room;
	bool send_plain_ok;
	int send_result;
	/* The transaction of the message being sent is still open: its
	 * stanza leaves first, manager_end_send() commits it. */
	bool commit_after_send;
};

/* The sending side of a room by its JID, for answers arriving later; NULL
 * when the room was left. */
contact *muc_waiter(manager_t *m, const char *room);

contact *manager_contact_new(const char *jid);
void manager_contact_free(gpointer p);
contact *manager_contact_get(manager_t *m, const char *jid);
/* End the transaction of a message encrypted for sending_to or
 * sending_room, 0 or an error (the transaction is then rolled back). When
 * ok is true and every session it used had been committed before
 * (store_tx_may_send_early), it is left open instead, for
 * manager_end_send() once the stanza has left: the wait for the disk is
 * then no longer between the user's Enter and the message leaving. */
int manager_commit_or_defer(manager_t *m, bool ok);
/* After serv_send_im()/serv_chat_send(): commit a transaction left open
 * by manager_commit_or_defer(). Should that fail, the message has left all
 * the same, and no message key of it can be used again (the records read
 * back step past them), but the user is told in conv (a JID). */
void manager_end_send(manager_t *m, const char *conv);
/* Move a contact's (or room's) queue forward as far as what we know allows. */
void manager_pump(manager_t *m, contact *c);

/* Ask jid's device list; its contact's state follows the answer. */
void manager_devicelist_fetch(manager_t *m, const char *jid);
/* Fetch bundles of the devices of jids[0..n) that have no session and are
 * not skipped in c's round, for c's queue; how many requests went out. */
int manager_fetch_missing_bundles(manager_t *m, contact *c, const char *const *jids, size_t n);
void manager_skip_device(contact *c, const char *jid, uint32_t device, const char *reason);
bool manager_is_skipped(contact *c, const char *jid, uint32_t device);
/* " Device 1: why. Your device 2: why." for c's round (g_free). */
char *manager_skipped_summary(manager_t *m, contact *c);

trust_mode manager_trust_mode(manager_t *m);
/* Tell the user (in the conversation `where`) about a new key that awaits
 * a decision, and ask. */
void manager_trust_announce(manager_t *m, const char *jid, uint32_t id,
                            const uint8_t ik[OMEMO_PUBKEY_LEN], bool key_changed,
                            const char *where);

/* The devices a message goes to: every candidate of jids (group.h), and
 * the trusted ones with a session as recipients. New keys that await a
 * decision are announced in the conversation `where`. Call inside a store
 * transaction: trust decisions about new keys are written. */
typedef struct {
	GArray *cands;        /* group_device; jid fields point into the caller's jids */
	omemo_address *rcpts; /* n of them */
	size_t n;
} manager_recipients;
int manager_recipients_collect(manager_t *m, const char *const *jids, size_t n_jids,
                               const char *where, manager_recipients *out);
void manager_recipients_clear(manager_recipients *r);

/* Put the <encrypted> element, hints, EME and fallback body on a message
 * stanza, dropping every child that carried the text. */
void manager_message_make_omemo(xmlnode *msg, xmlnode *encrypted);
/* Decrypt an <encrypted> message from jid in place; notices go to the
 * conversation `where`. True when the stanza should be consumed. */
bool manager_receive_encrypted(manager_t *m, const char *jid, xmlnode *msg, xmlnode *enc,
                               const char *where);
/* Replace the message's body (and its encrypted element) with text. */
void manager_replace_body(xmlnode *msg, const char *text);
/* Every queued text of c reported as not sent, with why. */
void manager_fail_outbox(manager_t *m, contact *c, const char *why);
/* "Message NOT sent: why It was: text" in the conversation `where`. */
void manager_notice_not_sent(manager_t *m, const char *where, const char *why, const char *text);
void manager_bundle_republish_soon(manager_t *m);
/* An account whose store could not be opened: the message is refused with
 * a notice in `where` quoting text. True when it was. */
bool manager_refuse_if_unavailable(PurpleAccount *account, const char *where, const char *text);

#endif
