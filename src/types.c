/* Freeing the wire structs of omemo_types.h. */
#include <string.h>

#include <glib.h>

#include "omemo_types.h"

void omemo_devicelist_clear(omemo_devicelist *list)
{
	if (!list)
		return;
	g_free(list->ids);
	list->ids = NULL;
	list->n_ids = 0;
}

void omemo_bundle_clear(omemo_bundle *bundle)
{
	if (!bundle)
		return;
	g_free(bundle->prekeys);
	memset(bundle, 0, sizeof(*bundle));
}

void omemo_message_clear(omemo_message *msg)
{
	if (!msg)
		return;
	for (size_t i = 0; i < msg->n_keys; i++)
		g_free(msg->keys[i].data);
	g_free(msg->keys);
	g_free(msg->iv);
	g_free(msg->payload);
	memset(msg, 0, sizeof(*msg));
}
