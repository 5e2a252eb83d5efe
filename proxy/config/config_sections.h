/* config_sections: one builder per section type, which applies the section's key table
 * (config_keys.h) to its struct and then checks what the section needs as a whole (required
 * keys, keys that only make sense together). Also the parsers of the keys whose table type is
 * CONFIG_KEY_CUSTOM (config_key_parsers.h). */
#ifndef XOAUTHD_CONFIG_SECTIONS_H
#define XOAUTHD_CONFIG_SECTIONS_H

#include "config_loader.h"

/* The defaults of [xoauthd], applied whether or not the file has that section. */
void config_build_main_defaults(struct config_loader *ld);
void config_build_main(struct config_loader *ld, const struct config_section *sec);
/* ld->named must be set: allow_networks marks the accounts it names. */
void config_build_listen(struct config_loader *ld, const struct config_section *sec,
                         struct config_listen *l);
void config_build_provider(struct config_loader *ld, const struct config_section *sec,
                           struct config_provider *p);
void config_build_account(struct config_loader *ld, const struct config_section *sec,
                          struct config_account *a);

/* The line giving secret key name in sec, inline or as its NAME_file twin; NULL if neither. */
const struct config_kv *config_sec_secret_kv(const struct config_section *sec,
                                             const char *name);

#endif
