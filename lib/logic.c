/* placeholder: implemented in its own commit */
#include "internal.h"
int mim__placeholder_logic(void);
int mim__placeholder_logic(void) { return 0; }
