/*
 * journal_format.h: the constants of the journal's files, shared by the
 * writer (journal.c, where the format is specified) and the reader
 * (recover.c). Private to replicate/.
 */
#ifndef REPLICATE_JOURNAL_FORMAT_H
#define REPLICATE_JOURNAL_FORMAT_H

#include <inttypes.h>
#include <stdio.h>

#include "wal.h"

#define JOURNAL_SEGMENT_MAGIC 0x31534a44u /* "DJS1" */
#define JOURNAL_BATCH_MAGIC 0x31424a44u   /* "DJB1": a zstd-compressed payload */
#define JOURNAL_BATCH_MAGIC_RAW 0x31524a44u /* "DJR1": the payload as it is (C = U) */
#define JOURNAL_SEGMENT_HEADER_BYTES 32
#define JOURNAL_BATCH_HEADER_BYTES 32
/* What one batch may hold uncompressed: the writer's cut and the reader's
 * sanity bound. One record always fits a batch. */
#define JOURNAL_BATCH_BYTES_MAX (64u << 20)
#define JOURNAL_BATCH_RAW_MAX (512u << 20)

_Static_assert(JOURNAL_SEGMENT_HEADER_BYTES == 24 + 8, "segment header: fields, then an XXH3-64");
_Static_assert(JOURNAL_BATCH_HEADER_BYTES == 24 + 8, "batch header: fields, then an XXH3-64");
_Static_assert(WAL_RECORD_BYTES_MAX <= JOURNAL_BATCH_RAW_MAX, "a record fits in a batch the reader accepts");
_Static_assert(JOURNAL_BATCH_BYTES_MAX <= JOURNAL_BATCH_RAW_MAX, "the reader accepts what the writer cuts");

/* DIR/<segment as 16 hex digits>.log */
static inline void journal_segment_path(char *out, size_t len, const char *dir, uint32_t seg)
{
    snprintf(out, len, "%s/%016" PRIx32 ".log", dir, seg);
}

#endif /* REPLICATE_JOURNAL_FORMAT_H */
