/* placeholder: implemented in its own commit */
#include "internal.h"
int mim__placeholder_frame(void);
int mim__placeholder_frame(void) { return 0; }
