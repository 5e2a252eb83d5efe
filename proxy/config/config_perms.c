#include "config_perms.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

int config_perms_exposed(mode_t mode)
{
    return (mode & S_IROTH) != 0;
}

/* The group the fix suggests: the one the daemon reads the file as. */
static const char *config_perms_group(const struct config *cfg)
{
    if (cfg->group != NULL)
        return cfg->group;
    if (cfg->user != NULL)
        return cfg->user;
    return "xoauthd";
}

static void config_perms_fix(const struct config *cfg, const char *file, FILE *err)
{
    fprintf(err, "  fix: chmod 600 %s   (or, for a daemon that reads it after dropping to its "
            "user: chown root:%s %s; chmod 640 %s)\n", file, config_perms_group(cfg), file,
            file);
}

/* A private key file named by key (in what) of cfg. Missing files are left to the code that
 * opens them, which says so with the line. */
static int config_perms_key_file(const struct config *cfg, const char *file, const char *key,
                                 const char *what, int line, FILE *err)
{
    struct stat st;
    if (file == NULL || stat(file, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    if (!config_perms_exposed(st.st_mode))
        return 0;
    fprintf(err, "%s:%d: %s %s of %s is readable by every user (mode %04o) and holds a private "
            "key; refusing it\n", cfg->path, line, key, file, what,
            (unsigned)(st.st_mode & 07777));
    config_perms_fix(cfg, file, err);
    return -1;
}

int config_perms_check(const struct config *cfg, FILE *err)
{
    struct stat st;
    int rc = 0;
    char what[128];
    if (cfg->secret_line != 0) {
        if (stat(cfg->path, &st) != 0) {
            fprintf(err, "%s:0: cannot check its permissions: %s\n", cfg->path, strerror(errno));
            return -1;
        }
        if (config_perms_exposed(st.st_mode)) {
            fprintf(err, "%s:%d: the configuration is readable by every user (mode %04o) and "
                    "holds secrets (the first is %s on line %d); refusing it\n", cfg->path,
                    cfg->secret_line, (unsigned)(st.st_mode & 07777), cfg->secret_key,
                    cfg->secret_line);
            config_perms_fix(cfg, cfg->path, err);
            rc = -1;
        }
    }
    for (size_t i = 0; i < cfg->n_listens; i++) {
        const struct config_listen *l = &cfg->listens[i];
        snprintf(what, sizeof what, "[listen %s]", l->name);
        if (config_perms_key_file(cfg, l->tls_key, "tls_key", what, l->line, err) != 0)
            rc = -1;
    }
    for (size_t i = 0; i < cfg->n_accounts; i++) {
        const struct config_account *a = &cfg->accounts[i];
        snprintf(what, sizeof what, "[account %s]", a->name);
        if (config_perms_key_file(cfg, a->client_key, "client_key", what, a->line, err) != 0)
            rc = -1;
    }
    return rc;
}
