/*
 * Helpers shared by the fuzz targets: one-time libpurple set-up, bounded
 * XML parsing of the fuzzer's bytes, and a hard stop for broken invariants.
 */
#ifndef PURPLE_OMEMO_FUZZ_COMMON_H
#define PURPLE_OMEMO_FUZZ_COMMON_H

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <glib.h>
#include <xmlnode.h>

#include "wire.h"

/* Stanzas over this size never reach us: the server caps them well below. */
#define FUZZ_XML_MAX (2 * 1024 * 1024)

/*
 * A libpurple built with D-Bus (Debian's is) registers every xmlnode in its
 * D-Bus pointer map and warns on each one until the map exists. Weak, so
 * the targets still link against a libpurple without D-Bus.
 */
extern void purple_dbus_init_ids(void) __attribute__((weak));

/* libxml2 prints every encoding error of a fuzzed input on stderr, which
 * costs more than the parse; the parser's verdict is what is tested. */
static void fuzz_xml_quiet(void *ctx, const char *msg, ...)
{
	(void)ctx;
	(void)msg;
}

static inline void fuzz_purple_init(void)
{
	static int done;
	void (*set_error_func)(void *, void (*)(void *, const char *, ...));

	if (done)
		return;
	done = 1;
	if (purple_dbus_init_ids)
		purple_dbus_init_ids();
	/* libxml2 is libpurple's, not ours to link: found at run time. */
	*(void **)&set_error_func = dlsym(RTLD_DEFAULT, "xmlSetGenericErrorFunc");
	if (set_error_func)
		set_error_func(NULL, fuzz_xml_quiet);
}

/* NULL for oversized or unparsable input; xmlnode_free the result. */
static inline xmlnode *fuzz_xml_parse(const uint8_t *data, size_t size)
{
	if (size == 0 || size > FUZZ_XML_MAX)
		return NULL;
	return xmlnode_from_str((const char *)data, (gssize)size);
}

/* A broken round trip is a real defect: make libFuzzer keep the input. */
#define FUZZ_CHECK(cond)                                                          \
	do {                                                                          \
		if (!(cond)) {                                                            \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, \
			        #cond);                                                       \
			abort();                                                              \
		}                                                                         \
	} while (0)

/*
 * Take the element a peer would hand the parser: the root itself, or, for a
 * pubsub <items> wrapper, the payload wire_find_item_payload() picks.
 */
static inline xmlnode *fuzz_pick_payload(xmlnode *root, const char *name)
{
	if (root && g_strcmp0(root->name, "items") == 0)
		return wire_find_item_payload(root, name);
	return root;
}

/*
 * Serialise a tree we built and parse the text again, the way a peer would
 * receive it. NULL if our own output does not parse, which callers treat as
 * a defect.
 */
static inline xmlnode *fuzz_xml_reparse(const xmlnode *node)
{
	int len = 0;
	char *text = xmlnode_to_str(node, &len);
	xmlnode *again;

	if (!text)
		return NULL;
	again = xmlnode_from_str(text, len);
	g_free(text);
	return again;
}

#endif
