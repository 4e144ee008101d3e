/* placeholder: implemented in its own commit */
#include "internal.h"
int mim__placeholder_fanout(void);
int mim__placeholder_fanout(void) { return 0; }
