/* Object names as they come in a URL: rt_name_decode (percent-decoding,
 * UTF-8 and length checks). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[RT_NAME_MAX + 1];
    const char *why = NULL;
    long n = rt_name_decode((const char *)data, size, out, &why);
    if (n > RT_NAME_MAX || (n < 0 && why == NULL))
        abort();
    if (n >= 0 && !sdk_utf8_valid(out, (size_t)n))
        abort(); /* a decoded name is valid UTF-8 */
    return 0;
}
