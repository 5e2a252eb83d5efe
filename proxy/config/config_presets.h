/* config_presets: the providers xoauthd knows without a section (google, microsoft) and the
 * scopes their tokens need per flow and submission path (config_presets.c). */
#ifndef XOAUTHD_CONFIG_PRESETS_H
#define XOAUTHD_CONFIG_PRESETS_H

#include "config.h"
#include "config_loader.h"

/* Fills ld->cfg->providers[0..CONFIG_N_PRESETS). */
void config_presets(struct config_loader *ld);
/* The preset's scope for flow, or NULL. */
const char *config_preset_scope(const char *provider, enum config_flow flow);
/* Checks graph_scope / ews_scope / smtp_scope and derives the unset ones. */
void config_resolve_path_scopes(struct config_loader *ld, const struct config_section *sec,
                                struct config_account *a);

#endif
