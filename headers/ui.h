/*
 * Dialogs and prompts through libpurple's UI-neutral request API, so Pidgin
 * and Finch show the same things.
 */
#ifndef PURPLE_OMEMO_UI_H
#define PURPLE_OMEMO_UI_H

#include <stdbool.h>
#include <stdint.h>

#include <account.h>
#include <plugin.h>

#include "omemo_types.h"

void ui_init(PurplePlugin *plugin);
void ui_shutdown(void);

/* Ask, without blocking, what to do about a new undecided device (or a
 * changed key) of jid: verified, trusted, distrusted, or later. */
void ui_ask_new_device(PurpleAccount *account, const char *jid, uint32_t id,
                       const uint8_t ik[OMEMO_PUBKEY_LEN], bool key_changed);

#endif
