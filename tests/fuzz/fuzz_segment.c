/* Segments as they come from object storage: wal_seg_parse, then every
 * record it indexes. */
#include <stdint.h>
#include <stdlib.h>
#include <zstd.h>

#include "wal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wal_segment s;
    char err[256];
    if (wal_seg_parse(data, size, &s, err, sizeof(err)) != 0)
        return 0;
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    for (uint32_t i = 0; i < s.n && i < 1024; i++) {
        (void)wal_seg_commit_us(&s, i);
        (void)wal_seg_record(&s, i, dc, &buf, &cap, &len);
    }
    free(buf);
    ZSTD_freeDCtx(dc);
    return 0;
}
