#include "privileges.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

static void privileges_name_of_uid(uid_t uid, char *out, size_t outsz)
{
    struct passwd *pw = getpwuid(uid);
    if (pw != NULL)
        snprintf(out, outsz, "%s", pw->pw_name);
    else
        snprintf(out, outsz, "%lu", (unsigned long)uid);
}

static void privileges_name_of_gid(gid_t gid, char *out, size_t outsz)
{
    struct group *gr = getgrgid(gid);
    if (gr != NULL)
        snprintf(out, outsz, "%s", gr->gr_name);
    else
        snprintf(out, outsz, "%lu", (unsigned long)gid);
}

int privileges_prepare(const struct config *cfg, struct privileges *p, FILE *err)
{
    memset(p, 0, sizeof *p);
    uid_t euid = geteuid();
    p->uid = euid;
    p->gid = getegid();
    privileges_name_of_uid(p->uid, p->user, sizeof p->user);
    privileges_name_of_gid(p->gid, p->group, sizeof p->group);
    if (cfg->user == NULL) {
        if (cfg->group != NULL) {
            fprintf(err, "%s: group = %s needs user = as well (the group a user is dropped "
                    "to)\n", cfg->path, cfg->group);
            return -1;
        }
        if (euid == 0)
            log_warn(NULL, "event=running_as_root note=\"no user = in [xoauthd]: the daemon "
                     "keeps root rights after binding; set user = xoauthd\"");
        return 0;
    }
    errno = 0;
    struct passwd *pw = getpwnam(cfg->user);
    if (pw == NULL) {
        /* "Not found" comes back as errno 0, ENOENT or ESRCH depending on the NSS module. */
        int e = errno == ENOENT || errno == ESRCH ? 0 : errno;
        fprintf(err, "%s: user = %s: no such user%s%s (create it: adduser --system --group "
                "xoauthd)\n", cfg->path, cfg->user, e != 0 ? ": " : "",
                e != 0 ? strerror(e) : "");
        return -1;
    }
    uid_t uid = pw->pw_uid;
    gid_t gid = pw->pw_gid;
    snprintf(p->user, sizeof p->user, "%s", pw->pw_name);
    if (cfg->group != NULL) {
        struct group *gr = getgrnam(cfg->group);
        if (gr == NULL) {
            fprintf(err, "%s: group = %s: no such group\n", cfg->path, cfg->group);
            return -1;
        }
        gid = gr->gr_gid;
    }
    privileges_name_of_gid(gid, p->group, sizeof p->group);
    if (euid != 0) {
        /* Only root can switch; already being that user (systemd's User=) is fine. */
        if (euid != uid || (cfg->group != NULL && getegid() != gid)) {
            char now[64];
            privileges_name_of_uid(euid, now, sizeof now);
            fprintf(err, "%s: user = %s%s%s, but xoauthd was started as %s, which cannot "
                    "switch to it: start it as root (it drops to %s after binding) or as %s\n",
                    cfg->path, cfg->user, cfg->group != NULL ? ", group = " : "",
                    cfg->group != NULL ? cfg->group : "", now, cfg->user, cfg->user);
            return -1;
        }
        p->uid = uid;
        p->gid = gid;
        return 0;
    }
    p->uid = uid;
    p->gid = gid;
    if (uid == 0)
        log_warn(NULL, "event=running_as_root note=\"user = %s keeps root rights; set user = "
                 "xoauthd\"", cfg->user);
    else
        p->drop = 1;
    return 0;
}

const char *privileges_state_dir_problem(uid_t owner, mode_t mode, uid_t uid)
{
    if (owner != uid)
        return "is owned by another user";
    if ((mode & (S_IWGRP | S_IWOTH)) != 0)
        return "is writable by group or others";
    return NULL;
}

/* Whether mkdir(dir) could succeed, without making it: 0, or the errno mkdir would most likely
 * fail with (its parent missing, not a directory, or not writable and searchable by us). */
static int privileges_mkdir_error(const char *dir)
{
    char parent[PATH_MAX];
    if (snprintf(parent, sizeof parent, "%s", dir) >= (int)sizeof parent)
        return ENAMETOOLONG;
    const char *up = dirname(parent);
    struct stat st;
    if (stat(up, &st) != 0)
        return errno;
    if (!S_ISDIR(st.st_mode))
        return ENOTDIR;
    if (faccessat(AT_FDCWD, up, W_OK | X_OK, AT_EACCESS) != 0)
        return errno;
    return 0;
}

