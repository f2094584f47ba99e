/*
 * The few differences between libomemo-c (default) and libsignal-protocol-c
 * 2.3 that the legacy features touch. Everything else is source compatible.
 * Build with -DOMEMO_WITH_LIBSIGNAL_PROTOCOL_C for the latter.
 */
#ifndef PURPLE_OMEMO_SIGNAL_COMPAT_H
#define PURPLE_OMEMO_SIGNAL_COMPAT_H

#include <curve.h>
#include <key_helper.h>
#include <protocol.h>
#include <session_builder.h>
#include <session_cipher.h>
#include <session_pre_key.h>
#include <session_record.h>
#include <session_state.h>
#include <signal_protocol.h>

#ifdef OMEMO_WITH_LIBSIGNAL_PROTOCOL_C
#define COMPAT_SIGNAL_LIBRARY "libsignal-protocol-c"
#define compat_session_load_session(ctx, rec, addr) \
	signal_protocol_session_load_session((ctx), (rec), (addr))
#define compat_signed_pre_key_create(out, id, ts, kp, sig, sig_len) \
	session_signed_pre_key_create((out), (id), (ts), (kp), (sig), (sig_len))
#else
#define COMPAT_SIGNAL_LIBRARY "libomemo-c"
/* libomemo-c numbers its session kinds: 2 is legacy OMEMO (its default,
 * wire-identical to libsignal-protocol-c), 4 is OMEMO 2. */
#define COMPAT_LEGACY_SESSION_VERSION 2
/* libomemo-c asks which session version to load; legacy is version 3. */
#define compat_session_load_session(ctx, rec, addr)                        \
	signal_protocol_session_load_session((ctx), (rec), (addr),              \
	                                     COMPAT_LEGACY_SESSION_VERSION)
/* libomemo-c keeps a second (OMEMO 2, Ed25519) signature; none for legacy. */
#define compat_signed_pre_key_create(out, id, ts, kp, sig, sig_len) \
	session_signed_pre_key_create((out), (id), (ts), (kp), (sig), (sig_len), NULL, 0)
#endif

#endif
