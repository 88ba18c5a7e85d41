/* SipHash-2-4 against the reference test vectors (key 00..0f; message 00..0e, 64-bit output
 * a129ca6149be45e5; empty message, 128-bit output a3817f04ba25a8e66df67214c7550293), and the
 * properties the header MAC relies on. Exits non-zero on failure. */
#include <stdio.h>
#include <string.h>

#include "siphash.h"

int main(void) {
  uint8_t key[16], msg[64], out[16], out2[16];
  for (int i = 0; i < 16; i++) key[i] = (uint8_t)i;
  for (int i = 0; i < 64; i++) msg[i] = (uint8_t)i;
  int fails = 0;
  sf_siphash(msg, 15, key, out, 8);
  const uint8_t want[8] = {0xe5, 0x45, 0xbe, 0x49, 0x61, 0xca, 0x29, 0xa1}; /* little-endian a129ca6149be45e5 */
  if (memcmp(out, want, 8)) {
    printf("FAIL reference vector:");
    for (int i = 0; i < 8; i++) printf(" %02x", out[i]);
    printf("\n");
    fails++;
  }
  sf_siphash(msg, 0, key, out, 16);
  const uint8_t want128[16] = {0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6,
                               0x6d, 0xf6, 0x72, 0x14, 0xc7, 0x55, 0x02, 0x93};
  if (memcmp(out, want128, 16)) printf("FAIL 128-bit reference vector\n"), fails++;
  sf_siphash(msg, 32, key, out, 16);
  sf_siphash(msg, 32, key, out2, 16);
  if (memcmp(out, out2, 16)) printf("FAIL 128-bit output is not deterministic\n"), fails++;
  msg[20] ^= 1;
  sf_siphash(msg, 32, key, out2, 16);
  if (!memcmp(out, out2, 16)) printf("FAIL a changed byte leaves the tag unchanged\n"), fails++;
  msg[20] ^= 1;
  key[3] ^= 0x80;
  sf_siphash(msg, 32, key, out2, 16);
  if (!memcmp(out, out2, 16)) printf("FAIL another key gives the same tag\n"), fails++;
  printf("%s siphash\n", fails ? "FAIL" : "ok");
  return fails != 0;
}
