/* config_keys: the key tables (config_keys.h). The texts here are what the loader says about a
 * bad value and what xoauthd.ini(5) says about the key; keep a row's doc line to one line. */
#include "config_keys.h"

#include <stddef.h>
#include <string.h>

#include "config.h"
#include "config_key_parsers.h"

static const char *const plaintext_names[] = {"loopback", "always", "never", NULL};
static const char *const tls_version_names[] = {"1.0", "1.1", "1.2", "1.3", NULL};
static const char *const log_target_names[] = {"stderr", "syslog", NULL};
static const char *const mechanism_names[] = {"xoauth2", "oauthbearer", NULL};
static const char *const impersonation_names[] = {"auto", "yes", "no", NULL};
static const char *const envelope_from_names[] = {"keep", "account", NULL};
static const char *const header_from_names[] = {"keep", "account", "account-with-name", NULL};

#define MAIN(f) .offset = offsetof(struct config, f)
#define LISTEN(f) .offset = offsetof(struct config_listen, f)
#define PROVIDER(f) .offset = offsetof(struct config_provider, f)
#define ACCOUNT(f) .offset = offsetof(struct config_account, f)

static const struct config_key main_keys[] = {
    {"state_dir", CONFIG_KEY_CUSTOM, .parse = config_parse_state_dir, .def = "/var/lib/xoauthd",
     .doc = "Token store, key file and status files (mode 0700, owned by the run user)."},
    {"log_level", CONFIG_KEY_CUSTOM, .parse = config_parse_log_level, .def = "info",
     .doc = "error, warn, info or debug."},
    {"log_target", CONFIG_KEY_ENUM, MAIN(log_syslog), .values = log_target_names,
     .def = "stderr", .accepted = "stderr or syslog",
     .doc = "stderr (journald under systemd) or syslog (facility mail)."},
    {"user", CONFIG_KEY_STRING, MAIN(user),
     .doc = "Started as root: bind the listeners, then switch to this user for good."},
    {"group", CONFIG_KEY_STRING, MAIN(group),
     .doc = "The group to switch to with user (default: the user's primary group)."},
    {"max_message_size", CONFIG_KEY_SIZE, MAIN(max_message_size), .min = 1024,
     .max = 1073741824ULL, .def = "36700160",
     .accepted = "a number of bytes from 1024 to 1073741824",
     .doc = "Bytes; advertised as SIZE and enforced."},
    {"token_timeout", CONFIG_KEY_UINT, MAIN(token_timeout), .min = 1, .max = 600, .def = "30",
     .accepted = "a number of seconds from 1 to 600",
     .doc = "Seconds for one token endpoint request."},
    {"shutdown_timeout", CONFIG_KEY_UINT, MAIN(shutdown_timeout), .min = 0, .max = 3600,
     .def = "30", .accepted = "a number of seconds from 0 to 3600",
     .doc = "Seconds transactions in flight may take to finish after SIGTERM."},
    {"auth_lockout", CONFIG_KEY_CUSTOM, .parse = config_auth_lockout,
     .doc = "FAILURES/WINDOW/DURATION of failed local logins that lock an address or name "
            "(default 10/10m/15m)."},
    {"auth_lockout_exempt", CONFIG_KEY_NETWORKS, MAIN(auth_lockout_exempt),
     .count_offset = offsetof(struct config, n_auth_lockout_exempt),
     .accepted = "CIDR[, CIDR...] such as 127.0.0.1, 10.0.0.0/24",
     .doc = "CIDR[, CIDR...]: clients never locked and never counted."},
    {"control_socket", CONFIG_KEY_CUSTOM, .parse = config_parse_control_socket,
     .doc = "Path of the control socket of xoauthd status (default STATE_DIR/control.sock)."},
    {"metrics", CONFIG_KEY_CUSTOM, .parse = config_parse_metrics,
     .doc = "HOST:PORT of a Prometheus /metrics listener, loopback only; unset or no = off."},
};

