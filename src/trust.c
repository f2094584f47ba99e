/*
 * The trust state machine: what a device's identity key may be used for,
 * decided once per key and kept in the store. See trust.h for the rules.
 */
#include <ctype.h>
#include <string.h>

#include <glib.h>

#include "err.h"
#include "i18n.h"
#include "trust.h"

bool trust_is_trusted(trust_state state)
{
	return state == TRUST_BLIND || state == TRUST_VERIFIED;
}

const char *trust_state_name(trust_state state)
{
	switch (state) {
	case TRUST_BLIND:
		return _("trusted (not verified)");
	case TRUST_VERIFIED:
		return _("verified");
	case TRUST_DISTRUSTED:
		return _("distrusted");
	case TRUST_UNDECIDED:
	default:
		return _("undecided");
	}
}

bool trust_has_verified(store_t *store, const char *jid)
{
	store_trust_row *rows = NULL;
	size_t n = 0;
	bool any = false;

	if (store_trust_list(store, jid, &rows, &n) < 0)
		return false;
	for (size_t i = 0; i < n && !any; i++)
		any = rows[i].state == TRUST_VERIFIED;
	g_free(rows);
	return any;
}

int trust_evaluate_rows(store_t *store, trust_mode mode, const char *jid, uint32_t device,
                        const uint8_t ik[OMEMO_PUBKEY_LEN], const store_trust_row *rows, size_t n,
                        int64_t now, trust_result *out)
{
	bool verified_any = false, other_key = false;

	if (!store || !jid || !ik || !out || (n && !rows))
		return OMEMO_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < n; i++) {
		if (rows[i].state == TRUST_VERIFIED)
			verified_any = true;
		if (rows[i].device != device)
			continue;
		if (memcmp(rows[i].key, ik, OMEMO_PUBKEY_LEN) == 0) {
			out->state = (trust_state)rows[i].state;
			return 0;
		}
		other_key = true;
	}
	/* First sight of this key for this device. */
	out->is_new = true;
	out->key_changed = other_key;
	if (other_key || mode == TRUST_MODE_MANUAL || verified_any)
		out->state = TRUST_UNDECIDED;
	else
		out->state = TRUST_BLIND;
	return store_trust_set(store, jid, device, ik, OMEMO_PUBKEY_LEN, out->state, now);
}

int trust_evaluate(store_t *store, trust_mode mode, const char *jid, uint32_t device,
                   const uint8_t ik[OMEMO_PUBKEY_LEN], int64_t now, trust_result *out)
{
	store_trust_row *rows = NULL;
	size_t n = 0;
	int ret;

	if (!store || !jid || !ik || !out)
		return OMEMO_ERR_INVALID_ARG;
	ret = store_trust_list(store, jid, &rows, &n);
	if (ret == 0)
		ret = trust_evaluate_rows(store, mode, jid, device, ik, rows, n, now, out);
	g_free(rows);
	return ret;
}

int trust_set(store_t *store, const char *jid, uint32_t device,
              const uint8_t ik[OMEMO_PUBKEY_LEN], trust_state state, int64_t now)
{
	if (!store || !jid || !ik || state < TRUST_UNDECIDED || state > TRUST_DISTRUSTED)
		return OMEMO_ERR_INVALID_ARG;
	return store_trust_set(store, jid, device, ik, OMEMO_PUBKEY_LEN, state, now);
}

bool trust_fingerprint_matches(const char *typed, const uint8_t ik[OMEMO_PUBKEY_LEN])
{
	static const char hex[] = "0123456789abcdef";
	size_t j = 0;

	if (!typed || !ik)
		return false;
	for (const char *p = typed; *p; p++) {
		char c = (char)tolower((unsigned char)*p);

		if (c == ' ' || c == ':' || c == '\t' || c == '-')
			continue;
		if (j >= 2 * (OMEMO_PUBKEY_LEN - 1))
			return false;
		if (c != hex[(ik[1 + j / 2] >> (j % 2 ? 0 : 4)) & 0xf])
			return false;
		j++;
	}
	return j == 2 * (OMEMO_PUBKEY_LEN - 1);
}
