/* placeholder: implemented in its own commit */
#include "internal.h"
int mim__placeholder_session(void);
int mim__placeholder_session(void) { return 0; }
