/* config_reader: lines of the file -> sections of "key = value" pairs, through inih.
 *
 * inih (ini_parse_stream with this reader and a handler) splits the lines; the reader in front
 * of it exists because Debian's libinih is built with a 200-byte line limit (a longer line is
 * cut, and its rest read as a line of its own) and with inline comments on (" ;" ends a value),
 * while refresh tokens are 1-2 KB and secrets may contain ';'. So the reader reads the file
 * itself (any length), counts lines, checks what inih would misread, and hands inih:
 *   "key = value" that fits inih's line and has no ';'  ->  the line itself; the handler takes
 *                                                            inih's name and value
 *   any other "key = value"  ->  "key="   (the real key and trimmed value wait in the loader;
 *                                          inih calls the handler right after this line)
 *   "[type name]"            ->  "[type name]" (checked and normalized; the section is recorded
 *                                               here, so that a section without keys exists)
 *   comment, blank, error    ->  ""
 * The limit is the size inih passes to the reader, not a constant compiled in here. A line
 * starting with whitespace (inih would glue it to the previous value) and a line without '='
 * are reported. A value is everything after the first '=', trimmed of spaces and tabs; there
 * are no inline comments. Long secrets are better kept in files (the *_file keys). */
#include "config_loader.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "config_keys.h"
#include "config_values.h"
#include "secmem.h"

static struct config_section *config_add_section(struct config_loader *ld)
{
    if (ld->n_sections == ld->cap_sections) {
        size_t cap = ld->cap_sections ? ld->cap_sections * 2 : 8;
        struct config_section *grown = realloc(ld->sections, cap * sizeof *grown);
        if (grown == NULL) {
            ld->oom = 1;
            return NULL;
        }
        ld->sections = grown;
        ld->cap_sections = cap;
    }
    struct config_section *sec = &ld->sections[ld->n_sections++];
    memset(sec, 0, sizeof *sec);
    return sec;
}

/* A "[...]" line (already trimmed, no line end). Writes the surrogate into sur. */
static void config_section_line(struct config_loader *ld, char *line, char *sur, size_t surcap)
{
    static const char *const types[] = {"xoauthd", "listen", "provider", "account", NULL};
    size_t n = strlen(line);
    ld->cur = CONFIG_CUR_SKIP;
    if (n < 2 || line[n - 1] != ']') {
        config_error(ld, ld->lineno, "a section header must be '[TYPE NAME]' on a line of its own");
        return;
    }
    line[n - 1] = '\0';
    char *inner = config_trim(line + 1);
    char *name = inner + strcspn(inner, " \t");
    if (*name != '\0') {
        *name++ = '\0';
        name = config_trim(name);
    }
    int type;
    if (config_enum(inner, types, &type) < 0) {
        char q[128];
        config_error(ld, ld->lineno,
                     "unknown section type %s (expected xoauthd, listen NAME, provider NAME or "
                     "account NAME)",
                     config_q(q, sizeof q, inner));
        return;
    }
    if (type == CONFIG_SEC_MAIN && *name != '\0') {
        config_error(ld, ld->lineno, "section [xoauthd] takes no name");
        return;
    }
    if (type != CONFIG_SEC_MAIN && !config_name_ok(name)) {
        char q[128];
        config_error(ld, ld->lineno,
                     "section [%s] needs a NAME of letters, digits, '.', '_' or '-' (at most %d, "
                     "starting with a letter or digit), got %s",
                     inner, CONFIG_NAME_MAX, config_q(q, sizeof q, name));
        return;
    }
    for (size_t i = 0; i < ld->n_sections; i++) {
        const struct config_section *o = &ld->sections[i];
        if ((int)o->type == type &&
            (type == CONFIG_SEC_MAIN || strcmp(o->name, name) == 0)) {
            config_error(ld, ld->lineno, "duplicate section %s (first at line %d)", o->label,
                         o->line);
            return;
        }
    }
    struct config_section *sec = config_add_section(ld);
    if (sec == NULL)
        return;
    sec->type = (enum config_sec_type)type;
    sec->line = ld->lineno;
    if (type == CONFIG_SEC_MAIN) {
        snprintf(sec->label, sizeof sec->label, "[xoauthd]");
    } else {
        sec->name = config_strdup(ld, name);
        snprintf(sec->label, sizeof sec->label, "[%s %s]", inner, name);
    }
    ld->cur = (long)(ld->n_sections - 1);
    /* inih keeps only 50 bytes of a section name; the label is at most ~75, so fall back. */
    if (strlen(sec->label) < surcap)
        snprintf(sur, surcap, "%s", sec->label);
    else
        snprintf(sur, surcap, "[s]");
}

