// CRC32C for Fjord record batches. Hardware instructions where available, slicing-by-8 otherwise.
#include "CFjordCRC32C.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#endif

#define POLY 0x82F63B78u

uint32_t cfjord_crc32c_shift(uint32_t crc, size_t zeros);

static uint32_t table[8][256];

static void build_table(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = table[0][n];
        for (int k = 1; k < 8; k++) {
            c = table[0][c & 0xff] ^ (c >> 8);
            table[k][n] = c;
        }
    }
}

static uint32_t crc32c_software(uint32_t crc, const unsigned char *p, size_t n) {
    while (n && ((uintptr_t)p & 7)) { crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8); n--; }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc;
        crc = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^ table[5][(w >> 16) & 0xff] ^
              table[4][(w >> 24) & 0xff] ^ table[3][(w >> 32) & 0xff] ^ table[2][(w >> 40) & 0xff] ^
              table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
        p += 8; n -= 8;
    }
    while (n--) crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
// Carry-less multiplication folding (PCLMULQDQ): four 128-bit lanes are folded forward 64 bytes at
// a time, then into one lane, whose CRC the crc32 instruction finishes. For a lane X folded over a
// distance of D bits onto a later lane: X' = clmul(X.lo, K1) ^ clmul(X.hi, K2), with
// K1 = reflect32(x^(D+63) mod P) << 32 and K2 = reflect32(x^(D-1) mod P) << 32 (P = 0x1EDC6F41),
// because the low quadword holds the earlier (higher-degree) bits of a reflected lane.
static uint64_t fold_512[2], fold_128[2];
static int has_pclmul = 0;

static uint32_t reflect32(uint32_t v) {
    uint32_t r = 0;
    for (int i = 0; i < 32; i++) if (v & (1u << i)) r |= 1u << (31 - i);
    return r;
}

/// x^n mod P, P = x^32 + 0x1EDC6F41, as a normal (non-reflected) 32-bit polynomial.
static uint32_t x_power_mod(unsigned n) {
    uint32_t r = 1;
    while (n--) r = (r & 0x80000000u) ? (r << 1) ^ 0x1EDC6F41u : r << 1;
    return r;
}

static void build_fold_constants(void) {
    fold_512[0] = (uint64_t)reflect32(x_power_mod(512 + 63)) << 32;
    fold_512[1] = (uint64_t)reflect32(x_power_mod(512 - 1)) << 32;
    fold_128[0] = (uint64_t)reflect32(x_power_mod(128 + 63)) << 32;
    fold_128[1] = (uint64_t)reflect32(x_power_mod(128 - 1)) << 32;
}

__attribute__((target("sse4.2,pclmul")))
static inline __m128i fold(__m128i x, __m128i k, __m128i next) {
    __m128i lo = _mm_clmulepi64_si128(x, k, 0x00);
    __m128i hi = _mm_clmulepi64_si128(x, k, 0x11);
    return _mm_xor_si128(_mm_xor_si128(lo, hi), next);
}

