/*
 * The /omemo command in conversations, a thin client of the manager.
 */
#ifndef PURPLE_OMEMO_CMD_H
#define PURPLE_OMEMO_CMD_H

#include <plugin.h>

void cmd_register(PurplePlugin *plugin);
void cmd_unregister(void);

#endif
