/* libFuzzer target: STATE_DIR/known_clients as authlimit reads it at start. The file belongs
 * to the daemon, but it is input all the same (a full disk, a hand edit, another version):
 * whatever it holds must neither crash nor take more than AUTHLIMIT_KNOWN_MAX pairs. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "authlimit.h"

static time_t fuzz_clock(void) { return 1800000000; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    authlimit_set_clock(fuzz_clock);
    size_t taken = authlimit_known_parse((const char *)data, size);
    size_t lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    if (taken > lines)
        abort();
    /* A lookup with the first line's fields, whatever they are, is harmless too. */
    char addr[80] = "", user[160] = "";
    const char *sp = memchr(data, ' ', size);
    if (sp != NULL && (size_t)(sp - (const char *)data) < sizeof addr) {
        memcpy(addr, data, (size_t)(sp - (const char *)data));
        size_t rest = size - (size_t)(sp + 1 - (const char *)data);
        memcpy(user, sp + 1, rest < sizeof user - 1 ? rest : sizeof user - 1);
    }
    (void)authlimit_known(addr, user);
    return 0;
}
