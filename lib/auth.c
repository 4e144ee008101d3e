/* placeholder: implemented in its own commit */
#include "internal.h"
int mim__placeholder_auth(void);
int mim__placeholder_auth(void) { return 0; }
