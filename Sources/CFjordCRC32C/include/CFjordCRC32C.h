#ifndef CFJORD_CRC32C_H
#define CFJORD_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/// Extends a CRC32C (Castagnoli, reflected polynomial 0x82F63B78) over `length` bytes.
///
/// Pass 0 to start; pass a previous result to continue over more bytes. Uses the SSE4.2 or
/// ARMv8 CRC instructions when the CPU has them (checked once at run time), otherwise a
/// slicing-by-8 table.
uint32_t cfjord_crc32c_update(uint32_t crc, const void *bytes, size_t length);

/// 1 when the hardware path is in use, 0 for the table fallback.
int cfjord_crc32c_is_hardware_accelerated(void);

#endif
