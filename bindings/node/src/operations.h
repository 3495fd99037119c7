/* Operations on the addon (operations.c): metrics, key rollover, address and key lists. */
#ifndef HDN_OPERATIONS_H
#define HDN_OPERATIONS_H

#include "handles.h"

/* What the options below point to until hd_*_create has copied it. */
typedef struct hdn_operation_options {
  hd_keypair_t next;        /* the server's next identity */
  char *metrics_listen;
  char **connect;           /* the client's server addresses */
  size_t connect_count;
  uint8_t *server_keys;     /* the client's server keys, n x 32 bytes */
} hdn_operation_options_t;

/* Read the options of a server (nextPublicKey/nextScalar, metricsListen) or a client
 * (connectList, serverPublicKeys) into `store` and point `o` at them; 0, or -1 (thrown). Free
 * `store` with hdn_operation_options_free after the create, whatever happened. */
int hdn_operation_server_options(napi_env env, napi_value opts, hdn_operation_options_t *store,
                                 hd_server_options_t *o);
int hdn_operation_client_options(napi_env env, napi_value opts, hdn_operation_options_t *store,
                                 hd_client_options_t *o);
void hdn_operation_options_free(hdn_operation_options_t *o);

/* metrics(), metricsPort(): appended to the Server class's methods. */
extern const napi_property_descriptor hdn_operation_server_methods[];
extern const size_t hdn_operation_server_method_count;

#endif
