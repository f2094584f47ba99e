/*
 * Legacy OMEMO elements <-> the structs of omemo_types.h, directly on
 * libpurple's xmlnode trees (no string round trip). Parsers are strict about
 * what they use and return one specific OMEMO_ERR_WIRE_* code per defect;
 * they ignore elements and attributes they do not know. Builders return a
 * new tree the caller owns (xmlnode_free).
 *
 * Parsers: `out` is overwritten (not freed first) and is left zeroed on any
 * error; a NULL element gives OMEMO_ERR_WIRE_ELEMENT (so the result of
 * wire_find_item_payload() can be passed straight in), a NULL `out`
 * OMEMO_ERR_INVALID_ARG. Children may carry the legacy namespace (parsed
 * stanzas) or none (trees of our own builders); other namespaces are skipped.
 *
 * Builders return NULL for NULL input or for a struct no peer could accept
 * (a device id, sid or rid outside 1..2^31-1, an empty key or IV, a payload
 * pointer with length 0, no keys). They write standard padded base64.
 */
#ifndef PURPLE_OMEMO_WIRE_H
#define PURPLE_OMEMO_WIRE_H

#include <xmlnode.h>

#include "omemo_types.h"

/* <list xmlns='eu.siacs.conversations.axolotl'><device id='N'/>...</list>.
 * Duplicate ids are kept once. More than OMEMO_DEVICELIST_MAX ids:
 * OMEMO_ERR_WIRE_TOO_MANY_DEVICES. An empty list is valid (n_ids == 0). */
int wire_parse_devicelist(const xmlnode *list, omemo_devicelist *out);
xmlnode *wire_build_devicelist(const omemo_devicelist *list);

/* <bundle xmlns='eu.siacs.conversations.axolotl'>...</bundle> */
int wire_parse_bundle(const xmlnode *bundle, omemo_bundle *out);
xmlnode *wire_build_bundle(const omemo_bundle *bundle);

/* <encrypted xmlns='eu.siacs.conversations.axolotl'>...</encrypted> */
int wire_parse_encrypted(const xmlnode *encrypted, omemo_message *out);
xmlnode *wire_build_encrypted(const omemo_message *msg);

/* Find the pubsub item payload: the first child named `name` in namespace
 * OMEMO_NS_LEGACY of the single <item> under <items> (any item id: Dino
 * publishes bundles under item '1'). Should a server send several items, the
 * first one holding such a child wins. NULL when absent. */
xmlnode *wire_find_item_payload(xmlnode *items, const char *name);

#endif