/* A "key = value" line (no leading whitespace, no line end). */
static void config_key_line(struct config_loader *ld, char *line, char *sur, size_t surcap)
{
    char *eq = strchr(line, '=');
    if (eq == NULL) {
        config_error(ld, ld->lineno, "expected 'key = value' or '[section]'");
        return;
    }
    /* inih trims with isspace() and cuts at " ;": such a line keeps its value out of inih. */
    int inih_reads_it = strlen(line) + 2 <= surcap && strpbrk(line, ";\v\f\r") == NULL;
    if (inih_reads_it)
        snprintf(sur, surcap, "%s", line);
    *eq = '\0';
    char *key = config_trim(line);
    char *value = config_trim(eq + 1);
    if (!config_key_ok(key, strlen(key))) {
        char q[128];
        config_error(ld, ld->lineno, "bad key name %s", config_q(q, sizeof q, key));
        sur[0] = '\0';
        return;
    }
    if (ld->cur < 0) {
        if (ld->cur == CONFIG_CUR_NONE)
            config_error(ld, ld->lineno, "key '%s' outside any section", key);
        sur[0] = '\0';
        return;
    }
    if (inih_reads_it)
        return;
    free(ld->pending_key);
    config_free_secret(ld->pending_value);
    ld->pending_key = config_strdup(ld, key);
    ld->pending_value = config_strdup(ld, value);
    if (ld->pending_key == NULL || ld->pending_value == NULL)
        return;
    if (strlen(key) + 2 <= surcap)
        snprintf(sur, surcap, "%s=", key);
    else
        snprintf(sur, surcap, "k=");
}

/* getline(3) into ld->buf, except that the buffer grows through secmem_grow: getline's
 * realloc would leave earlier lines (secrets) in freed memory. The length, -1 at the end of
 * the file or on a read error, -2 out of memory. */
static ssize_t config_getline(struct config_loader *ld)
{
    size_t len = 0;
    int ch;
    while ((ch = getc(ld->fp)) != EOF) {
        if (len + 2 > ld->bufcap &&
            secmem_grow(&ld->buf, &ld->bufcap, len, len + 2, 256) != 0)
            return -2;
        ld->buf[len++] = (char)ch;
        if (ch == '\n')
            break;
    }
    if (len == 0)
        return -1;
    ld->buf[len] = '\0';
    return (ssize_t)len;
}

static char *config_reader(char *str, int num, void *stream)
{
    struct config_loader *ld = stream;
    if (num < 4)
        return NULL;
    errno = 0;
    ssize_t n = config_getline(ld);
    if (n < 0) {
        if (ferror(ld->fp))
            ld->read_errno = errno ? errno : EIO;
        else if (n == -2)
            ld->oom = 1;
        return NULL;
    }
    ld->lineno++;
    str[0] = '\0';
    char *line = ld->buf;
    size_t len = (size_t)n;
    if (len > 0 && line[len - 1] == '\n')
        line[--len] = '\0';
    if (len > 0 && line[len - 1] == '\r')
        line[--len] = '\0';
    if (memchr(line, '\0', len) != NULL) {
        config_error(ld, ld->lineno, "NUL byte in line");
        return str;
    }
    if (ld->lineno == 1 && len >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0)
        line += 3;
    char *start = line;
    while (config_is_space(*start))
        start++;
    if (*start == '\0' || *start == ';' || *start == '#')
        return str;
    if (start != line) {
        config_error(ld, ld->lineno,
                     "line starts with whitespace (continuation lines are not supported)");
        return str;
    }
    if (*start == '[')
        config_section_line(ld, config_trim(start), str, (size_t)num);
    else
        config_key_line(ld, start, str, (size_t)num);
    return str;
}

#if INI_HANDLER_LINENO
static int config_handler(void *user, const char *section, const char *name, const char *value,
                          int lineno)
#else
static int config_handler(void *user, const char *section, const char *name, const char *value)
#endif
{
    struct config_loader *ld = user;
    (void)section; /* the reader keeps the real section; inih's copy may be shortened */
#if INI_HANDLER_LINENO
    (void)lineno;
#endif
    if (ld->cur < 0)
        return ld->oom ? 1 : 0;
    char *key = ld->pending_key, *val = ld->pending_value;
    ld->pending_key = NULL;
    ld->pending_value = NULL;
    if (key == NULL && val == NULL) { /* a line inih read itself */
        key = config_strdup(ld, name);
        val = config_strdup(ld, value);
    }
    if (key == NULL || val == NULL) {
        free(key);
        config_free_secret(val);
        return ld->oom ? 1 : 0;
    }
    struct config_section *sec = &ld->sections[ld->cur];
    const struct config_kv *prev = config_sec_kv(sec, key);
    if (prev != NULL && !config_key_repeats(sec->type, key)) {
        config_error(ld, ld->lineno, "duplicate key '%s' in %s (first at line %d)", key,
                     sec->label, prev->line);
        free(key);
        config_free_secret(val);
        return 1;
    }
    if (sec->n_kv == sec->cap_kv) {
        size_t cap = sec->cap_kv ? sec->cap_kv * 2 : 8;
        struct config_kv *grown = realloc(sec->kv, cap * sizeof *grown);
        if (grown == NULL) {
            ld->oom = 1;
            free(key);
            config_free_secret(val);
            return 1;
        }
        sec->kv = grown;
        sec->cap_kv = cap;
    }
    sec->kv[sec->n_kv].key = key;
    sec->kv[sec->n_kv].value = val;
    sec->kv[sec->n_kv].line = ld->lineno;
    sec->n_kv++;
    return 1;
}

int config_read(struct config_loader *ld)
{
    return ini_parse_stream(config_reader, ld, config_handler, ld);
}
