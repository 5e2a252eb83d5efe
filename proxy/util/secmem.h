/* secmem: growing a buffer that may hold a secret (a password line, a config file's lines)
 * without leaving a copy behind. realloc may move the bytes and free the old block as it is,
 * where the next malloc hands them to anyone; this allocates the new block, copies, cleanses
 * the old one and only then frees it. */
#ifndef XOAUTHD_SECMEM_H
#define XOAUTHD_SECMEM_H

#include <stddef.h>

/* Makes *buf (capacity *cap, of which the first used bytes matter) hold at least need bytes:
 * the capacity doubles from min_cap until it does. 0, or -1 on overflow or out of memory
 * (*buf and *cap unchanged then). */
int secmem_grow(char **buf, size_t *cap, size_t used, size_t need, size_t min_cap);

/* Cleanses and frees a buffer of capacity cap (NULL is fine). */
void secmem_free(char *buf, size_t cap);

/* Allocators that cleanse every block they free (its whole usable size) and never leave the
 * old block of a realloc as it was, for a library that keeps secrets in memory it allocates
 * itself: libcurl copies a small POST body - a token request's client_secret and refresh
 * token - into its request buffer and frees it as it is (curl_global_init_mem, main.c). */
void *secmem_alloc(size_t n);
void secmem_release(void *p);
void *secmem_realloc(void *p, size_t n);
char *secmem_strdup(const char *s);
void *secmem_calloc(size_t nmemb, size_t n);

#endif
