#include "secmem.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

int secmem_grow(char **buf, size_t *cap, size_t used, size_t need, size_t min_cap)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap != 0 ? *cap : (min_cap != 0 ? min_cap : 64);
    while (ncap < need) {
        if (ncap > ((size_t)-1) / 2)
            return -1;
        ncap *= 2;
    }
    char *p = malloc(ncap);
    if (p == NULL)
        return -1;
    if (used > 0)
        memcpy(p, *buf, used);
    secmem_free(*buf, *cap);
    *buf = p;
    *cap = ncap;
    return 0;
}

void secmem_free(char *buf, size_t cap)
{
    if (buf == NULL)
        return;
    OPENSSL_cleanse(buf, cap);
    free(buf);
}
