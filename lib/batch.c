/* placeholder: implemented in its own commit */
#include "internal.h"
int mim__placeholder_batch(void);
int mim__placeholder_batch(void) { return 0; }
