/* The wall clock in milliseconds since the Unix epoch: what events' created, expiry and dead
 * times are written in (libuv's uv_now is monotonic and cannot be stored). */
#ifndef HD_CLOCK_H
#define HD_CLOCK_H

#include <stdint.h>

int64_t hd__wall_ms(void);

#endif
