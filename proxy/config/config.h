/* config: the INI file (xoauthd.ini(5), contrib/man/xoauthd.ini.5) as one immutable struct
 * config.
 *
 * Loading (config_load.c) reads the file through inih into sections, applies each section's
 * key table (config_keys.h) to its struct, then checks what only the whole file can tell
 * (missing keys, unknown providers, duplicate local users). Every problem is reported as
 * "FILE:LINE: message" and loading goes on so that one run of `xoauthd check` shows them all.
 * Secrets may be kept in files of their own (NAME_file keys, config_secret_file.h), so that
 * the main file holds none. */
#ifndef XOAUTHD_CONFIG_H
#define XOAUTHD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "log.h"

enum config_protocol { CONFIG_PROTO_SMTP, CONFIG_PROTO_IMAP, CONFIG_PROTO_POP3 };
enum config_tls { CONFIG_TLS_NONE, CONFIG_TLS_STARTTLS, CONFIG_TLS_IMPLICIT };
enum config_plaintext_auth {
    CONFIG_PLAINTEXT_LOOPBACK, /* allowed only when the client is on a loopback address */
    CONFIG_PLAINTEXT_ALWAYS,
    CONFIG_PLAINTEXT_NEVER
};
enum config_flow {
    CONFIG_FLOW_STATIC,
    CONFIG_FLOW_REFRESH_TOKEN,
    CONFIG_FLOW_CLIENT_CREDENTIALS,
    CONFIG_FLOW_PASSWORD,
    CONFIG_FLOW_DEVICE_CODE,
    CONFIG_FLOW_AUTHORIZATION_CODE,
    CONFIG_FLOW_COMMAND /* token_command prints the token */
};
enum config_mechanism { CONFIG_MECH_XOAUTH2, CONFIG_MECH_OAUTHBEARER };
enum config_submit { CONFIG_SUBMIT_SMTP, CONFIG_SUBMIT_EWS, CONFIG_SUBMIT_GRAPH };
enum config_envelope_from { CONFIG_ENVFROM_KEEP, CONFIG_ENVFROM_ACCOUNT };
/* EWS ExchangeImpersonation header: auto = only for app-only tokens (client_credentials). */
enum config_ews_impersonation { CONFIG_EWS_IMP_AUTO, CONFIG_EWS_IMP_YES, CONFIG_EWS_IMP_NO };
enum config_header_from {
    CONFIG_HDRFROM_KEEP,
    CONFIG_HDRFROM_ACCOUNT,
    CONFIG_HDRFROM_ACCOUNT_WITH_NAME
};

/* "10.0.0.0/24 -> scanner": clients in net/prefix need no login and act as account. */
struct config_allow_network {
    struct sockaddr_storage net; /* AF_INET or AF_INET6, host bits zero */
    int prefix;
    char *account_name;
    const struct config_account *account; /* resolved by validation */
};

struct config_listen {
    char *name;
    int line; /* line of the section header */
    enum config_protocol protocol;
    char *host; /* numeric address as written, without brackets */
    uint16_t port;
    enum config_tls tls;
    char *tls_cert; /* PEM file paths; required unless tls = none */
    char *tls_key;
    enum config_plaintext_auth allow_plaintext_auth;
    struct config_allow_network *allow_networks;
    size_t n_allow_networks;
    unsigned max_connections; /* 0 = default */
    unsigned max_connections_per_ip; /* per client address; 0 = no limit */
    int tls_min_version; /* 10..13 = TLS 1.0..1.3; 0 = default (1.2) */
    /* IMAP/POP3: seconds a client may stay silent, before and after login (the relay's timer
     * watches the client's side); 0 = the protocol's default (IMAP 1800, POP3 600). */
    unsigned idle_timeout;
    char *tls_ciphers;   /* OpenSSL cipher list for TLS <= 1.2; NULL = OpenSSL's default */
    /* PROXY protocol v1/v2 header expected first (xoauthd behind HAProxy); only from the
     * proxy_trusted networks (account fields unused), others are refused. */
    int proxy_protocol;
    struct config_allow_network *proxy_trusted;
    size_t n_proxy_trusted;
};

/* An upstream endpoint "host:port starttls|implicit|none". present = 0 when not configured. */
struct config_endpoint {
    int present;
    char *host;
    uint16_t port;
    enum config_tls tls;
};

struct config_provider {
    char *name;
    int line;         /* 0 for a preset not mentioned in the file */
    char *token_url;  /* may contain "{tenant}" */
    char *device_code_url; /* RFC 8628 device authorization endpoint, may contain "{tenant}" */
    char *authorize_url;   /* authorization endpoint (browser sign-in), may contain "{tenant}" */
    struct config_endpoint smtp, imap, pop3;
    char *ews_url;
    char *graph_url;
    char *ews_version; /* RequestServerVersion for EWS requests; NULL = Exchange2013_SP1 */
    char *ca_file;    /* extra trust anchors, NULL = system store only */
    int tls_verify;   /* 1 unless "tls_verify = no", which validation allows for loopback only */
};

