/*
 * Plausibility checks on stored Signal records (see records.h): a walk over
 * the protobuf framing, without a schema beyond the few fields that matter.
 */
#include <ratchet.h>
#include <session_record.h>
#include <session_state.h>

#include "records.h"

/* Read one protobuf varint; false on a truncated or overlong one. */
static bool pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;

		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

/* One field: its number, wire type and, for length-delimited ones, where
 * its bytes are. False when the framing does not hold. */
static bool pb_field(const uint8_t **p, const uint8_t *end, uint64_t *number, unsigned *type,
                     const uint8_t **value, uint64_t *value_len)
{
	uint64_t key, v;

	if (!pb_varint(p, end, &key) || (key >> 3) == 0 || (key >> 3) > 0x1fffffff)
		return false;
	*number = key >> 3;
	*type = (unsigned)(key & 7);
	*value = NULL;
	*value_len = 0;
	switch (*type) {
	case 0:
		return pb_varint(p, end, &v);
	case 1:
		if ((size_t)(end - *p) < 8)
			return false;
		*p += 8;
		return true;
	case 2:
		if (!pb_varint(p, end, &v) || v > (uint64_t)(end - *p))
			return false;
		*value = *p;
		*value_len = v;
		*p += v;
		return true;
	case 5:
		if ((size_t)(end - *p) < 4)
			return false;
		*p += 4;
		return true;
	default:
		return false;
	}
}

bool records_framing_ok(const uint8_t *data, size_t len)
{
	const uint8_t *p = data, *end = data + len;

	if (!data && len)
		return false;
	while (p < end) {
		uint64_t number, vlen;
		unsigned type;
		const uint8_t *v;

		if (!pb_field(&p, end, &number, &type, &v, &vlen))
			return false;
	}
	return true;
}

bool records_session_ok(const uint8_t *data, size_t len)
{
	const uint8_t *p = data, *end = data + len;

	if (!data && len)
		return false;
	while (p < end) {
		uint64_t number, vlen;
		unsigned type;
		const uint8_t *v;

		if (!pb_field(&p, end, &number, &type, &v, &vlen))
			return false;
		if ((number != 1 && number != 2) || type != 2 || !records_framing_ok(v, vlen))
			return false;
	}
	return true;
}

bool records_session_states_ok(const uint8_t *data, size_t len, signal_context *ctx)
{
	const uint8_t *p = data, *end = data + len;

	if (!records_session_ok(data, len) || !ctx)
		return false;
	while (p < end) {
		uint64_t number, vlen;
		unsigned type;
		const uint8_t *v;
		session_state *state = NULL;

		if (!pb_field(&p, end, &number, &type, &v, &vlen))
			return false;
		if (session_state_deserialize(&state, v, (size_t)vlen, ctx) != 0)
			return false;
		SIGNAL_UNREF(state);
	}
	return true;
}

bool records_signed_prekey_ok(const uint8_t *data, size_t len)
{
	const uint8_t *p = data, *end = data + len;

	if (!data && len)
		return false;
	while (p < end) {
		uint64_t number, vlen;
		unsigned type;
		const uint8_t *v;

		if (!pb_field(&p, end, &number, &type, &v, &vlen))
			return false;
		/* The library asserts on a present but empty signature. */
		if (type == 2 && vlen == 0 && (number == 4 || number == 6))
			return false;
	}
	return true;
}

int records_session_step_sender(const uint8_t *data, size_t len, signal_context *ctx,
                                signal_buffer **out)
{
	session_record *record = NULL;
	session_state *state;
	ratchet_chain_key *next = NULL;
	int ret;

	if (!data || !ctx || !out)
		return SG_ERR_INVAL;
	*out = NULL;
	ret = session_record_deserialize(&record, data, len, ctx);
	if (ret < 0)
		return ret;
	state = session_record_get_state(record);
	if (!state || !session_state_has_sender_chain(state) ||
	    !session_state_get_sender_chain_key(state)) {
		SIGNAL_UNREF(record);
		return 0;
	}
	ret = ratchet_chain_key_create_next(session_state_get_sender_chain_key(state), &next);
	if (ret == 0)
		ret = session_state_set_sender_chain_key(state, next);
	if (ret == 0)
		ret = session_record_serialize(out, record);
	SIGNAL_UNREF(next);
	SIGNAL_UNREF(record);
	return ret < 0 ? ret : 1;
}