/* privileges_state_dir and privileges_state_dir_check: one set of rules and messages. create 0
 * changes nothing and returns 1 for a missing state_dir that create 1 would make. */
static int privileges_state_dir_at(const char *dir, const struct privileges *p, int create,
                                   FILE *err)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno != ENOENT) {
            fprintf(err, "state_dir %s: %s\n", dir, strerror(errno));
            return -1;
        }
        int e = create ? (mkdir(dir, 0700) != 0 ? errno : 0) : privileges_mkdir_error(dir);
        if (e != 0) {
            fprintf(err, "state_dir %s does not exist and cannot be created: %s\n", dir,
                    strerror(e));
            return -1;
        }
        if (!create)
            return 1;
        if (geteuid() == 0 && p->uid != 0 && chown(dir, p->uid, p->gid) != 0) {
            fprintf(err, "state_dir %s: cannot give it to %s: %s\n", dir, p->user,
                    strerror(errno));
            return -1;
        }
        log_info(NULL, "event=state_dir_created path=%s owner=%s mode=0700", dir, p->user);
        if (stat(dir, &st) != 0) {
            fprintf(err, "state_dir %s: %s\n", dir, strerror(errno));
            return -1;
        }
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(err, "state_dir %s is not a directory\n", dir);
        return -1;
    }
    const char *why = privileges_state_dir_problem(st.st_uid, st.st_mode, p->uid);
    if (why == NULL)
        return 0;
    char owner[64];
    privileges_name_of_uid(st.st_uid, owner, sizeof owner);
    fprintf(err, "state_dir %s %s (owner %s, mode %04o); xoauthd runs as %s and keeps its token "
            "store there: refusing it\n", dir, why, owner, (unsigned)(st.st_mode & 07777),
            p->user);
    if (st.st_uid != p->uid)
        fprintf(err, "  fix: chown %s:%s %s; chmod 700 %s\n", p->user, p->group, dir, dir);
    else
        fprintf(err, "  fix: chmod 700 %s\n", dir);
    return -1;
}

int privileges_state_dir(const char *dir, const struct privileges *p, FILE *err)
{
    return privileges_state_dir_at(dir, p, 1, err);
}

int privileges_state_dir_check(const char *dir, const struct privileges *p, FILE *err)
{
    return privileges_state_dir_at(dir, p, 0, err);
}

void privileges_give(const struct privileges *p, const char *path)
{
    if (!p->drop || path == NULL)
        return;
    if (chown(path, p->uid, p->gid) != 0)
        log_warn(NULL, "event=chown_failed path=%s user=%s reason=\"%s\"", path, p->user,
                 strerror(errno));
}

int privileges_drop(const struct privileges *p, FILE *err)
{
    if (!p->drop)
        return 0;
    /* Groups first: once the user changed, the groups can no longer be. */
    if (initgroups(p->user, p->gid) != 0) {
        fprintf(err, "xoauthd: initgroups(%s): %s\n", p->user, strerror(errno));
        return -1;
    }
    if (setgid(p->gid) != 0) {
        fprintf(err, "xoauthd: setgid(%lu): %s\n", (unsigned long)p->gid, strerror(errno));
        return -1;
    }
    /* As root, setuid sets the real, effective and saved user ids at once. */
    if (setuid(p->uid) != 0) {
        fprintf(err, "xoauthd: setuid(%lu): %s\n", (unsigned long)p->uid, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0 || seteuid(0) == 0 || getuid() != p->uid || geteuid() != p->uid ||
        (p->gid != 0 && (setgid(0) == 0 || getgid() != p->gid || getegid() != p->gid))) {
        fprintf(err, "xoauthd: root could be regained after switching to %s; stopping\n",
                p->user);
        return -1;
    }
    /* A change of credentials resets the dumpable flag to fs.suid_dumpable: set it again
     * (main.c: no core dumps, no ptrace by the same user). */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        fprintf(err, "xoauthd: cannot set PR_SET_DUMPABLE 0\n");
    log_info(NULL, "event=privileges_dropped user=%s uid=%lu group=%s gid=%lu", p->user,
             (unsigned long)p->uid, p->group, (unsigned long)p->gid);
    return 0;
}
