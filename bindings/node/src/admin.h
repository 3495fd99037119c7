/* Admin and admission on the addon (admin.c). */
#ifndef HDN_ADMIN_H
#define HDN_ADMIN_H

#include "handles.h"

/* authorize (a boolean: onauthorize is given), authorizeTimeoutMs, maxHandshakes,
 * handshakesPerAddress into the server's options; 0, or -1 (thrown). */
int hdn_admission_server_options(napi_env env, napi_value opts, hd_server_options_t *o);

/* disconnect(), backup(): appended to the Server class's methods; heldStores(), purgeStore() to
 * the Client's. */
extern const napi_property_descriptor hdn_admin_server_methods[];
extern const size_t hdn_admin_server_method_count;
extern const napi_property_descriptor hdn_admin_client_methods[];
extern const size_t hdn_admin_client_method_count;

/* backupFolder(dataDir, path), authorizationAllow(request), authorizationDeny(request) on the
 * module. */
napi_status hdn_admin_init(napi_env env, napi_value exports);

#endif
