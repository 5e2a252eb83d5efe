#include "secmem.h"

#include <malloc.h>
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

void *secmem_alloc(size_t n) { return malloc(n); }

void secmem_release(void *p)
{
    if (p == NULL)
        return;
    OPENSSL_cleanse(p, malloc_usable_size(p));
    free(p);
}

void *secmem_realloc(void *p, size_t n)
{
    if (p == NULL)
        return malloc(n);
    if (n == 0) {
        secmem_release(p);
        return NULL;
    }
    size_t old = malloc_usable_size(p);
    void *q = malloc(n);
    if (q == NULL)
        return NULL;
    memcpy(q, p, old < n ? old : n);
    secmem_release(p);
    return q;
}

char *secmem_strdup(const char *s) { return strdup(s); }

void *secmem_calloc(size_t nmemb, size_t n) { return calloc(nmemb, n); }