static const struct config_key listen_keys[] = {
    {"protocol", CONFIG_KEY_ENUM, LISTEN(protocol), .values = config_protocol_names,
     .accepted = "smtp, imap or pop3", .doc = "smtp, imap or pop3 (required)."},
    {"address", CONFIG_KEY_CUSTOM, .parse = config_parse_address,
     .doc = "HOST:PORT or [V6]:PORT, numeric (required)."},
    {"tls", CONFIG_KEY_ENUM, LISTEN(tls), .values = config_tls_names, .def = "none",
     .accepted = "none, starttls or implicit", .doc = "none, starttls or implicit."},
    {"tls_cert", CONFIG_KEY_STRING, LISTEN(tls_cert),
     .doc = "PEM certificate file; required unless tls = none."},
    {"tls_key", CONFIG_KEY_STRING, LISTEN(tls_key),
     .doc = "PEM private key file; required unless tls = none."},
    {"allow_plaintext_auth", CONFIG_KEY_ENUM, LISTEN(allow_plaintext_auth),
     .values = plaintext_names, .def = "loopback", .accepted = "loopback, always or never",
     .doc = "loopback, always or never: whether a password may be sent without TLS."},
    {"allow_networks", CONFIG_KEY_CUSTOM, .parse = config_parse_allow_networks, .repeats = 1,
     .doc = "CIDR[, CIDR...] -> ACCOUNT: clients there send without login as ACCOUNT."},
    {"max_connections", CONFIG_KEY_UINT, LISTEN(max_connections), .min = 1, .max = 1000000,
     .accepted = "a number from 1 to 1000000", .doc = "Sessions at once on this listener."},
    {"max_connections_per_ip", CONFIG_KEY_UINT, LISTEN(max_connections_per_ip), .min = 0,
     .max = 100000, .def = "0", .accepted = "a number from 0 (no limit) to 100000",
     .doc = "Sessions at once from one client address; 0 = no limit."},
    {"idle_timeout", CONFIG_KEY_UINT, LISTEN(idle_timeout), .min = 1, .max = 86400,
     .accepted = "seconds from 1 to 86400",
     .doc = "IMAP and POP3: seconds a client may stay silent (default 1800 IMAP, 600 POP3)."},
    {"tls_min_version", CONFIG_KEY_ENUM, LISTEN(tls_min_version), .values = tls_version_names,
     .base = 10, .accepted = "1.0, 1.1, 1.2 or 1.3",
     .doc = "Oldest TLS version accepted from clients (default 1.2)."},
    {"tls_ciphers", CONFIG_KEY_STRING, LISTEN(tls_ciphers),
     .doc = "OpenSSL cipher list for TLS 1.2 and older."},
    {"proxy_protocol", CONFIG_KEY_BOOL, LISTEN(proxy_protocol), .def = "no",
     .accepted = "yes or no", .doc = "yes: every connection starts with a PROXY header."},
    {"proxy_trusted", CONFIG_KEY_NETWORKS, LISTEN(proxy_trusted),
     .count_offset = offsetof(struct config_listen, n_proxy_trusted),
     .accepted = "CIDR[, CIDR...] such as 127.0.0.1, 10.0.0.0/24",
     .doc = "CIDR[, CIDR...]: the balancers allowed to send that header."},
};

static const struct config_key provider_keys[] = {
    {"token_url", CONFIG_KEY_URL, PROVIDER(token_url),
     .doc = "OAuth 2.0 token endpoint; {tenant} is replaced by the account's tenant."},
    {"device_code_url", CONFIG_KEY_URL, PROVIDER(device_code_url),
     .doc = "Device authorization endpoint (RFC 8628)."},
    {"authorize_url", CONFIG_KEY_URL, PROVIDER(authorize_url),
     .doc = "Authorization endpoint (browser sign-in)."},
    {"smtp", CONFIG_KEY_ENDPOINT, PROVIDER(smtp),
     .doc = "HOST:PORT starttls|implicit|none of the SMTP server."},
    {"imap", CONFIG_KEY_ENDPOINT, PROVIDER(imap),
     .doc = "HOST:PORT starttls|implicit|none of the IMAP server."},
    {"pop3", CONFIG_KEY_ENDPOINT, PROVIDER(pop3),
     .doc = "HOST:PORT starttls|implicit|none of the POP3 server."},
    {"ews_url", CONFIG_KEY_URL, PROVIDER(ews_url), .doc = "Exchange Web Services endpoint."},
    {"graph_url", CONFIG_KEY_URL, PROVIDER(graph_url), .doc = "Microsoft Graph endpoint."},
    {"ews_version", CONFIG_KEY_CUSTOM, .parse = config_parse_ews_version,
     .doc = "RequestServerVersion of EWS requests (default Exchange2013_SP1)."},
    {"ca_file", CONFIG_KEY_STRING, PROVIDER(ca_file), .doc = "Extra trust anchors (PEM)."},
    {"tls_verify", CONFIG_KEY_BOOL, PROVIDER(tls_verify), .def = "yes",
     .accepted = "yes or no", .doc = "no is allowed for loopback upstreams only (tests)."},
};

