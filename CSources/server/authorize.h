/* Authorization requests of the server's connections (authorize.c; hd_authorization_t in
 * hyperdown.h). Loop thread, except the public answers. */
#ifndef HD_AUTHORIZE_H
#define HD_AUTHORIZE_H

#include "anchor.h"
#include "conn.h"

/* A request for connection `c` (which is waiting in HD__CONN_AUTHORIZING), set as its
 * c->admission; NULL when out of memory (detail recorded). */
hd_authorization_t *hd__authorization_new(hd__anchor_t *anchor, hd__conn_t *c);
/* The connection closed or timed out before the answer came: the answer will find nothing. */
void hd__authorization_drop(hd__conn_t *c);

#endif
