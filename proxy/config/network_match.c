#include "network_match.h"

#include <sys/socket.h>

#include "netaddr.h"

int network_match_any(const struct config_allow_network *nets, size_t n,
                             const struct sockaddr_storage *addr)
{
    for (size_t i = 0; i < n; i++)
        if (netaddr_contains(&nets[i].net, nets[i].prefix, addr))
            return 1;
    return 0;
}

const struct config_account *network_match_account(const struct config_allow_network *nets,
                                                   size_t n, const struct sockaddr_storage *addr)
{
    for (size_t i = 0; i < n; i++)
        if (netaddr_contains(&nets[i].net, nets[i].prefix, addr))
            return nets[i].account;
    return NULL;
}
