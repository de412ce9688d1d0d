/* include/polyattn.h compiles as strict C99 (-std=c99 -pedantic, set in CMakeLists.txt)
 * and links: the C half of the header-compat test. */
#include "polyattn.h"

#include <stdio.h>

int polyattn_header_cpp_check(void); /* test_header_cpp.cpp */

int main(void)
{
    polyattn_attention_desc desc;
    polyattn_plan_options opt;
    const char *message = NULL;
    polyattn_attention_desc_init(&desc, POLYATTN_DTYPE_F32, 1, 2, 1, 3, 4, 8, 8);
    polyattn_plan_options_init(&opt);
    if (polyattn_attention_desc_validate(&desc, &message) != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "C99: validate failed: %s\n", message ? message : "");
        return 1;
    }
    if (opt.struct_size != sizeof opt || polyattn_header_cpp_check() != 0) {
        fprintf(stderr, "header compat: mismatch between C and C++\n");
        return 1;
    }
    printf("polyattn.h: C99 and C++ OK (version %s)\n", polyattn_version_string());
    return 0;
}