static const struct config_key account_keys[] = {
    {"local_user", CONFIG_KEY_STRING, ACCOUNT(local_user),
     .doc = "The name clients log in with."},
    {"local_password", CONFIG_KEY_CUSTOM, .parse = config_parse_local_password, .secret = 1,
     .doc = "The password hash (xoauthd hash-password) clients log in with."},
    {"provider", CONFIG_KEY_STRING, ACCOUNT(provider_name),
     .doc = "A provider section or preset (required)."},
    {"username", CONFIG_KEY_STRING, ACCOUNT(username),
     .doc = "The mailbox, user= in XOAUTH2 (required)."},
    {"flow", CONFIG_KEY_ENUM, ACCOUNT(flow), .values = config_flow_names,
     .accepted = "static, refresh_token, client_credentials, password, device_code or "
                 "authorization_code, or command",
     .doc = "How tokens are obtained (required)."},
    {"client_id", CONFIG_KEY_STRING, ACCOUNT(client_id), .doc = "The application registration."},
    {"client_secret", CONFIG_KEY_STRING, ACCOUNT(client_secret), .secret = 1,
     .doc = "The application's secret."},
    {"client_certificate", CONFIG_KEY_STRING, ACCOUNT(client_certificate),
     .doc = "PEM certificate for a JWT client assertion, with client_key."},
    {"client_key", CONFIG_KEY_STRING, ACCOUNT(client_key),
     .doc = "PEM private key file of client_certificate."},
    {"upstream_password", CONFIG_KEY_STRING, ACCOUNT(upstream_password), .secret = 1,
     .doc = "The mailbox password (flow = password)."},
    {"tenant", CONFIG_KEY_STRING, ACCOUNT(tenant), .doc = "Tenant for {tenant}."},
    {"scope", CONFIG_KEY_STRING, ACCOUNT(scope),
     .doc = "Scope of IMAP, POP3 and the first submit path (a preset gives a default)."},
    {"smtp_scope", CONFIG_KEY_STRING, ACCOUNT(path_scope[CONFIG_SUBMIT_SMTP]),
     .doc = "Scope of the token for submit = smtp when not the first path."},
    {"ews_scope", CONFIG_KEY_STRING, ACCOUNT(path_scope[CONFIG_SUBMIT_EWS]),
     .doc = "Scope of the token for submit = ews when not the first path."},
    {"graph_scope", CONFIG_KEY_STRING, ACCOUNT(path_scope[CONFIG_SUBMIT_GRAPH]),
     .doc = "Scope of the token for submit = graph when not the first path."},
    {"refresh_token", CONFIG_KEY_STRING, ACCOUNT(refresh_token), .secret = 1,
     .doc = "Seed refresh token (the token store is the truth once written)."},
    {"access_token", CONFIG_KEY_STRING, ACCOUNT(access_token), .secret = 1,
     .doc = "A fixed token (flow = static)."},
    {"token_command", CONFIG_KEY_STRING, ACCOUNT(token_command),
     .doc = "A command printing a token (flow = command)."},
    {"redirect_uri", CONFIG_KEY_CUSTOM, .parse = config_parse_redirect_uri,
     .doc = "The loopback redirect of authorization_code."},
    {"mechanism", CONFIG_KEY_ENUM, ACCOUNT(mechanism), .values = mechanism_names,
     .def = "xoauth2", .accepted = "xoauth2 or oauthbearer", .doc = "xoauth2 or oauthbearer."},
    {"submit", CONFIG_KEY_CUSTOM, .parse = config_parse_submit, .def = "smtp",
     .doc = "smtp, ews or graph; a list gives fallbacks in order."},
    {"ews_impersonation", CONFIG_KEY_ENUM, ACCOUNT(ews_impersonation),
     .values = impersonation_names, .def = "auto",
     .accepted = "auto (only for flow = client_credentials), yes or no",
     .doc = "auto (only for flow = client_credentials), yes or no."},
    {"refresh_margin", CONFIG_KEY_UINT, ACCOUNT(refresh_margin), .min = 0, .max = 3000,
     .def = "300", .accepted = "a number of seconds from 0 to 3000",
     .doc = "Seconds before expiry at which a token is renewed."},
    {"envelope_from", CONFIG_KEY_ENUM, ACCOUNT(envelope_from), .values = envelope_from_names,
     .def = "keep", .accepted = "keep or account", .doc = "keep, or account: MAIL FROM becomes "
     "the mailbox."},
    {"header_from", CONFIG_KEY_ENUM, ACCOUNT(header_from), .values = header_from_names,
     .def = "keep", .accepted = "keep, account or account-with-name",
     .doc = "keep, account or account-with-name: the From: header."},
    {"allowed_senders", CONFIG_KEY_CUSTOM, .parse = config_parse_allowed_senders,
     .doc = "ADDRESS[, *@DOMAIN, <>...]: MAIL FROM must be one of these."},
};