/// Register `c` advanced over `n` >= 64 bytes.
__attribute__((target("sse4.2,pclmul")))
static uint64_t crc32c_pclmul(uint64_t c, const unsigned char *p, size_t n, size_t *consumed) {
    const size_t start = n;
    __m128i x0 = _mm_loadu_si128((const __m128i *)p);
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)(uint32_t)c));
    p += 64; n -= 64;
    const __m128i k512 = _mm_set_epi64x((long long)fold_512[1], (long long)fold_512[0]);
    while (n >= 64) {
        x0 = fold(x0, k512, _mm_loadu_si128((const __m128i *)p));
        x1 = fold(x1, k512, _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = fold(x2, k512, _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = fold(x3, k512, _mm_loadu_si128((const __m128i *)(p + 48)));
        p += 64; n -= 64;
    }
    const __m128i k128 = _mm_set_epi64x((long long)fold_128[1], (long long)fold_128[0]);
    x1 = fold(x0, k128, x1);
    x2 = fold(x1, k128, x2);
    x3 = fold(x2, k128, x3);
    while (n >= 16) {
        x3 = fold(x3, k128, _mm_loadu_si128((const __m128i *)p));
        p += 16; n -= 16;
    }
    uint64_t r = __builtin_ia32_crc32di(0, (uint64_t)_mm_cvtsi128_si64(x3));
    r = __builtin_ia32_crc32di(r, (uint64_t)_mm_extract_epi64(x3, 1));
    *consumed = start - n;
    return r;
}

__attribute__((target("sse4.2")))
static uint32_t crc32c_hardware(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = crc;
    if (has_pclmul && n >= 256) {
        size_t consumed;
        c = crc32c_pclmul(c, p, n, &consumed);
        p += consumed; n -= consumed;
    }
    while (n && ((uintptr_t)p & 7)) { c = __builtin_ia32_crc32qi((uint32_t)c, *p++); n--; }
    // Three independent streams hide the instruction's 3-cycle latency for large inputs.
    while (n >= 3 * 256) {
        uint64_t c1 = 0, c2 = 0;
        const unsigned char *p1 = p + 256, *p2 = p + 512;
        for (int i = 0; i < 256; i += 8) {
            uint64_t a, b, d;
            memcpy(&a, p + i, 8); memcpy(&b, p1 + i, 8); memcpy(&d, p2 + i, 8);
            c = __builtin_ia32_crc32di(c, a);
            c1 = __builtin_ia32_crc32di(c1, b);
            c2 = __builtin_ia32_crc32di(c2, d);
        }
        // Combine: the register is linear, so shift each stream over the bytes that follow it.
        c = cfjord_crc32c_shift((uint32_t)c, 512) ^ cfjord_crc32c_shift((uint32_t)c1, 256) ^ (uint32_t)c2;
        p += 768; n -= 768;
    }
    while (n >= 8) { uint64_t w; memcpy(&w, p, 8); c = __builtin_ia32_crc32di(c, w); p += 8; n -= 8; }
    while (n--) c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    return (uint32_t)c;
}

static int detect_hardware(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    has_pclmul = (c & bit_SSE4_2) && (c & bit_PCLMUL) && !getenv("FJORD_CRC32C_NO_PCLMUL");
    if (has_pclmul) build_fold_constants();
    return (c & bit_SSE4_2) != 0;
}
#elif defined(__aarch64__) && defined(__linux__)
__attribute__((target("+crc")))
static uint32_t crc32c_hardware(uint32_t crc, const unsigned char *p, size_t n) {
    while (n && ((uintptr_t)p & 7)) { crc = __builtin_arm_crc32cb(crc, *p++); n--; }
    while (n >= 8) { uint64_t w; memcpy(&w, p, 8); crc = __builtin_arm_crc32cd(crc, w); p += 8; n -= 8; }
    while (n--) crc = __builtin_arm_crc32cb(crc, *p++);
    return crc;
}
static int detect_hardware(void) { return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0; }
#else
static uint32_t crc32c_hardware(uint32_t crc, const unsigned char *p, size_t n) { return crc32c_software(crc, p, n); }
static int detect_hardware(void) { return 0; }
#endif

// --- Shifting a CRC register over runs of zero bytes, to combine independent streams. ---
// The operator is linear: column i is the register 1<<i advanced over the zero bytes, and the
// image of any register is the XOR of the columns of its set bits, tabulated a byte at a time.

// Byte-sliced operators: shift_tables[s][k][b] is the register b<<(8k) advanced over 256*(s+1) zero bytes.
static uint32_t shift_tables[2][4][256];

static uint32_t advance_over_zeros(uint32_t c, size_t n) {
    while (n--) c = table[0][c & 0xff] ^ (c >> 8);
    return c;
}

uint32_t cfjord_crc32c_shift(uint32_t crc, size_t zeros) {
    const uint32_t (*t)[256] = shift_tables[zeros == 512 ? 1 : 0];
    return t[0][crc & 0xff] ^ t[1][(crc >> 8) & 0xff] ^ t[2][(crc >> 16) & 0xff] ^ t[3][crc >> 24];
}

static int hardware = 0;

__attribute__((constructor)) static void cfjord_crc32c_init(void) {
    build_table();
    for (int s = 0; s < 2; s++) {
        uint32_t columns[32];
        for (int i = 0; i < 32; i++) columns[i] = advance_over_zeros(1u << i, 256 * (size_t)(s + 1));
        for (int k = 0; k < 4; k++)
            for (uint32_t b = 0; b < 256; b++) {
                uint32_t sum = 0;
                for (int j = 0; j < 8; j++) if (b & (1u << j)) sum ^= columns[8 * k + j];
                shift_tables[s][k][b] = sum;
            }
    }
    hardware = detect_hardware();
}

int cfjord_crc32c_is_hardware_accelerated(void) { return hardware; }

uint32_t cfjord_crc32c_update(uint32_t crc, const void *bytes, size_t length) {
    const unsigned char *p = (const unsigned char *)bytes;
    crc = ~crc;
    crc = cfjord_crc32c_is_hardware_accelerated() ? crc32c_hardware(crc, p, length) : crc32c_software(crc, p, length);
    return ~crc;
}
