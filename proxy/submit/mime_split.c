#include "mime_split.h"

#include <errno.h>
#include <gmime/gmime.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "spool_file.h"

static pthread_once_t gmime_once = PTHREAD_ONCE_INIT;

static void gmime_init_once(void) { g_mime_init(); }

struct removal {
    GMimeObject *parent;
    GMimeObject *part;
};

struct walk {
    const char *state_dir;
    size_t min;
    struct mime_split *s;
    struct removal *rm;
    size_t n_rm;
    int failed;
};

static char *dup_or_null(const char *v) { return v != NULL ? strdup(v) : NULL; }

/* A text part that is not marked as an attachment is a body: it stays in the draft, whatever
 * its size, so Exchange shows it as the message's text. */
static int is_body_text(GMimeObject *part)
{
    GMimeContentType *ct = g_mime_object_get_content_type(part);
    return g_mime_content_type_is_type(ct, "text", "*") &&
           !g_mime_part_is_attachment(GMIME_PART(part));
}

/* Largest size the part can decode to, from its encoded length: base64 shrinks 4 to 3,
 * quoted-printable and uuencode only shrink. -1: unknown. */
static gint64 decoded_bound(GMimePart *part)
{
    GMimeDataWrapper *content = g_mime_part_get_content(part);
    if (content == NULL)
        return 0;
    gint64 len = g_mime_stream_length(g_mime_data_wrapper_get_stream(content));
    if (len < 0)
        return -1;
    if (g_mime_part_get_content_encoding(part) == GMIME_CONTENT_ENCODING_BASE64)
        return len / 4 * 3 + 3;
    return len;
}

/* Decodes the part into a new spool file: its fd and size, or -1. */
static int decode_to_spool(struct walk *w, GMimePart *part, size_t *size)
{
    int fd = spool_file_open(w->state_dir, "att");
    if (fd < 0) {
        snprintf(w->s->error, sizeof w->s->error, "temporary file: %s", strerror(errno));
        return -1;
    }
    GMimeStream *out = g_mime_stream_fs_new(fd);
    g_mime_stream_fs_set_owner(GMIME_STREAM_FS(out), FALSE);
    ssize_t n = g_mime_data_wrapper_write_to_stream(g_mime_part_get_content(part), out);
    int fl = g_mime_stream_flush(out);
    g_object_unref(out);
    if (n < 0 || fl != 0) {
        snprintf(w->s->error, sizeof w->s->error, "decoding an attachment failed");
        close(fd);
        return -1;
    }
    *size = (size_t)n;
    return fd;
}

static void consider_part(GMimeObject *parent, GMimeObject *part, gpointer data)
{
    struct walk *w = data;
    if (w->failed || !GMIME_IS_PART(part) || is_body_text(part))
        return;
    gint64 bound = decoded_bound(GMIME_PART(part));
    if (bound >= 0 && (size_t)bound < w->min)
        return;
    size_t size = 0;
    int fd = decode_to_spool(w, GMIME_PART(part), &size);
    if (fd < 0) {
        w->failed = 1;
        return;
    }
    if (size < w->min) {
        close(fd);
        return;
    }
    struct mime_split *s = w->s;
    struct mime_attachment *na = realloc(s->att, (s->n_att + 1) * sizeof *na);
    struct removal *nr = realloc(w->rm, (w->n_rm + 1) * sizeof *nr);
    if (na != NULL)
        s->att = na;
    if (nr != NULL)
        w->rm = nr;
    if (na == NULL || nr == NULL) {
        snprintf(s->error, sizeof s->error, "out of memory");
        close(fd);
        w->failed = 1;
        return;
    }
    struct mime_attachment *a = &s->att[s->n_att++];
    memset(a, 0, sizeof *a);
    a->fd = fd;
    a->size = size;
    a->name = dup_or_null(g_mime_part_get_filename(GMIME_PART(part)));
    a->content_type = g_mime_content_type_get_mime_type(g_mime_object_get_content_type(part));
    a->content_id = dup_or_null(g_mime_object_get_content_id(part));
    const char *disp = g_mime_object_get_disposition(part);
    /* Without a disposition, a part with a Content-ID is what an HTML body refers to (cid:,
     * RFC 2392): inline. */
    a->is_inline = disp != NULL ? strcasecmp(disp, "inline") == 0 : a->content_id != NULL;
    w->rm[w->n_rm].parent = parent;
    w->rm[w->n_rm].part = part;
    w->n_rm++;
}

static void remove_parts(GMimeMessage *msg, struct walk *w)
{
    for (size_t i = 0; i < w->n_rm; i++) {
        if (GMIME_IS_MULTIPART(w->rm[i].parent)) {
            g_mime_multipart_remove(GMIME_MULTIPART(w->rm[i].parent), w->rm[i].part);
        } else {
            /* The message is nothing but the attachment: the draft gets an empty text body
             * and the attachment comes through the upload session. */
            GMimeTextPart *t = g_mime_text_part_new_with_subtype("plain");
            g_mime_text_part_set_text(t, "");
            g_mime_message_set_mime_part(msg, GMIME_OBJECT(t));
            g_object_unref(t);
        }
    }
}

