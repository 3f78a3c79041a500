/*
 * crc32c.h - CRC-32C (Castagnoli), as in iSCSI and ext4 metadata. Used for
 * the spool trailer: on a filesystem without a journal, blocks of a file
 * may reach the disk in any order, so length alone cannot tell a complete
 * message from one whose middle never hit the disk before a crash.
 */
#ifndef OMX_CRC32C_H
#define OMX_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* crc32c_update continues a CRC: start with crc32c_update(0, p, n). */
uint32_t crc32c_update(uint32_t crc, const void *p, size_t len);

#endif
