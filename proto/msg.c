/* msg.c - envelope helpers; see msg.h. */
#include "msg.h"

const char *msg_body_name(enum msg_body b)
{
	static const char *const names[MSG_BODY_COUNT] = {
		[MSG_BODY_7BIT] = "7BIT",
		[MSG_BODY_8BITMIME] = "8BITMIME",
		[MSG_BODY_BINARYMIME] = "BINARYMIME",
	};

	return (unsigned)b < MSG_BODY_COUNT ? names[b] : "?";
}
