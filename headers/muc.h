/*
 * OMEMO in group chats (XEP-0045 rooms): who is in a room and who belongs
 * to it by their real JIDs, whether the room lets OMEMO work
 * (non-anonymous), the queue of messages typed into it, encrypting each for
 * every member's trusted devices and our own, and reading what members
 * send.
 */
#ifndef PURPLE_OMEMO_MUC_H
#define PURPLE_OMEMO_MUC_H

#include <stdbool.h>

#include <account.h>
#include <xmlnode.h>

#include "manager.h"

/* "sending-chat-msg": takes over a message typed into a room where OMEMO
 * is (or may be) on; sets *message to NULL when it did. */
void muc_sending_chat(PurpleAccount *account, char **message, int id);

/* Whether jid is a room the account is in. */
bool muc_is_room(manager_t *m, const char *jid);
/* OMEMO on or off for a room, by the user. Turning it on in a room that is
 * not non-anonymous is refused with the reason in *answer. */
int muc_set_mode(manager_t *m, const char *room, bool on, char **answer);
/* Whether messages typed into the room now would be encrypted. */
bool muc_is_on(manager_t *m, const char *room);
/* What to do when some members cannot be reached: send to the others
 * (true, the default) or hold the message. */
int muc_set_incomplete(manager_t *m, const char *room, bool send);
/* "/omemo status" in a room: whom the next message reaches and whom not,
 * and why (g_free). */
char *muc_describe(manager_t *m, const char *room);
/* The room's current recipients (real bare JIDs, without our own), for
 * commands that act on members' devices; g_ptr_array_unref. */
GPtrArray *muc_recipients(manager_t *m, const char *room);

/* For manager.c. */
GHashTable *muc_rooms_new(void);
typedef struct muc_room muc_room;
void muc_pump(manager_t *m, muc_room *r);
void muc_pump_all(manager_t *m);
void muc_sending(manager_t *m, xmlnode *msg);
/* An IQ we send: the user changing a room's affiliations or config. */
void muc_outgoing_iq(manager_t *m, xmlnode *iq);
void muc_presence(manager_t *m, xmlnode *presence);
bool muc_receiving(manager_t *m, xmlnode *msg);
void muc_fail_all(manager_t *m, const char *why);

#endif
