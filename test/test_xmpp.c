/*
 * The parts of the XMPP layer that need no connection: JID normalisation,
 * the pubsub requests we build, and reading error replies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "omemo_types.h"
#include "xmpp.h"

/* Debian's libpurple is built with D-Bus: its xmlnode code wants the D-Bus
 * type ids registered, or it warns for every node. */
void purple_dbus_init_ids(void) __attribute__((weak));

static int group_setup(void **state)
{
	if (purple_dbus_init_ids)
		purple_dbus_init_ids();
	return 0;
}

static void expect_bare(const char *in, const char *want)
{
	char *got = xmpp_bare_jid(in);

	if (!want) {
		assert_null(got);
		return;
	}
	assert_non_null(got);
	assert_string_equal(got, want);
	g_free(got);
}

static void test_bare_jid_strips_resource_and_folds_case(void **state)
{
	expect_bare("Alice@Example.ORG/Phone", "alice@example.org");
	expect_bare("alice@example.org", "alice@example.org");
	expect_bare("alice@example.org/res/with/slashes", "alice@example.org");
	expect_bare("example.org", "example.org");
	expect_bare("example.org/x", "example.org");
	expect_bare("ÄLICE@example.org", "älice@example.org");
}

static void test_bare_jid_refuses_what_is_no_jid(void **state)
{
	expect_bare(NULL, NULL);
	expect_bare("", NULL);
	expect_bare("/resource", NULL);
	expect_bare("@example.org", NULL);
	expect_bare("alice@", NULL);
}

static void test_items_request_names_node_and_limit(void **state)
{
	xmlnode *iq = xmpp_pubsub_items_iq(OMEMO_NODE_BUNDLES_PREFIX "42", 1);
	xmlnode *ps = xmlnode_get_child_with_namespace(iq, "pubsub", XMPP_NS_PUBSUB);
	xmlnode *items = ps ? xmlnode_get_child(ps, "items") : NULL;

	assert_string_equal(xmlnode_get_attrib(iq, "type"), "get");
	assert_non_null(items);
	assert_string_equal(xmlnode_get_attrib(items, "node"),
	                    "eu.siacs.conversations.axolotl.bundles:42");
	assert_string_equal(xmlnode_get_attrib(items, "max_items"), "1");
	xmlnode_free(iq);

	iq = xmpp_pubsub_items_iq(OMEMO_NODE_DEVICELIST, 0);
	items = xmlnode_get_child(xmlnode_get_child(iq, "pubsub"), "items");
	assert_null(xmlnode_get_attrib(items, "max_items"));
	xmlnode_free(iq);
}

/* The value of field var in a data form, or NULL. */
static char *form_value(xmlnode *x, const char *var)
{
	for (xmlnode *f = xmlnode_get_child(x, "field"); f; f = xmlnode_get_next_twin(f))
		if (g_strcmp0(xmlnode_get_attrib(f, "var"), var) == 0)
			return xmlnode_get_data(xmlnode_get_child(f, "value"));
	return NULL;
}

static void test_publish_carries_item_and_open_access(void **state)
{
	xmlnode *payload = xmlnode_new("list");
	xmlnode *iq, *ps, *publish, *item, *opts, *x;
	char *v;

	xmlnode_set_namespace(payload, OMEMO_NS_LEGACY);
	iq = xmpp_pubsub_publish_iq(OMEMO_NODE_DEVICELIST, "current", payload, true);
	assert_string_equal(xmlnode_get_attrib(iq, "type"), "set");
	ps = xmlnode_get_child_with_namespace(iq, "pubsub", XMPP_NS_PUBSUB);
	publish = xmlnode_get_child(ps, "publish");
	assert_string_equal(xmlnode_get_attrib(publish, "node"), OMEMO_NODE_DEVICELIST);
	item = xmlnode_get_child(publish, "item");
	assert_string_equal(xmlnode_get_attrib(item, "id"), "current");
	assert_ptr_equal(xmlnode_get_child(item, "list"), payload);

	opts = xmlnode_get_child(ps, "publish-options");
	assert_non_null(opts);
	x = xmlnode_get_child_with_namespace(opts, "x", "jabber:x:data");
	assert_non_null(x);
	assert_string_equal(xmlnode_get_attrib(x, "type"), "submit");
	v = form_value(x, "FORM_TYPE");
	assert_string_equal(v, "http://jabber.org/protocol/pubsub#publish-options");
	g_free(v);
	v = form_value(x, "pubsub#access_model");
	assert_string_equal(v, "open");
	g_free(v);
	xmlnode_free(iq);

	iq = xmpp_pubsub_publish_iq("node", "current", xmlnode_new("x"), false);
	assert_null(xmlnode_get_child(xmlnode_get_child(iq, "pubsub"), "publish-options"));
	xmlnode_free(iq);
}

