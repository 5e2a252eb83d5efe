/* libFuzzer target: the configuration loader (INI reader, every key's parser, validation)
 * on a file written from the input. Errors go to /dev/null. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    static FILE *devnull;
    if (path[0] == '\0') {
        snprintf(path, sizeof path, "/tmp/xoauthd-fuzz-config-%ld.ini", (long)getpid());
        devnull = fopen("/dev/null", "w");
    }
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return 0;
    if (size > 0 && fwrite(data, 1, size, f) != size) {
        fclose(f);
        return 0;
    }
    fclose(f);
    struct config *cfg = config_load(path, devnull != NULL ? devnull : stderr);
    if (cfg != NULL) {
        for (size_t i = 0; i < cfg->n_accounts; i++) {
            char *url = config_token_url(&cfg->accounts[i]);
            free(url);
            (void)config_find_account_by_local_user(cfg, cfg->accounts[i].local_user
                                                              ? cfg->accounts[i].local_user
                                                              : "");
        }
        config_free(cfg);
    }
    unlink(path);
    return 0;
}