const struct config_key_table config_key_tables[4] = {
    {CONFIG_SEC_MAIN, "xoauthd", main_keys, CONFIG_COUNT(main_keys)},
    {CONFIG_SEC_LISTEN, "listen NAME", listen_keys, CONFIG_COUNT(listen_keys)},
    {CONFIG_SEC_PROVIDER, "provider NAME", provider_keys, CONFIG_COUNT(provider_keys)},
    {CONFIG_SEC_ACCOUNT, "account NAME", account_keys, CONFIG_COUNT(account_keys)},
};

const struct config_key_table *config_key_table(enum config_sec_type type)
{
    for (size_t i = 0; i < CONFIG_COUNT(config_key_tables); i++)
        if (config_key_tables[i].type == type)
            return &config_key_tables[i];
    return NULL;
}

const struct config_key *config_key_find(enum config_sec_type type, const char *name)
{
    const struct config_key_table *t = config_key_table(type);
    for (size_t i = 0; t != NULL && i < t->n_keys; i++)
        if (strcmp(t->keys[i].name, name) == 0)
            return &t->keys[i];
    return NULL;
}

const struct config_key *config_key_twin(enum config_sec_type type, const char *name)
{
    static const char suffix[] = "_file";
    size_t n = strlen(name), s = sizeof suffix - 1;
    if (n <= s || strcmp(name + n - s, suffix) != 0)
        return NULL;
    const struct config_key_table *t = config_key_table(type);
    for (size_t i = 0; t != NULL && i < t->n_keys; i++)
        if (t->keys[i].secret && strlen(t->keys[i].name) == n - s &&
            memcmp(t->keys[i].name, name, n - s) == 0)
            return &t->keys[i];
    return NULL;
}

int config_key_repeats(enum config_sec_type type, const char *name)
{
    const struct config_key *k = config_key_find(type, name);
    return k != NULL && k->repeats;
}

/* man(7) text: a leading '.' or '\'' would be a request, '\' an escape, '-' a hyphen. */
static void config_keys_man_text(FILE *out, const char *s)
{
    if (*s == '.' || *s == '\'')
        fputs("\\&", out);
    for (; *s != '\0'; s++) {
        if (*s == '\\' || *s == '-')
            fputc('\\', out);
        fputc(*s, out);
    }
}

void config_keys_print_man(FILE *out)
{
    for (size_t i = 0; i < CONFIG_COUNT(config_key_tables); i++) {
        const struct config_key_table *t = &config_key_tables[i];
        fprintf(out, ".SH \"[%s]\"\n", t->section);
        for (size_t j = 0; j < t->n_keys; j++) {
            const struct config_key *k = &t->keys[j];
            fputs(".TP\n", out);
            if (k->def != NULL) {
                fprintf(out, ".BR %s \" (default ", k->name);
                config_keys_man_text(out, k->def);
                fputs(")\"\n", out);
            } else {
                fprintf(out, ".B %s\n", k->name);
            }
            config_keys_man_text(out, k->doc);
            fputc('\n', out);
            if (k->secret) {
                fprintf(out, ".TP\n.B %s_file\n", k->name);
                fprintf(out, "A file holding %s (see SECRETS IN FILES).\n", k->name);
            }
        }
    }
}
