// One client connection of an NbdServer, from the greeting to the disconnect.
#pragma once

#include <atomic>
#include <functional>

#include "attach/export_target.h"
#include "attach/nbd_server.h"
#include "attach/tls_psk.h"
#include "platform/socket.h"

namespace vdisk::attach {

// Serves the client on `socket` until it disconnects, breaks the protocol or `stopping` is set
// (Stop shuts the socket down to wake it). Runs on the connection's thread; it sends and
// receives on its socket alone. `tls`: the server's TLS credentials when TLS is required, else
// null. `establish` is called when the client is about to enter the transmission phase; false
// refuses it (too many clients: NBD_OPT_GO is answered NBD_REP_ERR_POLICY, NBD_OPT_EXPORT_NAME
// disconnects). May throw std::bad_alloc.
void RunNbdSession(platform::Socket& socket, ExportTarget& target, const NbdServerOptions& options,
                   const TlsPskServer* tls, const std::atomic<bool>& stopping,
                   std::function<bool()> establish);

}  // namespace vdisk::attach
