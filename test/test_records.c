/*
 * The checks made on stored Signal records before the library parses them:
 * real records pass, broken framing and the shapes that make the library
 * abort or leak do not.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "records.h"

/* field 1 (LEN) holding { field 1 varint 3, field 2 LEN "ab" } */
static const uint8_t session_good[] = { 0x0a, 0x06, 0x08, 0x03, 0x12, 0x02, 'a', 'b' };

static void test_well_framed_records_pass(void **state)
{
	/* A previous session (field 2) after the current one. */
	const uint8_t two[] = { 0x0a, 0x02, 0x08, 0x01, 0x12, 0x02, 0x08, 0x02 };
	/* All four wire types we accept. */
	const uint8_t all[] = { 0x08, 0x96, 0x01, 0x11, 1, 2, 3, 4, 5, 6, 7, 8,
		                0x1a, 0x01, 'x', 0x25, 1, 2, 3, 4 };

	(void)state;
	assert_true(records_session_ok(session_good, sizeof(session_good)));
	assert_true(records_session_ok(two, sizeof(two)));
	assert_true(records_framing_ok(all, sizeof(all)));
	assert_true(records_framing_ok(NULL, 0));
	assert_true(records_session_ok(NULL, 0)); /* a fresh record is empty */
}

static void test_broken_framing_is_refused(void **state)
{
	const uint8_t field_zero[] = { 0x00, 0x21 };
	const uint8_t too_long[] = { 0x0a, 0x09, 0x08, 0x03 };
	const uint8_t group_type[] = { 0x0b, 0x0c };
	const uint8_t cut_varint[] = { 0x08, 0x80 };
	const uint8_t cut_fixed64[] = { 0x09, 1, 2, 3 };
	const uint8_t cut_fixed32[] = { 0x0d, 1, 2 };

	(void)state;
	assert_false(records_framing_ok(field_zero, sizeof(field_zero)));
	assert_false(records_framing_ok(too_long, sizeof(too_long)));
	assert_false(records_framing_ok(group_type, sizeof(group_type)));
	assert_false(records_framing_ok(cut_varint, sizeof(cut_varint)));
	assert_false(records_framing_ok(cut_fixed64, sizeof(cut_fixed64)));
	assert_false(records_framing_ok(cut_fixed32, sizeof(cut_fixed32)));
	assert_false(records_framing_ok(NULL, 3));
}

static void test_session_record_allows_only_its_two_fields(void **state)
{
	const uint8_t field3[] = { 0x1a, 0x02, 0x08, 0x01 };
	const uint8_t varint1[] = { 0x08, 0x01 };
	/* The inner message is broken (field number 0). */
	const uint8_t inner_bad[] = { 0x0a, 0x02, 0x00, 0x01 };
	/* The fuzzer's input that made the library leak two session states. */
	const uint8_t leak[] = { 0x00, 0x21, 0x12, 0x00, 0x1a, 0x00, 0x02, 0x00, 0x1a, 0x00, 0x12,
		                 0x00, 0x20, 0x00, 0x1a, 0x00, 0x00, 0x1a, 0x12, 0x02, 0x1a, 0x00 };

	(void)state;
	assert_false(records_session_ok(field3, sizeof(field3)));
	assert_false(records_session_ok(varint1, sizeof(varint1)));
	assert_false(records_session_ok(inner_bad, sizeof(inner_bad)));
	assert_false(records_session_ok(leak, sizeof(leak)));
}

static void test_signed_prekey_without_signature_bytes_is_refused(void **state)
{
	const uint8_t empty4[] = { 0x08, 0x01, 0x22, 0x00 };
	const uint8_t empty6[] = { 0x08, 0x01, 0x32, 0x00 };
	const uint8_t signed4[] = { 0x08, 0x01, 0x22, 0x02, 0xaa, 0xbb };
	/* An empty field of another number is fine. */
	const uint8_t empty2[] = { 0x12, 0x00, 0x22, 0x01, 0xaa };

	(void)state;
	assert_false(records_signed_prekey_ok(empty4, sizeof(empty4)));
	assert_false(records_signed_prekey_ok(empty6, sizeof(empty6)));
	assert_true(records_signed_prekey_ok(signed4, sizeof(signed4)));
	assert_true(records_signed_prekey_ok(empty2, sizeof(empty2)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_well_framed_records_pass),
		cmocka_unit_test(test_broken_framing_is_refused),
		cmocka_unit_test(test_session_record_allows_only_its_two_fields),
		cmocka_unit_test(test_signed_prekey_without_signature_bytes_is_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
