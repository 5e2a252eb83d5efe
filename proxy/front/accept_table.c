#include "accept_table.h"

/* Indexed by enum config_protocol; filled once at start, before the first listener binds. */
static session_accept_fn accept_table[CONFIG_PROTO_POP3 + 1];

void accept_table_register(enum config_protocol proto, session_accept_fn fn)
{
    if ((unsigned)proto < sizeof accept_table / sizeof accept_table[0])
        accept_table[proto] = fn;
}

session_accept_fn accept_table_lookup(enum config_protocol proto)
{
    if ((unsigned)proto >= sizeof accept_table / sizeof accept_table[0])
        return NULL;
    return accept_table[proto];
}
