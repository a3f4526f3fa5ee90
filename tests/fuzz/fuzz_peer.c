/* What a peer sends: a frame header, a protocol message, a forwarded
 * request or reply (router/forward.c), and a replica journal entry read
 * back from disk. The first byte picks the decoder. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "replicate.h"
#include "router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *p = data + 1;
    size_t len = size - 1;
    switch (data[0] % 4) {
    case 0: {
        uint8_t type;
        uint32_t plen;
        if (len >= REPL_FRAME_HEADER_BYTES && repl_frame_parse(p, &type, &plen) == 0 &&
            plen <= len - REPL_FRAME_HEADER_BYTES)
            (void)repl_frame_verify(p, p + REPL_FRAME_HEADER_BYTES, plen);
        break;
    }
    case 1: {
        struct repl_msg m;
        if (repl_msg_decode(&m, p, len) == 0)
            repl_msg_release(&m);
        break;
    }
    case 2: {
        struct router_fwd f;
        if (router_fwd_decode(&f, p, len) == 0) {
            /* Every string it hands out lies inside the payload. */
            const struct router_str *all[] = {&f.cls, &f.name, &f.method, &f.path, &f.query, &f.headers, &f.body};
            for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
                if (all[i]->len > 0 && ((const uint8_t *)all[i]->p < p ||
                                        (const uint8_t *)all[i]->p + all[i]->len > p + len))
                    abort();
        }
        break;
    }
    default: {
        struct repl_op op;
        uint8_t id[16];
        char *name = NULL;
        if (repl_op_decode(&op, id, &name, p, len) == 0) {
            repl_op_release(&op);
            free(name);
        }
        break;
    }
    }
    return 0;
}
