/*
 * Fuzz target for the bundle parser: any bytes, read as XML, go through
 * wire_parse_bundle(); whatever it accepts must survive being built again
 * (as a tree, and as text parsed once more) unchanged.
 */
#include <stdint.h>
#include <string.h>

#include "err.h"
#include "wire.h"
#include "fuzz_common.h"

static int bundle_equal(const omemo_bundle *a, const omemo_bundle *b)
{
	if (a->spk_id != b->spk_id || memcmp(a->spk, b->spk, sizeof(a->spk)) != 0 ||
	    memcmp(a->spk_sig, b->spk_sig, sizeof(a->spk_sig)) != 0 ||
	    memcmp(a->ik, b->ik, sizeof(a->ik)) != 0 || a->n_prekeys != b->n_prekeys)
		return 0;
	for (size_t i = 0; i < a->n_prekeys; i++) {
		if (a->prekeys[i].id != b->prekeys[i].id ||
		    memcmp(a->prekeys[i].key, b->prekeys[i].key, OMEMO_PUBKEY_LEN) != 0)
			return 0;
	}
	return 1;
}

static void check_round_trip(const omemo_bundle *bundle)
{
	omemo_bundle again = { 0 };
	xmlnode *built = wire_build_bundle(bundle), *text = NULL;

	FUZZ_CHECK(built != NULL);
	FUZZ_CHECK(wire_parse_bundle(built, &again) == 0);
	FUZZ_CHECK(bundle_equal(bundle, &again));
	omemo_bundle_clear(&again);

	text = fuzz_xml_reparse(built);
	FUZZ_CHECK(text != NULL);
	FUZZ_CHECK(wire_parse_bundle(text, &again) == 0);
	FUZZ_CHECK(bundle_equal(bundle, &again));
	omemo_bundle_clear(&again);
	xmlnode_free(text);
	xmlnode_free(built);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	omemo_bundle bundle = { 0 };
	xmlnode *root;
	int ret;

	fuzz_purple_init();
	root = fuzz_xml_parse(data, size);
	if (!root)
		return 0;
	ret = wire_parse_bundle(fuzz_pick_payload(root, "bundle"), &bundle);
	if (ret == 0) {
		FUZZ_CHECK(bundle.n_prekeys >= OMEMO_BUNDLE_MIN_PREKEYS &&
		           bundle.n_prekeys <= OMEMO_BUNDLE_MAX_PREKEYS);
		check_round_trip(&bundle);
	} else {
		FUZZ_CHECK(ret < 0 && bundle.prekeys == NULL && bundle.n_prekeys == 0);
	}
	omemo_bundle_clear(&bundle);
	xmlnode_free(root);
	return 0;
}
