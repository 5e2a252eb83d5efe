/* admission: one connection's place under its listener's limits (max_connections,
 * max_connections_per_ip). The listener decides before a session exists (a connection still
 * sending its PROXY header holds a place too, and hands it to the session it becomes); the
 * session only learns whether it was refused, and gives the place back through the one
 * release function when it is completely gone. */
#ifndef XOAUTHD_ADMISSION_H
#define XOAUTHD_ADMISSION_H

struct admission {
    /* Gives the place back; called once, by whoever holds the place then (admission_release).
     * NULL when there is nothing to give back. */
    void (*release)(struct admission *a);
    void *owner;      /* the listener */
    int refused;      /* over a limit: the session says it is busy and closes */
    int peer_counted; /* counted under max_connections_per_ip, as peer */
    char peer[64];    /* the client's address as counted ("192.0.2.1") */
};

/* Gives a's place back, once: a is empty afterwards. */
static inline void admission_release(struct admission *a)
{
    void (*release)(struct admission *) = a->release;
    a->release = NULL;
    if (release != NULL)
        release(a);
}

#endif
