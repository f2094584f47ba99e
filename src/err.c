/* omemo_strerror(): one readable sentence for every error code. */
#include <signal_protocol.h>

#include "err.h"
#include "i18n.h"

const char *omemo_strerror(int code)
{
	switch (code) {
	case OMEMO_OK:
		return _("Success.");
	case OMEMO_ERR_NOMEM:
		return _("Out of memory.");
	case OMEMO_ERR_INVALID_ARG:
		return _("Internal error: invalid argument.");
	case OMEMO_ERR_NOT_FOUND:
		return _("Not found.");
	case OMEMO_ERR_CRYPTO:
		return _("The cryptography library reported an error.");
	case OMEMO_ERR_RANDOM:
		return _("No random numbers could be obtained.");
	case OMEMO_ERR_STORE:
		return _("The OMEMO database reported an error.");
	case OMEMO_ERR_STORE_OPEN:
		return _("The OMEMO database could not be opened.");
	case OMEMO_ERR_STORE_CORRUPT:
		return _("The OMEMO database is damaged or is not a database; it was left untouched.");
	case OMEMO_ERR_STORE_READONLY:
		return _("The OMEMO database is read-only.");
	case OMEMO_ERR_STORE_FULL:
		return _("The disk holding the OMEMO database is full.");
	case OMEMO_ERR_STORE_BUSY:
		return _("The OMEMO database is locked by another program.");
	case OMEMO_ERR_STORE_TOO_NEW:
		return _("The OMEMO database was written by a newer version of purple-omemo.");
	case OMEMO_ERR_PAYLOAD_AUTH:
		return _("The message failed its integrity check (wrong key or tampered with).");
	case OMEMO_ERR_PAYLOAD_KEY_LEN:
		return _("The message key has an unsupported length.");
	case OMEMO_ERR_PAYLOAD_IV_LEN:
		return _("The message IV has an unsupported length.");
	case OMEMO_ERR_PAYLOAD_TOO_SHORT:
		return _("The encrypted message is too short.");
	case OMEMO_ERR_PADDING:
		return _("The decrypted data has invalid padding.");
	case OMEMO_ERR_NO_SESSION:
		return _("There is no OMEMO session with that device.");
	case OMEMO_ERR_NOT_FOR_US:
		return _("The message was not encrypted for this device.");
	case OMEMO_ERR_DUPLICATE:
		return _("The message was already received.");
	case OMEMO_ERR_BUNDLE_SIGNATURE:
		return _("The device's key bundle has an invalid signature.");
	case OMEMO_ERR_NO_RECIPIENTS:
		return _("The message could not be encrypted for any device.");
	case OMEMO_ERR_UNDECRYPTABLE:
		return _("The message could not be decrypted.");
	case OMEMO_ERR_NO_IDENTITY:
		return _("This account has no OMEMO identity yet.");
	case OMEMO_ERR_WIRE_ELEMENT:
		return _("Unexpected OMEMO element or namespace.");
	case OMEMO_ERR_WIRE_BASE64:
		return _("Invalid base64 data.");
	case OMEMO_ERR_WIRE_DEVICE_ID_MISSING:
		return _("A device in the device list has no id.");
	case OMEMO_ERR_WIRE_DEVICE_ID_INVALID:
		return _("A device id in the device list is not a number.");
	case OMEMO_ERR_WIRE_DEVICE_ID_RANGE:
		return _("A device id in the device list is out of range.");
	case OMEMO_ERR_WIRE_TOO_MANY_DEVICES:
		return _("The device list has too many devices.");
	case OMEMO_ERR_WIRE_EMPTY_LIST:
		return _("The device list is empty.");
	case OMEMO_ERR_WIRE_HEADER_MISSING:
		return _("The encrypted message has no header.");
	case OMEMO_ERR_WIRE_HEADER_DUPLICATE:
		return _("The encrypted message has more than one header.");
	case OMEMO_ERR_WIRE_SID_MISSING:
		return _("The encrypted message does not name its sending device.");
	case OMEMO_ERR_WIRE_SID_INVALID:
		return _("The sending device id is not a number.");
	case OMEMO_ERR_WIRE_SID_RANGE:
		return _("The sending device id is out of range.");
	case OMEMO_ERR_WIRE_RID_MISSING:
		return _("A key in the encrypted message does not name its device.");
	case OMEMO_ERR_WIRE_RID_INVALID:
		return _("A recipient device id is not a number.");
	case OMEMO_ERR_WIRE_RID_RANGE:
		return _("A recipient device id is out of range.");
	case OMEMO_ERR_WIRE_KEY_EMPTY:
		return _("A key in the encrypted message is empty.");
	case OMEMO_ERR_WIRE_KEY_TOO_LONG:
		return _("A key in the encrypted message is too long.");
	case OMEMO_ERR_WIRE_KEY_BASE64:
		return _("A key in the encrypted message is not valid base64.");
	case OMEMO_ERR_WIRE_PREKEY_ATTR:
		return _("A key's prekey attribute is not a boolean.");
	case OMEMO_ERR_WIRE_NO_KEYS:
		return _("The encrypted message carries no keys.");
	case OMEMO_ERR_WIRE_TOO_MANY_KEYS:
		return _("The encrypted message carries too many keys.");
	case OMEMO_ERR_WIRE_IV_MISSING:
		return _("The encrypted message has no IV.");
	case OMEMO_ERR_WIRE_IV_DUPLICATE:
		return _("The encrypted message has more than one IV.");
	case OMEMO_ERR_WIRE_IV_BASE64:
		return _("The IV is not valid base64.");
	case OMEMO_ERR_WIRE_IV_LENGTH:
		return _("The IV has an unsupported length.");
	case OMEMO_ERR_WIRE_PAYLOAD_DUPLICATE:
		return _("The encrypted message has more than one payload.");
	case OMEMO_ERR_WIRE_PAYLOAD_BASE64:
		return _("The payload is not valid base64.");
	case OMEMO_ERR_WIRE_PAYLOAD_TOO_LARGE:
		return _("The payload is larger than 1 MiB.");
	case OMEMO_ERR_WIRE_PAYLOAD_EMPTY:
		return _("The payload is empty.");
	case OMEMO_ERR_WIRE_SPK_MISSING:
		return _("The bundle has no signed prekey.");
	case OMEMO_ERR_WIRE_SPK_DUPLICATE:
		return _("The bundle has more than one signed prekey.");
	case OMEMO_ERR_WIRE_SPK_ID_MISSING:
		return _("The signed prekey has no id.");
	case OMEMO_ERR_WIRE_SPK_ID_INVALID:
		return _("The signed prekey id is not a valid number.");
	case OMEMO_ERR_WIRE_SPK_BASE64:
		return _("The signed prekey is not valid base64.");
	case OMEMO_ERR_WIRE_SPK_LENGTH:
		return _("The signed prekey has the wrong length.");
	case OMEMO_ERR_WIRE_SIG_MISSING:
		return _("The bundle has no signed prekey signature.");
	case OMEMO_ERR_WIRE_SIG_DUPLICATE:
		return _("The bundle has more than one signed prekey signature.");
	case OMEMO_ERR_WIRE_SIG_BASE64:
		return _("The signed prekey signature is not valid base64.");
	case OMEMO_ERR_WIRE_SIG_LENGTH:
		return _("The signed prekey signature has the wrong length.");
	case OMEMO_ERR_WIRE_IK_MISSING:
		return _("The bundle has no identity key.");
	case OMEMO_ERR_WIRE_IK_DUPLICATE:
		return _("The bundle has more than one identity key.");
	case OMEMO_ERR_WIRE_IK_BASE64:
		return _("The identity key is not valid base64.");
	case OMEMO_ERR_WIRE_IK_LENGTH:
		return _("The identity key has the wrong length.");
	case OMEMO_ERR_WIRE_PREKEYS_MISSING:
		return _("The bundle has no prekeys element.");
	case OMEMO_ERR_WIRE_PREKEYS_DUPLICATE:
		return _("The bundle has more than one prekeys element.");
	case OMEMO_ERR_WIRE_TOO_FEW_PREKEYS:
		return _("The bundle has fewer than 20 prekeys.");
	case OMEMO_ERR_WIRE_TOO_MANY_PREKEYS:
		return _("The bundle has more than 1000 prekeys.");
	case OMEMO_ERR_WIRE_PREKEY_ID_MISSING:
		return _("A prekey in the bundle has no id.");
	case OMEMO_ERR_WIRE_PREKEY_ID_INVALID:
		return _("A prekey id in the bundle is not a valid number.");
	case OMEMO_ERR_WIRE_PREKEY_ID_DUPLICATE:
		return _("Two prekeys in the bundle share an id.");
	case OMEMO_ERR_WIRE_PREKEY_BASE64:
		return _("A prekey in the bundle is not valid base64.");
	case OMEMO_ERR_WIRE_PREKEY_LENGTH:
		return _("A prekey in the bundle has the wrong length.");
	case SG_ERR_NOMEM:
		return omemo_strerror(OMEMO_ERR_NOMEM);
	case SG_ERR_INVAL:
		return omemo_strerror(OMEMO_ERR_INVALID_ARG);
	case SG_ERR_DUPLICATE_MESSAGE:
		return omemo_strerror(OMEMO_ERR_DUPLICATE);
	case SG_ERR_INVALID_KEY:
		return _("A key is invalid.");
	case SG_ERR_INVALID_KEY_ID:
		return _("The message refers to a prekey this device no longer has.");
	case SG_ERR_INVALID_MAC:
		return _("The message failed its authentication check.");
	case SG_ERR_INVALID_MESSAGE:
		return _("The message is malformed.");
	case SG_ERR_INVALID_VERSION:
		return _("The message uses an unsupported protocol version.");
	case SG_ERR_LEGACY_MESSAGE:
		return _("The message uses an obsolete protocol version.");
	case SG_ERR_NO_SESSION:
		return omemo_strerror(OMEMO_ERR_NO_SESSION);
	case SG_ERR_STALE_KEY_EXCHANGE:
		return _("The key exchange is stale.");
	case SG_ERR_UNTRUSTED_IDENTITY:
		return _("The device's identity key is not trusted.");
	case SG_ERR_VRF_SIG_VERIF_FAILED:
		return _("A signature did not verify.");
	case SG_ERR_INVALID_PROTO_BUF:
		return _("The message could not be parsed.");
	default:
		break;
	}
	if (code <= SG_ERR_MINIMUM && code > OMEMO_ERR_BASE)
		return _("The Signal protocol library reported an application error.");
	return _("Unknown error.");
}