static void test_configure_opens_node(void **state)
{
	xmlnode *iq = xmpp_pubsub_configure_open_iq(OMEMO_NODE_DEVICELIST);
	xmlnode *ps = xmlnode_get_child_with_namespace(iq, "pubsub", XMPP_NS_PUBSUB_OWNER);
	xmlnode *conf = xmlnode_get_child(ps, "configure");
	xmlnode *x = xmlnode_get_child(conf, "x");
	char *v;

	assert_string_equal(xmlnode_get_attrib(conf, "node"), OMEMO_NODE_DEVICELIST);
	v = form_value(x, "FORM_TYPE");
	assert_string_equal(v, "http://jabber.org/protocol/pubsub#node_config");
	g_free(v);
	v = form_value(x, "pubsub#access_model");
	assert_string_equal(v, "open");
	g_free(v);
	xmlnode_free(iq);
}

static void test_error_conditions_are_recognised(void **state)
{
	const char *precondition =
		"<iq type='error' id='1'><error type='cancel'>"
		"<conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
		"<precondition-not-met xmlns='http://jabber.org/protocol/pubsub#errors'/>"
		"</error></iq>";
	const char *not_found = "<iq type='error' id='2'><error type='cancel'>"
	                        "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
	                        "</error></iq>";
	const char *result = "<iq type='result' id='3'/>";
	const char *wrong_ns = "<iq type='error' id='4'><error type='cancel'>"
	                       "<item-not-found xmlns='urn:example:other'/></error></iq>";
	xmlnode *a = xmlnode_from_str(precondition, -1);
	xmlnode *b = xmlnode_from_str(not_found, -1);
	xmlnode *c = xmlnode_from_str(result, -1);
	xmlnode *d = xmlnode_from_str(wrong_ns, -1);

	assert_true(xmpp_iq_is_precondition_not_met(a));
	assert_false(xmpp_iq_is_item_not_found(a));
	assert_true(xmpp_iq_is_item_not_found(b));
	assert_false(xmpp_iq_is_precondition_not_met(b));
	assert_false(xmpp_iq_is_item_not_found(c));
	assert_false(xmpp_iq_is_item_not_found(d));
	assert_false(xmpp_iq_is_item_not_found(NULL));
	xmlnode_free(a);
	xmlnode_free(b);
	xmlnode_free(c);
	xmlnode_free(d);
}

static void test_replies_are_not_ours_without_a_request(void **state)
{
	xmlnode *iq = xmlnode_from_str("<iq type='result' id='omemo-1'/>", -1);

	/* Not initialised, nothing pending: never claimed, never a crash. */
	assert_false(xmpp_handle_reply(NULL, iq));
	assert_false(xmpp_handle_reply(NULL, NULL));
	xmlnode_free(iq);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bare_jid_strips_resource_and_folds_case),
		cmocka_unit_test(test_bare_jid_refuses_what_is_no_jid),
		cmocka_unit_test(test_items_request_names_node_and_limit),
		cmocka_unit_test(test_publish_carries_item_and_open_access),
		cmocka_unit_test(test_configure_opens_node),
		cmocka_unit_test(test_error_conditions_are_recognised),
		cmocka_unit_test(test_replies_are_not_ours_without_a_request),
	};

	return cmocka_run_group_tests(tests, group_setup, NULL);
}
