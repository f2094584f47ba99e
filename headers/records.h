/*
 * Checks on the records the store hands to the Signal library, made before
 * the library parses them. The library trusts its own serialisations: a
 * damaged or tampered record can make it abort (an empty signature) or
 * leak. Records that fail these checks are treated as a corrupt store.
 */
#ifndef PURPLE_OMEMO_RECORDS_H
#define PURPLE_OMEMO_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "signal_compat.h"

/* A well-framed protobuf message: every field numbered from 1, known wire
 * types, lengths inside the buffer. */
bool records_framing_ok(const uint8_t *data, size_t len);
/* A session record: fields 1 (current session) and 2 (previous sessions)
 * only, each itself well framed. */
bool records_session_ok(const uint8_t *data, size_t len);
/* Each session state of a session record (current and previous) parses
 * on its own. The library leaks the states it had built when a later one
 * of the same record fails, so a record read from disk is checked this
 * way before the library sees it whole. */
bool records_session_states_ok(const uint8_t *data, size_t len, signal_context *ctx);
/* A signed prekey record: well framed, with no empty signature (field 4,
 * or 6 in libomemo-c's layout). */
bool records_signed_prekey_ok(const uint8_t *data, size_t len);

/* The same session record with the sending chain of its current session
 * one message key further on, so the key it would have used next is never
 * used. The store does this to every record it reads from disk: a message
 * may leave before the commit that records its key as used (store.h,
 * store_tx_may_send_early), and if that commit never happens, the record
 * read back steps past that key. 1 and *out (signal_buffer_free), 0 when
 * the record has no sending chain (*out NULL), or a Signal error. */
int records_session_step_sender(const uint8_t *data, size_t len, signal_context *ctx,
                                signal_buffer **out);

#endif
