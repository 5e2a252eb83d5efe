/* config_key_parsers: the parsers of the keys whose table type is CONFIG_KEY_CUSTOM
 * (config_keys.c names them; config_sections.c defines them). */
#ifndef XOAUTHD_CONFIG_KEY_PARSERS_H
#define XOAUTHD_CONFIG_KEY_PARSERS_H

#include "config_loader.h"

config_key_parse config_parse_state_dir, config_parse_log_level, config_parse_control_socket,
    config_parse_metrics, config_auth_lockout, config_parse_address,
    config_parse_allow_networks, config_parse_ews_version, config_parse_local_password,
    config_parse_redirect_uri, config_parse_submit, config_parse_allowed_senders;

#endif
