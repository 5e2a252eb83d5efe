/* libFuzzer target: mime_split_run, GMime's parse of a spooled message and the split into the
 * reduced MIME and the decoded attachments. The first octet is the threshold in KiB (0-255), so
 * small inputs reach the extraction path; the rest is the message. Every temporary file is
 * unnamed, and mime_split_free must release all of them (the leak check sees descriptors'
 * memory only, so the count of open descriptors is checked too). */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mime_split.h"
#include "spool_file.h"

static int open_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 1024; fd++)
        n += fcntl(fd, F_GETFD) != -1;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t min = (size_t)data[0] * 1024 + 1;
    int before = open_fds();
    int fd = spool_file_open("/tmp", "fuzz");
    if (fd < 0)
        return 0;
    if (write(fd, data + 1, size - 1) != (ssize_t)(size - 1)) {
        close(fd);
        return 0;
    }
    struct mime_split s;
    if (mime_split_run(fd, "Bcc: x@y\r\n", 10, "/tmp", min, &s) == 0) {
        if (s.reduced_fd < 0)
            abort();
        for (size_t i = 0; i < s.n_att; i++)
            if (s.att[i].fd < 0 || s.att[i].size < min || s.att[i].content_type == NULL)
                abort();
    }
    mime_split_free(&s);
    close(fd);
    if (open_fds() != before)
        abort();
    return 0;
}
