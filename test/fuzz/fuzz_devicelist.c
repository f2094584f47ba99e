/*
 * Fuzz target for the device list parser: any bytes, read as XML, go through
 * wire_parse_devicelist(); whatever it accepts must survive being built
 * again (as a tree, and as text parsed once more) unchanged.
 */
#include <stdint.h>
#include <string.h>

#include "err.h"
#include "wire.h"
#include "fuzz_common.h"

static int devicelist_equal(const omemo_devicelist *a, const omemo_devicelist *b)
{
	if (a->n_ids != b->n_ids)
		return 0;
	return a->n_ids == 0 || memcmp(a->ids, b->ids, a->n_ids * sizeof(*a->ids)) == 0;
}

static void check_round_trip(const omemo_devicelist *list)
{
	omemo_devicelist again = { 0 };
	xmlnode *built = wire_build_devicelist(list), *text = NULL;

	/* every id the parser accepts is one the builder accepts */
	FUZZ_CHECK(built != NULL);
	FUZZ_CHECK(wire_parse_devicelist(built, &again) == 0);
	FUZZ_CHECK(devicelist_equal(list, &again));
	omemo_devicelist_clear(&again);

	text = fuzz_xml_reparse(built);
	FUZZ_CHECK(text != NULL);
	FUZZ_CHECK(wire_parse_devicelist(text, &again) == 0);
	FUZZ_CHECK(devicelist_equal(list, &again));
	omemo_devicelist_clear(&again);
	xmlnode_free(text);
	xmlnode_free(built);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	omemo_devicelist list = { 0 };
	xmlnode *root;
	int ret;

	fuzz_purple_init();
	root = fuzz_xml_parse(data, size);
	if (!root)
		return 0;
	ret = wire_parse_devicelist(fuzz_pick_payload(root, "list"), &list);
	if (ret == 0) {
		FUZZ_CHECK(list.n_ids <= OMEMO_DEVICELIST_MAX);
		check_round_trip(&list);
	} else {
		/* a failed parse leaves the output zeroed */
		FUZZ_CHECK(ret < 0 && list.ids == NULL && list.n_ids == 0);
	}
	omemo_devicelist_clear(&list);
	xmlnode_free(root);
	return 0;
}
