/*
 * Records as they come from disk and from peers: wal_record_decode (the
 * journal, segments) and wal_record_unpack (a packed record off the wire).
 */
#include <stdint.h>
#include <stdlib.h>

#include "wal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wal_record r;
    struct wal_page *pages = NULL;
    uint32_t cap = 0;
    size_t used = 0;
    if (wal_record_decode_grow(data, size, &r, &pages, &cap, &used) == 0 && used > size)
        abort(); /* it read past what it was given */
    free(pages);
    uint8_t *raw;
    size_t rlen;
    if (wal_record_unpack(data, size, &raw, &rlen) == 0) {
        /* What unpacks whole must decode whole. */
        pages = NULL;
        cap = 0;
        (void)wal_record_decode_grow(raw, rlen, &r, &pages, &cap, &used);
        free(pages);
        free(raw);
    }
    return 0;
}
