/* placeholder: implemented in its own commit */
#include "internal.h"
int mim__placeholder_packet(void);
int mim__placeholder_packet(void) { return 0; }