struct config_account {
    char *name;
    int line;
    char *local_user;
    char *local_password; /* hash string from `xoauthd hash-password`; NULL = no login */
    char *provider_name;
    const struct config_provider *provider; /* resolved by validation */
    char *username;       /* the mailbox, user= in XOAUTH2 */
    enum config_flow flow;
    char *client_id;
    char *client_secret;
    char *client_certificate;
    char *client_key;
    char *upstream_password;
    char *tenant;
    char *scope;
    /* graph_scope, ews_scope, smtp_scope, indexed by enum config_submit: as configured, else
     * derived by validation from the provider preset and flow for a path after the first;
     * NULL = the account's scope. Read through config_account_scope. */
    char *path_scope[3];
    char *refresh_token;  /* seed; the token store is the truth once written */
    char *access_token;   /* flow = static */
    char *token_command;  /* flow = command: run with /bin/sh -c, stdout is the token */
    char *redirect_uri;   /* flow = authorization_code: loopback redirect, NULL = automatic */
    enum config_mechanism mechanism;
    enum config_submit submit[3];
    size_t n_submit;      /* at least 1 after validation (default smtp) */
    enum config_envelope_from envelope_from;
    enum config_header_from header_from;
    enum config_ews_impersonation ews_impersonation;
    char **allowed_senders; /* "addr", "*@domain" or "<>"; none = any (sender_rules.h) */
    size_t n_allowed_senders;
    unsigned refresh_margin; /* seconds before expiry to refresh; default 300 */
    struct config *owner;    /* the configuration it belongs to (config_hold) */
};

struct config {
    char *path;
    char *state_dir;       /* default /var/lib/xoauthd */
    enum log_level log_level;
    int log_syslog;        /* log_target = syslog: syslog(3), facility LOG_MAIL */
    char *user;            /* run as this user after binding (privileges.h); NULL = as started */
    char *group;           /* with user: this group instead of the user's primary group */
    /* The first line holding a secret inline (config_perms.h; the secret rows of
     * config_keys.h); 0 = the file holds none (NAME_file keys are no secret). */
    int secret_line;
    const char *secret_key; /* its key name (a string literal), never the value */
    size_t max_message_size; /* bytes, SIZE advertised; default 35 MiB */
    unsigned token_timeout; /* seconds for one token endpoint request; default 30 */
    char *control_socket;  /* `xoauthd status` socket; default STATE_DIR/control.sock */
    char *metrics_host;    /* Prometheus /metrics listener (loopback only); NULL = off */
    uint16_t metrics_port;
    unsigned shutdown_timeout; /* seconds transactions may take to finish at SIGTERM; 30 */
    /* auth_lockout = FAILURES/WINDOW/DURATION (authlimit.h); default 10/600/900 seconds. */
    unsigned auth_lockout_failures;
    unsigned auth_lockout_window;   /* seconds */
    unsigned auth_lockout_duration; /* seconds */
    /* auth_lockout_exempt: clients never counted nor locked (account fields unused). */
    struct config_allow_network *auth_lockout_exempt;
    size_t n_auth_lockout_exempt;
    struct config_listen *listens;
    size_t n_listens;
    struct config_provider *providers; /* presets first, then file sections */
    size_t n_providers;
    struct config_account *accounts;
    size_t n_accounts;

    /* Life in the daemon (reload.h): everything that may point into this configuration
     * holds it (config_hold), and the last config_release frees it, secrets cleansed. A
     * configuration replaced by a reload holds its successor, because whoever holds the old
     * one may also have looked something up in the newer ones (a session accepted before a
     * reload logs in with the accounts in use at that moment). */
    unsigned refs;
    struct config *successor;
    /* Runs just before the last release frees it (the daemon frees what it made for this
     * configuration, such as its providers' TLS contexts). */
    void (*on_free)(struct config *cfg, void *arg);
    void *on_free_arg;
};

/* Loads and validates path. Every problem goes to err as "FILE:LINE: message\n" (LINE is 0 for
 * file-wide problems such as an unreadable file). Returns NULL when there was any error. */
struct config *config_load(const char *path, FILE *err);
/* Frees cfg at once, whoever holds it (for a configuration only its loader ever saw). Every
 * secret is cleansed first. */
void config_free(struct config *cfg);
/* config_load's result is held once. Both take NULL; config_hold returns cfg. */
struct config *config_hold(struct config *cfg);
void config_release(struct config *cfg);
/* A reload replaced old with successor: old holds successor until old is freed. */
void config_supersede(struct config *old, struct config *successor);

const struct config_account *config_find_account_by_local_user(const struct config *cfg,
                                                               const char *local_user);
const struct config_account *config_find_account(const struct config *cfg, const char *name);
const struct config_provider *config_find_provider(const struct config *cfg, const char *name);

/* The scope of the token for submit path p (smtp also for the SMTP fallback): path_scope[p]
 * when set, else scope. NULL = none sent. */
const char *config_account_scope(const struct config_account *acct, enum config_submit p);

/* The token URL with "{tenant}" replaced by the account's tenant ("common" when unset).
 * Returns a malloc'ed string. */
char *config_token_url(const struct config_account *acct);
/* Any provider URL template (device_code_url, authorize_url) with "{tenant}" replaced the same
 * way; NULL when tmpl is NULL. malloc'ed. */
char *config_account_url(const struct config_account *acct, const char *tmpl);


const char *config_protocol_name(enum config_protocol p);
const char *config_flow_name(enum config_flow f);

#endif