static int write_reduced(GMimeMessage *msg, const char *state_dir, struct mime_split *s)
{
    s->reduced_fd = spool_file_open(state_dir, "mime");
    if (s->reduced_fd < 0) {
        snprintf(s->error, sizeof s->error, "temporary file: %s", strerror(errno));
        return -1;
    }
    GMimeStream *out = g_mime_stream_fs_new(s->reduced_fd);
    g_mime_stream_fs_set_owner(GMIME_STREAM_FS(out), FALSE);
    /* SMTP's line ends (RFC 5321 2.3.8); the parsed parts keep theirs, new boundaries and
     * headers get CRLF too. */
    GMimeFormatOptions *fo = g_mime_format_options_new();
    g_mime_format_options_set_newline_format(fo, GMIME_NEWLINE_FORMAT_DOS);
    ssize_t n = g_mime_object_write_to_stream(GMIME_OBJECT(msg), fo, out);
    int fl = g_mime_stream_flush(out);
    g_mime_format_options_free(fo);
    g_object_unref(out);
    if (n < 0 || fl != 0) {
        snprintf(s->error, sizeof s->error, "writing the reduced message failed");
        return -1;
    }
    s->reduced_size = (size_t)n;
    return 0;
}

int mime_split_run(int fd, const char *prefix, size_t prefix_len, const char *state_dir,
                   size_t min_attachment, struct mime_split *s)
{
    memset(s, 0, sizeof *s);
    s->reduced_fd = -1;
    pthread_once(&gmime_once, gmime_init_once);
    int in = dup(fd);
    if (in < 0) {
        snprintf(s->error, sizeof s->error, "dup: %s", strerror(errno));
        return -1;
    }
    GMimeStream *cat = g_mime_stream_cat_new();
    if (prefix_len > 0) {
        GMimeStream *p = g_mime_stream_mem_new_with_buffer(prefix, prefix_len);
        g_mime_stream_cat_add_source(GMIME_STREAM_CAT(cat), p);
        g_object_unref(p);
    }
    GMimeStream *file = g_mime_stream_fs_new_with_bounds(in, 0, -1); /* owns in */
    g_mime_stream_cat_add_source(GMIME_STREAM_CAT(cat), file);
    g_object_unref(file);
    GMimeParser *parser = g_mime_parser_new_with_stream(cat);
    g_object_unref(cat);
    g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
    g_mime_parser_set_persist_stream(parser, TRUE); /* contents stay in the file */
    GMimeMessage *msg = g_mime_parser_construct_message(parser, NULL);
    g_object_unref(parser);
    if (msg == NULL) {
        snprintf(s->error, sizeof s->error, "not a MIME message");
        return -1;
    }
    struct walk w = {state_dir, min_attachment, s, NULL, 0, 0};
    g_mime_message_foreach(msg, consider_part, &w);
    int rc = -1;
    if (!w.failed) {
        remove_parts(msg, &w);
        rc = write_reduced(msg, state_dir, s);
    }
    free(w.rm);
    g_object_unref(msg);
    return rc;
}

void mime_split_free(struct mime_split *s)
{
    if (s->reduced_fd >= 0)
        close(s->reduced_fd);
    s->reduced_fd = -1;
    for (size_t i = 0; i < s->n_att; i++) {
        struct mime_attachment *a = &s->att[i];
        if (a->fd >= 0)
            close(a->fd);
        free(a->name);
        g_free(a->content_type);
        free(a->content_id);
    }
    free(s->att);
    s->att = NULL;
    s->n_att = 0;
}

/* -- the thread-pool job -- */

struct mime_split_job {
    uv_work_t work;
    int fd;
    char *prefix;
    size_t prefix_len;
    char *state_dir;
    size_t min;
    struct mime_split *result;
    int status;
    int cancelled;
    mime_split_cb cb;
    void *arg;
};

static void job_work(uv_work_t *w)
{
    struct mime_split_job *j = w->data;
    j->status = mime_split_run(j->fd, j->prefix, j->prefix_len, j->state_dir, j->min,
                               j->result);
}

static void job_free(struct mime_split_job *j)
{
    close(j->fd);
    free(j->prefix);
    free(j->state_dir);
    free(j);
}

static void job_after(uv_work_t *w, int status)
{
    struct mime_split_job *j = w->data;
    struct mime_split *r = j->result;
    if (status == UV_ECANCELED) {
        /* uv_cancel reached the job before it ran: mime_split_run never filled r. */
        memset(r, 0, sizeof *r);
        r->reduced_fd = -1;
        j->status = -1;
        snprintf(r->error, sizeof r->error, "cancelled");
    }
    if (j->cancelled) {
        mime_split_free(r);
        free(r);
    } else {
        j->cb(j->arg, r, j->status);
    }
    job_free(j);
}

struct mime_split_job *mime_split_queue(uv_loop_t *loop, int fd, const char *prefix,
                                        size_t prefix_len, const char *state_dir,
                                        size_t min_attachment, mime_split_cb cb, void *arg)
{
    struct mime_split_job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return NULL;
    j->fd = dup(fd);
    j->prefix = prefix_len > 0 ? malloc(prefix_len) : NULL;
    j->state_dir = strdup(state_dir);
    j->result = calloc(1, sizeof *j->result);
    if (j->fd < 0 || (prefix_len > 0 && j->prefix == NULL) || j->state_dir == NULL ||
        j->result == NULL) {
        if (j->fd >= 0)
            close(j->fd);
        free(j->prefix);
        free(j->state_dir);
        free(j->result);
        free(j);
        return NULL;
    }
    if (prefix_len > 0)
        memcpy(j->prefix, prefix, prefix_len);
    j->prefix_len = prefix_len;
    j->min = min_attachment;
    j->cb = cb;
    j->arg = arg;
    j->work.data = j;
    if (uv_queue_work(loop, &j->work, job_work, job_after) != 0) {
        free(j->result);
        job_free(j);
        return NULL;
    }
    return j;
}

void mime_split_cancel(struct mime_split_job *j)
{
    j->cancelled = 1;
    (void)uv_cancel((uv_req_t *)&j->work);
}
